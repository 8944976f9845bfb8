"""A Swift agent (`acb-demo interop`, on the Swift client) and a Python agent exchange messages, a
request and a stream in both directions through the real bus."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from conftest import Bus, Connect, binary, mint_token, take

import acb

SWIFT_STREAM_BYTES = 3_000_000


async def test_swift_and_python_agents_talk_both_ways(bus: Bus, tenant: str, connect: Connect) -> None:
    python = await connect("py")
    await python.register("interop-python", ["py-upper"])

    @python.serve
    async def upper(request: acb.Delivery) -> str:
        return request.text.upper()

    swift = await asyncio.create_subprocess_exec(
        binary("acb-demo"),
        "interop",
        "--port",
        str(bus.port),
        "--token",
        mint_token("swift", tenant),
        "--peer",
        "py",
        "--stream-bytes",
        str(SWIFT_STREAM_BYTES),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert swift.stdout is not None
        assert await asyncio.wait_for(swift.stdout.readline(), 30) == b"ready swift\n"

        # Python → Swift: a message, a request to its capability, a stream.
        await python.send("swift", "ping")
        response = await python.request(acb.capability("swift-echo"), "hi", timeout=10)
        assert (response.sender, response.text) == ("swift", "swift:hi")
        upload = os.urandom(2_500_000)
        await python.upload("swift", upload)

        # Swift → Python: on "start" it greets, asks py-upper, and uploads a stream.
        await python.send("swift", "start")
        expected = bytes(i % 251 for i in range(SWIFT_STREAM_BYTES))
        messages, streams = await asyncio.gather(
            take(python.deliveries(), 5, timeout=30), take(python.streams(), 1, timeout=30)
        )
        assert sorted(m.text for m in messages) == sorted(
            [
                "echo: ping",
                f"stream {len(upload)} {hashlib.sha256(upload).hexdigest()}",
                "hello from swift",
                "answer: SWIFT ASKS",
                f"uploaded {len(expected)} {hashlib.sha256(expected).hexdigest()}",
            ]
        )
        [stream] = streams
        assert (stream.sender, stream.size) == ("swift", len(expected))
        assert Path(stream.path).read_bytes() == expected
        os.unlink(stream.path)

        await python.send("swift", "bye")
        assert await asyncio.wait_for(swift.wait(), 30) == 0
    finally:
        if swift.returncode is None:
            swift.kill()
            await swift.wait()
        assert swift.stderr is not None
        errors = (await swift.stderr.read()).decode()
        assert swift.returncode == 0, errors
