"""The completion node alone: LiDAR ``PointCloud2`` -> completed mesh.

    ros2 launch gen3d_ros completion.launch.py                             # config/completion_node.yaml
    ros2 launch gen3d_ros completion.launch.py params_file:=/path/to/my.yaml rviz:=true
    ros2 launch gen3d_ros completion.launch.py namespace:=car1 use_sim_time:=true   # listens on /car1/points

Topics are parameters (``cloud_topic`` …, see the params file), relative to ``namespace``. Without ``ros2 launch``:
``python -m gen3d_ros.ros.completion_node --ros-args --params-file config/completion_node.yaml``.
"""

from gen3d_ros.ros.launch_description import node_launch_description


def generate_launch_description():
    return node_launch_description("completion_node")
