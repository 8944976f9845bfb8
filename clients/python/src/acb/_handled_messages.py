"""The stored messages an application already handled, so that their redeliveries are not handed to
it again (docs/python.md, "Durable messages: `durable=True`")."""

from __future__ import annotations

from collections import deque

#: How many message ids `HandledMessages` keeps by default: the most recent acknowledged.
CAPACITY = 65_536


class HandledMessages:
    """The ``message_id`` of every stored message the application acknowledged, the most recent
    ``capacity`` of them (the oldest is forgotten first).

    A stored message may be delivered again after the application acknowledged it: the bus can
    restart after the ACK went out and before it committed the settlement (5.1b), and the ACK of a
    delivery acknowledged just before a connection broke may never have left. Such a DELIVER has
    the same non-zero ``message_id``; the client acknowledges it again and does not hand it out.
    A redelivery of a message acknowledged longer ago than ``capacity`` acknowledgements is handed
    out again (delivery stays at least once). Memory: about 110 bytes per id, 7 MiB at the default.
    Both methods are O(1); call them on the client's event loop.
    """

    __slots__ = ("_capacity", "_ids", "_order")

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._ids: set[int] = set()
        self._order: deque[int] = deque()

    def add(self, message_id: int) -> None:
        """Remembers that the application acknowledged `message_id` (not 0: a message in memory only
        has no id), forgetting the oldest id when full."""
        ids = self._ids
        if message_id in ids:
            return
        ids.add(message_id)
        self._order.append(message_id)
        if len(ids) > self._capacity:
            ids.discard(self._order.popleft())

    def __contains__(self, message_id: int) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
