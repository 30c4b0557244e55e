"""The action node alone: a goal (image or keypoints) + ``JointState`` -> ``JointTrajectory``.

    ros2 launch gen3d_ros action.launch.py                             # config/action_node.yaml
    ros2 launch gen3d_ros action.launch.py params_file:=/path/to/my.yaml rviz:=true

Topics are parameters (``goal_image_topic``, ``joint_states_topic`` …, see the params file). Without ``ros2 launch``:
``python -m gen3d_ros.ros.action_node --ros-args --params-file config/action_node.yaml``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "gen3d_ros"
NODE = "action_node"
PARAMS_FILE = "action_node.yaml"


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", PARAMS_FILE]),
                              description=f"ROS 2 params YAML with a '{NODE}' section"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 with config/gen3d.rviz"),
        Node(package=PACKAGE, executable=NODE, name=NODE, parameters=[LaunchConfiguration("params_file")],
             output="screen", emulate_tty=True,
             arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")]),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", PathJoinSubstitution([share, "config", "gen3d.rviz"])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
