"""Shared contexts through the real bus (docs/protocol.md 4.23 to 4.32, 5.13 to 5.15): writes with
compare-and-swap, patches, deletion and expiry, scopes, listing, history and lineage, bodies over
the inline limit, and watches: of one id, of a pattern with a snapshot, field by field, resumed
after a cut connection, and closed."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable
from typing import Any

import pytest
from conftest import Bus, Connect, eventually, mint_token, take

import acb

EMPTY_SHA256 = hashlib.sha256(b"").digest()


def attributes(
    *,
    json_body: bool = False,
    scope: acb.ContextScope = acb.ContextScope.PRIVATE,
    readers: list[str] | None = None,
    writers: list[str] | None = None,
    kind: str = "",
    metadata: dict[str, str] | None = None,
    parents: list[tuple[str, int]] | None = None,
) -> acb.ContextAttributes:
    return acb.ContextAttributes(
        kind=kind,
        content_type=acb.ContentType.JSON if json_body else acb.ContentType.BYTES,
        scope=scope,
        readers=readers or [],
        writers=writers or [],
        metadata=list((metadata or {}).items()),
        parents=parents or [],
    )


JSON = attributes(json_body=True)
TENANT_JSON = attributes(json_body=True, scope=acb.ContextScope.TENANT)
TENANT_BYTES = attributes(scope=acb.ContextScope.TENANT)


async def raises(code: acb.ErrorCode, kind: type[acb.ACBError], call: Awaitable[Any]) -> acb.ACBError:
    """Awaits `call`, which must fail with `code` (an error of class `kind`); returns the error."""
    with pytest.raises(kind) as raised:
        await call
    assert raised.value.code == code, raised.value
    return raised.value


def summary(events: list[acb.ContextEvent]) -> list[tuple[str, acb.ContextEventKind, int, bytes | None]]:
    return [(e.id, e.kind, e.version, e.body) for e in events]


# MARK: writing and reading


async def test_put_and_get_bytes_text_and_json(connect: Connect) -> None:
    alice = await connect("alice")
    head = await alice.contexts.put("blob", b"\x00\x01raw")
    assert (head.id, head.owner, head.version, head.updated_by, head.state) == (
        "blob",
        "alice",
        1,
        "alice",
        acb.ContextState.LIVE,
    )
    assert (head.size, head.checksum) == (5, hashlib.sha256(b"\x00\x01raw").digest())
    assert head.attributes.content_type == acb.ContentType.BYTES
    blob = await alice.contexts.get("blob")
    assert (blob.id, blob.version, blob.body) == ("blob", 1, b"\x00\x01raw")

    await alice.contexts.put("note", "héllo")
    note = await alice.contexts.get("note")
    assert (note.text, note.body) == ("héllo", "héllo".encode())

    plan = {"steps": ["plan", "do"], "done": False, "n": 1.5}
    head = await alice.contexts.put("plan", plan, attributes=JSON)
    assert head.attributes.content_type == acb.ContentType.JSON
    got = await alice.contexts.get("plan")
    assert got.json() == plan
    assert got.head.checksum == hashlib.sha256(got.body).digest()

    # A put without attributes keeps the current ones (JSON here); it is version 2.
    head = await alice.contexts.put("plan", [1, 2, 3])
    assert (head.version, head.attributes.content_type) == (2, acb.ContentType.JSON)
    assert (await alice.contexts.get("plan")).json() == [1, 2, 3]
    # put, create and update of a json context keep the body as sent, but it must be JSON.
    await raises(acb.ErrorCode.INVALID_JSON, acb.InvalidRequestError, alice.contexts.put("plan", "{not json"))
    await raises(acb.ErrorCode.INVALID_JSON, acb.InvalidRequestError, alice.contexts.update("plan", "[1,]"))
    assert (await alice.contexts.get("plan")).version == 2


async def test_get_of_an_older_version_and_get_if_newer(connect: Connect) -> None:
    alice = await connect("alice")
    for text in ("one", "two", "three"):
        await alice.contexts.put("doc", text)
    older = await alice.contexts.get("doc", version=1)
    assert (older.version, older.text) == (1, "one")
    assert (await alice.contexts.get("doc", version=2)).text == "two"
    assert (await alice.contexts.get("doc")).text == "three"
    assert await alice.contexts.get_if_newer("doc", 3) is None
    assert await alice.contexts.get_if_newer("doc", 7) is None
    newer = await alice.contexts.get_if_newer("doc", 2)
    assert newer is not None and (newer.version, newer.text) == (3, "three")
    error = await raises(acb.ErrorCode.UNKNOWN_CONTEXT, acb.ContextError, alice.contexts.get("doc", version=9))
    assert error.ref != 0
    await raises(acb.ErrorCode.UNKNOWN_CONTEXT, acb.ContextError, alice.contexts.get("never"))
    await raises(acb.ErrorCode.INVALID_ARGUMENT, acb.InvalidRequestError, alice.contexts.get("bad id"))


async def test_versions_past_the_sixteen_kept_are_compacted(connect: Connect) -> None:
    alice = await connect("alice")
    for number in range(1, 21):
        await alice.contexts.put("busy", str(number))
    error = await raises(acb.ErrorCode.COMPACTED, acb.CompactedError, alice.contexts.get("busy", version=1))
    assert isinstance(error, acb.CompactedError) and error.oldest == 5
    assert (await alice.contexts.get("busy", version=5)).text == "5"
    assert [h.version for h in await alice.contexts.history("busy")] == list(range(20, 4, -1))


async def test_create_and_update_compare_and_swap(connect: Connect) -> None:
    alice = await connect("alice")
    head = await alice.contexts.create("counter", "0")
    assert head.version == 1
    error = await raises(
        acb.ErrorCode.VERSION_CONFLICT, acb.VersionConflictError, alice.contexts.create("counter", "x")
    )
    assert isinstance(error, acb.VersionConflictError) and error.current_version == 1

    error = await raises(
        acb.ErrorCode.VERSION_CONFLICT,
        acb.VersionConflictError,
        alice.contexts.update("counter", "1", expected_version=7),
    )
    assert isinstance(error, acb.VersionConflictError) and error.current_version == 1
    assert (await alice.contexts.get("counter")).text == "0"  # nothing changed

    head = await alice.contexts.update("counter", "1", expected_version=1)
    assert head.version == 2
    head = await alice.contexts.put("counter", "2", expected_version=2)
    assert head.version == 3
    error = await raises(
        acb.ErrorCode.VERSION_CONFLICT,
        acb.VersionConflictError,
        alice.contexts.put("counter", "late", expected_version=2),
    )
    assert isinstance(error, acb.VersionConflictError) and error.current_version == 3
    assert (await alice.contexts.get("counter")).text == "2"

    # update needs a live context; a compare-and-swap against none reports version 0.
    await raises(acb.ErrorCode.UNKNOWN_CONTEXT, acb.ContextError, alice.contexts.update("nothing", "x"))
    error = await raises(
        acb.ErrorCode.VERSION_CONFLICT,
        acb.VersionConflictError,
        alice.contexts.put("nothing", "x", expected_version=4),
    )
    assert isinstance(error, acb.VersionConflictError) and error.current_version == 0


async def test_merge_patch_and_json_patch(connect: Connect) -> None:
    alice = await connect("alice")
    await alice.contexts.create(
        "plan", '{"title": "q3",  "steps": ["a"], "owner": {"name": "al", "age": 3}}', attributes=JSON
    )
    head = await alice.contexts.merge_patch("plan", {"owner": {"age": None, "team": "x"}, "done": False})
    assert head.version == 2
    got = await alice.contexts.get("plan")
    assert got.json() == {"title": "q3", "steps": ["a"], "owner": {"name": "al", "team": "x"}, "done": False}
    # A patched body is written in canonical form: no whitespace, keys sorted.
    assert got.body == b'{"done":false,"owner":{"name":"al","team":"x"},"steps":["a"],"title":"q3"}'

    head = await alice.contexts.json_patch(
        "plan",
        [
            {"op": "test", "path": "/title", "value": "q3"},
            {"op": "add", "path": "/steps/-", "value": "b"},
            {"op": "replace", "path": "/done", "value": True},
            {"op": "remove", "path": "/owner/team"},
        ],
        expected_version=2,
    )
    assert head.version == 3
    after = {"title": "q3", "steps": ["a", "b"], "owner": {"name": "al"}, "done": True}
    assert (await alice.contexts.get("plan")).json() == after

    # Failures leave the context as it is: all operations or none.
    failing = [{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/title", "value": "q4"}]
    await raises(acb.ErrorCode.PATCH_FAILED, acb.InvalidRequestError, alice.contexts.json_patch("plan", failing))
    missing = [{"op": "remove", "path": "/nowhere"}]
    await raises(acb.ErrorCode.PATCH_FAILED, acb.InvalidRequestError, alice.contexts.json_patch("plan", missing))
    bad_pointer = [{"op": "add", "path": "no-slash", "value": 1}]
    await raises(acb.ErrorCode.INVALID_POINTER, acb.InvalidRequestError, alice.contexts.json_patch("plan", bad_pointer))
    await raises(acb.ErrorCode.INVALID_JSON, acb.InvalidRequestError, alice.contexts.json_patch("plan", {"op": "add"}))
    await raises(acb.ErrorCode.INVALID_JSON, acb.InvalidRequestError, alice.contexts.merge_patch("plan", "{oops"))
    await raises(
        acb.ErrorCode.VERSION_CONFLICT,
        acb.VersionConflictError,
        alice.contexts.merge_patch("plan", {"x": 1}, expected_version=2),
    )
    current = await alice.contexts.get("plan")
    assert (current.version, current.json()) == (3, after)

    # Patches apply to json contexts only.
    await alice.contexts.put("raw", b'{"a": 1}')
    await raises(acb.ErrorCode.PATCH_FAILED, acb.InvalidRequestError, alice.contexts.merge_patch("raw", {"a": 2}))
    await raises(acb.ErrorCode.UNKNOWN_CONTEXT, acb.ContextError, alice.contexts.merge_patch("ghost", {"a": 2}))


async def test_delete_leaves_a_tombstone_and_the_id_may_be_created_again(connect: Connect) -> None:
    alice = await connect("alice")
    await alice.contexts.put("doc", "one")
    await alice.contexts.put("doc", "two")
    await raises(
        acb.ErrorCode.VERSION_CONFLICT, acb.VersionConflictError, alice.contexts.delete("doc", expected_version=1)
    )
    tombstone = await alice.contexts.delete("doc", expected_version=2)
    assert (tombstone.version, tombstone.state, tombstone.size, tombstone.checksum, tombstone.expires_ms) == (
        3,
        acb.ContextState.DELETED,
        0,
        EMPTY_SHA256,
        0,
    )
    await raises(acb.ErrorCode.UNKNOWN_CONTEXT, acb.ContextError, alice.contexts.get("doc"))
    await raises(acb.ErrorCode.UNKNOWN_CONTEXT, acb.ContextError, alice.contexts.update("doc", "x"))
    await raises(acb.ErrorCode.UNKNOWN_CONTEXT, acb.ContextError, alice.contexts.delete("doc"))
    # Kept versions, the tombstone included, can still be read.
    kept = await alice.contexts.get("doc", version=3)
    assert (kept.head.state, kept.body) == (acb.ContextState.DELETED, b"")
    assert (await alice.contexts.get("doc", version=2)).text == "two"
    assert [(h.version, h.state) for h in await alice.contexts.history("doc")] == [
        (3, acb.ContextState.DELETED),
        (2, acb.ContextState.LIVE),
        (1, acb.ContextState.LIVE),
    ]
    # Created again, its versions continue from the tombstone's.
    again = await alice.contexts.create("doc", "anew")
    assert (again.version, again.state) == (4, acb.ContextState.LIVE)
    assert (await alice.contexts.get("doc")).text == "anew"


async def test_touch_sets_the_expiry_and_keeps_the_body(connect: Connect) -> None:
    alice = await connect("alice")
    head = await alice.contexts.put("lease", "held")
    assert head.expires_ms == 0
    touched = await alice.contexts.touch("lease", 60_000)
    assert touched.version == 2
    assert touched.expires_ms == touched.updated_ms + 60_000
    assert touched.checksum == head.checksum
    # Updates without a ttl keep the expiry; a put without one makes it never expire.
    updated = await alice.contexts.update("lease", "still held")
    assert updated.expires_ms == touched.expires_ms
    with_ttl = await alice.contexts.put("lease", "renewed", ttl_ms=120_000)
    assert with_ttl.expires_ms == with_ttl.updated_ms + 120_000
    assert (await alice.contexts.put("lease", "forever")).expires_ms == 0
    await raises(acb.ErrorCode.INVALID_ARGUMENT, acb.InvalidRequestError, alice.contexts.touch("lease", 0))
    await raises(acb.ErrorCode.UNKNOWN_CONTEXT, acb.ContextError, alice.contexts.touch("ghost", 1_000))


async def test_an_expired_context_is_gone_and_watchers_hear_it(connect: Connect) -> None:
    alice = await connect("alice")
    await alice.contexts.put("flash", "soon gone")
    watch = await alice.contexts.watch("flash")
    await alice.contexts.touch("flash", 1)
    touched, expired = await take(watch, 2)  # the sweeper runs every second
    assert (touched.kind, touched.version) == (acb.ContextEventKind.UPDATED, 2)
    assert (expired.kind, expired.version, expired.head.state) == (
        acb.ContextEventKind.EXPIRED,
        3,
        acb.ContextState.EXPIRED,
    )
    assert (expired.head.updated_by, expired.body) == ("", None)
    await raises(acb.ErrorCode.CONTEXT_EXPIRED, acb.ContextError, alice.contexts.get("flash"))
    await raises(acb.ErrorCode.CONTEXT_EXPIRED, acb.ContextError, alice.contexts.update("flash", "x"))
    assert (await alice.contexts.list(prefix="flash")).heads == []
    head = await alice.contexts.create("flash", "back")
    [created] = await take(watch, 1)
    assert (head.version, created.kind, created.version, created.body) == (
        4,
        acb.ContextEventKind.CREATED,
        4,
        b"back",
    )
    await watch.close()


# MARK: scopes


async def test_scopes_decide_who_reads_and_writes(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.contexts.put("secret", "alice only")
    await raises(acb.ErrorCode.FORBIDDEN, acb.PermissionDeniedError, bob.contexts.get("secret"))
    await raises(acb.ErrorCode.FORBIDDEN, acb.PermissionDeniedError, bob.contexts.put("secret", "mine"))
    await raises(acb.ErrorCode.FORBIDDEN, acb.PermissionDeniedError, bob.contexts.history("secret"))
    await raises(acb.ErrorCode.FORBIDDEN, acb.PermissionDeniedError, bob.contexts.watch("secret"))
    assert (await bob.contexts.list()).heads == []

    await alice.contexts.put("shared", "for bob", attributes=attributes(scope=acb.ContextScope.SHARED, readers=["bob"]))
    got = await bob.contexts.get("shared")
    assert (got.text, got.head.owner) == ("for bob", "alice")
    assert [h.id for h in (await bob.contexts.list()).heads] == ["shared"]
    # A reader is not a writer.
    await raises(acb.ErrorCode.FORBIDDEN, acb.PermissionDeniedError, bob.contexts.update("shared", "bob was here"))

    writable = attributes(scope=acb.ContextScope.SHARED, writers=["bob"])
    await alice.contexts.put("board", "empty", attributes=writable)
    head = await bob.contexts.update("board", "bob was here")
    assert (head.owner, head.updated_by, head.version) == ("alice", "bob", 2)
    # Only the owner changes who may read and write.
    await raises(
        acb.ErrorCode.FORBIDDEN,
        acb.PermissionDeniedError,
        bob.contexts.update("board", "mine", attributes=attributes(scope=acb.ContextScope.TENANT)),
    )
    assert (await alice.contexts.get("board")).text == "bob was here"

    # The admin role reads every context of the tenant.
    admin = await connect("root", roles=["admin"])
    assert (await admin.contexts.get("secret")).text == "alice only"
    # A consumer may read what it is allowed to, but never write.
    reader = await connect("reader", roles=["agent-consumer"])
    await alice.contexts.put("notice", "all read", attributes=TENANT_BYTES)
    assert (await reader.contexts.get("notice")).text == "all read"
    await raises(acb.ErrorCode.FORBIDDEN, acb.PermissionDeniedError, reader.contexts.put("own", "x"))


# MARK: listing, history and lineage


async def test_list_filters_by_pattern_prefix_kind_and_metadata(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    team_a = attributes(kind="plan", metadata={"team": "a", "tier": "1"})
    await alice.contexts.put("plan.q1", "1", attributes=team_a)
    await alice.contexts.put("plan.q2", "2", attributes=attributes(kind="plan", metadata={"team": "b"}))
    await alice.contexts.put("plan.q3.draft", "3", attributes=attributes(metadata={"team": "a"}))
    await alice.contexts.put("planner", "4", attributes=TENANT_BYTES)
    await alice.contexts.put("gone", "5")
    await alice.contexts.delete("gone")
    await bob.contexts.put("plan.bob", "6", attributes=TENANT_BYTES)

    async def ids(**filters: Any) -> list[str]:
        page = await alice.contexts.list(**filters)
        assert page.next_cursor == ""
        return [head.id for head in page.heads]

    assert await ids() == ["plan.bob", "plan.q1", "plan.q2", "plan.q3.draft", "planner"]
    assert await ids(pattern="plan.*") == ["plan.bob", "plan.q1", "plan.q2"]
    assert await ids(pattern="plan.>") == ["plan.bob", "plan.q1", "plan.q2", "plan.q3.draft"]
    assert await ids(pattern="*.q3.*") == ["plan.q3.draft"]
    assert await ids(prefix="plan.q") == ["plan.q1", "plan.q2", "plan.q3.draft"]
    assert await ids(prefix="plann") == ["planner"]
    assert await ids(metadata={"team": "a"}) == ["plan.q1", "plan.q3.draft"]
    assert await ids(metadata={"tier": "1", "team": "a"}) == ["plan.q1"]
    assert await ids(metadata={"team": "c"}) == []
    assert await ids(kind="plan", pattern="plan.*") == ["plan.q1", "plan.q2"]
    assert await ids(owner="bob") == ["plan.bob"]
    [head] = (await alice.contexts.list(pattern="plan.q1")).heads
    assert dict(head.attributes.metadata) == {"team": "a", "tier": "1"}
    await raises(acb.ErrorCode.INVALID_ARGUMENT, acb.InvalidRequestError, alice.contexts.list(pattern="plan..x"))

    # Pages: follow next_cursor until it is empty.
    seen: list[str] = []
    cursor = ""
    while True:
        page = await alice.contexts.list(prefix="plan", cursor=cursor, limit=2)
        assert len(page.heads) <= 2
        seen += [head.id for head in page.heads]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == ["plan.bob", "plan.q1", "plan.q2", "plan.q3.draft", "planner"]


async def test_history_lists_versions_newest_first(connect: Connect) -> None:
    alice = await connect("alice")
    await alice.contexts.put("doc", "one")
    await alice.contexts.put("other", "unrelated")
    await alice.contexts.put("doc", "two")
    await alice.contexts.touch("doc", 60_000)
    heads = await alice.contexts.history("doc")
    assert [h.version for h in heads] == [3, 2, 1]
    assert [h.revision for h in heads] == [4, 3, 1]  # the tenant's revisions: "other" was 2
    assert [h.size for h in heads] == [3, 3, 3]
    assert [h.version for h in await alice.contexts.history("doc", limit=2)] == [3, 2]
    await raises(acb.ErrorCode.UNKNOWN_CONTEXT, acb.ContextError, alice.contexts.history("never"))


async def test_lineage_follows_parents_to_ancestors_and_descendants(connect: Connect) -> None:
    alice = await connect("alice")
    await alice.contexts.put("source", "raw data")
    await alice.contexts.put("source", "raw data, fixed")
    await alice.contexts.put("summary", "short", attributes=attributes(parents=[("source", 1)]))
    await alice.contexts.put("review", "ok", attributes=attributes(parents=[("summary", 1)]))
    await alice.contexts.put("unrelated", "x")

    ancestors = await alice.contexts.lineage("review")
    assert [(h.id, h.version) for h in ancestors] == [("summary", 1), ("source", 1)]
    assert ancestors[0].attributes.parents == [("source", 1)]
    assert [h.id for h in await alice.contexts.lineage("review", depth=1)] == ["summary"]
    descendants = await alice.contexts.lineage("source", descendants=True)
    assert [h.id for h in descendants] == ["summary", "review"]
    assert [h.id for h in await alice.contexts.lineage("source", descendants=True, depth=1)] == ["summary"]
    assert await alice.contexts.lineage("unrelated") == []
    await raises(acb.ErrorCode.INVALID_ARGUMENT, acb.InvalidRequestError, alice.contexts.lineage("review", depth=17))


# MARK: large bodies


async def test_a_body_over_the_inline_limit_is_uploaded_and_streamed_back(connect: Connect) -> None:
    alice = await connect("alice")
    welcome = alice.welcome
    assert welcome is not None
    data = random.Random(7).randbytes(3 * 1024 * 1024 + 123)
    assert len(data) > welcome.max_inline_payload
    watch = await alice.contexts.watch("big")
    head = await alice.contexts.put("big", data)
    assert (head.version, head.size, head.checksum) == (1, len(data), hashlib.sha256(data).digest())
    got = await alice.contexts.get("big")
    assert (got.version, got.head.size) == (1, len(data))
    assert got.body == data
    # An event carries bodies up to 64 KiB only: this one is read with a GET of its version.
    [event] = await take(watch, 1)
    assert (event.kind, event.version, event.body) == (acb.ContextEventKind.CREATED, 1, None)

    # Written again over it (with compare-and-swap) and read back, old and new.
    changed = data[::-1]
    head = await alice.contexts.update("big", changed, expected_version=1)
    assert head.version == 2
    assert (await alice.contexts.get("big")).body == changed
    assert (await alice.contexts.get("big", version=1)).body == data
    await watch.close()


async def test_two_large_bodies_read_at_once_arrive_intact(connect: Connect) -> None:
    alice = await connect("alice")
    data = random.Random(8).randbytes(3 * 1024 * 1024 + 5)
    await alice.contexts.put("big", data)
    await alice.contexts.put("big", data[::-1])
    for _ in range(5):  # the bus allows 2 on their way per session; each GET is answered in turn
        first, second = await asyncio.gather(alice.contexts.get("big"), alice.contexts.get("big", version=1))
        assert (first.body, second.body) == (data[::-1], data)


# MARK: watches


async def test_a_watch_of_one_id_hears_creation_updates_and_deletion_in_order(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    watch = await bob.contexts.watch("doc")  # before it exists
    await alice.contexts.put("other", "not watched", attributes=TENANT_BYTES)
    await alice.contexts.create("doc", "one", attributes=TENANT_BYTES)
    await alice.contexts.update("doc", "two")
    await alice.contexts.put("doc", "three")
    await alice.contexts.delete("doc")
    await alice.contexts.create("doc", "again", attributes=TENANT_BYTES)
    events = await take(watch, 5)
    assert summary(events) == [
        ("doc", acb.ContextEventKind.CREATED, 1, b"one"),
        ("doc", acb.ContextEventKind.UPDATED, 2, b"two"),
        ("doc", acb.ContextEventKind.UPDATED, 3, b"three"),
        ("doc", acb.ContextEventKind.DELETED, 4, None),
        ("doc", acb.ContextEventKind.CREATED, 5, b"again"),
    ]
    assert events[3].head.state == acb.ContextState.DELETED
    assert [e.head.updated_by for e in events] == ["alice"] * 5
    assert watch.resume_after == 5
    await watch.close()

    # A watch may start after a version it has seen: it gets every change after it.
    replay = await bob.contexts.watch("doc", after=2)
    assert [(e.kind, e.version) for e in await take(replay, 3)] == [
        (acb.ContextEventKind.UPDATED, 3),
        (acb.ContextEventKind.DELETED, 4),
        (acb.ContextEventKind.CREATED, 5),
    ]
    await alice.contexts.update("doc", "six")
    [live] = await take(replay, 1)
    assert (live.version, live.body) == (6, b"six")
    await replay.close()


async def test_a_watch_is_refused_for_a_bad_target_or_pointer(connect: Connect) -> None:
    alice = await connect("alice")
    await raises(acb.ErrorCode.INVALID_ARGUMENT, acb.InvalidRequestError, alice.contexts.watch("bad id"))
    await raises(
        acb.ErrorCode.INVALID_POINTER, acb.InvalidRequestError, alice.contexts.watch("doc", paths=["no-slash"])
    )
    for number in range(20):
        await alice.contexts.put("doc", str(number))
    error = await raises(acb.ErrorCode.COMPACTED, acb.CompactedError, alice.contexts.watch("doc", after=1))
    # Versions 5 to 20 are kept; the bus resumes after the oldest of them.
    assert isinstance(error, acb.CompactedError) and error.oldest == 5
    # Refused watches are not left behind: one resuming after `oldest` works.
    watch = await alice.contexts.watch("doc", after=error.oldest)
    assert [e.version for e in await take(watch, 15)] == list(range(6, 21))
    await alice.contexts.put("doc", "20")
    [event] = await take(watch, 1)
    assert (event.version, event.body) == (21, b"20")
    await watch.close()


async def test_a_snapshot_watch_of_a_pattern_starts_with_the_current_versions(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.contexts.put("plan.b", "b1", attributes=TENANT_BYTES)
    await alice.contexts.put("plan.a", "a1", attributes=TENANT_BYTES)
    await alice.contexts.put("plan.a", "a2")
    await alice.contexts.put("plan.hidden", "private")  # bob may not read it
    await alice.contexts.put("other", "o1", attributes=TENANT_BYTES)
    await alice.contexts.put("plan.gone", "g1", attributes=TENANT_BYTES)
    await alice.contexts.delete("plan.gone")

    watch = await bob.contexts.watch("plan.*", snapshot=True)
    snapshot = await take(watch, 2)
    assert summary(snapshot) == [  # in order of id
        ("plan.a", acb.ContextEventKind.SNAPSHOT, 2, b"a2"),
        ("plan.b", acb.ContextEventKind.SNAPSHOT, 1, b"b1"),
    ]
    await alice.contexts.put("other", "o2")
    await alice.contexts.put("plan.hidden", "still private")
    await alice.contexts.put("plan.b", "b2")
    await alice.contexts.put("plan.c", "c1", attributes=TENANT_BYTES)
    await alice.contexts.put("plan.c.deep", "not one token", attributes=TENANT_BYTES)
    await alice.contexts.delete("plan.a")
    changes = await take(watch, 3)
    assert summary(changes) == [
        ("plan.b", acb.ContextEventKind.UPDATED, 2, b"b2"),
        ("plan.c", acb.ContextEventKind.CREATED, 1, b"c1"),
        ("plan.a", acb.ContextEventKind.DELETED, 3, None),
    ]
    revisions = [e.head.revision for e in changes]
    assert revisions == sorted(revisions) and len(set(revisions)) == 3
    assert watch.resume_after == revisions[-1]  # a pattern resumes by the tenant's revision
    await watch.close()


MISSING = object()


def at(document: Any, path: str) -> Any:
    """The value at a JSON Pointer (objects only), MISSING if there is none."""
    for token in path.split("/")[1:]:
        if not isinstance(document, dict) or token not in document:
            return MISSING
        document = document[token]
    return document


def apply_patch(document: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """Applies the add, replace and remove operations of an RFC 6902 patch to objects."""
    for operation in patch:
        *parents, last = operation["path"].split("/")[1:]
        target = document
        for token in parents:
            target = target[token]
        if operation["op"] in ("add", "replace"):
            target[last] = operation["value"]
        else:
            assert operation["op"] == "remove", operation
            del target[last]
    return document


async def test_a_field_level_watch_hears_patches_of_its_paths_only(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    paths = ["/step", "/meta/by"]
    first = {"step": 1, "note": "start", "meta": {"by": "al", "at": 0}}
    await alice.contexts.create("task", first, attributes=TENANT_JSON)
    watch = await bob.contexts.watch("task", snapshot=True, paths=paths)
    [snapshot] = await take(watch, 1)
    assert (snapshot.kind, snapshot.version, snapshot.body) == (acb.ContextEventKind.SNAPSHOT, 1, None)
    # The patch from {} to the body, for the watched paths: /note is left out.
    state = apply_patch({}, snapshot.patch)
    assert [at(state, path) for path in paths] == [1, "al"]
    assert "note" not in state

    await alice.contexts.merge_patch("task", {"note": "thinking"})  # v2: not a watched path
    await alice.contexts.merge_patch("task", {"step": 2})  # v3
    await alice.contexts.merge_patch("task", {"meta": {"at": 5}})  # v4: beside /meta/by
    await alice.contexts.merge_patch("task", {"meta": {"by": "bo"}, "note": "x"})  # v5
    await alice.contexts.put("task", '{"note": "reset"}')  # v6: removes both
    await alice.contexts.put("task", {"meta": {"at": 1}}, attributes=TENANT_JSON)  # v7: /meta/by still absent
    await alice.contexts.put("task", {"meta": {"by": "z"}, "step": [1]}, attributes=TENANT_JSON)  # v8
    await alice.contexts.delete("task")  # v9: a deletion touching the paths comes as a patch too
    events = await take(watch, 5)
    assert [(e.kind, e.version) for e in events] == [
        (acb.ContextEventKind.UPDATED, 3),
        (acb.ContextEventKind.UPDATED, 5),
        (acb.ContextEventKind.UPDATED, 6),
        (acb.ContextEventKind.UPDATED, 8),
        (acb.ContextEventKind.DELETED, 9),
    ]
    assert events[0].patch == [{"op": "replace", "path": "/step", "value": 2}]
    assert events[1].patch == [{"op": "replace", "path": "/meta/by", "value": "bo"}]
    assert all(e.body is None and e.json() is None for e in events)
    # Applied in turn, the patches give the watched values of every version heard.
    for event in events:
        state = apply_patch(state, event.patch)
        version = await bob.contexts.get("task", version=event.version)
        body = version.json() if version.body else {}
        assert [at(state, path) for path in paths] == [at(body, path) for path in paths], event.version
    assert [at(state, path) for path in paths] == [MISSING, MISSING]
    await watch.close()


async def test_a_field_level_pattern_watch_skips_bytes_contexts(connect: Connect) -> None:
    alice = await connect("alice")
    watch = await alice.contexts.watch("cfg.*", paths=["/on"])
    await alice.contexts.put("cfg.raw", b'{"on": true}')  # bytes: nothing to patch
    await alice.contexts.put("cfg.json", {"on": True}, attributes=JSON)
    [event] = await take(watch, 1)
    assert (event.id, event.kind, event.patch) == (
        "cfg.json",
        acb.ContextEventKind.CREATED,
        [{"op": "add", "path": "/on", "value": True}],
    )
    await watch.close()


class Gate:
    """A token source that hands out tokens only while open: a client reconnecting while it is
    closed stays away from the bus until it opens."""

    def __init__(self, agent: str, tenant: str) -> None:
        self.agent = agent
        self.tenant = tenant
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self) -> str:
        await self.open.wait()
        return mint_token(self.agent, self.tenant)


async def test_a_watch_resumes_after_the_connection_is_cut(bus: Bus, tenant: str, connect: Connect) -> None:
    alice = await connect("alice")
    gate = Gate("watcher", tenant)
    async with acb.connect("127.0.0.1", bus.port, token=gate) as watcher:
        await alice.contexts.put("doc", "v1", attributes=TENANT_BYTES)
        watch = await watcher.contexts.watch("doc")
        await alice.contexts.put("doc", "v2")
        [first] = await take(watch, 1)
        assert (first.version, first.body) == (2, b"v2")

        gate.open.clear()
        watcher.drop_connection()
        # Made while the watcher is away: its reconnect waits for the gate.
        for number in (3, 4, 5):
            await alice.contexts.put("doc", f"v{number}")
        await alice.contexts.delete("doc")  # v6
        gate.open.set()

        missed = await take(watch, 4)
        assert summary(missed) == [
            ("doc", acb.ContextEventKind.UPDATED, 3, b"v3"),
            ("doc", acb.ContextEventKind.UPDATED, 4, b"v4"),
            ("doc", acb.ContextEventKind.UPDATED, 5, b"v5"),
            ("doc", acb.ContextEventKind.DELETED, 6, None),
        ]
        # Nothing is repeated: the next event is the next change.
        await alice.contexts.create("doc", "v7", attributes=TENANT_BYTES)
        [after] = await take(watch, 1)
        assert (after.kind, after.version, after.body) == (acb.ContextEventKind.CREATED, 7, b"v7")
        await watch.close()


async def test_a_pattern_watch_resumes_by_revision_after_the_connection_is_cut(
    bus: Bus, tenant: str, connect: Connect
) -> None:
    alice = await connect("alice")
    gate = Gate("watcher", tenant)
    async with acb.connect("127.0.0.1", bus.port, token=gate) as watcher:
        await alice.contexts.put("job.a", "a1", attributes=TENANT_BYTES)
        watch = await watcher.contexts.watch("job.*", snapshot=True)
        [snapshot] = await take(watch, 1)
        assert (snapshot.id, snapshot.kind) == ("job.a", acb.ContextEventKind.SNAPSHOT)
        await alice.contexts.put("job.b", "b1", attributes=TENANT_BYTES)
        [live] = await take(watch, 1)
        assert (live.id, live.version) == ("job.b", 1)

        gate.open.clear()
        watcher.drop_connection()
        await alice.contexts.put("job.a", "a2")
        await alice.contexts.put("elsewhere", "x", attributes=TENANT_BYTES)
        await alice.contexts.put("job.c", "c1", attributes=TENANT_BYTES)
        await alice.contexts.delete("job.b")
        gate.open.set()

        missed = await take(watch, 3)
        assert summary(missed) == [
            ("job.a", acb.ContextEventKind.UPDATED, 2, b"a2"),
            ("job.c", acb.ContextEventKind.CREATED, 1, b"c1"),
            ("job.b", acb.ContextEventKind.DELETED, 2, None),
        ]
        await alice.contexts.put("job.a", "a3")
        [after] = await take(watch, 1)
        assert (after.id, after.version, after.body) == ("job.a", 3, b"a3")
        revisions = [e.head.revision for e in [live, *missed, after]]
        assert revisions == sorted(set(revisions))
        await watch.close()


async def test_a_field_level_watch_resumes_after_the_connection_is_cut(bus: Bus, tenant: str, connect: Connect) -> None:
    alice = await connect("alice")
    gate = Gate("watcher", tenant)
    async with acb.connect("127.0.0.1", bus.port, token=gate) as watcher:
        await alice.contexts.put("task", {"step": 1, "note": ""}, attributes=TENANT_JSON)
        watch = await watcher.contexts.watch("task", paths=["/step"])
        await alice.contexts.merge_patch("task", {"step": 2})  # v2
        [first] = await take(watch, 1)
        assert first.version == 2

        gate.open.clear()
        watcher.drop_connection()
        await alice.contexts.merge_patch("task", {"note": "a"})  # v3: not heard
        await alice.contexts.merge_patch("task", {"step": 3})  # v4
        await alice.contexts.merge_patch("task", {"note": "b"})  # v5: not heard
        gate.open.set()

        [missed] = await take(watch, 1)
        assert (missed.version, missed.patch) == (4, [{"op": "replace", "path": "/step", "value": 3}])
        await alice.contexts.merge_patch("task", {"step": 4})  # v6
        [after] = await take(watch, 1)
        assert (after.version, after.patch) == (6, [{"op": "replace", "path": "/step", "value": 4}])
        await watch.close()


async def test_a_watch_that_cannot_resume_raises_compacted(bus: Bus, tenant: str, connect: Connect) -> None:
    alice = await connect("alice")
    gate = Gate("watcher", tenant)
    async with acb.connect("127.0.0.1", bus.port, token=gate) as watcher:
        await alice.contexts.put("doc", "0", attributes=TENANT_BYTES)
        watch = await watcher.contexts.watch("doc")
        await alice.contexts.put("doc", "1")
        [first] = await take(watch, 1)
        assert first.version == 2
        gate.open.clear()
        watcher.drop_connection()
        for number in range(2, 22):  # more changes than the 16 versions kept
            await alice.contexts.put("doc", str(number))
        gate.open.set()
        with pytest.raises(acb.CompactedError) as raised:
            await take(watch, 1)
        oldest = raised.value.oldest
        assert oldest == 22 - 16 + 1  # the oldest of the 16 versions kept
        with pytest.raises(acb.CompactedError):  # the watch stays ended
            await take(watch, 1)
        assert oldest is not None
        resumed = await watcher.contexts.watch("doc", after=oldest)
        assert [e.version for e in await take(resumed, 22 - oldest)] == list(range(oldest + 1, 23))
        await resumed.close()
        # The client is connected again: a new watch with a snapshot starts over.
        again = await watcher.contexts.watch("doc", snapshot=True)
        [current] = await take(again, 1)
        assert (current.kind, current.version, current.body) == (acb.ContextEventKind.SNAPSHOT, 22, b"21")
        await again.close()


async def test_close_ends_the_iteration_and_the_watch(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    watch = await bob.contexts.watch("doc")
    seen: list[acb.ContextEvent] = []

    async def collect() -> None:
        async for event in watch:
            seen.append(event)

    collecting = asyncio.create_task(collect())
    await alice.contexts.put("doc", "one", attributes=TENANT_BYTES)

    async def one_seen() -> bool:
        return len(seen) == 1

    await eventually(one_seen)
    await watch.close()
    await asyncio.wait_for(collecting, 10)  # the waiting iteration ended
    assert summary(seen) == [("doc", acb.ContextEventKind.CREATED, 1, b"one")]
    await alice.contexts.put("doc", "two")
    assert [event async for event in watch] == []
    await watch.close()  # closing again is harmless

    # The bus ended each closed watch: a session may hold 64, and 80 come and go here.
    for _ in range(80):
        async with await bob.contexts.watch("doc") as scoped:
            assert scoped.ref != 0
    watches = [await bob.contexts.watch(f"doc{number}") for number in range(64)]
    await raises(acb.ErrorCode.OVERLOADED, acb.RetryableError, bob.contexts.watch("one.too.many"))
    for each in watches:
        await each.close()
    final = await bob.contexts.watch("doc")
    await alice.contexts.put("doc", "three")
    [event] = await take(final, 1)
    assert (event.version, event.body) == (3, b"three")
    await final.close()


async def test_closing_the_client_ends_its_watches_as_it_ends_deliveries(connect: Connect) -> None:
    alice = await connect("alice")
    watch = await alice.contexts.watch("doc")
    deliveries = asyncio.create_task(take(alice.deliveries(), 1))
    events = asyncio.create_task(take(watch, 1))
    await asyncio.sleep(0)
    await alice.close()
    assert await deliveries == []
    assert await events == []


async def test_a_watch_survives_a_cut_during_its_own_restart(connect: Connect) -> None:
    alice = await connect("alice")
    watcher = await connect("watcher")
    await alice.contexts.put("doc", "v1", attributes=TENANT_BYTES)
    for _ in range(3):  # so the watch's ref on this connection differs from its first on the next
        await watcher.contexts.list()
    watch = await watcher.contexts.watch("doc")
    first_ref = watch.ref
    watcher.drop_connection()

    async def cut_when_restarting() -> None:
        # The watch takes its new ref as it writes CONTEXT_WATCH on the new connection. Polled at
        # every turn of the event loop, the change is seen, and the connection cut, before the
        # loop reads the bus's answer.
        while watch.ref == first_ref:
            await asyncio.sleep(0)
        watcher.drop_connection()

    await asyncio.wait_for(cut_when_restarting(), 10)
    await alice.contexts.put("doc", "v2")  # the client reconnects by itself and should resume
    [event] = await take(watch, 1, timeout=5)
    assert (event.version, event.body) == (2, b"v2")


async def test_a_watch_closed_with_a_full_backlog_stays_closed(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    count = 1_100  # more events than a watch keeps for the application (1,024): it pauses
    watch = await bob.contexts.watch("p.*")
    reference = await bob.contexts.watch("p.*")  # read as it comes: it tells when all have come
    await asyncio.gather(*(alice.contexts.put(f"p.{n}", "x", attributes=TENANT_BYTES) for n in range(count)))
    assert len(await take(reference, count, timeout=30)) == count
    await reference.close()
    await watch.close()
    drained = [event async for event in watch]
    assert len(drained) <= count
    assert [event async for event in watch] == []
    for _ in range(2):  # round trips: anything the watch did while drained has been answered
        await bob.contexts.list(limit=1)
    # No watch is left on the bus: the session may set up its 64.
    watches = [await bob.contexts.watch(f"q{n}") for n in range(64)]
    for each in watches:
        await each.close()


# MARK: awkward for a Python user


async def test_a_json_value_without_attributes_makes_a_json_context(connect: Connect) -> None:
    alice = await connect("alice")
    head = await alice.contexts.create("settings", {"theme": "dark"})
    assert head.attributes.content_type == acb.ContentType.JSON
    await alice.contexts.merge_patch("settings", {"theme": "light"})
    assert (await alice.contexts.get("settings")).json() == {"theme": "light"}
    head = await alice.contexts.put("flags", [True])
    assert (head.attributes.content_type, head.attributes.scope) == (acb.ContentType.JSON, acb.ContextScope.PRIVATE)
    await alice.contexts.json_patch("flags", [{"op": "add", "path": "/-", "value": False}])
    assert (await alice.contexts.get("flags")).json() == [True, False]
    # Text and bytes stay bytes.
    assert (await alice.contexts.create("text", "{}")).attributes.content_type == acb.ContentType.BYTES


async def test_a_put_of_a_json_value_keeps_the_attributes_of_the_context(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    board = attributes(json_body=True, scope=acb.ContextScope.TENANT, writers=["bob"], metadata={"team": "a"})
    await alice.contexts.create("board", {"items": []}, attributes=board)
    head = await bob.contexts.put("board", {"items": ["from bob"]})  # a writer, not the owner
    assert head.attributes == board
    head = await alice.contexts.put("board", {"items": []})
    assert (head.attributes.scope, head.attributes.writers, head.attributes.metadata) == (
        acb.ContextScope.TENANT,
        ["bob"],
        [("team", "a")],
    )


async def test_list_all_follows_the_cursor_to_the_last_page(connect: Connect) -> None:
    alice = await connect("alice")
    ids = [f"notes.n{number:03d}" for number in range(300)]  # more than a page (256)
    await asyncio.gather(*(alice.contexts.put(id, b"x") for id in ids))
    first = await alice.contexts.list(prefix="notes.")
    assert first.next_cursor, "one page would not show that the cursor is followed"
    assert [head.id for head in await alice.contexts.list_all(prefix="notes.")] == ids
