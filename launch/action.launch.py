"""The action node alone: a goal (image or keypoints) + ``JointState`` -> ``JointTrajectory``.

    ros2 launch gen3d_ros action.launch.py                             # config/action_node.yaml
    ros2 launch gen3d_ros action.launch.py params_file:=/path/to/my.yaml rviz:=true

Topics are parameters (``goal_image_topic``, ``joint_states_topic`` …, see the params file). Without ``ros2 launch``:
``python -m gen3d_ros.ros.action_node --ros-args --params-file config/action_node.yaml``.
"""

from gen3d_ros.ros.launch_description import node_launch_description


def generate_launch_description():
    return node_launch_description("action_node")
