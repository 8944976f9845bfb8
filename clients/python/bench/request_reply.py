"""request/reply: one requester process asking one at a time, one responder process echoing.

ACB: `client.request(agent, payload)` against `client.serve(handler)`; nats-py: `request(subject,
payload)` against a subscription whose callback calls `msg.respond`. After `--warmup` requests the
requester times `--count` more, each from the call to its answer; it reports requests/s over the
timed ones and their latency percentiles.
"""

from __future__ import annotations

import nats
from _common import PAYLOAD_BYTES, address, arguments, cpu, now, report, run, stopped, token
from nats.aio.msg import Msg

import acb

REQUESTER = "requester"
RESPONDER = "responder"


def percentile(sorted_ns: list[int], fraction: float) -> float:
    """The nearest-rank percentile, in µs."""
    index = min(len(sorted_ns) - 1, max(0, round(fraction * len(sorted_ns)) - 1))
    return sorted_ns[index] / 1000


def summary(latencies_ns: list[int], start: int, end: int, cpu_seconds: float) -> None:
    latencies_ns.sort()
    report(
        "result",
        start=start,
        end=end,
        requests=len(latencies_ns),
        p50_us=percentile(latencies_ns, 0.50),
        p90_us=percentile(latencies_ns, 0.90),
        p99_us=percentile(latencies_ns, 0.99),
        max_us=latencies_ns[-1] / 1000,
        cpu=cpu_seconds,
    )


async def acb_request(server: str, tenant: str, warmup: int, count: int) -> None:
    host, port = address(server)
    payload = bytes(PAYLOAD_BYTES)
    async with acb.connect(host, port, token=token(REQUESTER, tenant), reconnect=False) as client:
        report("ready")
        for _ in range(warmup):
            await client.request(RESPONDER, payload, timeout=5)
        latencies: list[int] = []
        cpu_start, start = cpu(), now()
        for _ in range(count):
            asked = now()
            response = await client.request(RESPONDER, payload, timeout=5)
            latencies.append(now() - asked)
            if not response.ok or len(response.payload) != PAYLOAD_BYTES:
                raise AssertionError(f"unexpected answer {response}")
        summary(latencies, start, now(), cpu() - cpu_start)


async def acb_respond(server: str, tenant: str) -> None:
    host, port = address(server)
    async with acb.connect(host, port, token=token(RESPONDER, tenant), reconnect=False) as client:

        async def echo(request: acb.Delivery) -> bytes:
            return request.payload

        client.serve(echo)
        report("ready")
        await stopped()


async def nats_request(server: str, subject: str, warmup: int, count: int) -> None:
    payload = bytes(PAYLOAD_BYTES)
    client = await nats.connect(f"nats://{server}", allow_reconnect=False)
    try:
        report("ready")
        for _ in range(warmup):
            await client.request(subject, payload, timeout=5)
        latencies: list[int] = []
        cpu_start, start = cpu(), now()
        for _ in range(count):
            asked = now()
            response = await client.request(subject, payload, timeout=5)
            latencies.append(now() - asked)
            if len(response.data) != PAYLOAD_BYTES:
                raise AssertionError(f"unexpected answer {response}")
        summary(latencies, start, now(), cpu() - cpu_start)
    finally:
        await client.close()


async def nats_respond(server: str, subject: str) -> None:
    client = await nats.connect(f"nats://{server}", allow_reconnect=False)

    async def echo(request: Msg) -> None:
        await request.respond(request.data)

    try:
        await client.subscribe(subject, cb=echo)
        await client.flush()  # the subscription is in place at the server
        report("ready")
        await stopped()
    finally:
        await client.close()


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("role", choices=("request", "respond"))
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--count", type=int, default=5_000)
    options = parser.parse_args()
    subject = f"{options.tenant}.rr"
    if options.system == "acb":
        role = (
            acb_request(options.server, options.tenant, options.warmup, options.count)
            if options.role == "request"
            else acb_respond(options.server, options.tenant)
        )
    else:
        role = (
            nats_request(options.server, subject, options.warmup, options.count)
            if options.role == "request"
            else nats_respond(options.server, subject)
        )
    run(role, options.profile)


if __name__ == "__main__":
    main()
