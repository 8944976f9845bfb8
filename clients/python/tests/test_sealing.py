"""End-to-end encryption between Python agents through the real bus (docs/protocol.md 5.16): what
is sealed opens for its receiver only, and every forgery is refused with its code, never handed out."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from conftest import Connect, take

import acb
from acb import _sodium, sealing
from acb.sealing import Purpose


def keyed(
    connect: Connect, agent: str, keys: acb.AgentKeys | None = None, require_sealed: bool = False
) -> Awaitable[acb.Client]:
    """`agent` with keys, asking the bus for other agents' keys on every use."""
    keys = keys or acb.AgentKeys.generate()
    return connect(agent, keys=keys, key_check_interval=0, require_sealed=require_sealed)


async def refused(failures: AsyncIterator[acb.SealingFailure], code: str) -> acb.SealingFailure:
    """The next refusal with `code`, within 10 s. A refused delivery is NACKed, so it comes again:
    the redeliveries of earlier ones are skipped."""

    async def find() -> acb.SealingFailure:
        async for failure in failures:
            if failure.error.code == code:
                return failure
        raise AssertionError("the client closed")

    return await asyncio.wait_for(find(), 10)


async def test_sealed_messages_requests_and_replies_open_for_their_receivers(connect: Connect) -> None:
    alice = await keyed(connect, "alice")
    bob = await keyed(connect, "bob")

    await alice.send("bob", "secret one", sealed="box")
    await alice.send("bob", "secret two", sealed="anonymous")
    boxed, anonymous = await take(bob.deliveries(), 2)
    assert (boxed.text, boxed.sealed_by, boxed.sender) == ("secret one", "agent", "alice")
    assert (anonymous.text, anonymous.sealed_by) == ("secret two", "anonymous")
    with pytest.raises(acb.SealError) as refused:
        await alice.send(acb.capability("x"), "no", sealed="box")
    assert refused.value.code == "needs_agent"

    @bob.serve
    async def answer(request: acb.Delivery) -> str:
        assert request.sealed_by == "agent"
        return "re: " + request.text

    response = await alice.request("bob", "question", sealed=True, timeout=10)
    assert (response.text, response.sender) == ("re: question", "bob")


async def test_group_messages_open_for_members_only_and_a_removed_member_loses_the_next_key(
    connect: Connect,
) -> None:
    alice = await keyed(connect, "alice")
    bob = await keyed(connect, "bob")
    carol = await keyed(connect, "carol")
    for member in (bob, carol):
        await member.subscribe("ops.>")
    group = await alice.sealed_group("ops", ["bob", "carol"])
    assert group.id == "alice/ops"
    bob_failures = bob.sealing_failures()
    await alice.publish("ops.alert", "to the group", group=group.id)
    for member in (bob, carol):
        [delivery] = await take(member.deliveries(), 1)
        assert (delivery.text, delivery.sealed_by, delivery.group) == ("to the group", "group", "alice/ops")

    await group.remove("carol")
    await alice.broadcast("after carol", group=group.id)
    [delivery] = await take(bob.deliveries(), 1)
    assert delivery.text == "after carol"
    assert (await refused(carol.sealing_failures(), "unknown_group_key")).sender == "alice"
    with pytest.raises(acb.SealError, match="unknown_group_key"):
        await alice.publish("ops.alert", "x", group="alice/none")

    # A key carol sends is kept as carol's group's, never as the owner's: she cannot write as it.
    carol_keys, bob_keys = carol.options.keys, bob.options.keys
    assert carol_keys is not None and bob_keys is not None
    forged_key = bytes(32)
    content = sealing.group_key_content("ops", 999, forged_key)
    key_box, _ = sealing.box(content, Purpose.GROUP_KEY, bob_keys.public, carol_keys)
    await carol.send("bob", key_box)
    await carol.publish("ops.alert", sealing.group_message(b"forged", "alice/ops", 999, forged_key, carol_keys))
    assert (await refused(bob_failures, "unknown_group_key")).sender == "carol"


