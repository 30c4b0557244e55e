"""Runtime changes that name files are validated before they are accepted, with both workers: a missing or
wrong-kind checkpoint (or URDF) is rejected with a reason naming the path and the parameter keeps its value; a
good change still works. With the process worker, a change that passes the checks but fails to build in the stage
process is reported (/diagnostics ERROR with the reason) and the parameters are set back."""

from __future__ import annotations

import pytest

from conftest import require_rclpy  # noqa: F401 - the ros fixture skips without rclpy
from ros_harness import REPO, make_cloud, plane_and_box, spin_until, stamp_ns_of

pytestmark = [pytest.mark.ros]

MODELS = REPO / "gen3d_ros" / "models"


def make_node(ros, name: str, worker: str, extra: list[str] = ()):
    _, context = ros
    from gen3d_ros.ros.stage_node import create_stage_node

    return create_stage_node(name, context=context, cli_args=["--ros-args", "-p", f"worker:={worker}", *extra])


def set_params(node, **values):
    from rclpy.parameter import Parameter

    return node.set_parameters_atomically([Parameter(k, value=v) for k, v in values.items()])


def assert_rejected(node, reason_part: str, **values) -> None:
    before = {name: node.get_parameter(name).value for name in values}
    config = node.config
    result = set_params(node, **values)
    assert not result.successful, f"{values} was accepted"
    assert reason_part in result.reason, result.reason
    assert {name: node.get_parameter(name).value for name in values} == before
    assert node.config is config


@pytest.mark.parametrize("worker", ["thread", "process"])
def test_missing_or_wrong_checkpoint_is_rejected_naming_the_path(ros, executor, worker, tmp_path):
    node = make_node(ros, "completion_node", worker)
    executor.add_node(node)
    missing = tmp_path / "no_such_model.pt"
    assert_rejected(node, str(missing), method="gca", checkpoint=str(missing))
    assert_rejected(node, "is not a GCA checkpoint", method="gca", checkpoint=str(MODELS / "hgca_demo.pt"))
    assert_rejected(node, "not a torch.save zip archive", method="gca", checkpoint=str(REPO / "README.md"))
    assert_rejected(node, "coarse_checkpoint", method="hgca", coarse_checkpoint=str(missing))
    assert node.get_parameter("method").value == "classical-poisson"

    # a good change still works: the packaged GCA model, and it is what meshes the next cloud
    assert set_params(node, method="gca").successful
    if worker == "process":
        assert spin_until(executor, lambda: node._stage_process.config.method == "gca", 60.0), \
            node.diagnostic_status().message
    else:
        assert node.stage.processor.config.method == "gca"
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from gen3d_ros.msg import CompletedMesh

    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    meshes: list = []
    node.create_subscription(CompletedMesh, "/completion_node/mesh", meshes.append, reliable)
    pub = node.create_publisher(PointCloud2, "/points", reliable)
    cloud = make_cloud(plane_and_box(seed=1), stamp_ns=123_000_000_000)
    assert spin_until(executor, lambda: pub.get_subscription_count() > 0, 10.0)
    pub.publish(cloud)
    assert spin_until(executor, lambda: any(stamp_ns_of(m) == 123_000_000_000 for m in meshes), 60.0), \
        node.diagnostic_status().message
    assert meshes[-1].model_id.startswith("gca"), meshes[-1].model_id
    assert node._config_failures == 0


def test_accepted_change_that_fails_in_the_stage_process_is_reported_and_reverted(ros, executor, tmp_path):
    import torch

    from gen3d_ros.checkpoints import load_checkpoint_file
    from gen3d_ros.ros.diagnostics import ERROR

    # The packaged hGCA bundle with one weight of the wrong shape: the right kind of file with every entry its
    # loaders read (passes the check), but the fine model cannot take its weights (fails to build).
    parts = load_checkpoint_file(MODELS / "hgca_demo.pt")
    weights = parts["fine"]["state_dict"]
    weights[next(iter(weights))] = torch.zeros(1)
    bundle = tmp_path / "misshapen_hgca.pt"
    torch.save(parts, bundle)
    node = make_node(ros, "completion_node", "process", ["-p", "voxel_size:=0.25"])
    executor.add_node(node)
    assert spin_until(executor, lambda: node._stage_process.has_stage, 60.0), node.diagnostic_status().message
    running = node.config

    result = set_params(node, method="hgca", checkpoint=str(bundle))
    assert result.successful, result.reason
    assert spin_until(executor, lambda: node.get_parameter("method").value == "classical-poisson", 60.0), \
        node.diagnostic_status().message
    assert node.get_parameter("checkpoint").value == ""
    assert node.config is running and node._stage_process.config is running
    status = node.diagnostic_status()
    assert status.level == bytes([ERROR]), status.message
    assert "failed to build in the stage process" in status.message and "hgca" in status.message
    assert "CheckpointError" in status.message, status.message  # the loader's reason, whatever its wording
    assert "set back" in status.message and "previous configuration keeps running" in status.message
    assert {kv.key: kv.value for kv in status.values}["config_failures"] == "1"

    assert set_params(node, voxel_size=0.3).successful  # and the node still takes good changes
    assert spin_until(executor, lambda: node._stage_process.config.voxel_size == 0.3, 30.0)
    assert node.get_parameter("voxel_size").value == 0.3 and node._config_failures == 1


@pytest.mark.parametrize("node_name", ["robot_pose_node", "action_node"])
def test_robot_nodes_reject_missing_urdf_and_checkpoint_files(ros, executor, node_name, tmp_path):
    node = make_node(ros, node_name, "process")
    executor.add_node(node)
    missing = tmp_path / "arm.urdf"
    assert_rejected(node, str(missing), urdf=str(missing))
    assert_rejected(node, str(tmp_path / "m.pt"), checkpoint=str(tmp_path / "m.pt"))
    assert_rejected(node, "is not a Dr. Robot checkpoint", checkpoint=str(MODELS / "gca_demo.pt"))
    assert set_params(node, urdf="test_arm", checkpoint=str(MODELS / "drrobot_gen3d_test_arm.pt")).successful
