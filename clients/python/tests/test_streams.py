"""Streams through the real bus (docs/protocol.md section 5.9): uploads from memory and from files,
verified downloads, progress, errors, acknowledgement at close, and uploads and downloads resumed
after the connection broke."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from conftest import Connect, eventually, take

import acb
from acb._frames import STREAM_CHUNK

MiB = 1024 * 1024
STREAM_TIMEOUT = 60.0  # generous: the bus of the tests may be a debug build


def payload(size: int, seed: int = 7) -> bytes:
    """Bytes that differ from chunk to chunk, so a chunk out of place shows."""
    return random.Random(seed).randbytes(size)


def check(stream: acb.IncomingStream, sender: str, stream_id: str, data: bytes) -> None:
    assert (stream.sender, stream.stream_id, stream.size) == (sender, stream_id, len(data))
    assert stream.sha256 == hashlib.sha256(data).digest()
    assert Path(stream.path).read_bytes() == data


async def test_an_upload_arrives_verified_on_the_receivers_streams(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path))
    data = payload(300_000)
    ok = await alice.upload("bob", data, stream_id="report-1")
    assert ok.outcome == acb.Outcome.DELIVERED
    [stream] = await take(bob.streams(), 1, timeout=STREAM_TIMEOUT)
    check(stream, "alice", "report-1", data)
    assert Path(stream.path).parent == tmp_path


async def test_an_upload_gets_a_stream_id_of_its_own_when_none_is_given(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path))
    await alice.upload("bob", b"first")
    await alice.upload("bob", b"second")
    first, second = await take(bob.streams(), 2, timeout=STREAM_TIMEOUT)
    assert [Path(first.path).read_bytes(), Path(second.path).read_bytes()] == [b"first", b"second"]
    assert first.stream_id and second.stream_id and first.stream_id != second.stream_id
    assert "/" not in first.stream_id  # the application sees the sender's id, not the download's


async def test_an_upload_from_a_file_path(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path))
    chunk_size = alice.welcome.chunk_size if alice.welcome else MiB
    data = payload(2 * chunk_size + 4_321, seed=11)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    await alice.upload("bob", source, stream_id="from-path")
    await alice.upload("bob", str(source), stream_id="from-str")
    first, second = await take(bob.streams(), 2, timeout=STREAM_TIMEOUT)
    check(first, "alice", "from-path", data)
    check(second, "alice", "from-str", data)


async def test_a_stream_of_several_chunks_arrives_whole(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path))
    assert alice.welcome is not None
    data = payload(5 * MiB + 17, seed=3)
    assert len(data) > 5 * alice.welcome.chunk_size  # six chunks, the last one short
    await alice.upload("bob", data, stream_id="big")
    [stream] = await take(bob.streams(), 1, timeout=STREAM_TIMEOUT)
    check(stream, "alice", "big", data)


async def test_the_upload_progress_rises_to_the_total(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path))
    assert alice.welcome is not None
    chunk_size = alice.welcome.chunk_size
    data = payload(3 * chunk_size + 999, seed=5)
    reports: list[tuple[str, int, int]] = []
    await alice.upload("bob", data, stream_id="tracked", progress=lambda *report: reports.append(report))
    assert {(stream_id, total) for stream_id, _, total in reports} == {("tracked", len(data))}
    counts = [count for _, count, _ in reports]
    assert counts == sorted(set(counts)), counts  # strictly increasing
    assert counts[-1] == len(data)
    # It follows what the bus stored (a STREAM_STATUS per chunk), not only the end.
    assert len(counts) >= 2 and counts[0] < len(data), counts
    assert all(count % chunk_size == 0 for count in counts[:-1]), counts  # whole chunks stored
    [stream] = await take(bob.streams(), 1, timeout=STREAM_TIMEOUT)
    check(stream, "alice", "tracked", data)


async def test_the_download_progress_reports_every_chunk(connect: Connect, tmp_path: Path) -> None:
    reports: list[tuple[str, int, int]] = []
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path), download_progress=lambda *report: reports.append(report))
    assert alice.welcome is not None
    chunk_size = alice.welcome.chunk_size
    data = payload(3 * chunk_size + 100, seed=9)
    await alice.upload("bob", data, stream_id="watched")
    [stream] = await take(bob.streams(), 1, timeout=STREAM_TIMEOUT)
    check(stream, "alice", "watched", data)
    size = len(data)
    assert reports == [("watched", min(size, n * chunk_size), size) for n in range(1, 5)]


async def test_an_upload_to_an_unknown_agent_raises_the_bus_code(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    with pytest.raises(acb.RoutingError) as raised:
        await alice.upload("nobody", b"data")
    assert raised.value.code == acb.ErrorCode.UNKNOWN_AGENT
    with pytest.raises(acb.RoutingError) as raised:
        await alice.upload(acb.capability("transcode"), b"data")
    assert raised.value.code == acb.ErrorCode.NO_CAPABLE_AGENT
    # The refused stream id is free again, and the client goes on.
    bob = await connect("bob", download_dir=str(tmp_path))
    with pytest.raises(acb.RoutingError):
        await alice.upload("nobody", b"data", stream_id="again")
    await alice.upload("bob", b"data", stream_id="again")
    [stream] = await take(bob.streams(), 1)
    check(stream, "alice", "again", b"data")


async def test_an_upload_by_capability_reaches_a_capable_agent(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path))
    await bob.register("transcoder", ["transcode"])
    await alice.upload(acb.capability("transcode"), b"video", stream_id="by-capability")
    [stream] = await take(bob.streams(), 1)
    check(stream, "alice", "by-capability", b"video")


async def test_an_empty_payload_is_refused(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    await connect("bob")
    with pytest.raises(ValueError):
        await alice.upload("bob", b"")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ValueError):
        await alice.upload("bob", empty)


async def test_the_stream_in_hand_is_acknowledged_at_close_and_the_rest_comes_again(
    connect: Connect, tmp_path: Path
) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "again").mkdir()
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path / "first"))
    for name in ("one", "two", "three"):
        await alice.upload("bob", name.encode(), stream_id=name)
    streams = bob.streams()
    first = await anext(streams)  # in hand, not acknowledged yet
    check(first, "alice", "one", b"one")
    await bob.close()
    again = await connect("bob", download_dir=str(tmp_path / "again"))
    rest = await take(again.streams(), 2, timeout=STREAM_TIMEOUT)
    assert [s.stream_id for s in rest] == ["two", "three"]
    assert [Path(s.path).read_bytes() for s in rest] == [b"two", b"three"]


async def test_close_deletes_the_files_of_streams_never_handed_out(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path))
    for name in ("one", "two"):
        await alice.upload("bob", name.encode(), stream_id=name)
    streams = bob.streams()
    first = await anext(streams)
    assert first.stream_id == "one"

    async def second_verified() -> bool:  # verified and waiting, not handed out
        return len(bob._streams._inbox) == 1

    await eventually(second_verified)
    await bob.close()
    # The file of the stream handed out is the application's; the other one nobody will ever see.
    assert sorted(tmp_path.iterdir()) == [Path(first.path)]


# MARK: resume


async def test_an_upload_whose_connection_breaks_is_resumed_after_the_reconnect(
    connect: Connect, tmp_path: Path
) -> None:
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path))
    assert alice.welcome is not None
    session = alice.welcome
    data = payload(12 * alice.welcome.chunk_size + 5, seed=13)
    reports: list[int] = []
    # Cut the connection once the third chunk is written, as a network failure would: a hook on
    # the connection's writes, so the cut always falls in the middle of the upload.
    connection = alice._connection
    assert connection is not None
    write = connection.write
    chunks_written: list[int] = []

    def write_then_cut(frame: bytes) -> None:
        write(frame)
        if frame[4] == STREAM_CHUNK:
            chunks_written.append(1)
            if len(chunks_written) == 3:
                alice.drop_connection()

    connection.write = write_then_cut  # type: ignore[method-assign]
    ok = await alice.upload("bob", data, stream_id="resumed", progress=lambda _, stored, __: reports.append(stored))
    assert ok.outcome == acb.Outcome.DELIVERED
    assert len(chunks_written) == 3  # the cut came mid-upload, the rest went on the new connection
    assert alice.welcome is not None and alice.welcome is not session  # it did reconnect
    assert reports == sorted(reports) and reports[-1] == len(data)
    [stream] = await take(bob.streams(), 1, timeout=STREAM_TIMEOUT)
    check(stream, "alice", "resumed", data)


async def test_an_upload_cut_from_its_progress_callback_is_resumed(connect: Connect, tmp_path: Path) -> None:
    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path))
    assert alice.welcome is not None
    session = alice.welcome
    # More chunks than the upload keeps in flight: at the first report STREAM_END is not sent yet.
    data = payload(12 * alice.welcome.chunk_size + 5, seed=19)
    reports: list[int] = []

    def progress(stream_id: str, stored: int, total: int) -> None:
        reports.append(stored)
        if len(reports) == 1 and stored < total:
            alice.drop_connection()  # after the first report, in the middle of the upload

    await alice.upload("bob", data, stream_id="cut", progress=progress)
    assert alice.welcome is not None and alice.welcome is not session  # the cut did happen
    assert reports == sorted(reports) and reports[-1] == len(data)
    [stream] = await take(bob.streams(), 1, timeout=STREAM_TIMEOUT)
    check(stream, "alice", "cut", data)


async def test_a_download_whose_connection_breaks_is_delivered_again_and_resumed(
    connect: Connect, tmp_path: Path
) -> None:
    reports: list[int] = []
    receiver: list[acb.Client] = []

    def progress(stream_id: str, received: int, total: int) -> None:
        reports.append(received)
        if len(reports) == 1:
            receiver[0].drop_connection()  # after the first chunk

    alice = await connect("alice")
    bob = await connect("bob", download_dir=str(tmp_path), download_progress=progress)
    receiver.append(bob)
    assert alice.welcome is not None and bob.welcome is not None
    session = bob.welcome
    chunk_size = alice.welcome.chunk_size
    data = payload(5 * chunk_size + 77, seed=17)
    await alice.upload("bob", data, stream_id="downloaded")
    [stream] = await take(bob.streams(), 1, timeout=STREAM_TIMEOUT)
    check(stream, "alice", "downloaded", data)
    assert bob.welcome is not session  # it came over the new connection
    # Resumed from the chunks kept, not started again: the count never goes back.
    assert reports[0] == chunk_size and reports[-1] == len(data)
    assert reports == sorted(set(reports)), reports
    # The partial file of the broken attempt was carried on, not left behind.
    assert sorted(tmp_path.iterdir()) == [Path(stream.path)]
