"""``gen3d demo``: the whole bag-mode pipeline on synthetic data, in well under a minute on a laptop CPU.

1. a procedural street scene (``sim.generate_scene``) and a short drive along its road with the ``demo`` LiDAR
   preset (``sim.simulate_drive``);
2. ``drive/``: a rosbag2 with ``sensor_msgs/PointCloud2`` on ``/points`` (frame ``lidar``; fields x, y, z,
   intensity float32, ring uint16, time float32) and ``tf2_msgs/TFMessage`` on ``/tf`` (``world`` ->
   ``lidar`` from the drive's ``T_world_lidar``), stamped ``DEMO_EPOCH_NS`` + the drive's time;
3. ``completed/``: bag mode with the completion stage over ``drive/``, inputs copied, so one bag replays
   clouds, TF and meshes together in rviz2 / Foxglove;
4. ``meshes/sweep_000.ply`` …: the completed mesh of each sweep (lidar frame, vertex colours by height);
5. ``preview.png``: input scan and completed mesh of the first and the middle sweep;
6. ``robot/``: the robot half (:mod:`gen3d_ros.demo_robot`): a rendered video of the test arm as a rosbag2,
   its joint states estimated per frame in bag mode with the packaged Dr. Robot model, the extracted joint
   trajectory, an overlay GIF and a plot of estimated vs true joint angles;
7. ``demo_report.json``: counts and timings of every step.

The output folder is built next to its final place and renamed into it at the end: an interrupted demo
leaves no half-written folder; an existing one is replaced only with ``force=True``.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gen3d_ros.io.rosbag2 import BagWriter, read_messages
from gen3d_ros.outputs import atomic_folder, prepare_output, write_json

log = logging.getLogger("gen3d_ros.demo")

DEFAULT_SWEEPS = 10
#: 2023-11-14T22:13:20Z: the drive's time 0, so that stamps look like a real recording's.
DEMO_EPOCH_NS = 1_700_000_000 * 1_000_000_000
LIDAR_FRAME = "lidar"
WORLD_FRAME = "world"
POINTS_TOPIC = "/points"
TF_TOPIC = "/tf"


def region_half_extent(config: Any) -> float:
    """Half side (m) of the square an hgca completion covers with ``config`` (its parameter, else the default
    for its device)."""
    from gen3d_ros.completion.processor import hgca_defaults

    return float(config.region_half_extent or hgca_defaults(config.device)["region_half_extent"])


def describe_grid(config: Any) -> str:
    """Where the completion works, in words: the model's grid for GCA, the voxel size and ROI otherwise."""
    if config.method == "hgca":
        from gen3d_ros.completion.inference import SceneCompleter, SceneCompleterConfig
        from gen3d_ros.completion.processor import hgca_defaults

        d = hgca_defaults(config.device)
        c = SceneCompleter(config.checkpoint or None, SceneCompleterConfig(
            half_extent_m=region_half_extent(config)))
        lo, hi = c.origin, c.origin + c.fine_shape * c.fine_voxel
        steps = (config.steps or d["coarse_steps"] or c.coarse.model.config.steps,
                 config.fine_steps or d["fine_steps"] or c.fine.config.steps)
        return (f"hGCA {c.coarse.voxel_size:g} m -> {c.fine_voxel:g} m voxels, x/y [{lo[0]:g}, {hi[0]:g}) m, "
                f"z [{lo[2]:g}, {hi[2]:g}) m, {steps[0]}+{steps[1]} transitions")
    if config.method == "gca":
        from gen3d_ros.completion.checkpoint import default_gca_checkpoint as default_checkpoint
        from gen3d_ros.completion.inference import GCACompleter

        c = GCACompleter(config.checkpoint or default_checkpoint())
        lo, hi = c.origin, c.origin + c.grid_shape * c.voxel_size
        return (f"{c.voxel_size:g} m voxels, x/y [{lo[0]:g}, {hi[0]:g}) m, z [{lo[2]:g}, {hi[2]:g}) m, "
                f"{c.model.config.steps} transitions")
    return f"voxel {config.voxel_size} m, ROI {config.roi_radius} m"


