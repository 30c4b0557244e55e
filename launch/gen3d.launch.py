"""Every gen3d_ros node, configured by one params file.

    ros2 launch gen3d_ros gen3d.launch.py                                  # config/gen3d.yaml of the package
    ros2 launch gen3d_ros gen3d.launch.py params_file:=/path/to/my.yaml rviz:=true log_level:=debug

Without ``ros2 launch`` (pip machines): ``gen3d run --params-file config/gen3d.yaml`` starts the same nodes.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "gen3d_ros"
PARAMS_FILE = "gen3d.yaml"
# One line per node: the executable (lib/gen3d_ros/<name>), the node name and its params section are the same.
NODES = [
    "completion_node",
    "robot_pose_node",
    "action_node",
]


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    params_file = LaunchConfiguration("params_file")
    log_level = LaunchConfiguration("log_level")
    nodes = [
        Node(package=PACKAGE, executable=name, name=name, parameters=[params_file], output="screen",
             emulate_tty=True, arguments=["--ros-args", "--log-level", log_level])
        for name in NODES
    ]
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", PARAMS_FILE]),
                              description="ROS 2 params YAML with a section per node"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 with config/gen3d.rviz"),
        *nodes,
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", PathJoinSubstitution([share, "config", "gen3d.rviz"])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
