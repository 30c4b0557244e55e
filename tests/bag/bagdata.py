"""Small synthetic LiDAR-like clouds (ground plane + a box) and bags of them, without the sim module."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import yaml

from gen3d_ros.io.messages import rosbags_factory
from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2
from gen3d_ros.io.rosbag2 import BagWriter, write_bag

T0_NS = 1_700_000_000_000_000_000  # a realistic epoch stamp


def plane_box_points(seed: int = 0, n_ground: int = 3000, n_box: int = 1500) -> np.ndarray:
    """(N,3) float32 metres, sensor frame: ground at z=-1.5 within 8 m and a 2x2x1.5 m box 4 m ahead."""
    rng = np.random.default_rng(seed)
    ground = np.c_[rng.uniform(-8, 8, (n_ground, 2)), np.full(n_ground, -1.5)]
    faces = []
    per = n_box // 3
    u, v = rng.uniform(0, 1, (2, per))
    faces.append(np.c_[np.full(per, 3.0), -1 + 2 * u, -1.5 + 1.5 * v])       # front face x=3
    faces.append(np.c_[3 + 2 * u, np.full(per, -1.0), -1.5 + 1.5 * v])       # side y=-1
    faces.append(np.c_[3 + 2 * u, -1 + 2 * v, np.zeros(per)])                # top z=0
    pts = np.concatenate([ground, *faces]) + rng.normal(0, 0.01, (n_ground + 3 * per, 3))
    return pts.astype(np.float32)


def cloud_msg(seed: int, stamp_ns: int, frame_id: str = "lidar"):
    f = rosbags_factory()
    points = plane_box_points(seed)
    stamp = f.time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return arrays_to_pointcloud2(points, f, frame_id=frame_id, stamp=stamp,
                                 fields={"intensity": np.ones(len(points), np.float32)})


def malformed_cloud_msg(stamp_ns: int, frame_id: str = "lidar"):
    """A PointCloud2 whose data is shorter than width * point_step says."""
    msg = cloud_msg(99, stamp_ns, frame_id)
    msg.data = np.asarray(msg.data)[: len(msg.data) // 2].copy()
    return msg


def write_cloud_bag(path: Path, n: int = 3, *, topic: str = "/points", malformed_at: int | None = None,
                    storage: str | None = None, extra: list[tuple[str, object, int]] = ()) -> list[int]:
    """A bag of ``n`` clouds 0.1 s apart on ``topic`` (log time = header stamp); returns the stamps (ns)."""
    stamps = [T0_NS + i * 100_000_000 for i in range(n)]
    with BagWriter(path, storage=storage) as out:
        for i, t in enumerate(stamps):
            msg = malformed_cloud_msg(t) if i == malformed_at else cloud_msg(i, t)
            out.write(topic, msg, t)
        for topic_, msg, t in extra:
            out.write(topic_, msg, t)
    return stamps


def tree_fingerprint(path: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under ``path`` (or of ``path`` itself)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files}


def write_split_bag(path: Path, parts: list[list[tuple[str, object, int]]]) -> Path:
    """A rosbag2 directory split into one mcap file per part (as ``ros2 bag record --max-bag-size`` makes),
    built from single-file bags; the parts' time ranges may overlap."""
    path.mkdir()
    scratch = path.parent / f"{path.name}-parts"
    scratch.mkdir()
    meta = None
    names = []
    for i, messages in enumerate(parts):
        part = write_bag(scratch / f"part{i}", messages)
        names.append(f"{path.name}_{i}.mcap")
        shutil.copy(part / f"part{i}.mcap", path / names[-1])
        meta = meta or yaml.safe_load((part / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    times = [t for messages in parts for _, _, t in messages]
    topics = sorted({topic for messages in parts for topic, _, _ in messages})
    counts = {topic: sum(1 for messages in parts for t, _, _ in messages if t == topic) for topic in topics}
    info.update(relative_file_paths=names, message_count=len(times), files=[],
                duration={"nanoseconds": max(times) - min(times)},
                starting_time={"nanoseconds_since_epoch": min(times)})
    info["topics_with_message_count"] = [dict(entry, message_count=counts[entry["topic_metadata"]["name"]])
                                         for entry in info["topics_with_message_count"]]
    (path / "metadata.yaml").write_text(yaml.safe_dump(meta))
    shutil.rmtree(scratch)
    return path