async def test_a_sealed_context_opens_for_its_readers_and_the_bus_cannot_patch_it(connect: Connect) -> None:
    alice = await keyed(connect, "alice")
    bob = await keyed(connect, "bob")
    carol = await keyed(connect, "carol")
    shared = acb.ContextAttributes(scope=acb.ContextScope.SHARED, readers=["bob"])
    await alice.contexts.put_sealed("plan", '{"goal":"secret"}', attributes=shared)
    opened = await bob.contexts.get_sealed("plan")
    assert opened.text == '{"goal":"secret"}' and opened.head.attributes.content_type == acb.ContentType.SEALED
    assert b"secret" not in (await alice.contexts.get("plan")).body
    with pytest.raises(acb.InvalidRequestError) as refused:
        await alice.contexts.merge_patch("plan", {"goal": "x"})
    assert refused.value.code == acb.ErrorCode.SEALED_BODY

    async def epoch() -> int:
        return sealing.context_head((await alice.contexts.get("plan")).body).epoch

    # Adding a reader keeps the key; dropping one makes the next; an update by compare and set
    # keeps both.
    both = acb.ContextAttributes(scope=acb.ContextScope.SHARED, readers=["bob", "carol"])
    await alice.contexts.put_sealed("plan", "v2", attributes=both)
    assert (await carol.contexts.get_sealed("plan")).text == "v2" and await epoch() == 1
    only_carol = acb.ContextAttributes(scope=acb.ContextScope.SHARED, readers=["carol"])
    await alice.contexts.put_sealed("plan", "v3", attributes=only_carol)
    assert await epoch() == 2
    head = await alice.contexts.update_sealed("plan", lambda context: context.text + "+", attributes=only_carol)
    assert (await carol.contexts.get_sealed("plan", version=head.version)).text == "v3+" and await epoch() == 2

    # A body changed by someone who cannot read it does not open.
    body = bytearray((await alice.contexts.get("plan")).body)
    body[-70] ^= 1
    sealed = acb.ContextAttributes(
        scope=acb.ContextScope.SHARED, readers=["carol"], content_type=acb.ContentType.SEALED
    )
    await alice.contexts.update("plan", bytes(body), attributes=sealed)
    with pytest.raises(acb.SealError) as changed:
        await carol.contexts.get_sealed("plan")
    assert changed.value.code == "tampered"


async def test_a_sealed_stream_opens_to_its_plaintext_and_a_changed_or_cut_one_is_refused(
    connect: Connect, tmp_path: Path
) -> None:
    alice_keys, bob_keys = acb.AgentKeys.generate(), acb.AgentKeys.generate()
    alice = await keyed(connect, "alice", alice_keys)
    bob = await connect("bob", keys=bob_keys, download_dir=str(tmp_path))
    plaintext = bytes(i % 251 for i in range(2 * sealing.STREAM_MESSAGE_BYTES + 12_345))
    await alice.upload("bob", plaintext, sealed=True)
    [stream] = await take(bob.streams(), 1, timeout=30)
    assert (stream.sealed_by, stream.size, Path(stream.path).read_bytes()) == ("agent", len(plaintext), plaintext)

    sealed = io.BytesIO()
    sealing.seal_stream(plaintext, len(plaintext), bob_keys.public, alice_keys, sealed)
    changed = bytearray(sealed.getvalue())
    changed[sealing.STREAM_HEADER_BYTES + 10] ^= 1
    await alice.upload("bob", bytes(changed))
    await alice.upload("bob", sealed.getvalue()[:-10])
    failures = bob.sealing_failures()
    for code in ("tampered", "truncated"):
        assert (await refused(failures, code)).sender == "alice"


async def test_a_changed_byte_another_sender_other_keys_and_plaintext_are_refused(connect: Connect) -> None:
    alice_keys, bob_keys, carol_keys = acb.AgentKeys.generate(), acb.AgentKeys.generate(), acb.AgentKeys.generate()
    alice = await keyed(connect, "alice", alice_keys)
    bob = await keyed(connect, "bob", bob_keys, require_sealed=True)
    carol = await keyed(connect, "carol", carol_keys)
    failures = bob.sealing_failures()

    sealed, _ = sealing.box(b"payload", Purpose.MESSAGE, bob_keys.public, alice_keys)
    flipped = bytearray(sealed)
    flipped[-3] ^= 1
    await alice.send("bob", bytes(flipped))
    assert (await refused(failures, "tampered")).sender == "alice"
    await carol.send("bob", sealed)
    assert (await refused(failures, "wrong_sender")).sender == "carol"
    for_carol, _ = sealing.box(b"x", Purpose.MESSAGE, carol_keys.public, alice_keys)
    await alice.send("bob", for_carol)
    assert (await refused(failures, "wrong_key")).sender == "alice"
    await alice.send("bob", "plaintext")
    assert (await refused(failures, "not_sealed")).sender == "alice"
    await alice.upload("bob", b"a plaintext stream")
    assert (await refused(failures, "not_sealed")).sender == "alice"
    request, _ = sealing.box(b"a request", Purpose.REQUEST, bob_keys.public, alice_keys)
    await alice.send("bob", request)
    assert (await refused(failures, "malformed")).sender == "alice"


