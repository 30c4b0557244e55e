"""``gen3d_ros/CompletedMesh`` (built from msg/CompletedMesh.msg into the venv) crosses a process boundary
through rclpy + Fast DDS with every field intact."""

from __future__ import annotations

import pytest

from ros_harness import PUBLISHER, completed_mesh_fields, spin_until

pytestmark = [pytest.mark.ros]


def test_completed_mesh_published_by_one_process_arrives_intact_in_another(ros, executor, children):
    rclpy, context = ros
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from gen3d_ros.msg import CompletedMesh

    publisher = children("mesh_publisher", [str(PUBLISHER), "completed_mesh", "--topic", "/test/completed_mesh",
                                            "--rate", "5"])
    node = rclpy.create_node("completed_mesh_test", context=context)
    executor.add_node(node)
    received: list = []
    node.create_subscription(CompletedMesh, "/test/completed_mesh", received.append,
                             QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    assert spin_until(executor, lambda: len(received) >= 2, 30.0, alive=[publisher]), publisher.output()

    expected = completed_mesh_fields()
    for msg in received:
        assert msg.header.frame_id == expected["frame_id"]
        assert msg.header.stamp.sec == 42
        assert [(p.x, p.y, p.z) for p in msg.mesh.vertices] == expected["vertices"]
        assert [tuple(t.vertex_indices) for t in msg.mesh.triangles] == expected["triangles"]
        assert [(c.r, c.g, c.b, c.a) for c in msg.vertex_colors] == expected["colors"]
        assert msg.voxel_size == expected["voxel_size"]  # exactly representable in float32
        assert msg.steps == expected["steps"]
        assert msg.input_points == expected["input_points"]
        assert msg.dropped_points == expected["dropped_points"]
        assert msg.latency_ms == expected["latency_ms"]
        assert msg.model_id == expected["model_id"]
    nanosecs = [m.header.stamp.nanosec for m in received]
    assert nanosecs == sorted(nanosecs) and len(set(nanosecs)) == len(nanosecs)  # distinct messages, in order
