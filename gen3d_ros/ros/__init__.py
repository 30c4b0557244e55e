"""The ROS 2 layer: the only place that imports rclpy. Thin nodes over the stages of ``gen3d_ros.pipeline``, one
generic host for every entry of :data:`gen3d_ros.pipeline.registry.STAGES`.

- ``stage_node``: ``StageNode``, the generic host (parameters, latest-only worker, diagnostics, shutdown);
- ``node_main``: the process of one node (``stage_node NODE``, ``python -m gen3d_ros.ros.node_main NODE``), log
  bridge, spinning; ``completion_node``, ``robot_pose_node``, ``action_node``: their ``python -m`` entry points;
- ``hosts``: which class hosts each node: ``completion_services.CompletionNode`` (``~/save_mesh``, ``~/reset``,
  ``~/clear_region``), ``action_server.ActionNode`` (``~/plan_trajectory``), else ``StageNode``; ``lifecycle``:
  the managed (lifecycle) variant of any host;
- ``runner``: ``gen3d run``, several nodes from one params YAML in one process (no ``ros2 launch`` needed);
  ``foxglove_bridge``: its ``--foxglove`` live view (:mod:`gen3d_ros.viz.foxglove_live`);
- ``stage_process``: a stage in a child process, serialized messages in and out (``worker: process``);
- ``launch_description``: the LaunchDescription the ``launch/*.launch.py`` files return (imports ``launch`` only
  when called);
- ``params``, ``diagnostics``, ``latest_queue``, ``logs``, ``config_files``: parameters from the config
  dataclasses (nested configs flattened into ``section.field``), diagnostic levels, the latest-only hand-off,
  throttled stage logs, the ``config/*.yaml`` writer. These import rclpy only inside the functions that build
  rclpy messages.

Importing this package does not import rclpy.
"""
