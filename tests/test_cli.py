"""The ``gen3d`` command line: bag mode end to end in a subprocess, info, and clean errors (exit code 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "bag"))
from bagdata import T0_NS, cloud_msg, write_cloud_bag  # noqa: E402

from gen3d_ros.cli import main  # noqa: E402
from gen3d_ros.io.rosbag2 import read_bag_info, write_bag  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST = ["--set", "voxel_size=0.4", "--set", "poisson_depth=6", "--set", "roi_radius=12.0"]


def gen3d(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``gen3d`` as a user runs it: the console script when installed, else ``python -m gen3d_ros``."""
    script = Path(sys.executable).with_name("gen3d")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "gen3d_ros"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cloud_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "drive"
    write_cloud_bag(path, 2, topic="/velodyne_points")
    return path


def test_gen3d_bag_end_to_end_in_a_subprocess(cloud_bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "completed.mcap"
    result = gen3d("bag", str(cloud_bag), "-o", str(out), "--copy-inputs", "--params",
                   str(REPO / "config" / "completion_node.yaml"), *FAST, "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    assert "processed 2, rejected 0, failed 0" in result.stdout
    assert "using /velodyne_points" in result.stderr  # auto-detected and said so
    topics = read_bag_info(out)["topics"]
    assert {t: v["count"] for t, v in topics.items()} == {
        "/velodyne_points": 2, "/completion_node/mesh": 2, "/completion_node/marker": 2,
        "/completion_node/voxels": 2, "/completion_node/coarse_voxels": 0}  # classical: no coarse stage
    assert json.loads((tmp_path / "r.json").read_text())["stages"]["completion"]["processed"] == 2

    again = gen3d("bag", str(cloud_bag), "-o", str(out), *FAST)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == f"gen3d bag: error: output bag {out} exists; pass --force to replace it"
    assert "Traceback" not in again.stderr


def test_gen3d_info_lists_topics_types_counts_and_duration(cloud_bag: Path) -> None:
    result = gen3d("info", str(cloud_bag))
    assert result.returncode == 0, result.stderr
    assert "/velodyne_points" in result.stdout and "sensor_msgs/msg/PointCloud2" in result.stdout
    assert "storage:   mcap" in result.stdout and "duration:  0.100 s" in result.stdout
    as_json = gen3d("info", str(cloud_bag), "--json")
    assert json.loads(as_json.stdout)["topics"]["/velodyne_points"]["count"] == 2


def test_bag_time_range_and_remap_then_info_shows_size_serialization_rate_and_qos(cloud_bag: Path, tmp_path: Path,
                                                                                   capsys) -> None:
    out = tmp_path / "out"
    assert main(["bag", str(cloud_bag), "-o", str(out), "--start", "0.05", "--end", "1",
                 "--remap", "/points:=/velodyne_points", "--remap", "/completion_node/marker:=/car1/marker",
                 *FAST]) == 0
    topics = read_bag_info(out)["topics"]
    assert topics["/car1/marker"]["count"] == 1 and topics["/completion_node/mesh"]["count"] == 1  # 2nd cloud only
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "size:" in text and "MiB" in text and "serialization: cdr" in text
    marker = next(line for line in text.splitlines() if "/car1/marker" in line)
    assert "reliable transient_local keep_last(1)" in marker
    mesh = next(line for line in text.splitlines() if "/completion_node/mesh " in line)
    assert "reliable volatile keep_last(1)" in mesh
    # target_frame from --set / the params file: the bag has no TF, so every cloud is dropped and said so
    assert main(["bag", str(cloud_bag), "-o", str(tmp_path / "tf"), "--set", "target_frame=odom", *FAST]) == 0
    assert "dropped 2 message(s) without their transform" in capsys.readouterr().out
    for bad, message in [(["--remap", "points=velodyne"], "must look like OLD:=NEW"),
                         (["--start", "5", "--end", "1"], "is empty")]:
        assert main(["bag", str(cloud_bag), "-o", str(tmp_path / "bad"), *bad, *FAST]) == 2
        assert message in capsys.readouterr().err


def test_bag_in_process_with_sqlite3_storage_and_limit(cloud_bag: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["bag", str(cloud_bag), "-o", str(out), "--storage", "sqlite3", "--limit", "1",
                 "--input-topic", "/velodyne_points", *FAST]) == 0
    info = read_bag_info(out)
    assert info["storage"] == "sqlite3" and info["topics"]["/completion_node/mesh"]["count"] == 1
    assert "stopped at --limit" in capsys.readouterr().out
    assert main(["bag", str(cloud_bag), "-o", str(out), "--force", *FAST]) == 0
    assert read_bag_info(out)["storage"] == "mcap"


@pytest.mark.parametrize("args, message", [
    (["info", "/nonexistent/bag"], "gen3d info: error: bag /nonexistent/bag does not exist"),
    (["bag", "/nonexistent/bag", "-o", "{tmp}/o"], "gen3d bag: error: input bag /nonexistent/bag does not exist"),
    (["bag", "{bag}", "-o", "{tmp}/o", "--params", "/nonexistent.yaml"],
     "gen3d bag: error: params file /nonexistent.yaml does not exist"),
    (["bag", "{bag}", "-o", "{tmp}/o", "--set", "voxel_size=-1"],
     "gen3d bag: error: CompletionConfig.voxel_size=-1.0 is outside [0.02, 2.0] m"),
    (["bag", "{bag}", "-o", "{tmp}/o", "--set", "voxel_size"],
     "gen3d bag: error: override 'voxel_size' must look like key=value"),
    (["bag", "{bag}", "-o", "{tmp}/o", "--input-topic", "/nope", "--set", "x=1"],
     "gen3d bag: error: unknown CompletionConfig key(s) ['x']"),
    (["bag", "{bag}", "-o", "{bag}/inside"], "would overwrite the input"),
    (["bag", "{bag}", "-o", "{tmp}/o", "--input-topic", "/points"],
     "has no topic /points for stage 'completion' input 'cloud'; its sensor_msgs/msg/PointCloud2 topics: "
     "['/velodyne_points']"),
    (["bag", "{bag}", "-o", "{tmp}/o.mcap", "--storage", "sqlite3"], "a mcap file, but storage='sqlite3'"),
    (["run", "--params", "/nonexistent.yaml"], "gen3d run: error: params file /nonexistent.yaml does not exist"),
    (["demo", "-o", "{tmp}", "--sweeps", "1"], "exists; pass --force to replace it"),
    (["demo", "-o", "{tmp}/d", "--sweeps", "0"], "gen3d demo: error: --sweeps must be at least 1, got 0"),
])
def test_user_mistakes_exit_2_with_a_one_line_message(args: list[str], message: str, cloud_bag: Path,
                                                      tmp_path: Path, capsys) -> None:
    args = [a.format(tmp=tmp_path, bag=cloud_bag) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1], err
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".*tmp-*"))