def demo_completion_config() -> Any:
    """The completion settings of the demo: hGCA with the packaged demo bundle (trained on simulated VLP-32
    sweeps: a 24 m x 24 m grid around the sensor, 0.4 m coarse and 0.2 m fine voxels, decoded to a mesh); the
    packaged GCA model if the bundle is missing, the classical Poisson stage if both are (logged)."""
    from gen3d_ros.completion.checkpoint import default_hgca_checkpoint
    from gen3d_ros.completion.processor import CompletionConfig
    from gen3d_ros.completion.checkpoint import default_gca_checkpoint as default_checkpoint

    try:
        default_hgca_checkpoint()
        return CompletionConfig(method="hgca")
    except FileNotFoundError as exc:
        log.warning("%s; the demo falls back to gca", exc)
    try:
        default_checkpoint()
    except FileNotFoundError as exc:
        log.warning("%s; the demo falls back to classical-poisson", exc)
        return CompletionConfig(voxel_size=0.2, roi_radius=20.0, poisson_depth=9)
    return CompletionConfig(method="gca")


@dataclass
class DemoReport:
    """What :func:`run_demo` made, with timings in seconds."""

    output_dir: str
    n_sweeps: int
    seed: int
    lidar: str
    points_per_sweep: list[int] = field(default_factory=list)
    triangles_per_mesh: list[int] = field(default_factory=list)
    bag: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    robot: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        t = self.timings_s
        stage = self.bag.get("stages", {}).get("completion", {})
        lines = [
            f"demo written to {self.output_dir} in {t.get('total', 0):.1f} s",
            f"  scene + drive     {t.get('simulate', 0):6.2f} s  {self.n_sweeps} sweeps, "
            f"{int(np.mean(self.points_per_sweep)) if self.points_per_sweep else 0} points each ({self.lidar})",
            f"  drive/ bag        {t.get('write_drive_bag', 0):6.2f} s",
            f"  completed/ bag    {t.get('bag_mode', 0):6.2f} s  processed {stage.get('processed', 0)}, rejected "
            f"{stage.get('rejected', 0)}, failed {stage.get('failed', 0)}, mean latency "
            f"{stage.get('mean_latency_ms', 0):.0f} ms",
            f"  meshes/*.ply      {t.get('write_meshes', 0):6.2f} s  "
            f"{int(np.mean(self.triangles_per_mesh)) if self.triangles_per_mesh else 0} triangles each",
            f"  preview.png       {t.get('preview', 0):6.2f} s",
        ]
        if self.robot:
            r = self.robot
            lines.append(f"  robot/            {t.get('robot', 0):6.2f} s  {r['frames']} frames of the test arm, "
                         f"model {r['model']}: joint error {r['joint_err_deg_mean']:.1f} deg mean per frame, "
                         f"{r['trajectory_err_deg_mean']:.1f} deg after smoothing, {r['mean_latency_ms']:.0f} ms "
                         f"per frame")
        lines += [f"  {name:<17} {path}" for name, path in self.files.items()]
        return "\n".join(lines)


VEHICLE_KINDS = ("car", "van", "truck")


