"""Acknowledging deliveries the way section 5.1 suggests: once per event-loop turn, one cumulative
ACK for the run of finished ids, single ACKs for ids finished ahead of that run."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from . import _frames as f


class AckTracker:
    """The delivery ids of one session, in the order they arrived, until each is finished.

    A cumulative ACK of id N settles every outstanding id ≤ N, so it may only name an id below the
    oldest unfinished one. Ids finished out of order (a request answered before the message
    before it was consumed) are acknowledged singly.
    """

    def __init__(self, write: Callable[[bytes], None], schedule: Callable[[], None]) -> None:
        self._write = write
        #: Asks for `flush` before the connection's next write-out (so ACKs share its write).
        self._schedule = schedule
        self._unfinished: deque[int] = deque()
        self._finished_ahead: set[int] = set()
        self._singles: list[int] = []
        self._newest = 0
        self._acked = 0
        self._scheduled = False

    def received(self, delivery_id: int) -> None:
        self._unfinished.append(delivery_id)
        self._newest = delivery_id

    def finish(self, delivery_id: int, nack: bool = False) -> None:
        """Marks an id handled (a NACK, sent first, counts as finished for what follows)."""
        unfinished = self._unfinished
        if nack:
            self._write(f.encode_nack(delivery_id))
        if unfinished and unfinished[0] == delivery_id:
            unfinished.popleft()
            ahead = self._finished_ahead
            while unfinished and unfinished[0] in ahead:
                ahead.discard(unfinished.popleft())
        elif delivery_id > self._acked and delivery_id not in self._finished_ahead:
            self._finished_ahead.add(delivery_id)
            if not nack:
                self._singles.append(delivery_id)
        else:
            return
        if not self._scheduled:
            self._scheduled = True
            self._schedule()

    @property
    def pending(self) -> bool:
        return self._scheduled

    def flush(self) -> None:
        """Writes what finished since the last flush."""
        self._scheduled = False
        upto = self._unfinished[0] - 1 if self._unfinished else self._newest
        if upto > self._acked:
            self._acked = upto
            self._write(f.encode_ack(upto, True))
        for delivery_id in self._singles:
            if delivery_id > self._acked:
                self._write(f.encode_ack(delivery_id, False))
        self._singles.clear()
