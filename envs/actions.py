"""The discrete action set (habitat ObjectNav defaults)."""

from __future__ import annotations

from enum import IntEnum


class Action(IntEnum):
    STOP = 0
    MOVE_FORWARD = 1
    TURN_LEFT = 2
    TURN_RIGHT = 3


FORWARD_STEP_M = 0.25
TURN_ANGLE_DEG = 30.0
NUM_ACTIONS = len(Action)


def check_action(action) -> Action:
    """Return ``action`` as an Action, or raise a ValueError that says what is allowed."""
    try:
        a = int(action)
    except (TypeError, ValueError):
        raise ValueError(
            f"invalid action {action!r}: expected an int in 0..3 "
            "(0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT)"
        ) from None
    if isinstance(action, float) and not float(action).is_integer():
        raise ValueError(f"invalid action {action!r}: not an integer")
    if a < 0 or a >= NUM_ACTIONS:
        raise ValueError(
            f"invalid action {action!r}: expected 0..3 "
            "(0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT)"
        )
    return Action(a)
