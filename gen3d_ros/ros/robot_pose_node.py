"""``robot_pose_node``: ``sensor_msgs/Image`` + ``CameraInfo`` -> the robot's joints and the camera pose, by
analysis-by-synthesis through the Dr. Robot renderer (:mod:`gen3d_ros.pipeline.robot_pose`).

    python -m gen3d_ros.ros.robot_pose_node --ros-args --params-file config/robot_pose_node.yaml
    ros2 run gen3d_ros robot_pose_node --ros-args -p image_topic:=/camera/image_rect -p rectified:=true

Topics (parameters ``<name>_topic``): ``image`` in ``/gen3d/input/image``, ``camera_info`` in
``/gen3d/input/camera_info`` (paired by stamp within ``sync_tolerance``); out ``estimate``
``/gen3d/robot_pose/estimate`` (``gen3d_ros/RobotPoseEstimate``), ``joint_states`` ``/gen3d/robot_pose/joint_states``
(``sensor_msgs/JointState``; not ``/joint_states``, which belongs to the robot's own driver), ``camera_pose``
``/gen3d/robot_pose/camera_pose`` (``geometry_msgs/PoseStamped``: the camera optical frame in ``base_frame``) and
``tf`` ``/tf`` (``tf2_msgs/TFMessage``: ``base_frame`` -> camera frame; ``publish_tf: false`` to leave TF alone);
``/diagnostics`` at 1 Hz. Every output carries the image's stamp. The stage runs in a child process by default:
the fitting loop is Python + torch and would otherwise keep the executor's thread waiting for the GIL.
"""

from __future__ import annotations

import sys
from typing import Sequence

from gen3d_ros.pipeline.robot_pose import RobotPoseStage, RobotPoseStageConfig
from gen3d_ros.ros.stage_node import StageNode, run_node


class RobotPoseNode(StageNode):
    default_name = "robot_pose_node"
    stage_cls = RobotPoseStage
    config_cls = RobotPoseStageConfig
    default_topics = {
        "estimate": "/gen3d/robot_pose/estimate",
        "joint_states": "/gen3d/robot_pose/joint_states",
        "camera_pose": "/gen3d/robot_pose/camera_pose",
        "tf": "/tf",
    }
    default_worker = "process"


def main(argv: Sequence[str] | None = None) -> int:
    return run_node(RobotPoseNode, argv)


if __name__ == "__main__":
    sys.exit(main())
