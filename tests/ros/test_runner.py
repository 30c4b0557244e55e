"""``gen3d run`` (``python -m gen3d_ros.ros.runner``): the nodes of a params YAML in one process."""

from __future__ import annotations

import signal
import time

import pytest

from ros_harness import REPO, make_cloud, plane_and_box, spin_until, stamp_ns_of

pytestmark = [pytest.mark.ros]


def test_runner_starts_the_nodes_of_the_params_file_and_stops_cleanly_on_sigterm(ros, executor, children):
    rclpy, context = ros
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from gen3d_ros.msg import CompletedMesh

    runner = children("gen3d_run", ["-m", "gen3d_ros.ros.runner", "--params-file", str(REPO / "config/gen3d.yaml"),
                                    "--ros-args", "-p", "completion_node:poisson_depth:=6",
                                    "-p", "completion_node:input_qos:=reliable"])
    node = rclpy.create_node("runner_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(PointCloud2, "/points", reliable)
    meshes: list = []
    node.create_subscription(CompletedMesh, "/completion_node/mesh", meshes.append, reliable)
    stamp = 1_234_000_000_005
    cloud = make_cloud(plane_and_box(seed=1), stamp_ns=stamp)
    deadline = time.monotonic() + 30.0
    while not meshes:
        assert time.monotonic() < deadline, runner.output()
        if pub.get_subscription_count():
            pub.publish(cloud)
        spin_until(executor, lambda: bool(meshes), 1.0, alive=[runner])
    assert stamp_ns_of(meshes[0]) == stamp
    assert runner.stop(signal.SIGTERM) == 0, runner.output()
    assert "Traceback" not in runner.stderr(), runner.output()
    assert "running ['completion_node', 'robot_pose_node', 'action_node']" in runner.stderr()


def test_default_params_file_is_the_checkout_config_without_an_ament_index(monkeypatch):
    from gen3d_ros.ros.params import default_params_file

    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert default_params_file("gen3d.yaml") == REPO / "config" / "gen3d.yaml"
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        default_params_file("absent.yaml")


def test_runner_refuses_unknown_nodes_and_missing_files_with_code_2(tmp_path, capsys):
    from gen3d_ros.ros.runner import main, nodes_in_params_file

    assert main(["--params-file", str(tmp_path / "absent.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--params-file", str(REPO / "config/gen3d.yaml"), "--nodes", "teleport_node"]) == 2
    assert "unknown node 'teleport_node'" in capsys.readouterr().err
    empty = tmp_path / "other.yaml"
    empty.write_text("some_other_node:\n  ros__parameters: {a: 1}\n")
    assert main(["--params-file", str(empty)]) == 2
    assert "no section" in capsys.readouterr().err
    wildcard = tmp_path / "all.yaml"
    wildcard.write_text("/**:\n  ros__parameters: {voxel_size: 0.3}\n")
    everything = ["completion_node", "robot_pose_node", "action_node"]
    assert nodes_in_params_file(wildcard) == everything
    assert nodes_in_params_file(REPO / "config/gen3d.yaml") == everything
