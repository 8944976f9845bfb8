"""Authentication against the real bus: tokens refused in HELLO, token functions, LOGIN with an
agent's secret (REFRESH on reconnect, rotation, reuse, LOGOUT), TLS and mTLS (docs/protocol.md
sections 3, 3.1, 3.3 and 4.5a; docs/security.md).

LOGIN needs PostgreSQL: those tests fail, not skip, without ACB_POSTGRES_URL (`make test` always
sets it). Their bus writes its audit events to a file, which is how they see what the client did on
the wire (LOGIN or REFRESH, and whether it presented a stale refresh token)."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPOSITORY, Bus, binary, eventually, mint_token, require_postgres, start_bus, take

import acb
from acb import _frames as f

AGENT_SECRET = "the-agents-own-secret-0123456789"

# MARK: helpers


async def exchange(port: int, frame: f.Login | f.Refresh) -> f.Frame:
    """LOGIN or REFRESH on a plain connection of its own, as its first frame: the bus's answer (TOKENS
    or ERROR). The tests present the client's refresh tokens with it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame.encode())
        await writer.drain()
        length, frame_type = f.HEADER.unpack(await asyncio.wait_for(reader.readexactly(f.HEADER.size), 10))
        return f.decode(frame_type, await asyncio.wait_for(reader.readexactly(length - 1), 10))
    finally:
        writer.close()


def refused(answer: f.Frame) -> None:
    """Checks that `answer` is ERROR `unauthenticated`."""
    assert isinstance(answer, f.Error), f"expected ERROR unauthenticated, got {answer}"
    assert answer.code == acb.ErrorCode.UNAUTHENTICATED, answer


def session_of(client: acb.Client) -> int:
    welcome = client.welcome
    assert welcome is not None
    return welcome.session_id


async def reconnected(client: acb.Client, previous_session: int) -> None:
    """Waits until the client is on a new session (its WELCOME), and checks that it works."""

    async def new_session() -> bool:
        return session_of(client) != previous_session

    try:
        await eventually(new_session, timeout=15)
    except AssertionError:
        raise AssertionError(f"the client did not reconnect; its reconnect task: {client._reconnecting}") from None
    await works(client)


async def works(client: acb.Client) -> None:
    """A message the client sends itself is confirmed and delivered. (With PostgreSQL, a SEND right
    after the receiver's session opened is `queued` behind the stored messages the bus reads back.)"""
    text = uuid.uuid4().hex
    outcome = await client.send(client.agent_id, text)
    assert outcome is not None and outcome.outcome in (acb.Outcome.DELIVERED, acb.Outcome.QUEUED)

    async def arrives() -> None:
        async for delivery in client.deliveries():
            if delivery.text == text:
                return

    await asyncio.wait_for(arrives(), 10)


# MARK: tokens in HELLO


@pytest.mark.parametrize(
    ("reason", "build"),
    [
        ("signature", lambda tenant: mint_token("alice", tenant, secret="another-secret-of-at-least-32-bytes!")),
        ("expired", lambda tenant: mint_token("alice", tenant, ttl=-120)),  # beyond the 30 s leeway
        ("not_yet_valid", lambda tenant: mint_token("alice", tenant, nbf=int(time.time()) + 600)),
        ("wrong_kind", lambda tenant: mint_token("alice", tenant, typ="refresh")),
        ("algorithm", lambda tenant: mint_token("alice", tenant, alg="none")),
        ("audience", lambda tenant: mint_token("alice", tenant, aud=["someone-else"])),
        ("malformed", lambda tenant: "not.a-jwt"),
    ],
)
async def test_a_refused_token_makes_connect_raise_unauthenticated(
    bus: Bus, tenant: str, reason: str, build: Callable[[str], str]
) -> None:
    with pytest.raises(acb.AuthenticationError) as raised:
        await acb.connect("127.0.0.1", bus.port, token=build(tenant))
    assert raised.value.code == acb.ErrorCode.UNAUTHENTICATED
    # docs/security.md: the message is `token refused (<reason>): <detail>`
    assert raised.value.message.startswith(f"token refused ({reason})"), raised.value.message
    # The same agent with a good token gets in: the refusal was the token's.
    async with acb.connect("127.0.0.1", bus.port, token=mint_token("alice", tenant)) as client:
        assert (client.tenant, client.agent_id) == (tenant, "alice")


