"""p2p: one sender process, one receiver process, 256-byte payloads.

The sender writes `--count` messages without waiting for each (ACB: `send(confirm=False)`; nats-py:
`publish`) and flushes every `--flush-every` (ACB: `flush()`, a PING that waits for every send to be
settled; nats-py: `flush()`, a PING). The receiver counts until every message arrived. The rate is
messages / (receiver's last receipt - sender's first send), both on the machine's monotonic clock.
"""

from __future__ import annotations

import asyncio

from _common import AGENTS, PAYLOAD_BYTES, acb_client, arguments, cpu, nats_client, now, report, run
from nats.aio.msg import Msg

RECEIVER = AGENTS["receive"]


async def acb_send(server: str, token: str, count: int, flush_every: int) -> None:
    payload = bytes(PAYLOAD_BYTES)
    async with acb_client(server, token) as client:
        report("ready")
        cpu_start, start = cpu(), now()
        for sent in range(1, count + 1):
            await client.send(RECEIVER, payload, confirm=False)
            if sent % flush_every == 0:
                await client.flush()
        await client.flush()
        end = now()
        report("result", start=start, end=end, cpu=cpu() - cpu_start)


async def acb_receive(server: str, token: str, count: int) -> None:
    async with acb_client(server, token) as client:
        report("ready")
        cpu_start = cpu()
        received = 0
        first = 0
        async for delivery in client.deliveries():
            if received == 0:
                first = now()
            if len(delivery.payload) != PAYLOAD_BYTES:
                raise AssertionError(f"a payload of {len(delivery.payload)} bytes")
            received += 1
            if received == count:
                break
        report("result", first=first, end=now(), received=received, cpu=cpu() - cpu_start)


async def nats_send(server: str, subject: str, count: int, flush_every: int) -> None:
    payload = bytes(PAYLOAD_BYTES)
    async with nats_client(server) as client:
        report("ready")
        cpu_start, start = cpu(), now()
        for sent in range(1, count + 1):
            await client.publish(subject, payload)
            if sent % flush_every == 0:
                await client.flush()
        await client.flush()
        end = now()
        report("result", start=start, end=end, cpu=cpu() - cpu_start)


async def nats_receive(server: str, subject: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    received = 0
    first = 0

    async def counted(message: Msg) -> None:
        nonlocal received, first
        if received == 0:
            first = now()
        if len(message.data) != PAYLOAD_BYTES:
            raise AssertionError(f"a payload of {len(message.data)} bytes")
        received += 1
        if received == count and not done.done():
            done.set_result(None)

    async with nats_client(server) as client:
        await client.subscribe(subject, cb=counted)
        await client.flush()  # the subscription is in place at the server
        report("ready")
        cpu_start = cpu()
        await done
        report("result", first=first, end=now(), received=received, cpu=cpu() - cpu_start)


def main() -> None:
    parser = arguments(__doc__ or "", ("send", "receive"))
    parser.add_argument("--count", type=int, default=400_000)
    parser.add_argument("--flush-every", type=int, default=1_000)
    options = parser.parse_args()
    subject = f"{options.tenant}.p2p"
    run(
        options,
        {
            ("acb", "send"): lambda: acb_send(options.server, options.token, options.count, options.flush_every),
            ("acb", "receive"): lambda: acb_receive(options.server, options.token, options.count),
            ("nats", "send"): lambda: nats_send(options.server, subject, options.count, options.flush_every),
            ("nats", "receive"): lambda: nats_receive(options.server, subject, options.count),
        },
    )


if __name__ == "__main__":
    main()
