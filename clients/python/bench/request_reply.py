"""request/reply: one requester process asking one at a time, one responder process echoing.

ACB: `client.request(agent, payload)` against `client.serve(handler)`; nats-py: `request(subject,
payload)` against a subscription whose callback calls `msg.respond`. After `--warmup` requests the
requester times `--count` more, each from the call to its answer; it reports requests/s over the
timed ones and their latency percentiles.
"""

from __future__ import annotations

from _common import AGENTS, PAYLOAD_BYTES, acb_client, arguments, cpu, nats_client, now, report, run, stopped
from nats.aio.msg import Msg

import acb

RESPONDER = AGENTS["respond"]


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


async def acb_request(server: str, token: str, warmup: int, count: int) -> None:
    payload = bytes(PAYLOAD_BYTES)
    async with acb_client(server, token) as client:
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


async def acb_respond(server: str, token: str) -> None:
    async with acb_client(server, token) as client:

        async def echo(request: acb.Delivery) -> bytes:
            return request.payload

        client.serve(echo)
        report("ready")
        await stopped()


async def nats_request(server: str, subject: str, warmup: int, count: int) -> None:
    payload = bytes(PAYLOAD_BYTES)
    async with nats_client(server) as client:
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


async def nats_respond(server: str, subject: str) -> None:
    async def echo(request: Msg) -> None:
        await request.respond(request.data)

    async with nats_client(server) as client:
        await client.subscribe(subject, cb=echo)
        await client.flush()  # the subscription is in place at the server
        report("ready")
        await stopped()


def main() -> None:
    parser = arguments(__doc__ or "", ("request", "respond"))
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--count", type=int, default=5_000)
    options = parser.parse_args()
    subject = f"{options.tenant}.rr"
    run(
        options,
        {
            ("acb", "request"): lambda: acb_request(options.server, options.token, options.warmup, options.count),
            ("acb", "respond"): lambda: acb_respond(options.server, options.token),
            ("nats", "request"): lambda: nats_request(options.server, subject, options.warmup, options.count),
            ("nats", "respond"): lambda: nats_respond(options.server, subject),
        },
    )


if __name__ == "__main__":
    main()
