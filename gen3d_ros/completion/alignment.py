"""Gravity alignment of a sweep: the frame a completion model expects (z up, ground at the model's height).

The completion models are trained on sweeps of a level sensor ``sensor_height_m`` (1.73 m for the demo models)
above the ground, so their grids put the ground at ``z = -sensor_height_m``. A real sensor is mounted at another
height and often tilted; completed as is, the model invents its training ground (issue 13: 0.27-0.49 m off on
real sweeps). :func:`estimate_alignment` finds the rigid transform ``T_model_cloud`` (4x4, metres) that maps the
cloud frame into the model frame:

- with ``T_base_cloud`` (the LiDAR mounting from TF, base frame z up): its rotation gives gravity; the ground
  height comes from a robust plane fit on the rotated sweep (RANSAC, normal within a few degrees of vertical),
  or from the mounting height itself when no ground is seen;
- without it: a RANSAC ground plane (open3d ``segment_plane``) on points below the sensor; accepted only within a
  sanity range (tilt <= ``max_tilt_deg``, sensor height in ``height_range_m``), otherwise the identity (the model's
  training height) and the reason in :attr:`GroundAlignment.note`.

The model frame keeps the sensor's heading (yaw is not observable from gravity); its origin is the sensor moved
vertically so that the ground lies at ``-model_height_m``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

#: Sensor height above the ground (metres) of models whose checkpoints do not record it: the data generator's
#: default (``sim/dataset.py``), the height of the demo models (ground at z = -1.73 m).
DEFAULT_MODEL_SENSOR_HEIGHT_M = 1.73


@dataclass
class GroundAlignment:
    """``T_model_cloud`` (4x4 float64): cloud-frame points (metres) -> model frame (z up, ground at
    ``-model_height_m``). ``source``: ``tf``, ``ransac`` or ``fallback`` (identity). ``tilt_deg``: angle between the
    cloud's z axis and up, degrees; ``sensor_height_m``: the sensor's height above the ground found, metres
    (None if not found); ``note``: why a fit was rejected or what was assumed."""

    T_model_cloud: np.ndarray
    source: str
    model_height_m: float
    tilt_deg: float = 0.0
    sensor_height_m: float | None = None
    ground_inliers: int = 0
    note: str = ""

    @property
    def identity(self) -> bool:
        return bool(np.allclose(self.T_model_cloud, np.eye(4)))

    def to_model(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) cloud-frame points -> model frame, same dtype (float32 in, float32 out)."""
        return transform_points(self.T_model_cloud, points)

    def to_cloud(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) model-frame points (mesh vertices, voxel centres) -> cloud frame, same dtype."""
        return transform_points(invert_transform(self.T_model_cloud), points)

    def diagnostics(self) -> dict[str, Any]:
        """Flat plain values for results and ROS diagnostics."""
        return {"alignment.source": self.source, "alignment.tilt_deg": round(float(self.tilt_deg), 3),
                "alignment.sensor_height_m": (None if self.sensor_height_m is None
                                              else round(float(self.sensor_height_m), 3)),
                "alignment.model_height_m": float(self.model_height_m),
                "alignment.ground_inliers": int(self.ground_inliers), "alignment.note": self.note}


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply the 4x4 rigid transform ``T`` to (N, 3) points (computed in float64, returned in their dtype)."""
    pts = np.asarray(points)
    dtype = pts.dtype if pts.dtype in (np.float32, np.float64) else np.float32
    p = pts.reshape(-1, 3).astype(np.float64)
    return (p @ T[:3, :3].T + T[:3, 3]).astype(dtype)


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform (rotation transposed)."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest 3x3 rotation taking unit vector ``a`` onto unit vector ``b`` (Rodrigues)."""
    a = np.asarray(a, np.float64) / np.linalg.norm(a)
    b = np.asarray(b, np.float64) / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1 + 1e-12:  # opposite: half turn about any axis normal to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def model_sensor_height(train_data: Mapping[str, Any] | None) -> float:
    """Sensor height above the ground (metres) a model was trained at, from its data config
    (``sensor_height_m``: a number, or a [lo, hi] range of randomised heights -> its middle)."""
    value = (train_data or {}).get("sensor_height_m", DEFAULT_MODEL_SENSOR_HEIGHT_M)
    if isinstance(value, (list, tuple)):
        return float(np.mean([float(v) for v in value]))
    return float(value)


