"""completion_node's services over real rclpy: ~/save_mesh (PLY / GLB read back equal to the published mesh; no
relative path, no overwrite without the flag, never a file gen3d_ros did not write), ~/clear_region (the kept
mesh and voxels lose exactly what lies inside the box, and are published again), ~/reset (the kept result is
gone)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_rclpy  # noqa: F401 - the ros fixture skips without rclpy
from ros_harness import make_cloud, plane_and_box, spin_until

pytestmark = [pytest.mark.ros]


def call(executor, client, request, timeout: float = 60.0):
    assert client.wait_for_service(timeout_sec=10.0), f"{client.srv_name} not available"
    future = client.call_async(request)
    assert spin_until(executor, future.done, timeout), f"{client.srv_name}: no answer in {timeout} s"
    return future.result()


def mesh_arrays(msg):
    from gen3d_ros.io.mesh_msgs import shape_mesh_to_arrays

    return shape_mesh_to_arrays(msg.mesh)


@pytest.fixture
def completed(ros, executor, request):
    """(node, client node, received dict): a completion node (worker per the param) that completed one sweep."""
    _, context = ros
    from sensor_msgs.msg import PointCloud2

    from gen3d_ros.msg import CompletedMesh
    from gen3d_ros.ros.hosts import create_node
    from gen3d_ros.ros.stage_node import output_qos_profile

    worker = getattr(request, "param", "thread")
    node = create_node("completion_node", context=context,
                       cli_args=["--ros-args", "-p", f"worker:={worker}", "-p", "voxel_size:=0.25"])
    executor.add_node(node)
    client = rclpy_node(context, "services_test_client")
    executor.add_node(client)
    received: dict[str, list] = {"mesh": [], "voxels": []}
    client.create_subscription(CompletedMesh, node.output_topics["completed_mesh"], received["mesh"].append,
                               output_qos_profile(False))
    client.create_subscription(PointCloud2, node.output_topics["completed_voxels"], received["voxels"].append,
                               output_qos_profile(False))
    pub = client.create_publisher(PointCloud2, node.input_topics["cloud"], output_qos_profile(False))
    assert spin_until(executor, lambda: pub.get_subscription_count() > 0, 20.0)
    pub.publish(make_cloud(plane_and_box(), stamp_ns=1_000_000_000))
    assert spin_until(executor, lambda: received["mesh"] and received["voxels"], 120.0), \
        f"no mesh: {node.stats.as_dict()}"
    return node, client, received


def rclpy_node(context, name):
    from rclpy.node import Node

    return Node(name, context=context)


@pytest.mark.parametrize("completed", ["thread", "process"], indirect=True)
def test_save_mesh_writes_the_published_mesh_as_ply_and_glb(completed, executor, tmp_path):
    from plyfile import PlyData

    from gen3d_ros.io.gltf import read_glb
    from gen3d_ros.srv import SaveMesh

    node, client, received = completed
    vertices, faces = mesh_arrays(received["mesh"][-1])
    assert len(faces) > 100
    save = client.create_client(SaveMesh, f"{node.get_fully_qualified_name()}/save_mesh")

    ply = tmp_path / "scene.ply"
    answer = call(executor, save, SaveMesh.Request(path=str(ply)))
    assert answer.success, answer.message
    assert (answer.vertices, answer.triangles) == (len(vertices), len(faces))
    data = PlyData.read(str(ply))
    np.testing.assert_allclose(np.c_[data["vertex"]["x"], data["vertex"]["y"], data["vertex"]["z"]],
                               vertices, atol=1e-6)
    np.testing.assert_array_equal(np.stack(data["face"]["vertex_indices"]), faces)

    glb = tmp_path / "scene.glb"
    answer = call(executor, save, SaveMesh.Request(path=str(glb)))
    assert answer.success, answer.message
    v, f, colors = read_glb(glb)
    np.testing.assert_allclose(v, vertices, atol=1e-6)
    np.testing.assert_array_equal(f, faces)
    assert colors is not None and colors.shape == (len(vertices), 4)  # the nodes' height ramp

    again = call(executor, save, SaveMesh.Request(path=str(ply)))
    assert not again.success and "exists" in again.message
    assert call(executor, save, SaveMesh.Request(path=str(ply), overwrite=True)).success
    foreign = tmp_path / "mine.ply"
    foreign.write_text("ply\nformat ascii 1.0\nend_header\n")
    answer = call(executor, save, SaveMesh.Request(path=str(foreign), overwrite=True))
    assert not answer.success and foreign.read_text().startswith("ply\nformat ascii")
    answer = call(executor, save, SaveMesh.Request(path="relative.ply"))
    assert not answer.success and "absolute" in answer.message
    answer = call(executor, save, SaveMesh.Request(path=str(tmp_path / "scene.stl")))
    assert not answer.success and ".glb" in answer.message


def test_clear_region_removes_what_is_inside_and_republishes(completed, executor):
    from gen3d_ros.io.pointcloud2 import pointcloud2_to_arrays
    from gen3d_ros.pipeline.kept_result import inside_box
    from gen3d_ros.srv import ClearRegion

    node, client, received = completed
    vertices, faces = mesh_arrays(received["mesh"][-1])
    voxels = pointcloud2_to_arrays(received["voxels"][-1]).points
    lo, hi = np.array([1.5, -1.5, -1.2]), np.array([4.5, 1.5, 0.5])  # the box standing 3 m ahead, not the ground
    expect_tri = int(inside_box(vertices[faces].mean(axis=1), lo, hi).sum())
    expect_vox = int(inside_box(voxels, lo, hi).sum())
    assert expect_tri > 10 and expect_vox > 5

    clear = client.create_client(ClearRegion, f"{node.get_fully_qualified_name()}/clear_region")
    request = ClearRegion.Request(frame_id="")
    request.min.x, request.min.y, request.min.z = lo.tolist()
    request.max.x, request.max.y, request.max.z = hi.tolist()
    n_mesh, n_vox = len(received["mesh"]), len(received["voxels"])
    answer = call(executor, clear, request)
    assert answer.success, answer.message
    assert (answer.removed_triangles, answer.removed_voxels) == (expect_tri, expect_vox)
    assert answer.remaining_triangles == len(faces) - expect_tri
    assert spin_until(executor, lambda: len(received["mesh"]) > n_mesh and len(received["voxels"]) > n_vox, 10.0)
    v2, f2 = mesh_arrays(received["mesh"][-1])
    assert len(f2) == len(faces) - expect_tri and len(v2) < len(vertices)
    assert not inside_box(v2[f2].mean(axis=1), lo, hi).any()
    assert len(pointcloud2_to_arrays(received["voxels"][-1]).points) == len(voxels) - expect_vox

    request.frame_id = "some_other_frame"
    answer = call(executor, clear, request)
    assert not answer.success and "frame" in answer.message
    request.frame_id, request.min.x = "", 10.0  # min > max
    assert not call(executor, clear, request).success


def test_clear_region_in_another_frame_goes_through_tf(completed, executor):
    """A box in frame 'world', 10 m ahead of the lidar frame (static TF world -> lidar_test), clears what the same
    box in the mesh's frame would."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from gen3d_ros.io.messages import rclpy_factory
    from gen3d_ros.io.transforms import tf_message, transform_stamped
    from gen3d_ros.pipeline.kept_result import inside_box
    from gen3d_ros.srv import ClearRegion

    node, client, received = completed
    vertices, faces = mesh_arrays(received["mesh"][-1])
    lo, hi = np.array([1.5, -1.5, -1.2]), np.array([4.5, 1.5, 0.5])
    expect = int(inside_box(vertices[faces].mean(axis=1), lo, hi).sum())
    assert expect > 10
    factory = rclpy_factory()
    T_world_lidar = np.eye(4)
    T_world_lidar[:3, 3] = [10.0, 0.0, 0.0]
    static = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    tf_pub = client.create_publisher(TFMessage, "/tf_static", static)
    frame = received["mesh"][-1].header.frame_id
    tf_pub.publish(tf_message([transform_stamped(T_world_lidar, factory, parent_frame="world", child_frame=frame,
                                                 stamp=factory.time(sec=0))], factory))
    clear = client.create_client(ClearRegion, f"{node.get_fully_qualified_name()}/clear_region")
    request = ClearRegion.Request(frame_id="world")
    request.min.x, request.min.y, request.min.z = (lo + [10.0, 0.0, 0.0]).tolist()
    request.max.x, request.max.y, request.max.z = (hi + [10.0, 0.0, 0.0]).tolist()
    answer = None
    for _ in range(50):  # until the static transform has reached the node's buffer
        answer = call(executor, clear, request)
        if answer.success or "no transform" not in answer.message:
            break
        spin_until(executor, lambda: False, 0.1)
    assert answer.success, answer.message
    assert answer.removed_triangles == expect


def test_reset_forgets_the_kept_result(completed, executor, tmp_path):
    from std_srvs.srv import Trigger

    from gen3d_ros.srv import SaveMesh

    node, client, _ = completed
    name = node.get_fully_qualified_name()
    from rcl_interfaces.srv import GetParameters

    # rclpy's own parameter services still answer next to ours
    got = call(executor, client.create_client(GetParameters, f"{name}/get_parameters"),
               GetParameters.Request(names=["voxel_size"]))
    assert [v.double_value for v in got.values] == [0.25]
    save = client.create_client(SaveMesh, f"{name}/save_mesh")
    assert call(executor, save, SaveMesh.Request(path=str(tmp_path / "a.ply"))).success
    stage_before = node.stage
    answer = call(executor, client.create_client(Trigger, f"{name}/reset"), Trigger.Request())
    assert answer.success, answer.message
    assert node.stage is not stage_before  # rebuilt: no state of earlier sweeps
    answer = call(executor, save, SaveMesh.Request(path=str(tmp_path / "b.ply")))
    assert not answer.success and "no completed mesh" in answer.message
    assert not (tmp_path / "b.ply").exists()
