"""The request state machine: every allowed transition, and the reasons refused ones give."""

from __future__ import annotations

import pytest

from collection.lifecycle import COLLECTOR, Actor, Role, Status, TransitionRefused, check

OPERATOR = Actor(Role.operator, "op-green")
OTHER = Actor(Role.operator, "op-blue")
ADMIN = Actor(Role.admin, "city")


def _check(status: Status, to: Status, actor: Actor) -> None:
    check(request_id=7, status=status, operator_id="op-green", to=to, actor=actor)


@pytest.mark.parametrize(
    ("status", "to", "actor"),
    [
        (Status.open, Status.dispatched, COLLECTOR),
        (Status.dispatched, Status.acknowledged, OPERATOR),
        (Status.open, Status.acknowledged, OPERATOR),
        (Status.acknowledged, Status.completed, OPERATOR),
        (Status.completed, Status.verified, COLLECTOR),
        (Status.completed, Status.disputed, COLLECTOR),
        (Status.open, Status.cancelled, ADMIN),
        (Status.dispatched, Status.cancelled, ADMIN),
        (Status.acknowledged, Status.cancelled, ADMIN),
    ],
)
def test_allowed(status: Status, to: Status, actor: Actor) -> None:
    _check(status, to, actor)


def test_another_operators_request_is_refused_before_its_state_is_told() -> None:
    with pytest.raises(TransitionRefused, match="assigned to operator 'op-green', not 'op-blue'"):
        _check(Status.verified, Status.completed, OTHER)


def test_completing_before_acknowledging_says_what_to_do() -> None:
    with pytest.raises(TransitionRefused, match=r"request 7 is dispatched.*acknowledge it first"):
        _check(Status.dispatched, Status.completed, OPERATOR)


def test_completing_twice_is_refused() -> None:
    with pytest.raises(TransitionRefused, match="request 7 is completed: only a request that is"):
        _check(Status.completed, Status.completed, OPERATOR)


@pytest.mark.parametrize(
    ("to", "actor"),
    [
        (Status.verified, OPERATOR),
        (Status.dispatched, OPERATOR),
        (Status.completed, COLLECTOR),
        (Status.cancelled, OPERATOR),
    ],
)
def test_each_transition_belongs_to_one_role(to: Status, actor: Actor) -> None:
    with pytest.raises(TransitionRefused, match="only the"):
        _check(Status.completed, to, actor)


@pytest.mark.parametrize("final", [Status.verified, Status.disputed, Status.cancelled])
def test_final_states_cannot_be_cancelled(final: Status) -> None:
    with pytest.raises(TransitionRefused, match=f"is {final.value}"):
        _check(final, Status.cancelled, ADMIN)