async def test_keys_are_pinned_on_first_use_and_checked_by_fingerprint(connect: Connect, tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    alice = await keyed(connect, "alice", acb.AgentKeys.file(path))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert acb.AgentKeys.file(path).public == alice.options.keys.public  # type: ignore[union-attr]
    pins = tmp_path / "bob.pins"
    bob = await connect("bob", keys=acb.AgentKeys.generate(), key_check_interval=0, pin_file=str(pins))
    assert await bob.peer_fingerprint("alice") == alice.key_fingerprint
    assert os.stat(pins).st_mode & 0o777 == 0o600
    assert sealing.KeyRing(str(pins)).known("alice") == alice.options.keys.public  # type: ignore[union-attr]
    with pytest.raises(acb.SealError) as changed:
        await bob.trust_keys("alice", "0000:0000:0000:0000:0000:0000:0000:0000")
    assert changed.value.code == "key_changed"
    bob.forget_keys("alice")
    await bob.trust_keys("alice", alice.key_fingerprint or "")
    with pytest.raises(acb.RoutingError) as missing:
        await bob.peer_fingerprint("nobody")
    assert missing.value.code == acb.ErrorCode.NO_KEY

    # A rotation the old keys signed is accepted by those who pinned them; what was sealed to the
    # old keys still opens, and a reconnect publishes the new ones.
    new_keys = acb.AgentKeys.generate()
    await alice.rotate_keys(new_keys)
    assert alice.key_fingerprint == new_keys.public.fingerprint
    assert await bob.peer_fingerprint("alice") == new_keys.public.fingerprint
    alice.drop_connection()
    await alice.peer_fingerprint("bob")  # a command waits for the reconnect, which publishes the keys
    await bob.send("alice", "new", sealed="box")
    [new] = await take(alice.deliveries(), 1)
    assert (new.text, new.sealed_by) == ("new", "agent")
    anonymous = sealing.anonymous(b"to the old keys", Purpose.MESSAGE, alice.options.keys.public)  # type: ignore[union-attr]
    await bob.send("alice", anonymous)
    [old] = await take(alice.deliveries(), 1)
    assert (old.text, old.sealed_by) == ("to the old keys", "anonymous")

    os.chmod(path, 0o644)
    with pytest.raises(acb.SealError) as readable:
        acb.AgentKeys.file(path)
    assert readable.value.code == "invalid_keys"


def test_the_formats_are_the_swift_clients() -> None:
    """The keys of a seed, as the Swift client's test has them too (SealingTests.knownAnswer), and a
    box that opens only as sealed."""
    keys = acb.AgentKeys(bytes(range(64)))
    assert keys.public.box_key.hex() == "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f"
    assert keys.public.sign_key.hex() == "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7"
    assert keys.public.fingerprint == "aca3:1af0:441d:81db:ec71:e82d:a0b4:b5f5"
    peer = acb.AgentKeys.generate()
    sealed, nonce = sealing.box(b"hi", Purpose.REQUEST, peer.public, keys)
    assert sealed[:4] == b"\xac\x5e\x01\x01" and sealed[20:44] == nonce
    assert sealing.open_box(sealed, keys.public, peer) == (Purpose.REQUEST, nonce, b"hi")
    reply, _ = sealing.box(nonce + b"answer", Purpose.REPLY, keys.public, peer)
    purpose, _, content = sealing.open_box(reply, peer.public, keys)
    assert purpose == Purpose.REPLY and sealing.reply_content(content, nonce) == b"answer"
    with pytest.raises(acb.SealError, match="malformed"):
        sealing.reply_content(content, bytes(24))
    # A low-order box key would share an all-zero key with anyone: refused where keys are taken.
    assert _sodium.is_weak(bytes(32)) and not _sodium.is_weak(keys.public.box_key)
