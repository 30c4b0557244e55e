"""``robot_pose_node``: ``sensor_msgs/Image`` + ``CameraInfo`` -> the robot's joints and the camera pose, by
analysis-by-synthesis through the Dr. Robot renderer (:mod:`gen3d_ros.pipeline.robot_pose`).

    python -m gen3d_ros.ros.robot_pose_node --ros-args --params-file config/robot_pose_node.yaml
    ros2 run gen3d_ros robot_pose_node --ros-args -p image_topic:=/camera/image_rect -p rectified:=true
    # markerless camera-to-robot calibration from the encoders on /joint_states: 30 frames -> /tf_static
    ros2 run gen3d_ros robot_pose_node --ros-args -p keypoints:=packaged -p mode:=calibrate -p calibrate_frames:=30

A :class:`~gen3d_ros.ros.stage_node.StageNode` of the registry's ``robot_pose`` entry
(:data:`gen3d_ros.pipeline.registry.STAGES`: default topics, the process worker); topics are the parameters
``<name>_topic``. Image and CameraInfo are paired by stamp within ``sync_tolerance``; out ``estimate``
(``gen3d_ros/RobotPoseEstimate``), ``joint_states`` (``sensor_msgs/JointState``), ``camera_pose``
(``geometry_msgs/PoseStamped``: the camera optical frame in ``base_frame``), ``camera_pose_with_covariance``
(``PoseWithCovarianceStamped``, covariance from ``pose_std``) and, only with ``publish_tf: true``, ``tf``
(``base_frame`` -> ``<camera frame>_estimated``, a new frame: the tree stays a tree), all with the image's stamp; ``/diagnostics`` at 1 Hz. The
estimator's settings are the ``estimator.<field>`` parameters. Optional input ``joint_readings`` (the encoders'
``sensor_msgs/JointState``, topic ``joint_states``): while fresh (``joint_state_tolerance``) the camera only is
estimated. ``mode: calibrate`` averages ``calibrate_frames`` such camera estimates and publishes the static transform
on ``/tf_static`` and ``~/calibration`` (PoseWithCovarianceStamped, the frames' spread), both latched.
"""

from __future__ import annotations

import sys
from typing import Sequence

from gen3d_ros.ros.node_main import run_node


def main(argv: Sequence[str] | None = None) -> int:
    """Run the registry's ``robot_pose_node`` (:func:`gen3d_ros.ros.node_main.run_node`)."""
    return run_node("robot_pose_node", argv)


if __name__ == "__main__":
    sys.exit(main())
