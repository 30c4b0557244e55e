"""Conversions at the edge: ROS messages and files <-> numpy. Never imports rclpy."""