def lowest_points(points: np.ndarray, cell_m: float = 1.0, band_m: float = 0.1) -> np.ndarray:
    """The points within ``band_m`` of the lowest point of their ``cell_m`` x ``cell_m`` column (x, y): the ground
    under walls, cars and trees, without the walls (in a street the facades outnumber the ground points)."""
    if len(points) == 0:
        return points
    key = np.floor(points[:, :2] / cell_m).astype(np.int64)
    key = (key[:, 0] << 32) + (key[:, 1] & 0xFFFFFFFF)
    order = np.lexsort((points[:, 2], key))
    first = np.r_[True, key[order][1:] != key[order][:-1]]  # lowest point of each column, sorted by key
    col = np.cumsum(first) - 1
    zmin = points[order, 2][first][col]
    return points[order][points[order, 2] <= zmin + band_m]


def fit_ground_plane(points: np.ndarray, *, max_range_m: float = 25.0, distance_m: float = 0.08,
                     iterations: int = 300, seed: int = 0, max_candidates: int = 20_000,
                     max_tilt_deg: float = 90.0, attempts: int = 3) -> tuple[np.ndarray, float, int] | None:
    """RANSAC plane (open3d ``segment_plane``) of the low points of a sweep, sensor at the origin.

    Candidates: :func:`lowest_points` within ``max_range_m`` horizontally (beyond 1 m) and below the sensor
    (z < 0), at most ``max_candidates`` (every k-th). A plane tilted more than ``max_tilt_deg`` from level is set
    aside with its inliers and the next one fitted (up to ``attempts`` planes). Returns ``(n, h, inliers)``: the
    unit normal pointing to the sensor's side (up), the sensor's distance to the plane (metres) and the inlier
    count of the first acceptable (else the last) plane; None with fewer than 30 candidates.
    """
    import open3d as o3d

    pts = np.asarray(points, np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(1)]
    r = np.hypot(pts[:, 0], pts[:, 1])
    cand = lowest_points(pts[(r > 1.0) & (r < max_range_m) & (pts[:, 2] < 0)])
    cand = cand[:: max(1, len(cand) // max_candidates)]
    o3d.utility.random.seed(int(seed))  # segment_plane draws its samples from open3d's global generator
    fit = None
    for _ in range(attempts):
        if len(cand) < 30:
            break
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cand))
        (a, b, c, d), inliers = cloud.segment_plane(distance_threshold=distance_m, ransac_n=3,
                                                    num_iterations=iterations)
        n = np.array([a, b, c], np.float64)
        norm = float(np.linalg.norm(n))
        n, d = n / norm, d / norm
        if len(inliers) >= 3:  # least squares on the inliers: RANSAC's 3-point plane tilts by ~1 deg on rough ground
            sel = cand[inliers]
            centre = sel.mean(0)
            n_ls = np.linalg.svd(sel - centre, full_matrices=False)[2][2]
            n, d = (n_ls, -float(n_ls @ centre)) if n_ls @ n > 0 else (-n_ls, float(n_ls @ centre))
        if d < 0:  # orient the normal towards the sensor (origin): n . 0 + d > 0
            n, d = -n, -d
        fit = (n, float(d), len(inliers))
        if np.degrees(np.arccos(np.clip(n[2], -1.0, 1.0))) <= max_tilt_deg:
            break
        cand = np.delete(cand, inliers, axis=0)
    return fit


#: A fit this close to the model frame (degrees, metres) is taken as the model frame itself: within the fit's
#: noise, and a sweep already in the training frame is completed exactly as without alignment.
SNAP_TILT_DEG = 0.5
SNAP_HEIGHT_M = 0.05


def _aligned(R: np.ndarray, sensor_height: float, model_height: float) -> np.ndarray:
    """4x4: rotate by ``R`` (gravity up), then lift so that the ground (at -sensor_height) lands at -model_height;
    the identity within ``SNAP_TILT_DEG`` / ``SNAP_HEIGHT_M`` of that."""
    tilt = np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))
    if tilt <= SNAP_TILT_DEG and abs(sensor_height - model_height) <= SNAP_HEIGHT_M:
        return np.eye(4)
    T = np.eye(4)
    T[:3, :3] = R
    T[2, 3] = sensor_height - model_height
    return T