def test_missing_input_topic_names_the_topics_of_the_bag(tmp_path: Path, capsys) -> None:
    write_bag(tmp_path / "amb", [("/a", cloud_msg(0, T0_NS), T0_NS), ("/b", cloud_msg(1, T0_NS), T0_NS)])
    assert main(["bag", str(tmp_path / "amb"), "-o", str(tmp_path / "o")]) == 2
    assert "['/a', '/b']; choose one (--input-topic)" in capsys.readouterr().err


def test_usage_errors_from_argparse_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bag"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_help_lists_every_subcommand(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("demo", "bag", "info", "run"):
        assert name in out


def test_run_hands_params_and_nodes_to_the_ros_runner(tmp_path: Path, monkeypatch) -> None:
    import types

    from gen3d_ros.ros.runner import add_run_flags

    calls = []
    fake = types.ModuleType("gen3d_ros.ros.runner")
    fake.add_run_flags = add_run_flags
    fake.run_nodes = lambda params, nodes, ros_args=(), **kw: calls.append(
        (Path(params), list(nodes), list(ros_args), kw)) or 0
    monkeypatch.setitem(sys.modules, "gen3d_ros.ros.runner", fake)
    params = tmp_path / "p.yaml"
    params.write_text("completion_node:\n  ros__parameters: {}\n")
    assert main(["run", "--params", str(params), "--nodes", "completion_node"]) == 0
    plain = {"lifecycle": False, "foxglove_port": None, "foxglove_host": "127.0.0.1"}
    assert calls == [(params, ["completion_node"], [], plain)]
    assert main(["run", "--params", str(params), "--lifecycle", "--foxglove"]) == 0
    assert calls[-1][3] == {**plain, "lifecycle": True, "foxglove_port": 8765}
    assert main(["run", "--params", str(params), "--foxglove", "9001", "--foxglove-host", "0.0.0.0"]) == 0
    assert calls[-1][3] == {**plain, "foxglove_port": 9001, "foxglove_host": "0.0.0.0"}


def test_run_with_an_unknown_node_exits_2_before_starting_ros(capsys) -> None:
    pytest.importorskip("rclpy")
    assert main(["run", "--params", str(REPO / "config" / "gen3d.yaml"), "--nodes", "no_such_node"]) == 2
    assert "unknown node 'no_such_node'" in capsys.readouterr().err
