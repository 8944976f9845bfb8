"""A connection without a socket: its frames fed in by hand, what it writes kept (for the tests of
a client's reactions to frames that a bus cannot be made to send at will)."""

from __future__ import annotations

import asyncio

from acb import _frames as f
from acb._connection import Connection
from acb.client import Client


class Wire(asyncio.Transport):
    """A transport that keeps what the client writes, in place of a socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def frames(self) -> list[f.Frame]:
        """Every frame written so far, decoded."""
        frames: list[f.Frame] = []
        data, position = bytes(self.written), 0
        while position < len(data):
            length, frame_type = f.HEADER.unpack_from(data, position)
            frames.append(f.decode(frame_type, data[position + 5 : position + 4 + length]))
            position += 4 + length
        return frames

    def acks(self) -> list[int]:
        """The delivery ids of the ACKs written so far."""
        return [frame.delivery_id for frame in self.frames() if isinstance(frame, f.Ack)]


def attach(client: Client) -> tuple[Connection, Wire]:
    """A new connection of `client`, over a `Wire`, as if it had just opened."""
    connection = Connection(client)
    wire = Wire()
    connection.connection_made(wire)
    connection.welcome = f.Welcome(1, "acme", "bob")
    client._connection = connection
    return connection, wire
