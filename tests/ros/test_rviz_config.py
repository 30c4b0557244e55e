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


def test_rviz_config_shows_input_mesh_voxels_and_robot_estimate_in_the_lidar_frame():
    config = yaml.safe_load((REPO / "config" / "gen3d.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "lidar"
    shown = {(d["Class"], topic_of(d)) for d in displays(manager["Displays"])}
    params = load_node_params(REPO / "config" / "gen3d.yaml", "completion_node")
    assert ("rviz_default_plugins/PointCloud2", params["cloud_topic"]) in shown
    assert ("rviz_default_plugins/Marker", params["mesh_marker_topic"]) in shown
    assert ("rviz_default_plugins/PointCloud2", params["completed_voxels_topic"]) in shown
    assert ("rviz_default_plugins/Pose", "/gen3d/robot/camera_pose") in shown

    groups = {d["Name"]: d for d in displays(manager["Displays"]) if d["Class"] == "rviz_common/Group"}
    robot = groups["Robot estimate"]
    assert any("/gen3d/robot/joint_states" in d["Name"] for d in robot["Displays"])
    # the input subscription must accept best-effort (sensor data) publishers
    cloud = next(d for d in displays(manager["Displays"]) if topic_of(d) == params["cloud_topic"])
    assert cloud["Topic"]["Reliability Policy"] == "Best Effort"
