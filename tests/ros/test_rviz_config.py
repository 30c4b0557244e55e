"""config/gen3d.rviz shows what the nodes publish, on the topics of config/gen3d.yaml."""

from __future__ import annotations

import yaml

from gen3d_ros.config import load_node_params
from ros_harness import REPO


def displays(tree: list) -> list[dict]:
    out = []
    for display in tree:
        out.append(display)
        out += displays(display.get("Displays", []))
    return out


def topic_of(display: dict) -> str | None:
    topic = display.get("Topic")
    return topic.get("Value") if isinstance(topic, dict) else topic


def published_topic(node: str, logical: str) -> str:
    """Where ``node`` (at the root namespace, with config/gen3d.yaml) publishes or subscribes ``logical``: the
    topic parameter of the file, resolved as rclpy resolves it."""
    from gen3d_ros.pipeline.registry import resolve_topic, topic_param_name

    params = load_node_params(REPO / "config" / "gen3d.yaml", node)
    return resolve_topic(params[topic_param_name(logical)], node)


def test_rviz_config_shows_input_mesh_voxels_and_robot_estimate_in_the_lidar_frame():
    from gen3d_ros.pipeline.registry import node_entry

    config = yaml.safe_load((REPO / "config" / "gen3d.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "lidar"
    shown = {(d["Class"], topic_of(d)) for d in displays(manager["Displays"])}
    cloud_topic = published_topic("completion_node", "cloud")
    assert ("rviz_default_plugins/PointCloud2", cloud_topic) in shown
    assert ("rviz_default_plugins/Marker", published_topic("completion_node", "mesh_marker")) in shown
    assert ("rviz_default_plugins/PointCloud2", published_topic("completion_node", "completed_voxels")) in shown
    assert ("rviz_default_plugins/PointCloud2", published_topic("completion_node", "coarse_voxels")) in shown
    # the Pose display listens where robot_pose_node publishes its camera pose, a type the display can show
    pose_stage = node_entry("robot_pose_node").stage_class()
    assert pose_stage.outputs["camera_pose"] == "geometry_msgs/msg/PoseStamped"
    assert ("rviz_default_plugins/Pose", published_topic("robot_pose_node", "camera_pose")) in shown

    groups = {d["Name"]: d for d in displays(manager["Displays"]) if d["Class"] == "rviz_common/Group"}
    robot = groups["Robot estimate"]
    joints = published_topic("robot_pose_node", "joint_states")
    assert any(joints in d["Name"] for d in robot["Displays"])
    # the input subscription must accept best-effort (sensor data) publishers
    cloud = next(d for d in displays(manager["Displays"]) if topic_of(d) == cloud_topic)
    assert cloud["Topic"]["Reliability Policy"] == "Best Effort"
    # the mesh Marker is latched (transient local): rviz must ask for it to get the last mesh when started later
    marker = next(d for d in displays(manager["Displays"]) if d["Class"] == "rviz_default_plugins/Marker")
    assert "mesh_marker" in node_entry("completion_node").latched
    assert marker["Topic"]["Durability Policy"] == "Transient Local"
