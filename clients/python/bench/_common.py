"""What the benchmark programs share: where the servers are, tokens, and the line protocol a role
speaks with `run.py` on its stdout (one JSON object per line: `ready`, then `result`).

Times are `time.monotonic_ns()`: on Linux one clock for every process of the machine, so a sender's
start and a receiver's end can be subtracted."""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from collections.abc import Coroutine
from typing import Any

#: The payload of p2p and request/reply, as in `make bench`.
PAYLOAD_BYTES = 256
#: The stream scenario's size: 256 MiB.
STREAM_BYTES = 256 * 1024 * 1024
#: nats-server's default max_payload is 1 MiB (1,048,576 bytes): chunks stay below it.
NATS_CHUNK_BYTES = 1_000_000


def now() -> int:
    """Nanoseconds on the machine-wide monotonic clock."""
    return time.monotonic_ns()


def address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def arguments(description: str) -> argparse.ArgumentParser:
    """The options every role takes: which system, where it listens, and the tenant of the run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("system", choices=("acb", "nats"))
    parser.add_argument("--server", required=True, help="host:port of the bus or of nats-server")
    parser.add_argument("--tenant", default="bench", help="ACB tenant (and NATS subject prefix) of this run")
    parser.add_argument("--profile", metavar="FILE", help="run under cProfile and write its stats to FILE")
    return parser


def run(role: Coroutine[Any, Any, None], profile: str | None) -> None:
    """Runs a role on a fresh event loop (asyncio's default loop, for both clients), under cProfile
    if asked."""
    if profile is None:
        asyncio.run(role)
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(role)
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


def token(agent: str, tenant: str) -> str:
    """An access token of `agent` in `tenant`, signed with the bus's secret (ACB_TOKEN_SECRET)."""
    return mint_token(agent, tenant, os.environ["ACB_TOKEN_SECRET"])


def mint_token(agent: str, tenant: str, secret: str, ttl: int = 3600) -> str:
    """An HS256 access token as `acb token issue` makes it (docs/protocol.md section 3.1)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    issued = int(time.time())
    claims = {
        "sub": agent,
        "tenant": tenant,
        "roles": ["agent-full"],
        "jti": uuid.uuid4().hex,
        "iss": "acb",
        "aud": ["acb"],
        "exp": issued + ttl,
        "nbf": issued,
        "iat": issued,
        "typ": "access",
    }
    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


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