async def test_a_token_function_that_refuses_at_connect_raises(bus: Bus, tenant: str) -> None:
    calls: list[int] = []

    def expired() -> str:
        calls.append(1)
        return mint_token("alice", tenant, ttl=-120)

    with pytest.raises(acb.AuthenticationError) as raised:
        await acb.connect("127.0.0.1", bus.port, token=expired)
    assert raised.value.code == acb.ErrorCode.UNAUTHENTICATED
    assert calls == [1]


# MARK: token functions


@dataclass
class TokenSource:
    """A token function that counts its calls; `tokens` (if any) are given first, then fresh ones."""

    agent: str
    tenant: str
    tokens: list[str]
    calls: int = 0

    def next(self) -> str:
        self.calls += 1
        return self.tokens.pop(0) if self.tokens else mint_token(self.agent, self.tenant)

    def sync(self) -> str:
        return self.next()

    async def asynchronous(self) -> str:
        await asyncio.sleep(0)
        return self.next()

    def function(self, kind: str) -> Callable[[], str | Awaitable[str]]:
        return self.sync if kind == "sync" else self.asynchronous


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_token_function_is_called_again_on_reconnect(bus: Bus, tenant: str, kind: str) -> None:
    source = TokenSource("alice", tenant, [])
    async with acb.connect("127.0.0.1", bus.port, token=source.function(kind)) as client:
        assert source.calls == 1
        await works(client)
        for reconnects in (1, 2):
            session = session_of(client)
            client.drop_connection()
            await reconnected(client, session)
            assert source.calls == 1 + reconnects


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_token_function_gives_a_fresh_token_when_the_session_expires(bus: Bus, tenant: str, kind: str) -> None:
    # The first token expired 25 s ago: still inside the 30 s leeway, so HELLO takes it, and the bus
    # ends the session with GOAWAY `unauthenticated` some 5 s later (section 3.1).
    source = TokenSource("alice", tenant, [mint_token("alice", tenant, ttl=-25)])
    async with acb.connect("127.0.0.1", bus.port, token=source.function(kind)) as client:
        session = session_of(client)
        await reconnected(client, session)  # no drop_connection: the bus ended the session
        assert source.calls == 2


async def test_a_fixed_token_ends_the_client_when_it_expires(bus: Bus, tenant: str) -> None:
    async with acb.connect("127.0.0.1", bus.port, token=mint_token("alice", tenant, ttl=-25)) as client:
        with pytest.raises(acb.SessionEndedError) as ended:
            await take(client.deliveries(), 1, timeout=60)
        assert ended.value.code == acb.ErrorCode.UNAUTHENTICATED
        # It cannot get another token, so it does not reconnect: commands raise the same error.
        with pytest.raises(acb.SessionEndedError):
            await client.send("alice", b"x")


class TokenServiceError(Exception):
    """What the HTTP client of a token service raises (most are not OSErrors)."""


@pytest.mark.parametrize("error", [ConnectionError, TokenServiceError])
async def test_a_token_function_that_fails_while_reconnecting_is_tried_again(
    bus: Bus, tenant: str, error: type[Exception]
) -> None:
    """A token service that is down for a moment (the function raises) must not end reconnecting."""
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 2:
            raise error("the token service is down")
        return mint_token("alice", tenant)

    async with acb.connect("127.0.0.1", bus.port, token=flaky) as client:
        session = session_of(client)
        client.drop_connection()
        await reconnected(client, session)
        assert len(calls) == 3


# MARK: LOGIN, REFRESH, LOGOUT (PostgreSQL)


