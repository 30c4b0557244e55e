"""The LaunchDescription that every ``launch/*.launch.py`` file returns: gen3d_ros nodes from one params file.

Each node runs the generic ``lib/gen3d_ros/stage_node`` executable (:mod:`gen3d_ros.ros.node_main`) with its node
name as first argument and as ROS node name (= the params file's section), the ``params_file`` and ``log_level``
launch arguments, ``namespace`` (every node under it: ``namespace:=car1`` puts the topics at ``/car1/points``,
``/car1/completion_node/mesh`` …; the params files' ``/**/<node>`` sections still apply) and ``use_sim_time``
(``true`` when replaying a bag with ``--clock``), ``lifecycle`` (``true``: managed nodes brought to active at
start, ``managed``: left unconfigured for a lifecycle manager; :mod:`gen3d_ros.ros.lifecycle`), and an optional rviz2 (``rviz:=true``, ``config/gen3d.rviz``).
The nodes are those of
:data:`gen3d_ros.pipeline.registry.STAGES`, so a new stage needs no launch or script change.
``launch`` / ``launch_ros`` are imported when a description is built, so importing this module needs neither.
"""

from __future__ import annotations

from typing import Sequence

from gen3d_ros.pipeline.registry import node_names

PACKAGE = "gen3d_ros"
#: the executable (scripts/ros/stage_node, installed to lib/gen3d_ros) that runs any node: ``stage_node NODE``
NODE_EXECUTABLE = "stage_node"
ALL_NODES_PARAMS_FILE = "gen3d.yaml"


def all_nodes_launch_description():
    """The ``LaunchDescription`` of every node of the registry, ``params_file`` defaulting to ``config/gen3d.yaml``
    (a section per node)."""
    return launch_description(node_names(), ALL_NODES_PARAMS_FILE, "ROS 2 params YAML with a section per node")


def node_launch_description(node: str):
    """The ``LaunchDescription`` of one node, ``params_file`` defaulting to the package's ``config/<node>.yaml``."""
    return launch_description([node], f"{node}.yaml", f"ROS 2 params YAML with a '{node}' section")


def launch_description(nodes: Sequence[str], params_file: str, params_description: str):
    """The ``LaunchDescription`` of the gen3d_ros ``nodes`` (node name = params section), in order.

    ``params_file``: default of the ``params_file`` argument, a file in the package's ``config/``;
    ``params_description``: that argument's help text.
    """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    share = FindPackageShare(PACKAGE)
    params = LaunchConfiguration("params_file")
    log_level = LaunchConfiguration("log_level")
    namespace = LaunchConfiguration("namespace")
    sim_time = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", params_file]),
                              description=params_description),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 with config/gen3d.rviz"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the nodes and their relative topics, e.g. car1"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (a bag played with --clock) instead of the system clock"),
        DeclareLaunchArgument("lifecycle", default_value="false", choices=["false", "true", "managed"],
                              description="false: plain nodes; true: managed (lifecycle) nodes brought to active at "
                                          "start; managed: managed nodes left unconfigured for a lifecycle manager"),
        *(Node(package=PACKAGE, executable=NODE_EXECUTABLE, name=name, namespace=namespace,
               parameters=[params, sim_time], output="screen", emulate_tty=True,
               arguments=[name, "--lifecycle", LaunchConfiguration("lifecycle"), "--ros-args", "--log-level",
                          log_level])
          for name in nodes),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen", parameters=[sim_time],
             arguments=["-d", PathJoinSubstitution([share, "config", "gen3d.rviz"])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