def clear_drive_start(scene: Any, n_sweeps: int, *, seed: int, speed_mps: float = 8.0, rate_hz: float = 10.0,
                      margin_m: float = 3.0, clearance_m: float = 1.5, step_m: float = 0.5) -> float | None:
    """Arc length where a drive of ``n_sweeps`` along the road centreline stays ``clearance_m`` away from every
    vehicle footprint of ``scene`` (the simulator parks vehicles on the road, also on the centreline: a drive
    through one puts the sensor inside it). A random clear start (``seed``), else the one with the most
    clearance; ``None`` when the road inside the scene is too short (``simulate_drive`` then reports it)."""
    road = scene.road
    half = scene.config.size_m / 2.0 - margin_m
    inside = np.all(np.abs(road.xy) <= half, axis=1)
    if not inside.any():
        return None
    s_lo, s_hi = float(road.s[inside].min()), float(road.s[inside].max())
    travel = speed_mps * np.arange(n_sweeps) / rate_hz
    extent = travel[-1] + speed_mps / rate_hz
    starts = np.arange(s_lo, s_hi - extent, step_m)
    if starts.size == 0:
        return None
    path = road.point((starts[:, None] + travel[None, :]).ravel()).reshape(len(starts), n_sweeps, 2)
    clearance = np.full(len(starts), np.inf)
    for obj in scene.objects:
        if obj.kind not in VEHICLE_KINDS:
            continue
        c, s = np.cos(obj.yaw), np.sin(obj.yaw)
        rel = path - np.asarray(obj.center_xy)
        local = np.abs(np.stack([rel[..., 0] * c + rel[..., 1] * s, -rel[..., 0] * s + rel[..., 1] * c], -1))
        outside = np.maximum(local - np.asarray(obj.half_size_xy), 0.0)
        clearance = np.minimum(clearance, np.linalg.norm(outside, axis=-1).min(1))
    ok = np.flatnonzero(clearance >= clearance_m)
    if ok.size:
        return float(starts[np.random.default_rng(seed).choice(ok)])
    return float(starts[int(np.argmax(clearance))])


def _time_msg(factory: Any, stamp_ns: int) -> Any:
    return factory.time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def scan_to_pointcloud2(scan: Any, stamp_ns: int, factory: Any) -> Any:
    """A ``LidarScan`` as ``sensor_msgs/PointCloud2`` in frame ``lidar``: x, y, z, intensity float32, ring
    uint16, time float32 (seconds since the start of the sweep, as Velodyne/Ouster drivers publish it)."""
    from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2

    fields = {"intensity": np.asarray(scan.intensity, np.float32), "ring": np.asarray(scan.ring, np.uint16),
              "time": np.asarray(scan.time, np.float32)}
    return arrays_to_pointcloud2(scan.points, factory, frame_id=LIDAR_FRAME, stamp=_time_msg(factory, stamp_ns),
                                 fields=fields)


def pose_to_tf(T_world_lidar: np.ndarray, stamp_ns: int, factory: Any) -> Any:
    """``tf2_msgs/TFMessage`` with one transform ``world`` -> ``lidar`` (the pose of the lidar in the world)."""
    from gen3d_ros.io.transforms import tf_message, transform_stamped

    return tf_message([transform_stamped(T_world_lidar, factory, parent_frame=WORLD_FRAME, child_frame=LIDAR_FRAME,
                                         stamp=_time_msg(factory, stamp_ns))], factory)


def write_drive_bag(path: Path, sweeps: list[Any], *, storage: str | None = None) -> list[int]:
    """Write a drive as rosbag2 (``/points`` + ``/tf``, log time = stamp); returns the stamps (ns)."""
    from gen3d_ros.io.messages import rosbags_factory

    factory = rosbags_factory()
    stamps = []
    with BagWriter(path, storage=storage) as out:
        out.add_topic(POINTS_TOPIC, "sensor_msgs/msg/PointCloud2")
        out.add_topic(TF_TOPIC, "tf2_msgs/msg/TFMessage")
        for sweep in sweeps:
            stamp_ns = DEMO_EPOCH_NS + int(round(sweep.stamp_s * 1e9))
            stamps.append(stamp_ns)
            out.write(TF_TOPIC, pose_to_tf(sweep.T_world_lidar, stamp_ns, factory), stamp_ns)
            out.write(POINTS_TOPIC, scan_to_pointcloud2(sweep.scan, stamp_ns, factory), stamp_ns)
    return stamps


