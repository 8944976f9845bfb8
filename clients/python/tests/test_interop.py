"""A Swift agent (`acb-demo interop`, on the Swift client) and a Python agent exchange messages, a
request and a stream in both directions through the real bus."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
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

    async with swift_agent(bus, tenant, "--stream-bytes", str(SWIFT_STREAM_BYTES)) as swift:
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


async def test_swift_and_python_agents_seal_both_ways(bus: Bus, tenant: str, connect: Connect) -> None:
    """The same conversation sealed end to end: each client opens what the other sealed."""
    python = await connect("py", keys=acb.AgentKeys.generate(), require_sealed=True)

    @python.serve
    async def upper(request: acb.Delivery) -> str:
        assert request.sealed_by == "agent"
        return request.text.upper()

    async with swift_agent(bus, tenant, "--sealed", "--stream-bytes", str(SWIFT_STREAM_BYTES)) as swift:
        await python.send("swift", "ping", sealed="box")
        response = await python.request("swift", "hi", timeout=10, sealed=True)
        assert (response.sender, response.text) == ("swift", "swift:hi")
        upload = os.urandom(2_500_000)
        await python.upload("swift", upload, sealed=True)
        await python.send("swift", "start", sealed="anonymous")
        deliveries = python.deliveries()
        expected = bytes(i % 251 for i in range(SWIFT_STREAM_BYTES))
        messages, streams = await asyncio.gather(take(deliveries, 7, timeout=30), take(python.streams(), 1, timeout=30))
        assert sorted(m.text for m in messages) == sorted(
            [
                "echo: ping",
                f"stream {len(upload)} {hashlib.sha256(upload).hexdigest()}",
                "hello from swift",
                "answer: SWIFT ASKS",
                "to the team",
                "shared swift-notes",
                f"uploaded {len(expected)} {hashlib.sha256(expected).hexdigest()}",
            ]
        )
        assert all(m.sender == "swift" for m in messages)
        assert {(m.text, m.sealed_by, m.group) for m in messages} >= {
            ("answer: SWIFT ASKS", "agent", None),
            ("to the team", "group", "swift/team"),
        }
        [stream] = streams
        assert (stream.sender, stream.sealed_by, Path(stream.path).read_bytes()) == ("swift", "agent", expected)
        os.unlink(stream.path)
        assert (await python.contexts.get_sealed("swift-notes")).text == "notes from swift"
        readers = acb.ContextAttributes(scope=acb.ContextScope.SHARED, readers=["swift"])
        await python.contexts.put_sealed("py-notes", "notes from python", attributes=readers)
        await python.send("swift", "read py-notes", sealed="box")
        [read] = await take(deliveries, 1, timeout=30)
        assert (read.text, read.sealed_by) == ("read: notes from python", "agent")
        await python.send("swift", "bye", sealed="box")
        assert await asyncio.wait_for(swift.wait(), 30) == 0


@contextlib.asynccontextmanager
async def swift_agent(bus: Bus, tenant: str, *flags: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`acb-demo interop` as agent `swift` of `tenant`, driven by agent `py`, once it is ready;
    killed on the way out if it did not end, and failing the test unless it ended with status 0."""
    swift = await asyncio.create_subprocess_exec(
        binary("acb-demo"),
        "interop",
        "--port",
        str(bus.port),
        "--token",
        mint_token("swift", tenant),
        "--peer",
        "py",
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert swift.stdout is not None
        assert await asyncio.wait_for(swift.stdout.readline(), 30) == b"ready swift\n"
        yield swift
    finally:
        if swift.returncode is None:
            swift.kill()
            await swift.wait()
        assert swift.stderr is not None
        errors = (await swift.stderr.read()).decode()
        assert swift.returncode == 0, errors
