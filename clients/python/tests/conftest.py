"""The real bus for the tests: `acb serve` from this repository's Swift build, started as a
subprocess on a free port, wired to the sidecars `make test` starts (PostgreSQL, Redis, Kafka) when
their ACB_* settings are in the environment. Tokens are minted here with the bus's secret. For
what a bus cannot be made to send at will, `detached_client` is a client with no bus behind it
(tests/in_memory.py feeds its connections by hand)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

import acb
from acb.client import Options

REPOSITORY = Path(__file__).resolve().parents[3]
SECRET = "python-client-tests-secret-0123456789"


def binary(name: str) -> str:
    """A product of this repository's Swift build (ACB_BIN_DIR, else `swift build --show-bin-path`)."""
    directory = (
        os.environ.get("ACB_BIN_DIR")
        or subprocess.run(
            ["swift", "build", "--show-bin-path"], cwd=REPOSITORY, check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    path = Path(directory) / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build the package first (make test does)")
    return str(path)


def mint_token(
    agent: str,
    tenant: str,
    roles: list[str] | None = None,
    ttl: int = 3600,
    *,
    secret: str = SECRET,
    alg: str = "HS256",
    **claims: Any,
) -> str:
    """An HS256 access token as `acb token issue` makes it (docs/protocol.md section 3.1). Another
    `secret`, the header's `alg` or `claims` (added, or replacing the usual ones) make the tokens the
    bus must refuse."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    body = {
        "sub": agent,
        "tenant": tenant,
        "roles": roles or ["agent-full"],
        "jti": uuid.uuid4().hex,
        "iss": "acb",
        "aud": ["acb"],
        "exp": now + ttl,
        "nbf": now,
        "iat": now,
        "typ": "access",
        **claims,
    }
    signing_input = f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(json.dumps(body).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@dataclass
class Bus:
    """A running `acb serve`."""

    process: subprocess.Popen[bytes]
    port: int
    directory: str
    log: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def crash(self) -> None:
        """Ends the bus with SIGKILL, as a crash would: nothing is flushed or drained."""
        self.process.kill()
        self.process.wait(15)


#: Settings of the sidecars that the session's bus leaves out (see `bus`).
SIDECAR_SETTINGS = ("ACB_POSTGRES_URL", "ACB_REDIS_URL", "ACB_KAFKA_BROKERS")


def start_bus(*flags: str, environment: dict[str, str] | None = None, directory: str | None = None) -> Bus:
    """`acb serve` with the sidecars of `environment` (default: this process's); its spool and
    stream files in `directory` (default: a new one; pass a stopped bus's to restart it)."""
    directory = directory or tempfile.mkdtemp(prefix="acb-python-bus-")
    command = [
        binary("acb"),
        "serve",
        "--port",
        "0",
        "--admin-port",
        "off",
        "--token-secret",
        SECRET,
        "--spool-dir",
        f"{directory}/spool",
        "--stream-dir",
        f"{directory}/streams",
        *flags,
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=environment)
    assert process.stderr is not None
    lines: list[str] = []
    for raw in process.stderr:
        line = raw.decode(errors="replace")
        lines.append(line)
        found = re.search(r"agents connect to .*:(\d+)\s*$", line)
        if found:
            bus = Bus(process, int(found.group(1)), directory, lines)
            # Keep reading its log, so a full pipe never blocks the server.
            threading.Thread(target=read_log, args=(process.stderr, lines), daemon=True).start()
            return bus
    raise AssertionError("acb serve did not start:\n" + "".join(lines))


def read_log(log: IO[bytes], lines: list[str]) -> None:
    lines.extend(line.decode(errors="replace") for line in log)


def require_postgres(what: str) -> None:
    """Fails the test (it does not skip: `make test` always has the sidecars) without PostgreSQL."""
    if not os.environ.get("ACB_POSTGRES_URL"):
        pytest.fail(
            f"{what} needs PostgreSQL and ACB_POSTGRES_URL is not set: run these tests through `make test`, "
            'or start the sidecars (scripts/sidecars.sh up) and run pytest inside `eval "$(scripts/sidecars.sh env)"`'
        )


@pytest.fixture(scope="session")
def migrated() -> None:
    """The database has the bus's tables (`acb migrate` changes nothing twice). Without PostgreSQL
    there is nothing to do: the tests that need it fail in `require_postgres`."""
    if not os.environ.get("ACB_POSTGRES_URL"):
        return
    done = subprocess.run(
        [binary("acb"), "migrate", "--migrations", str(REPOSITORY / "migrations")], capture_output=True, text=True
    )
    assert done.returncode == 0, f"acb migrate failed: {done.stderr}"


@pytest.fixture(scope="session")
def bus() -> Iterator[Bus]:
    """The bus of the whole test session, in memory: these tests are about the client, and the
    bus's storage has tests of its own (the Swift suite). Tests of LOGIN, which needs PostgreSQL,
    start buses of their own with it."""
    running = start_bus(environment={k: v for k, v in os.environ.items() if k not in SIDECAR_SETTINGS})
    yield running
    running.stop()
    shutil.rmtree(running.directory, ignore_errors=True)


Connect = Callable[..., Awaitable[acb.Client]]


@pytest.fixture
def tenant(request: pytest.FixtureRequest) -> str:
    """A tenant of its own for each test, so tests never see each other's agents."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:100] + "-" + uuid.uuid4().hex[:6]


@contextlib.asynccontextmanager
async def agents_of(bus: Bus, tenant: str) -> AsyncIterator[Connect]:
    """Connects agents of `tenant` to `bus`, `connect_agent(agent, roles, **options)`; closes them
    on the way out."""
    clients: list[acb.Client] = []

    async def connect_agent(agent: str, roles: list[str] | None = None, **options: Any) -> acb.Client:
        client = await acb.connect("127.0.0.1", bus.port, token=mint_token(agent, tenant, roles), **options)
        clients.append(client)
        return client

    try:
        yield connect_agent
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def connect(bus: Bus, tenant: str) -> AsyncIterator[Connect]:
    """Connects agents of the test's tenant to the session's bus; closes them after the test."""
    async with agents_of(bus, tenant) as connect_agent:
        yield connect_agent


@pytest.fixture
async def detached_client() -> AsyncIterator[acb.Client]:
    """A client with no bus behind it, for `in_memory.attach` to give it connections fed by hand."""
    client = acb.Client(Options(token="unused", reconnect=False))
    yield client
    await client.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Polls `check` until it holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.02)


async def take(iterator: Any, count: int, timeout: float = 10.0) -> list[Any]:
    """The next `count` items of an async iterator, failing after `timeout` seconds."""

    async def collect() -> list[Any]:
        items = []
        async for item in iterator:
            items.append(item)
            if len(items) == count:
                break
        return items

    return await asyncio.wait_for(collect(), timeout)
