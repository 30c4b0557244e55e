"""Live views of gen3d data without a ROS install (no rclpy here): :mod:`gen3d_ros.viz.foxglove_live` serves a
Foxglove WebSocket (``gen3d run --foxglove``, ``gen3d bag --serve``)."""
