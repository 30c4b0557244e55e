"""The robot pose node alone: ``Image`` + ``CameraInfo`` -> joints (``JointState``), camera pose (``PoseStamped``, TF).

    ros2 launch gen3d_ros robot_pose.launch.py                             # config/robot_pose_node.yaml
    ros2 launch gen3d_ros robot_pose.launch.py params_file:=/path/to/my.yaml rviz:=true

Topics are parameters (``image_topic``, ``camera_info_topic`` …, see the params file). Without ``ros2 launch``:
``python -m gen3d_ros.ros.robot_pose_node --ros-args --params-file config/robot_pose_node.yaml``.
"""

from gen3d_ros.ros.launch_description import node_launch_description


def generate_launch_description():
    return node_launch_description("robot_pose_node")
