"""Ground-truth views for Dr. Robot training: rendered with open3d (:mod:`gen3d_ros.sim.robot_dataset`), put on the
training background and cached as compact ``.npz`` files that load without open3d.

``<run>/data/{canonical,train,val}.npz`` hold uint8 RGB, bit-packed masks, joint values, camera poses and the
intrinsics; a cache is reused only when it matches the config (robot hash, size, count, seed, background), so a GPU
machine without open3d can train from a carried cache.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.outputs import atomic_path
from gen3d_ros.robot.meshes import PosedMeshBuilder
from gen3d_ros.robot.training.config import RobotTrainConfig
from gen3d_ros.robot.urdf import RobotModel

log = logging.getLogger("gen3d_ros.robot.training")

VIEWS_FORMAT = "gen3d_ros.robot_views_u8/1"


@dataclass
class ViewSet:
    """Ground-truth views on the training background: ``q [n, J]`` float32 (rad/m), ``T_camera_base [n, 4, 4]``
    float32 (base -> OpenCV camera), ``rgb [n, H, W, 3]`` uint8, ``mask [n, H, W]`` bool, one ``camera``."""

    q: np.ndarray
    T_camera_base: np.ndarray
    rgb: np.ndarray
    mask: np.ndarray
    camera: PinholeCamera
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.q)

    def save(self, path: Path) -> None:
        """Compact ``.npz``: uint8 RGB, bit-packed masks, metadata as JSON."""
        c = self.camera
        # Written next to ``path`` and renamed when complete: a killed run never leaves a truncated cache that a
        # later run would try to reuse. A file object, so numpy does not append ".npz" to the temporary name.
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            np.savez_compressed(
                stream, q=self.q, T_camera_base=self.T_camera_base, rgb=self.rgb,
                mask=np.packbits(self.mask, axis=-1), camera=np.array([c.fx, c.fy, c.cx, c.cy, c.width, c.height]),
                meta=np.array(json.dumps({**self.meta, "format": VIEWS_FORMAT})),
            )

    @classmethod
    def load(cls, path: Path) -> "ViewSet":
        """Read :meth:`save`'s file (no open3d needed)."""
        with np.load(path, allow_pickle=False) as d:
            fx, fy, cx, cy, w, h = d["camera"].tolist()
            meta = json.loads(str(d["meta"]))
            if meta.get("format") != VIEWS_FORMAT:
                raise ValueError(f"{path} is not a view cache ({meta.get('format')!r} != {VIEWS_FORMAT!r})")
            mask = np.unpackbits(d["mask"], axis=-1, count=int(w)).astype(bool)
            return cls(d["q"], d["T_camera_base"], d["rgb"], mask, PinholeCamera(fx, fy, cx, cy, int(w), int(h)), meta)


def views_key(robot: RobotModel, cfg: RobotTrainConfig, kind: str, n: int, seed: int) -> dict[str, Any]:
    """What a cached view set must match to be reused."""
    return dict(kind=kind, n=n, seed=seed, urdf_sha256=robot.urdf_sha256, image_size=cfg.image_size,
                fov_deg=cfg.fov_deg, background=list(cfg.background))


def render_views(robot: RobotModel, cfg: RobotTrainConfig, kind: str, n: int, seed: int) -> ViewSet:
    """Render ``n`` ground-truth views with open3d: ``kind`` ``"canonical"`` (neutral pose, cameras all around)
    or ``"posed"`` (random joint values, :func:`generate_robot_views` with per-pose framing)."""
    from gen3d_ros.sim.robot_dataset import generate_robot_views  # open3d: only where views are rendered

    camera = cfg.camera
    if kind == "canonical":
        q, T, rgb, mask = _render_neutral_views(robot, n, camera, seed)
    else:
        v = generate_robot_views(robot, n, camera, seed=seed, framing="pose", show_progress=n >= 50)
        q, T, rgb, mask = v.q, v.T_camera_base, v.rgb, v.mask
    # The renderer draws on white; put the training background behind the (hard-edged) silhouettes.
    rgb = np.where(mask[..., None], rgb, np.asarray(cfg.background, dtype=np.float32))
    return ViewSet(q.astype(np.float32), T.astype(np.float32), np.round(rgb * 255).astype(np.uint8), mask, camera,
                   views_key(robot, cfg, kind, n, seed))


def _render_neutral_views(
    robot: RobotModel, n: int, camera: PinholeCamera, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The neutral pose from ``n`` cameras on a sphere around it (azimuth uniform, elevation -20..75 deg)."""
    from gen3d_ros.sim.robot_dataset import fitting_distance
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    renderer = RobotMeshRenderer(robot)
    q0 = renderer.fk.neutral().numpy()
    v = PosedMeshBuilder(robot).pose_vertices(renderer.link_transforms(q0))
    centre = 0.5 * (v.min(axis=0) + v.max(axis=0))
    radius = float(np.linalg.norm(v - centre, axis=1).max())
    rng = np.random.default_rng(seed)
    H, W = camera.height, camera.width
    T = np.empty((n, 4, 4))
    rgb, mask = np.empty((n, H, W, 3), np.float32), np.empty((n, H, W), bool)
    for i in range(n):
        distance = fitting_distance(radius, camera) * rng.uniform(1.0, 1.15)
        T[i] = sphere_camera(rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(-20.0, 75.0)), distance, centre)
        out = renderer.render(q0, T[i], camera)
        rgb[i], mask[i] = out.rgb, out.mask
    return np.tile(q0, (n, 1)), T, rgb, mask


def load_or_render_views(
    robot: RobotModel, cfg: RobotTrainConfig, data_dir: Path
) -> dict[str, ViewSet]:
    """``{"canonical", "train", "val"}`` view sets, read from ``data_dir/<name>.npz`` when they match ``cfg``
    (robot hash, size, count, seed), else rendered and written there. Seeds differ per set, so the validation
    poses are never trained on."""
    specs = {"canonical": ("canonical", cfg.canonical_views, cfg.seed + 1000),
             "train": ("posed", cfg.train_views, cfg.seed + 2000),
             "val": ("posed", cfg.val_views, cfg.seed + 3000)}
    data_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (kind, n, seed) in specs.items():
        path = data_dir / f"{name}.npz"
        key = views_key(robot, cfg, kind, n, seed)
        if path.is_file():
            views = ViewSet.load(path)
            if {k: views.meta.get(k) for k in key} == key:
                out[name] = views
                continue
            log.info("view cache %s does not match the config; re-rendering", path)
        t0 = time.perf_counter()
        out[name] = render_views(robot, cfg, kind, n, seed)
        out[name].save(path)  # atomic: ViewSet.save writes through outputs.atomic_path
        log.info("rendered %d %s views in %.1f s -> %s", n, name, time.perf_counter() - t0, path)
    return out


def views_to_device(views: ViewSet, device: torch.device) -> dict[str, Tensor]:
    """``{"q", "T", "rgb", "mask"}`` tensors of ``views`` on ``device`` (uint8 RGB and bool masks as stored)."""
    return dict(q=torch.as_tensor(views.q, device=device), T=torch.as_tensor(views.T_camera_base, device=device),
                rgb=torch.as_tensor(views.rgb, device=device), mask=torch.as_tensor(views.mask, device=device))


__all__ = ["VIEWS_FORMAT", "ViewSet", "load_or_render_views", "render_views", "views_key", "views_to_device"]
