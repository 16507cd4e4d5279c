"""The life of a collection request as a pure state machine: which transitions exist, who may
make each one, and the sentence that says why a refused one was refused (the API's 409).

    open ──▶ dispatched ──▶ acknowledged ──▶ completed ──▶ verified
      │          │               │                └──────▶ disputed
      └──────────┴───────────────┴──▶ cancelled

The collector dispatches, verifies and disputes; the request's own operator acknowledges and
completes. An operator may acknowledge a request that is still `open` (it read it in the API
before the dispatch went out). Who the caller is comes from its API key (api/routes/collections.py:
an operator key acts only as its own operator); this module checks that an operator acts only on
its own requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Status(StrEnum):
    open = "open"
    dispatched = "dispatched"
    acknowledged = "acknowledged"
    completed = "completed"
    verified = "verified"
    disputed = "disputed"
    cancelled = "cancelled"


class Role(StrEnum):
    system = "system"  # the collector service
    operator = "operator"  # the operator company the request is assigned to
    admin = "admin"  # city staff (cancelling)
    manager = "manager"  # a property manager (asking for a collection by hand)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a transition. The audit trail records `key` when a person acted through the
    API (the calling key: role, key id and name, `Principal.actor`), else `role:name`."""

    role: Role
    name: str
    key: str | None = None

    def __str__(self) -> str:
        return self.key or f"{self.role.value}:{self.name}"


COLLECTOR: Final = Actor(Role.system, "collector")

OPEN: Final = frozenset({Status.open, Status.dispatched, Status.acknowledged})
"""Still waiting for a crew: at most one such request per bin, and these can become overdue."""

# to-status → (the statuses it may come from, the role that may make it)
_RULES: Final[dict[Status, tuple[frozenset[Status], Role]]] = {
    Status.dispatched: (frozenset({Status.open}), Role.system),
    Status.acknowledged: (frozenset({Status.open, Status.dispatched}), Role.operator),
    Status.completed: (frozenset({Status.acknowledged}), Role.operator),
    Status.verified: (frozenset({Status.completed}), Role.system),
    Status.disputed: (frozenset({Status.completed}), Role.system),
    Status.cancelled: (OPEN, Role.admin),
}


class TransitionRefused(Exception):
    """A transition the state machine does not allow; the message is for the caller (409)."""


def check(*, request_id: int, status: Status, operator_id: str, to: Status, actor: Actor) -> None:
    """Raise `TransitionRefused` unless `actor` may move request `request_id` from `status` to
    `to`. Role is checked before state: a stranger learns nothing about someone else's request."""
    sources, role = _RULES[to]
    if actor.role is not role:
        raise TransitionRefused(
            f"only the {role.value} may mark request {request_id} {to.value}, not {actor}"
        )
    if role is Role.operator and actor.name != operator_id:
        raise TransitionRefused(
            f"request {request_id} is assigned to operator {operator_id!r}, not {actor.name!r}"
        )
    if status not in sources:
        allowed = " or ".join(sorted(s.value for s in sources))
        early = to is Status.completed and status in (Status.open, Status.dispatched)
        hint = "; acknowledge it first" if early else ""
        raise TransitionRefused(
            f"request {request_id} is {status.value}: only a request that is {allowed} can be "
            f"marked {to.value}{hint}"
        )
