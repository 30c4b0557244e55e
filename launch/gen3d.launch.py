"""Every gen3d_ros node (those of gen3d_ros.pipeline.registry.STAGES), configured by one params file.

    ros2 launch gen3d_ros gen3d.launch.py                                  # config/gen3d.yaml of the package
    ros2 launch gen3d_ros gen3d.launch.py params_file:=/path/to/my.yaml rviz:=true log_level:=debug
    ros2 launch gen3d_ros gen3d.launch.py namespace:=car1 use_sim_time:=true   # /car1/points ...

Without ``ros2 launch`` (pip machines): ``gen3d run --params-file config/gen3d.yaml`` starts the same nodes.
"""

from gen3d_ros.ros.launch_description import all_nodes_launch_description


def generate_launch_description():
    return all_nodes_launch_description()
