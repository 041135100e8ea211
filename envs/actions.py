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
    """Return ``action`` as an Action, or raise a ValueError that says what is allowed.

    Only integers are actions (int, numpy integer, a 0-d or one-element integer array, an
    ``Action``): a string ("1") or a float (1.5, even 1.0) is refused rather than converted, so a
    caller's type error is not turned into a move."""
    import numpy as np

    allowed = "expected an int in 0..3 (0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT)"
    value = action
    if isinstance(value, np.ndarray) and value.size == 1 and np.issubdtype(value.dtype, np.integer):
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"invalid action {action!r} ({type(action).__name__}): {allowed}")
    a = int(value)
    if a < 0 or a >= NUM_ACTIONS:
        raise ValueError(f"invalid action {action!r}: {allowed}")
    return Action(a)
