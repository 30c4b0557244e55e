"""Every gen3d_ros node, configured by one params file.

    ros2 launch gen3d_ros gen3d.launch.py                                  # config/gen3d.yaml of the package
    ros2 launch gen3d_ros gen3d.launch.py params_file:=/path/to/my.yaml rviz:=true log_level:=debug

Without ``ros2 launch`` (pip machines): ``gen3d run --params-file config/gen3d.yaml`` starts the same nodes.
"""

from gen3d_ros.ros.launch_description import launch_description

PARAMS_FILE = "gen3d.yaml"
# One line per node: the executable (lib/gen3d_ros/<name>), the node name and its params section are the same.
NODES = [
    "completion_node",
    "robot_pose_node",
    "action_node",
]


def generate_launch_description():
    return launch_description(NODES, PARAMS_FILE, "ROS 2 params YAML with a section per node")
