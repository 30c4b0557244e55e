"""The demo end to end (simulated drive -> bag -> bag mode -> meshes, preview, report), kept small."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gen3d_ros.demo import DEMO_EPOCH_NS, run_demo
from gen3d_ros.geometry.rigid import matrix_to_quaternion_xyzw
from gen3d_ros.io.pointcloud2 import pointcloud2_to_arrays
from gen3d_ros.io.rosbag2 import read_bag_info, read_messages
from gen3d_ros.outputs import OutputExistsError


@pytest.mark.slow
def test_demo_writes_drive_bag_completed_bag_meshes_preview_and_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    report = run_demo(out, n_sweeps=2, seed=1, robot_frames=3)
    assert sorted(p.name for p in out.iterdir()) == [".gen3d_output", "completed", "demo_report.json", "drive",
                                                     "meshes", "preview.png", "robot"]
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporaries left

    drive = read_bag_info(out / "drive")
    assert {k: (v["type"], v["count"]) for k, v in drive["topics"].items()} == {
        "/points": ("sensor_msgs/msg/PointCloud2", 2), "/tf": ("tf2_msgs/msg/TFMessage", 2)}
    clouds = list(read_messages(out / "drive", ["/points"]))
    assert [m.log_time_ns for m in clouds] == [DEMO_EPOCH_NS, DEMO_EPOCH_NS + 100_000_000]
    cloud = clouds[0].msg
    assert cloud.header.frame_id == "lidar"
    assert [(f.name, f.datatype) for f in cloud.fields] == [("x", 7), ("y", 7), ("z", 7), ("intensity", 7),
                                                           ("ring", 4), ("time", 7)]
    arrays = pointcloud2_to_arrays(cloud)
    assert len(arrays) == report.points_per_sweep[0] > 1000
    assert arrays.fields["ring"].max() == 31  # the demo drive uses the VLP-32 preset (32 beams, ring 0..31)
    (tf,) = [m.msg for m in read_messages(out / "drive", ["/tf"])][:1]
    assert (tf.transforms[0].header.frame_id, tf.transforms[0].child_frame_id) == ("world", "lidar")

    completed = read_bag_info(out / "completed")["topics"]
    assert {t: completed[t]["count"] for t in completed} == {
        "/points": 2, "/tf": 2, "/completion_node/mesh": 2, "/completion_node/marker": 2,
        "/completion_node/voxels": 2, "/completion_node/coarse_voxels": 2}  # hgca: its coarse stage too
    assert sorted(p.name for p in (out / "meshes").iterdir()) == ["sweep_000.ply", "sweep_001.ply"]
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(out / "meshes" / "sweep_000.ply"))
    assert len(mesh.triangles) == report.triangles_per_mesh[0] > 1000 and mesh.has_vertex_colors()

    png = (out / "preview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    saved = json.loads((out / "demo_report.json").read_text())
    assert saved["bag"]["stages"]["completion"]["processed"] == 2
    assert set(saved["timings_s"]) >= {"simulate", "write_drive_bag", "bag_mode", "write_meshes", "preview", "total"}

    # the robot half: a 3-frame video bag, a pose per frame in bag mode, the trajectory and the figures
    robot = out / "robot"
    # calibration.json: the camera-to-robot calibration with the packaged keypoint network
    assert sorted(p.name for p in robot.iterdir()) == ["calibration.json", "joints.png", "overlay.gif", "robot_poses",
                                                       "robot_video", "trajectory.json"]
    calibration = json.loads((robot / "calibration.json").read_text())
    assert np.isfinite(calibration["translation_err_cm"]) and len(calibration["camera_in_base"]) == 7
    poses = read_bag_info(robot / "robot_poses")["topics"]
    assert poses["/robot_pose_node/joint_states"]["count"] == 3 and poses["/camera/image_raw"]["count"] == 3
    traj = json.loads((robot / "trajectory.json").read_text())
    assert traj["joint_names"] == ["base_yaw", "shoulder", "elbow", "wrist_pitch", "wrist_roll"]
    times = [p["time_from_start"]["sec"] + 1e-9 * p["time_from_start"]["nanosec"] for p in traj["points"]]
    assert times == pytest.approx([0.0, 0.25, 0.5])
    assert saved["robot"]["frames"] == 3 and np.isfinite(saved["robot"]["joint_err_deg_mean"])
    assert (robot / "overlay.gif").read_bytes()[:3] == b"GIF"

    with pytest.raises(OutputExistsError):
        run_demo(out, n_sweeps=1, seed=1, robot_frames=0)


def test_demo_drive_start_keeps_clear_of_parked_vehicles() -> None:
    from gen3d_ros.demo import clear_drive_start
    from gen3d_ros.sim import LidarConfig, SceneConfig, generate_scene, simulate_drive

    scene = generate_scene(SceneConfig(), seed=0)
    start = clear_drive_start(scene, 3, seed=0)
    sweeps = simulate_drive(scene, LidarConfig.preset("demo"), n_sweeps=3, seed=0, start_s_m=start)
    for sweep in sweeps:  # nothing within a metre: the sensor is not inside a vehicle
        assert np.linalg.norm(sweep.scan.points, axis=1).min() > 1.0


def test_matrix_to_quaternion_xyzw_round_trips() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        x, y, z, w = q
        R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        got = matrix_to_quaternion_xyzw(R)
        assert np.allclose(got, q * np.sign(q[3]), atol=1e-9)