def completed_mesh_arrays(msg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``gen3d_ros/CompletedMesh`` -> vertices (V, 3) float32, faces (F, 3) int32, colours (V, 3) float32 0..1."""
    from gen3d_ros.completion.mesh import height_colors
    from gen3d_ros.io.mesh_msgs import shape_mesh_to_arrays

    vertices, faces = shape_mesh_to_arrays(msg.mesh)
    if len(msg.vertex_colors) == len(vertices) and len(vertices):
        colors = np.array([[c.r, c.g, c.b] for c in msg.vertex_colors], np.float32)
    else:
        colors = height_colors(vertices.astype(np.float32))
    return vertices.astype(np.float32), faces.astype(np.int32), colors


def run_demo(output_dir: str | os.PathLike, *, n_sweeps: int = DEFAULT_SWEEPS, seed: int = 0, force: bool = False,
             progress: bool = False, lidar_preset: str = "vlp32", completion: Any = None,
             storage: str | None = None, robot_frames: int = 16) -> DemoReport:
    """Run the demo into ``output_dir`` (see module docstring) and return its report.

    Args:
        n_sweeps: LiDAR sweeps of the drive (10 Hz, 8 m/s); each costs about 2 s of completion on 2 CPU cores.
        seed: seed of the scene and the drive.
        force: replace an existing ``output_dir``.
        lidar_preset: ``LidarConfig.preset`` name.
        completion: a ``CompletionConfig`` (default :func:`demo_completion_config`).
        storage: rosbag2 storage of both bags, ``"mcap"`` (default) or ``"sqlite3"``.
        robot_frames: frames of the robot video (0: skip the robot half).
    """
    if n_sweeps < 1:
        raise ValueError(f"n_sweeps must be at least 1, got {n_sweeps}")
    output_dir = prepare_output(output_dir, force=force, what="demo output folder")
    config = completion if completion is not None else demo_completion_config()
    report = DemoReport(str(output_dir), n_sweeps, seed, lidar_preset,
                        machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()})
    start = time.perf_counter()
    # Built in a hidden sibling and swapped in when complete: an interrupted demo leaves the old folder as it was.
    with atomic_folder(output_dir) as work:
        _run_street_half(work, report, config, storage=storage, progress=progress)
        report.files = {"drive bag": "drive/", "completed bag": "completed/", "meshes": "meshes/sweep_*.ply",
                        "preview": "preview.png", "report": "demo_report.json"}
        if robot_frames > 0:
            _run_robot_half(work, report, robot_frames, storage=storage, progress=progress)
        report.timings_s["total"] = time.perf_counter() - start
        write_json(work / "demo_report.json", report.as_dict())
        prepare_output(output_dir, force=force, what="demo output folder")  # it may have appeared meanwhile
    report.files = {k: str(output_dir / v) for k, v in report.files.items()}
    report.timings_s["total"] = time.perf_counter() - start
    return report


def _run_street_half(work: Path, report: DemoReport, config: Any, *, storage: str | None, progress: bool) -> None:
    """Steps 1-5 of the module docstring into the folder ``work``: drive, bag mode, meshes, preview; fills
    ``report`` (points, bag-mode report, triangles, timings)."""
    from gen3d_ros.bagmode import run_bag
    from gen3d_ros.pipeline.completion import CompletionStage

    timings = report.timings_s
    t0 = time.perf_counter()
    sweeps = _simulate_demo_drive(report.n_sweeps, report.seed, report.lidar)
    timings["simulate"] = time.perf_counter() - t0
    report.points_per_sweep = [len(s.scan) for s in sweeps]
    log.info("simulated %d sweeps of %s (%d points on average)", report.n_sweeps, report.lidar,
             int(np.mean(report.points_per_sweep)))

    t0 = time.perf_counter()
    stamps = write_drive_bag(work / "drive", sweeps, storage=storage)
    timings["write_drive_bag"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bag_report = run_bag(work / "drive", work / "completed", stages=[CompletionStage(config)],
                         copy_inputs=True, progress=progress, storage=storage)
    timings["bag_mode"] = time.perf_counter() - t0
    report.bag = bag_report.as_dict()
    report.bag["input_path"], report.bag["output_path"] = "drive", "completed"

    t0 = time.perf_counter()
    meshes = _save_completed_meshes(work / "completed", work / "meshes", stamps)
    report.triangles_per_mesh = [len(meshes[i][1]) if i in meshes else 0 for i in range(report.n_sweeps)]
    timings["write_meshes"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _save_demo_preview(work / "preview.png", sweeps, meshes, config, report)
    timings["preview"] = time.perf_counter() - t0


def _simulate_demo_drive(n_sweeps: int, seed: int, lidar_preset: str) -> list[Any]:
    """``n_sweeps`` sweeps (``sim.Sweep``) of a drive along the road of the default street scene of ``seed``,
    starting where the road ahead is clear."""
    from gen3d_ros.sim import LidarConfig, SceneConfig, generate_scene, simulate_drive

    scene = generate_scene(SceneConfig(), seed=seed)
    start_s = clear_drive_start(scene, n_sweeps, seed=seed)
    return simulate_drive(scene, LidarConfig.preset(lidar_preset), n_sweeps=n_sweeps, seed=seed,
                          start_s_m=start_s)


def _save_completed_meshes(completed_bag: Path, meshes_dir: Path,
                           stamps: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Writes ``meshes_dir/sweep_<i>.ply`` for each completed mesh of ``completed_bag`` whose stamp is the one of
    sweep i in ``stamps`` (ns); returns {i: (vertices (V, 3) float32, faces (F, 3) int32)}, lidar frame."""
    from gen3d_ros.completion.mesh import TriangleMesh
    from gen3d_ros.completion.udf_mesh import save_mesh

    meshes_dir.mkdir()
    index_of = {stamp: i for i, stamp in enumerate(stamps)}
    meshes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for m in read_messages(completed_bag, ["/completion_node/mesh"]):
        i = index_of.get(m.log_time_ns)
        if i is None:
            continue
        vertices, faces, colors = completed_mesh_arrays(m.msg)
        save_mesh(meshes_dir / f"sweep_{i:03d}.ply", TriangleMesh(vertices, faces, np.clip(colors, 0, 1)))
        meshes[i] = (vertices, faces)
    return meshes


def _save_demo_preview(path: Path, sweeps: list[Any], meshes: dict[int, tuple[np.ndarray, np.ndarray]],
                       config: Any, report: DemoReport) -> None:
    """``preview.png``: input scan and completed mesh of the first and the middle sweep, with their counts and
    the mean completion latency of ``report.bag``."""
    from gen3d_ros.preview import PreviewSweep, save_preview

    n_sweeps = report.n_sweeps
    shown = sorted({0, n_sweeps // 2})
    rows = []
    latencies = report.bag["stages"]["completion"]
    grid = describe_grid(config)
    for i in shown:
        vertices, faces = meshes.get(i, (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)))
        rows.append(PreviewSweep(
            f"sweep {i} (t = {sweeps[i].stamp_s:.1f} s)", sweeps[i].scan.points, vertices, faces,
            stats=f"{len(sweeps[i].scan):,} input points -> {len(vertices):,} vertices, {len(faces):,} "
                  f"triangles\n{config.method}, {grid}; "
                  f"mean latency {latencies['mean_latency_ms']:.0f} ms"))
    extent = region_half_extent(config) if config.method == "hgca" else float(config.roi_radius)
    save_preview(path, rows, extent_m=extent,
                 title=f"gen3d demo: procedural street (seed {report.seed}), {report.lidar} LiDAR, "
                       f"{n_sweeps} sweeps -> scene completion ({config.method}) in bag mode")


def _run_robot_half(work: Path, report: DemoReport, robot_frames: int, *, storage: str | None,
                    progress: bool) -> None:
    """Step 6 of the module docstring into ``work/robot``; adds its report, timing and files to ``report``."""
    from gen3d_ros.demo_robot import run_robot_demo

    t0 = time.perf_counter()
    (work / "robot").mkdir()
    report.robot = asdict(run_robot_demo(work / "robot", frames=robot_frames, storage=storage,
                                         t0_ns=DEMO_EPOCH_NS, progress=progress))
    report.timings_s["robot"] = time.perf_counter() - t0
    report.files.update({"robot video bag": "robot/robot_video/", "robot poses bag": "robot/robot_poses/",
                         "robot trajectory": "robot/trajectory.json", "robot overlay": "robot/overlay.gif",
                         "robot joints plot": "robot/joints.png"})
