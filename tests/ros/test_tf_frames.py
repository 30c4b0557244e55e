"""TF in the completion node: outputs transformed into ``target_frame`` through a chain read from /tf + /tf_static
(interpolated at the sweep's stamp), ``base_frame`` looked up for the processor, and a sweep whose transform never
comes dropped after ``transform_timeout`` and counted in /diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from ros_harness import TEST_FRAME, make_cloud, plane_and_box, spin_until, stamp_ns_of

pytestmark = [pytest.mark.ros]

T0_NS = 1_700_000_000 * 10**9


def transform_msg(parent: str, child: str, stamp_ns: int, xyz) -> object:
    from geometry_msgs.msg import TransformStamped

    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    t.header.stamp.sec, t.header.stamp.nanosec = stamp_ns // 10**9, stamp_ns % 10**9
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = map(float, xyz)
    t.transform.rotation.w = 1.0
    return t


def test_message_header_reads_stamp_and_frame_from_cdr_bytes(ros) -> None:
    from rclpy.serialization import serialize_message

    from gen3d_ros.ros.tf_buffer import message_header

    cloud = make_cloud(plane_and_box(n_plane=10, n_box=10), stamp_ns=T0_NS + 123, frame_id="velodyne_top")
    assert message_header(serialize_message(cloud)) == (T0_NS + 123, "velodyne_top") == message_header(cloud)
    with pytest.raises(ValueError):
        message_header(b"\x00\x01\x00\x00")


def test_outputs_in_target_frame_through_tf_and_a_sweep_without_transform_is_dropped(ros, executor) -> None:
    rclpy, context = ros
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from tf2_msgs.msg import TFMessage

    from gen3d_ros.io.pointcloud2 import pointcloud2_to_arrays
    from gen3d_ros.ros.stage_node import create_stage_node

    host = create_stage_node("completion_node", context=context, cli_args=[
        "--ros-args", "-p", "method:=classical-poisson", "-p", "poisson_depth:=6", "-p", "worker:=process",
        "-p", "base_frame:=base_link", "-p", "target_frame:=map", "-p", "transform_timeout:=0.5"])
    executor.add_node(host)
    assert host.tf is not None and host.tf.backend in ("gen3d", "tf2_ros")
    node = rclpy.create_node("tf_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    voxels: list = []
    node.create_subscription(PointCloud2, "/completion_node/voxels", voxels.append, reliable)
    tf_pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    static_pub = node.create_publisher(TFMessage, "/tf_static", latched)
    cloud_pub = node.create_publisher(PointCloud2, "/points", reliable)
    assert spin_until(executor, lambda: host._stage_process.has_stage and cloud_pub.get_subscription_count() > 0
                      and tf_pub.get_subscription_count() > 0, 60.0)
    # lidar 1.5 m above base_link; base_link drives from x = 10 m to 12 m in map within 0.2 s around T0
    static_pub.publish(TFMessage(transforms=[transform_msg("base_link", TEST_FRAME, 0, (0.0, 0.0, 1.5))]))
    tf_pub.publish(TFMessage(transforms=[transform_msg("map", "base_link", T0_NS - 100_000_000, (10.0, 0.0, 0.0)),
                                         transform_msg("map", "base_link", T0_NS + 100_000_000, (12.0, 0.0, 0.0))]))
    spin_until(executor, lambda: False, 0.3)  # let the transforms arrive

    points = plane_and_box()
    cloud_pub.publish(make_cloud(points, stamp_ns=T0_NS))
    assert spin_until(executor, lambda: voxels, 60.0), host.diagnostic_status().message
    msg = voxels[0]
    assert msg.header.frame_id == "map" and stamp_ns_of(msg) == T0_NS
    centres = pointcloud2_to_arrays(msg).points
    # the sweep's points moved by the interpolated chain: + (11, 0, 1.5); the voxel centres follow within a voxel
    shift = centres.mean(0) - points.mean(0)
    np.testing.assert_allclose(shift, [11.0, 0.0, 1.5], atol=0.3)
    assert host.tf_dropped == 0

    cloud_pub.publish(make_cloud(points, stamp_ns=T0_NS + 5 * 10**9))  # TF ended 4.9 s earlier: never served
    assert spin_until(executor, lambda: host.tf_dropped == 1, 10.0)
    spin_until(executor, lambda: False, 0.5)
    assert len(voxels) == 1
    status = host.diagnostic_status()
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == b"\x01" and "dropped 1 sweep(s) without TF" in status.message  # WARN
    assert values["tf_dropped"] == "1" and "target_frame map" in values["tf"]
    assert "no transform" in values["last_error"] and "map" in values["last_error"]
