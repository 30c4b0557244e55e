"""Stages: message in -> processor -> messages out. Shared by the rclpy nodes and bag mode; no rclpy here."""
