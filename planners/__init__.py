"""Planners: observations (+ imagined rollouts) -> actions, in the episode-start frame.

See docs/planners.md. ``inverse_dynamics`` (torch) is not imported here, so the
map/path/reader parts stay light.
"""

from planners.mapping import FREE, OCCUPIED, UNKNOWN, Frontier, ObstacleMap
from planners.path import Navigator, Path, PathPlanner, StopPolicy, goal_in_view, next_action
from planners.rollout_reader import (BoxDetection, GoalEstimate, box_to_goal, find_box, find_box_in_frames,
                                     fuse_goals)

__all__ = ["FREE", "OCCUPIED", "UNKNOWN", "Frontier", "ObstacleMap", "Navigator", "Path", "PathPlanner",
           "StopPolicy", "goal_in_view", "next_action", "BoxDetection", "GoalEstimate", "box_to_goal", "find_box",
           "find_box_in_frames", "fuse_goals"]
