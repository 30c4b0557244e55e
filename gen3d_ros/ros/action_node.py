"""``action_node``: a visual goal (``sensor_msgs/Image`` or ``geometry_msgs/PolygonStamped`` pixel keypoints) + the
robot's ``sensor_msgs/JointState`` -> a ``trajectory_msgs/JointTrajectory`` that reaches it, optimised through the
Dr. Robot renderer (:mod:`gen3d_ros.pipeline.action`).

    python -m gen3d_ros.ros.action_node --ros-args --params-file config/action_node.yaml
    ros2 run gen3d_ros action_node --ros-args -p joint_states_topic:=/joint_states

Topics (parameters ``<name>_topic``): in ``goal_image`` ``/gen3d/input/goal_image``, ``goal_keypoints``
``/gen3d/input/goal_keypoints``, ``joint_states`` ``/joint_states`` (the robot driver's), ``camera_info``
``/gen3d/input/camera_info``, ``camera_pose`` ``/gen3d/robot_pose/camera_pose`` (``robot_pose_node``'s output);
out ``trajectory`` ``/gen3d/action/trajectory``, ``action`` ``/gen3d/action/action`` (``gen3d_ros/RobotAction``);
``/diagnostics`` at 1 Hz. Only goals trigger planning; joint states, intrinsics and camera pose are kept (latest).
The default ``input_qos: auto`` matches reliable and best-effort publishers alike.
"""

from __future__ import annotations

import sys
from typing import Sequence

from gen3d_ros.pipeline.action import ActionStage, ActionStageConfig
from gen3d_ros.ros.stage_node import StageNode, run_node


class ActionNode(StageNode):
    default_name = "action_node"
    stage_cls = ActionStage
    config_cls = ActionStageConfig
    default_topics = {
        "joint_states": "/joint_states",
        "camera_pose": "/gen3d/robot_pose/camera_pose",
        "trajectory": "/gen3d/action/trajectory",
        "action": "/gen3d/action/action",
    }
    # The optimisation loop is Python + torch: keep it off the executor's process (GIL).
    default_worker = "process"
    # goals come now and then; joint states, intrinsics and camera pose stream
    quiet_inputs = frozenset({"goal_image", "goal_keypoints"})


def main(argv: Sequence[str] | None = None) -> int:
    return run_node(ActionNode, argv)


if __name__ == "__main__":
    sys.exit(main())
