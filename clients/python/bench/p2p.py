"""p2p: one sender process, one receiver process, 256-byte payloads.

The sender writes `--count` messages without waiting for each (ACB: `send(confirm=False)`; nats-py:
`publish`) and flushes every `--flush-every` (ACB: `flush()`, a PING that waits for every send to be
settled; nats-py: `flush()`, a PING). The receiver counts until every message arrived. The rate is
messages / (receiver's last receipt - sender's first send), both on the machine's monotonic clock.
"""

from __future__ import annotations

import asyncio

import nats
from _common import PAYLOAD_BYTES, address, arguments, cpu, now, report, run, token
from nats.aio.msg import Msg

import acb

SENDER = "sender"
RECEIVER = "receiver"


async def acb_send(server: str, tenant: str, count: int, flush_every: int) -> None:
    host, port = address(server)
    payload = bytes(PAYLOAD_BYTES)
    async with acb.connect(host, port, token=token(SENDER, tenant), reconnect=False) as client:
        report("ready")
        cpu_start, start = cpu(), now()
        for sent in range(1, count + 1):
            await client.send(RECEIVER, payload, confirm=False)
            if sent % flush_every == 0:
                await client.flush()
        await client.flush()
        end = now()
        report("result", start=start, end=end, cpu=cpu() - cpu_start)


async def acb_receive(server: str, tenant: str, count: int) -> None:
    host, port = address(server)
    async with acb.connect(host, port, token=token(RECEIVER, tenant), reconnect=False) as client:
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
    client = await nats.connect(f"nats://{server}", allow_reconnect=False)
    try:
        report("ready")
        cpu_start, start = cpu(), now()
        for sent in range(1, count + 1):
            await client.publish(subject, payload)
            if sent % flush_every == 0:
                await client.flush()
        await client.flush()
        end = now()
        report("result", start=start, end=end, cpu=cpu() - cpu_start)
    finally:
        await client.close()


async def nats_receive(server: str, subject: str, count: int) -> None:
    client = await nats.connect(f"nats://{server}", allow_reconnect=False)
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

    try:
        await client.subscribe(subject, cb=counted)
        await client.flush()  # the subscription is in place at the server
        report("ready")
        cpu_start = cpu()
        await done
        report("result", first=first, end=now(), received=received, cpu=cpu() - cpu_start)
    finally:
        await client.close()


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("role", choices=("send", "receive"))
    parser.add_argument("--count", type=int, default=400_000)
    parser.add_argument("--flush-every", type=int, default=1_000)
    options = parser.parse_args()
    subject = f"{options.tenant}.p2p"
    if options.system == "acb":
        role = (
            acb_send(options.server, options.tenant, options.count, options.flush_every)
            if options.role == "send"
            else acb_receive(options.server, options.tenant, options.count)
        )
    else:
        role = (
            nats_send(options.server, subject, options.count, options.flush_every)
            if options.role == "send"
            else nats_receive(options.server, subject, options.count)
        )
    run(role, options.profile)


if __name__ == "__main__":
    main()