def estimate_alignment(points: np.ndarray, *, model_height_m: float = DEFAULT_MODEL_SENSOR_HEIGHT_M,
                       T_base_cloud: np.ndarray | None = None, max_tilt_deg: float = 15.0,
                       height_range_m: tuple[float, float] = (0.3, 4.0), min_inliers: int = 200,
                       seed: int = 0) -> GroundAlignment:
    """The transform into the model frame of one sweep; see the module docstring.

    ``points``: (N, 3) metres, cloud frame, sensor at the origin. ``T_base_cloud``: 4x4 float64 mapping cloud
    points into the robot's base frame (z up), e.g. from TF; only its rotation is used for gravity.
    ``model_height_m``: the model's training sensor height (:func:`model_sensor_height`).
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if T_base_cloud is not None:
        return _align_with_tf(pts, np.asarray(T_base_cloud, np.float64), model_height_m, height_range_m,
                              min_inliers, seed)

    def fallback(note: str, tilt: float = 0.0, height: float | None = None, inl: int = 0) -> GroundAlignment:
        return GroundAlignment(np.eye(4), "fallback", model_height_m, tilt, height, inl,
                               note + f"; completed as if the sensor were level at the model's {model_height_m:g} m")

    fit = fit_ground_plane(pts, seed=seed, max_tilt_deg=max_tilt_deg)
    if fit is None:
        return fallback("too few points below the sensor for a ground fit")
    n, h, inliers = fit
    tilt = float(np.degrees(np.arccos(np.clip(n[2], -1.0, 1.0))))
    if inliers < min_inliers:
        return fallback(f"ground fit has {inliers} inliers (< {min_inliers})", tilt, h, inliers)
    if tilt > max_tilt_deg:
        return fallback(f"ground fit tilted {tilt:.1f} deg (> {max_tilt_deg:g})", tilt, h, inliers)
    if not height_range_m[0] <= h <= height_range_m[1]:
        return fallback(f"ground {h:.2f} m below the sensor, outside {height_range_m[0]:g}-{height_range_m[1]:g} m",
                        tilt, h, inliers)
    R = rotation_between(n, [0.0, 0.0, 1.0])
    return GroundAlignment(_aligned(R, h, model_height_m), "ransac", model_height_m, tilt, h, inliers,
                           f"ground plane: {inliers} inliers")


def _align_with_tf(pts: np.ndarray, T_base_cloud: np.ndarray, model_height: float,
                   height_range: tuple[float, float], min_inliers: int, seed: int) -> GroundAlignment:
    """Gravity from the mounting's rotation; the ground height from a near-horizontal plane fit on the rotated
    sweep, else from the mounting height (base origin assumed on the ground, as base_footprint)."""
    if T_base_cloud.shape != (4, 4) or not np.isfinite(T_base_cloud).all():
        raise ValueError(f"T_base_cloud must be a finite 4x4 matrix, got shape {T_base_cloud.shape}")
    R = T_base_cloud[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4):
        raise ValueError("T_base_cloud's rotation part is not orthonormal")
    tilt = float(np.degrees(np.arccos(np.clip(R[2, 2], -1.0, 1.0))))
    fit = fit_ground_plane(pts @ R.T, seed=seed, max_tilt_deg=5.0)
    if fit is not None and fit[2] >= min_inliers and fit[0][2] > np.cos(np.radians(5.0)) \
            and height_range[0] <= fit[1] <= height_range[1]:
        height, note, inliers = fit[1], f"gravity from T_base_cloud; ground plane: {fit[2]} inliers", fit[2]
    else:
        height, inliers = float(T_base_cloud[2, 3]), 0
        note = "gravity from T_base_cloud; no level ground found: ground at the base frame's z = 0"
        if not height_range[0] <= height <= height_range[1]:
            return GroundAlignment(_aligned(R, model_height, model_height), "tf", model_height, tilt, None, 0,
                                   "gravity from T_base_cloud; no level ground found and the mounting height "
                                   f"{height:.2f} m is outside {height_range[0]:g}-{height_range[1]:g} m: "
                                   f"the model's {model_height:g} m assumed")
    return GroundAlignment(_aligned(R, height, model_height), "tf", model_height, tilt, height, inliers, note)
