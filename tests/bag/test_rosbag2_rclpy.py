"""Bags written with rosbags are what real ROS 2 (rclpy/rcl typesupport) expects: same type hashes, same CDR."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest

from test_rosbag2_io import three_topic_messages
from gen3d_ros.demo import pose_to_tf
from gen3d_ros.io.messages import rosbags_factory
from gen3d_ros.io.rosbag2 import BagReader, read_messages, write_bag

pytestmark = pytest.mark.ros
rclpy = pytest.importorskip("rclpy")


def rclpy_class(msgtype: str) -> type | None:
    """The generated rclpy class, or None where that message package is not installed (tf2_msgs on pip)."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except ImportError:
        return None


REQUIRED = ("sensor_msgs/msg/PointCloud2", "visualization_msgs/msg/Marker", "gen3d_ros/msg/CompletedMesh")


@pytest.fixture(scope="module", autouse=True)
def need_messages() -> None:
    missing = [t for t in REQUIRED if rclpy_class(t) is None]
    if missing:
        pytest.skip(f"rclpy message classes missing: {missing} (build gen3d_ros/msg: scripts/build_interfaces.sh)")


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = rosbags_factory()
    messages = three_topic_messages(1) + [("/tf", pose_to_tf(np.eye(4), 5, f), 5)]
    return write_bag(tmp_path_factory.mktemp("rclpy") / "bag", messages)


def test_type_hashes_in_the_bag_equal_those_rcl_computes_for_publishers(bag: Path) -> None:
    from rclpy.context import Context

    with BagReader(bag) as reader:
        topics = dict(reader.topics)
    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ.get("GEN3D_TEST_DOMAIN_ID", "142")) % 232)
    try:
        node = rclpy.create_node("gen3d_hash_probe", context=context, start_parameter_services=False,
                                 enable_rosout=False)
        checked = []
        for topic, info in topics.items():
            cls = rclpy_class(info.msgtype)
            if cls is None:
                continue
            node.create_publisher(cls, f"/probe{topic}", 1)
            (endpoint,) = node.get_publishers_info_by_topic(f"/probe{topic}")
            assert str(endpoint.topic_type_hash) == info.digest, info.msgtype
            checked.append(info.msgtype)
        node.destroy_node()
        assert set(REQUIRED) <= set(checked)
    finally:
        rclpy.shutdown(context=context)


def test_messages_in_the_bag_deserialise_with_rclpy(bag: Path) -> None:
    from rclpy.serialization import deserialize_message

    for m in read_messages(bag):
        cls = rclpy_class(m.msgtype)
        if cls is None:
            continue
        msg = deserialize_message(m.raw, cls)
        if m.topic == "/tf":
            assert msg.transforms[0].child_frame_id == "lidar" and msg.transforms[0].transform.rotation.w == 1.0
            continue
        assert msg.header.frame_id == m.msg.header.frame_id and msg.header.stamp.sec == m.msg.header.stamp.sec
        if m.msgtype == "sensor_msgs/msg/PointCloud2":
            assert bytes(msg.data) == bytes(m.msg.data) and msg.point_step == m.msg.point_step
        elif m.msgtype == "gen3d_ros/msg/CompletedMesh":
            assert msg.model_id == "test-model" and len(msg.mesh.triangles) == len(m.msg.mesh.triangles)
        else:
            assert len(msg.points) == len(m.msg.points) and msg.type == 11
