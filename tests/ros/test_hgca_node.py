"""The completion node with ``method: hgca`` over real DDS: a simulated LiDAR sweep in, the coarse voxels first,
then the decoder's mesh (Marker TRIANGLE_LIST + CompletedMesh + completed voxels), stamp and frame kept."""

from __future__ import annotations

import numpy as np
import pytest

from ros_harness import REPO, TEST_FRAME, make_cloud, spin_until, stamp_ns_of

pytestmark = [pytest.mark.ros, pytest.mark.slow]

T0_NS = 1_700_000_000_000_000_000


def simulated_sweep(bundle_path) -> np.ndarray:
    from gen3d_ros.completion.checkpoint import load_bundle
    from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig

    data = load_bundle(bundle_path)["coarse"]["train_config"]["data"]
    ds = CompletionDataset(CompletionDatasetConfig.from_dict({**data, "augment": False, "base_seed": 9_000_000}))
    return ds[0].partial_points


def test_hgca_node_publishes_decoded_mesh_of_a_simulated_sweep(ros, executor, children, tiny_hgca_bundle):
    rclpy, context = ros
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import Marker

    from gen3d_ros.msg import CompletedMesh

    points = simulated_sweep(tiny_hgca_bundle)
    node_proc = children("completion_node", [
        "-m", "gen3d_ros.ros.completion_node", "--ros-args",
        "--params-file", str(REPO / "config" / "completion_node.yaml"),
        "-p", "method:=hgca", "-p", f"checkpoint:={tiny_hgca_bundle}", "-p", "roi_radius:=30.0"])
    node = rclpy.create_node("hgca_node_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    got: dict[str, list] = {"coarse": [], "marker": [], "mesh": [], "voxels": []}
    arrivals: list[tuple[str, int]] = []  # (output, stamp) in arrival order

    def on(name: str):
        return lambda msg: (got[name].append(msg), arrivals.append((name, stamp_ns_of(msg))))

    node.create_subscription(PointCloud2, "/completion_node/coarse_voxels", on("coarse"), reliable)
    node.create_subscription(Marker, "/completion_node/marker", on("marker"), reliable)
    node.create_subscription(CompletedMesh, "/completion_node/mesh", on("mesh"), reliable)
    node.create_subscription(PointCloud2, "/completion_node/voxels", on("voxels"), reliable)
    pub = node.create_publisher(PointCloud2, "/points", reliable)
    sent: list[int] = []

    def publish() -> None:
        stamp = T0_NS + len(sent) * 100_000_000
        pub.publish(make_cloud(points, stamp_ns=stamp))
        sent.append(stamp)

    node.create_timer(1.0, publish)
    done = lambda: all(len(v) >= 1 for v in got.values())  # noqa: E731
    assert spin_until(executor, done, 90.0, alive=[node_proc]), (
        f"outputs missing: { {k: len(v) for k, v in got.items()} }\n{node_proc.output()}")
    marker, mesh = got["marker"][0], got["mesh"][0]
    assert stamp_ns_of(marker) in sent and stamp_ns_of(mesh) in sent
    assert marker.header.frame_id == TEST_FRAME == mesh.header.frame_id
    assert marker.type == Marker.TRIANGLE_LIST and len(marker.points) >= 300 and len(marker.points) % 3 == 0
    assert mesh.model_id.startswith("hgca:") and mesh.steps > 0
    assert mesh.voxel_size == pytest.approx(0.25)  # the tiny hierarchy's fine grid
    assert len(mesh.mesh.triangles) > 100
    assert max(max(t.vertex_indices) for t in mesh.mesh.triangles) < len(mesh.mesh.vertices)
    assert got["voxels"][0].width > len(np.unique(np.floor(points / 0.25), axis=0)) * 0.5
    # the coarse completion arrived before the mesh of the same sweep, and has fewer cells than the fine one
    stamp = stamp_ns_of(mesh)
    assert arrivals.index(("coarse", stamp)) < arrivals.index(("marker", stamp))
    assert arrivals.index(("coarse", stamp)) < arrivals.index(("mesh", stamp))
    coarse = next(c for c in got["coarse"] if stamp_ns_of(c) == stamp)
    assert coarse.header.frame_id == TEST_FRAME and 0 < coarse.width < got["voxels"][0].width
