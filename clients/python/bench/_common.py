"""What the benchmark programs share: their options, the agents they are, how they connect, and the
line protocol a role speaks with `run.py` on its stdout (one JSON object per line: `ready`, then
`result`).

Times are `time.monotonic_ns()`: on Linux one clock for every process of the machine, so a sender's
start and a receiver's end can be subtracted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import nats
from nats.aio.client import Client as NATS

import acb

#: The payload of p2p and request/reply, as in `make bench`.
PAYLOAD_BYTES = 256
#: The stream scenario's size: 256 MiB.
STREAM_BYTES = 256 * 1024 * 1024
#: nats-server's default max_payload is 1 MiB (1,048,576 bytes): chunks stay below it.
NATS_CHUNK_BYTES = 1_000_000
#: The agent of each role, for ACB: `run.py` issues the role's token for it, and a role addresses
#: its peer by it.
AGENTS = {"send": "sender", "receive": "receiver", "request": "requester", "respond": "responder"}

#: What `run` starts: a role, made only once it is the one chosen.
Role = Callable[[], Coroutine[Any, Any, None]]


def now() -> int:
    """Nanoseconds on the machine-wide monotonic clock."""
    return time.monotonic_ns()


def arguments(description: str, roles: tuple[str, str]) -> argparse.ArgumentParser:
    """The options every program takes: which system and which of its two roles, where the server
    listens, the role's token (ACB) and the tenant of the run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("system", choices=("acb", "nats"))
    parser.add_argument("role", choices=roles)
    parser.add_argument("--server", required=True, help="host:port of the bus or of nats-server")
    parser.add_argument(
        "--token", help="ACB (needed): the access token of the role's agent (AGENTS), as `acb token issue` prints it"
    )
    parser.add_argument("--tenant", default="bench", help="the run's NATS subject prefix (ACB's is the token's)")
    parser.add_argument("--profile", metavar="FILE", help="run under cProfile and write its stats to FILE")
    return parser


def run(options: argparse.Namespace, roles: dict[tuple[str, str], Role]) -> None:
    """Runs the role of `roles` that `options` name by system and role on a fresh event loop
    (asyncio's default loop, for both clients), under cProfile if asked."""
    if options.system == "acb" and options.token is None:
        sys.exit(f"{options.role}: an acb role needs --token")
    role = roles[options.system, options.role]()
    if options.profile is None:
        asyncio.run(role)
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(role)
    finally:
        profiler.disable()
        profiler.dump_stats(options.profile)


def acb_client(server: str, token: str, **options: Any) -> acb.Connecting:
    """The ACB client of a role, connected to `server` (host:port) with `token`, not reconnecting."""
    host, _, port = server.rpartition(":")
    return acb.connect(host or "127.0.0.1", int(port), token=token, reconnect=False, **options)


@contextlib.asynccontextmanager
async def nats_client(server: str) -> AsyncIterator[NATS]:
    """The nats-py client of a role, connected to `server` (host:port), not reconnecting; closed on exit."""
    client = await nats.connect(f"nats://{server}", allow_reconnect=False)
    try:
        yield client
    finally:
        await client.close()


def report(event: str, **fields: Any) -> None:
    """One line for `run.py`: `ready` once the role can be measured, `result` with its figures."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def stopped() -> None:
    """Returns when `run.py` closes this process's stdin: the end of a role that serves until told."""
    await asyncio.to_thread(sys.stdin.read)


def cpu() -> float:
    """This process's CPU time so far (user + system), in seconds."""
    return time.process_time()
