"""Whom a message, request or stream is for: an agent by id, or any ready agent with a capability."""

from __future__ import annotations

from typing import NamedTuple

from ._frames import TargetKind


class Target(NamedTuple):
    """A target of SEND, REQUEST or an upload (section 2.3). A bare `str` passed where a target
    is expected names an agent by id."""

    kind: TargetKind
    name: str


def agent(agent_id: str) -> Target:
    """The agent with this id (in the caller's tenant)."""
    return Target(TargetKind.AGENT, agent_id)


def capability(name: str) -> Target:
    """Any ready agent that registered this capability; the bus picks the least busy (5.3)."""
    return Target(TargetKind.CAPABILITY, name)


def resolve(target: Target | str) -> tuple[TargetKind, str]:
    """(kind, name) of a target; a `str` names an agent, without building a Target for it."""
    return (TargetKind.AGENT, target) if isinstance(target, str) else target
