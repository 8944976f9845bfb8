"""The examples run as a user runs them: one agent serves `summarize`, the other asks it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from conftest import Bus, mint_token

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


async def run_example(name: str, agent: str, tenant: str, bus: Bus, *arguments: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / name), "--port", str(bus.port), *arguments,
        env={**os.environ, "ACB_TOKEN": mint_token(agent, tenant)},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_one_example_agent_serves_and_the_other_asks(bus: Bus, tenant: str) -> None:
    server = await run_example("summarizer.py", "summarizer", tenant, bus)
    try:
        assert server.stdout is not None
        ready = await asyncio.wait_for(server.stdout.readline(), 30)
        assert ready == b"summarizer serves 'summarize'; Ctrl-C to stop\n"
        asker = await run_example("ask.py", "asker", tenant, bus, "the quick brown fox")
        output, _ = await asyncio.wait_for(asker.communicate(), 30)
        assert asker.returncode == 0
        assert output == b"summarizer answered: 4 words, starting with 'the quick brown'\n"
    finally:
        server.kill()
        await server.wait()