def create_agent(agent: str, tenant: str, secret: str = AGENT_SECRET) -> None:
    require_postgres("LOGIN")
    done = subprocess.run(
        [binary("acb"), "agent", "create", "--agent", agent, "--tenant", tenant, "--secret-stdin"],
        input=secret + "\n",
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"acb agent create failed: {done.stderr}"


@dataclass
class AuditedBus:
    """A bus with PostgreSQL whose audit events go to a file."""

    bus: Bus
    audit_log: Path

    @property
    def port(self) -> int:
        return self.bus.port

    def events(self, tenant: str, agent: str) -> list[dict[str, Any]]:
        """The audit events about this agent so far (whole lines only), in order."""
        events = []
        text = self.audit_log.read_text() if self.audit_log.exists() else ""
        for line in text.splitlines(keepends=True):
            if line.endswith("\n"):
                event = json.loads(line)
                if event["tenant"] == tenant and event["agent"] == agent:
                    events.append(event)
        return events

    def kinds(self, tenant: str, agent: str, prefix: str = "security.") -> list[str]:
        return [e["kind"] for e in self.events(tenant, agent) if e["kind"].startswith(prefix)]

    async def refresh_refused_as_revoked(self, tenant: str, agent: str) -> None:
        """Waits for the `security.refresh_failed` of a REFRESH refused because its family is revoked,
        the family of the agent's latest LOGIN (docs/audit.md)."""

        async def logged() -> bool:
            events = self.events(tenant, agent)
            families = [e["detail"]["family"] for e in events if e["kind"] == "security.login"]
            return any(
                e["kind"] == "security.refresh_failed"
                and e["detail"].get("reason") == "revoked"
                and e["detail"].get("family") == families[-1]
                for e in events
            )

        await eventually(logged)

    async def sessions_opened(self, tenant: str, agent: str, count: int) -> None:
        """Waits until the log shows `count` sessions of the agent opened (and what led to them)."""

        async def logged() -> bool:
            return self.kinds(tenant, agent, "session.opened").count("session.opened") >= count

        await eventually(logged)


@pytest.fixture
def audited_bus(migrated: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditedBus]:
    # Without Kafka the audit events go to --audit-log (docs/audit.md).
    monkeypatch.delenv("ACB_KAFKA_BROKERS", raising=False)
    directory = Path(tempfile.mkdtemp(prefix="acb-python-audit-"))
    running = start_bus("--audit-log", str(directory / "audit.jsonl"))
    yield AuditedBus(running, directory / "audit.jsonl")
    running.stop()
    shutil.rmtree(running.directory, ignore_errors=True)
    shutil.rmtree(directory, ignore_errors=True)


def login(port: int, tenant: str, agent: str = "alice", secret: str = AGENT_SECRET, **options: Any) -> acb.Connecting:
    return acb.connect("127.0.0.1", port, tenant=tenant, agent_id=agent, secret=secret, **options)


async def test_login_connects_an_agent_with_its_secret(audited_bus: AuditedBus, tenant: str) -> None:
    create_agent("alice", tenant)
    async with login(audited_bus.port, tenant) as client:
        assert (client.tenant, client.agent_id) == (tenant, "alice")
        await works(client)
    await audited_bus.sessions_opened(tenant, "alice", 1)
    assert audited_bus.kinds(tenant, "alice")[:2] == ["security.login", "security.authenticated"]


async def test_login_with_a_wrong_secret_or_an_unknown_agent_raises_unauthenticated(
    audited_bus: AuditedBus, tenant: str
) -> None:
    create_agent("alice", tenant)
    for agent, secret in (("alice", "not-the-secret"), ("nobody", AGENT_SECRET)):
        with pytest.raises(acb.AuthenticationError) as raised:
            await login(audited_bus.port, tenant, agent, secret)
        assert raised.value.code == acb.ErrorCode.UNAUTHENTICATED
        assert raised.value.message == "unknown agent or wrong secret"
    async with login(audited_bus.port, tenant) as client:
        await works(client)


def test_login_needs_the_tenant_and_agent_id_with_a_secret() -> None:
    with pytest.raises(ValueError, match="tenant and agent_id"):
        acb.connect(secret=AGENT_SECRET, agent_id="alice")


async def test_a_reconnect_refreshes_and_each_refresh_rotates_the_refresh_token(
    audited_bus: AuditedBus, tenant: str
) -> None:
    create_agent("alice", tenant)
    async with login(audited_bus.port, tenant) as client:
        for _ in range(3):
            session = session_of(client)
            client.drop_connection()
            await reconnected(client, session)
    await audited_bus.sessions_opened(tenant, "alice", 4)
    events = [e for e in audited_bus.events(tenant, "alice") if e["kind"].startswith("security.")]
    # One LOGIN, then a REFRESH per reconnect, each with the refresh token the previous one gave:
    # a stale one would have been a `security.refresh_reuse`, revoking the family, and a new LOGIN.
    exchanges = [e["kind"] for e in events if e["kind"] not in ("security.authenticated", "security.logout")]
    assert exchanges == ["security.login", "security.refresh", "security.refresh", "security.refresh"]
    assert len({e["detail"]["family"] for e in events if "family" in e["detail"]}) == 1


async def test_a_reused_refresh_token_revokes_the_family_and_the_client_logs_in_again(
    audited_bus: AuditedBus, tenant: str
) -> None:
    create_agent("alice", tenant)
    async with login(audited_bus.port, tenant) as client:
        first = client._refresh_token
        assert first is not None
        session = session_of(client)
        client.drop_connection()
        await reconnected(client, session)  # with REFRESH: `first` is stale now
        session = session_of(client)
        # Presenting it again is taken as a stolen token: refused, the family revoked, and the
        # client's session ended with GOAWAY `unauthenticated` (section 3.1), as when its access
        # token expires. The client's own refresh token is of the revoked family: it logs in again.
        refused(await exchange(audited_bus.port, f.Refresh(refresh_token=first)))
        await reconnected(client, session)
    await audited_bus.sessions_opened(tenant, "alice", 3)
    kinds = audited_bus.kinds(tenant, "alice")
    assert "security.refresh_reuse" in kinds
    assert kinds.count("security.login") == 2, kinds


async def test_logout_revokes_the_refresh_family(audited_bus: AuditedBus, tenant: str) -> None:
    create_agent("alice", tenant)
    # Another LOGIN of the same agent: a family of its own, which the LOGOUT must leave alone.
    other = await exchange(audited_bus.port, f.Login(tenant=tenant, agent_id="alice", secret=AGENT_SECRET))
    assert isinstance(other, f.Tokens), other
    client = await login(audited_bus.port, tenant)
    refresh_token = client._refresh_token
    assert refresh_token is not None
    await client.logout()
    with pytest.raises(acb.ConnectionClosedError):
        await client.send("alice", b"x")
    refused(await exchange(audited_bus.port, f.Refresh(refresh_token=refresh_token)))
    await audited_bus.refresh_refused_as_revoked(tenant, "alice")
    assert "security.logout" in audited_bus.kinds(tenant, "alice")
    # Only that family: the other LOGIN's refresh token still works, and so does the secret.
    assert isinstance(await exchange(audited_bus.port, f.Refresh(refresh_token=other.refresh_token)), f.Tokens)
    async with login(audited_bus.port, tenant) as again:
        await works(again)


async def test_logout_right_after_the_connection_broke_waits_for_the_reconnect_and_revokes(
    audited_bus: AuditedBus, tenant: str
) -> None:
    """Like any command made while the client reconnects, LOGOUT waits for the new connection."""
    create_agent("alice", tenant)
    client = await login(audited_bus.port, tenant)
    try:
        client.drop_connection()
        await client.logout()
    finally:
        await client.close()
    refresh_token = client._refresh_token
    assert refresh_token is not None
    refused(await exchange(audited_bus.port, f.Refresh(refresh_token=refresh_token)))
    await audited_bus.refresh_refused_as_revoked(tenant, "alice")


async def test_login_without_postgresql_raises_unavailable(monkeypatch: pytest.MonkeyPatch, tenant: str) -> None:
    monkeypatch.delenv("ACB_POSTGRES_URL", raising=False)
    running = start_bus()
    try:
        with pytest.raises(acb.RoutingError) as raised:
            await login(running.port, tenant)
        assert raised.value.code == acb.ErrorCode.UNAVAILABLE
    finally:
        running.stop()
        shutil.rmtree(running.directory, ignore_errors=True)


# MARK: TLS


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development CA, the bus's certificate and client certificates for alice and bob
    (CN = agent id, no OU: good for any tenant)."""
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run(
        [str(REPOSITORY / "scripts" / "dev-certs.sh"), str(directory), "alice", "bob"], check=True, capture_output=True
    )
    return directory


@contextmanager
def tls_bus(certificates: Path, *flags: str) -> Iterator[Bus]:
    running = start_bus(
        "--tls-cert", str(certificates / "server.pem"), "--tls-key", str(certificates / "server.key"), *flags
    )
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(running.directory, ignore_errors=True)


MTLS = ("--tls-client-auth", "required", "--tls-ca")


@pytest.fixture(scope="module")
def tls(certificates: Path) -> Iterator[Bus]:
    with tls_bus(certificates) as running:
        yield running


@pytest.fixture(scope="module")
def mtls(certificates: Path) -> Iterator[Bus]:
    with tls_bus(certificates, *MTLS, str(certificates / "ca.pem")) as running:
        yield running


async def test_tls_with_the_ca_connects(tls: Bus, certificates: Path, tenant: str) -> None:
    token = mint_token("alice", tenant)
    for host in ("127.0.0.1", "localhost"):  # both are names in the bus's certificate
        async with acb.connect(host, tls.port, token=token, ca_file=str(certificates / "ca.pem")) as client:
            await works(client)
            session = session_of(client)
            client.drop_connection()
            await reconnected(client, session)


async def test_tls_without_the_ca_fails_to_connect(tls: Bus, tenant: str) -> None:
    token = mint_token("alice", tenant)
    with pytest.raises(ssl.SSLCertVerificationError):
        await acb.connect("127.0.0.1", tls.port, token=token, tls=ssl.create_default_context())


async def test_mtls_with_the_agents_certificate_connects(mtls: Bus, certificates: Path, tenant: str) -> None:
    async with acb.connect(
        "127.0.0.1",
        mtls.port,
        token=mint_token("alice", tenant),
        ca_file=str(certificates / "ca.pem"),
        cert_file=str(certificates / "alice.pem"),
        key_file=str(certificates / "alice.key"),
    ) as client:
        await works(client)


async def test_mtls_without_a_certificate_fails(mtls: Bus, certificates: Path, tenant: str) -> None:
    # Under TLS 1.3 the client's handshake is done before the bus checks its (missing)
    # certificate: the bus's alert arrives as the end of the connection, or during the handshake.
    with pytest.raises((ssl.SSLError, acb.ConnectionClosedError, ConnectionError)):
        await acb.connect(
            "127.0.0.1", mtls.port, token=mint_token("alice", tenant), ca_file=str(certificates / "ca.pem")
        )


async def test_mtls_with_another_agents_certificate_raises_unauthenticated(
    mtls: Bus, certificates: Path, tenant: str
) -> None:
    with pytest.raises(acb.AuthenticationError) as raised:
        await acb.connect(
            "127.0.0.1",
            mtls.port,
            token=mint_token("alice", tenant),
            ca_file=str(certificates / "ca.pem"),
            cert_file=str(certificates / "bob.pem"),
            key_file=str(certificates / "bob.key"),
        )
    assert raised.value.code == acb.ErrorCode.UNAUTHENTICATED
    assert raised.value.message.startswith("token refused (certificate)"), raised.value.message


async def test_mtls_login_and_refresh_need_the_agents_certificate(
    migrated: None, certificates: Path, tenant: str
) -> None:
    create_agent("alice", tenant)
    ca = str(certificates / "ca.pem")

    def certificate(agent: str) -> dict[str, Any]:
        return {
            "ca_file": ca,
            "cert_file": str(certificates / f"{agent}.pem"),
            "key_file": str(certificates / f"{agent}.key"),
        }

    with tls_bus(certificates, *MTLS, ca) as running:
        with pytest.raises(acb.AuthenticationError) as raised:
            await login(running.port, tenant, **certificate("bob"))
        assert raised.value.code == acb.ErrorCode.UNAUTHENTICATED
        async with login(running.port, tenant, **certificate("alice")) as client:
            await works(client)
            session = session_of(client)
            client.drop_connection()
            await reconnected(client, session)  # REFRESH, under mTLS
