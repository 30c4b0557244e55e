"""``action_node``: a visual goal (``sensor_msgs/Image`` or ``geometry_msgs/PolygonStamped`` pixel keypoints) + the
robot's ``sensor_msgs/JointState`` -> a ``trajectory_msgs/JointTrajectory`` that reaches it, optimised through the
Dr. Robot renderer (:mod:`gen3d_ros.pipeline.action`).

    python -m gen3d_ros.ros.action_node --ros-args --params-file config/action_node.yaml
    ros2 run gen3d_ros action_node --ros-args -p joint_states_topic:=/joint_states

A :class:`~gen3d_ros.ros.stage_node.StageNode` of the registry's ``action`` entry
(:data:`gen3d_ros.pipeline.registry.STAGES`: default topics — joint states from the robot driver's
``/joint_states``, the camera pose from ``robot_pose_node`` — the process worker); topics are the parameters
``<name>_topic``, ``/diagnostics`` at 1 Hz. Only goals trigger planning; joint states, intrinsics and camera pose
are kept (latest). The planner's settings are the ``mpc.<field>`` parameters.
"""

from __future__ import annotations

import sys
from typing import Sequence

from gen3d_ros.ros.node_main import run_node


def main(argv: Sequence[str] | None = None) -> int:
    """Run the registry's ``action_node`` (:func:`gen3d_ros.ros.node_main.run_node`)."""
    return run_node("action_node", argv)


if __name__ == "__main__":
    sys.exit(main())
