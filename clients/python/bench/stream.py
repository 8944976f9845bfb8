"""stream: 256 MiB from a sender process to a receiver process, held by the receiver as a file it
verified against the sender's SHA-256.

ACB: `client.upload(agent, data)` (the client hashes the data, then sends it in chunks a few ahead
of what the bus stored; the bus verifies it and delivers it as a stream) and `client.streams()` (the
client writes the chunks to a file and checks size and SHA-256). nats-py, as a reference in the same
shape: the sender hashes the data and publishes an announcement (size and SHA-256), then the data in
1,000,000-byte messages, then flushes; the receiver writes them to a file, hashing as it goes, and
checks size and SHA-256 at the end. NATS core keeps nothing: no flow control, no resume, nothing
stored between the two. The rate is MB (10^6 bytes) / (receiver's verified file - sender's start).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import tempfile

from _common import AGENTS, NATS_CHUNK_BYTES, STREAM_BYTES, acb_client, arguments, cpu, nats_client, now, report, run
from nats.aio.msg import Msg

RECEIVER = AGENTS["receive"]
_ANNOUNCEMENT = struct.Struct(">Q32s")


def content(size: int) -> bytes:
    """Bytes that do not compress, made before the clock starts."""
    return os.urandom(size)


async def acb_send(server: str, token: str, size: int) -> None:
    data = content(size)
    async with acb_client(server, token) as client:
        report("ready")
        cpu_start, start = cpu(), now()
        await client.upload(RECEIVER, data)
        report("result", start=start, end=now(), cpu=cpu() - cpu_start)


async def acb_receive(server: str, token: str, size: int, directory: str) -> None:
    async with acb_client(server, token, download_dir=directory) as client:
        report("ready")
        cpu_start = cpu()
        async for incoming in client.streams():
            end = now()  # the client checked size and SHA-256 before handing it out
            if incoming.size != size or os.path.getsize(incoming.path) != size:
                raise AssertionError(f"a stream of {incoming.size} bytes")
            os.unlink(incoming.path)
            report("result", end=end, cpu=cpu() - cpu_start)
            break


async def nats_send(server: str, subject: str, size: int) -> None:
    data = content(size)
    async with nats_client(server) as client:
        report("ready")
        cpu_start, start = cpu(), now()
        await client.publish(subject, _ANNOUNCEMENT.pack(size, hashlib.sha256(data).digest()))
        view = memoryview(data)
        for offset in range(0, size, NATS_CHUNK_BYTES):
            await client.publish(subject, bytes(view[offset : offset + NATS_CHUNK_BYTES]))
        await client.flush()
        report("result", start=start, end=now(), cpu=cpu() - cpu_start)


async def nats_receive(server: str, subject: str, size: int, directory: str) -> None:
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    descriptor, path = tempfile.mkstemp(prefix="nats-stream-", dir=directory)
    file = os.fdopen(descriptor, "wb")
    digest = hashlib.sha256()
    expected: tuple[int, bytes] | None = None
    received = 0

    async def chunk(message: Msg) -> None:
        nonlocal expected, received
        if expected is None:
            expected = _ANNOUNCEMENT.unpack(message.data)
            return
        file.write(message.data)
        digest.update(message.data)
        received += len(message.data)
        if received >= expected[0] and not done.done():
            file.close()
            if received != expected[0] or digest.digest() != expected[1]:
                done.set_exception(AssertionError(f"{received} bytes, SHA-256 {digest.hexdigest()}"))
            else:
                done.set_result(now())

    try:
        async with nats_client(server) as client:
            await client.subscribe(subject, cb=chunk)
            await client.flush()  # the subscription is in place at the server
            report("ready")
            cpu_start = cpu()
            end = await done
            report("result", end=end, cpu=cpu() - cpu_start)
    finally:
        file.close()
        os.unlink(path)


def main() -> None:
    parser = arguments(__doc__ or "", ("send", "receive"))
    parser.add_argument("--bytes", type=int, default=STREAM_BYTES)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the receiver writes the file")
    options = parser.parse_args()
    subject = f"{options.tenant}.stream"
    run(
        options,
        {
            ("acb", "send"): lambda: acb_send(options.server, options.token, options.bytes),
            ("acb", "receive"): lambda: acb_receive(options.server, options.token, options.bytes, options.dir),
            ("nats", "send"): lambda: nats_send(options.server, subject, options.bytes),
            ("nats", "receive"): lambda: nats_receive(options.server, subject, options.bytes, options.dir),
        },
    )


if __name__ == "__main__":
    main()
