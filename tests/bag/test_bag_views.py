"""gen3d bag --meshes DIR --mesh-format ply|obj|glb (every completed mesh also as a file, equal to the bag's
CompletedMesh) and --serve PORT (a Foxglove live view of the run: a websockets client receives the mesh; the server
keeps serving after the run until SIGTERM, exit 0)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bagdata import write_cloud_bag
from gen3d_ros.cli import main
from gen3d_ros.io.gltf import read_glb
from gen3d_ros.io.mesh_msgs import shape_mesh_to_arrays
from gen3d_ros.io.rosbag2 import read_messages

REPO = Path(__file__).resolve().parents[2]
FAST = ["--set", "voxel_size=0.4", "--set", "poisson_depth=6", "--set", "roi_radius=12.0", "--no-progress"]


def meshes_in(bag: Path) -> list:
    return [m for m in read_messages(bag) if m.msgtype == "gen3d_ros/msg/CompletedMesh"]


def test_meshes_folder_gets_every_completed_mesh_as_glb(tmp_path: Path) -> None:
    bag = tmp_path / "in.mcap"
    write_cloud_bag(bag, n=2)
    out, folder = tmp_path / "out.mcap", tmp_path / "meshes"
    assert main(["bag", str(bag), "-o", str(out), "--meshes", str(folder), "--mesh-format", "glb", *FAST]) == 0
    in_bag = meshes_in(out)
    files = sorted(folder.glob("*.glb"))
    assert len(in_bag) == 2 and len(files) == 2
    for message, path in zip(sorted(in_bag, key=lambda m: m.log_time_ns), files):
        assert path.name == f"{message.topic.strip('/').replace('/', '_')}_{message.log_time_ns}.glb"
        vertices, faces = shape_mesh_to_arrays(message.msg.mesh)
        v, f, colors = read_glb(path)
        np.testing.assert_allclose(v, vertices, atol=1e-6)
        np.testing.assert_array_equal(f, faces)
        assert colors.shape == (len(vertices), 4)
    # a folder that is not ours is refused before the run (exit 2, nothing written)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["bag", str(bag), "-o", str(tmp_path / "o2.mcap"), "--meshes", str(foreign), *FAST]) == 2
    assert not (tmp_path / "o2.mcap").exists()


def test_serve_shows_the_run_on_a_foxglove_websocket(tmp_path: Path) -> None:
    pytest.importorskip("websockets")
    pytest.importorskip("google.protobuf")
    sys.path.insert(0, str(REPO / "tests" / "viz"))
    from foxglove_client import decoder, receive_one

    bag = tmp_path / "in.mcap"
    write_cloud_bag(bag, n=1)
    out = tmp_path / "out.mcap"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gen3d_ros", "bag", str(bag), "-o", str(out), "--serve",
                             str(port), *FAST], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120.0
        while not any("still serving" in line for line in lines):  # the run is done; the server lingers
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        (message,) = meshes_in(out)
        channel, payload = asyncio.run(receive_one(port, message.topic, lambda: None, again=False))
        (entity,) = decoder(channel).FromString(payload).entities
        vertices, faces = shape_mesh_to_arrays(message.msg.mesh)
        assert len(entity.triangles[0].points) == len(vertices)
        np.testing.assert_array_equal(np.array(entity.triangles[0].indices).reshape(-1, 3), faces)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_on_a_taken_port_is_a_usage_error(tmp_path: Path, capsys) -> None:
    from gen3d_ros.viz.foxglove_live import FoxgloveLiveView

    bag = tmp_path / "in.mcap"
    write_cloud_bag(bag, n=1)
    taken = FoxgloveLiveView(port=0)
    try:
        assert main(["bag", str(bag), "-o", str(tmp_path / "out.mcap"), "--serve", str(taken.port), *FAST]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--serve" in err[0] and "in use" in err[0]
    assert not (tmp_path / "out.mcap").exists()


def test_the_observer_sees_inputs_outputs_and_the_bags_tf(tmp_path: Path) -> None:
    """run_bag(observe=...): each input cloud, each output, and /tf (which no stage here consumes), with their
    types; the TF message is the bag's."""
    from bagdata import T0_NS

    from gen3d_ros.bagmode import run_bag
    from gen3d_ros.completion.processor import CompletionConfig
    from gen3d_ros.io.messages import rosbags_factory
    from gen3d_ros.io.transforms import tf_message, transform_stamped
    from gen3d_ros.pipeline.completion import CompletionStage

    f = rosbags_factory()
    T = np.eye(4)
    T[:3, 3] = [0.5, 0.0, 1.7]
    tf = tf_message([transform_stamped(T, f, parent_frame="base_link", child_frame="lidar",
                                       stamp=f.time(sec=T0_NS // 10**9))], f)
    bag = tmp_path / "in.mcap"
    write_cloud_bag(bag, n=2, extra=[("/tf", tf, T0_NS + 50_000_000)])
    seen: list[tuple[str, str, int]] = []
    tf_seen: list = []

    def observe(topic, msgtype, msg, time_ns):
        seen.append((topic, msgtype, time_ns))
        if topic == "/tf":
            tf_seen.append(msg)

    stage = CompletionStage(CompletionConfig(voxel_size=0.4, poisson_depth=6, roi_radius=12.0))
    run_bag(bag, tmp_path / "out.mcap", stages=[stage], progress=False, observe=observe)
    types = [t for _, t, _ in seen]
    assert types.count("sensor_msgs/msg/PointCloud2") >= 4  # 2 inputs + 2 completed voxel clouds
    assert types.count("gen3d_ros/msg/CompletedMesh") == 2 and types.count("tf2_msgs/msg/TFMessage") == 1
    (msg,) = tf_seen
    (t,) = msg.transforms
    assert (t.header.frame_id, t.child_frame_id, t.transform.translation.z) == ("base_link", "lidar", 1.7)
    assert [s for s in seen if s[0] == "/tf"][0][2] == T0_NS + 50_000_000
