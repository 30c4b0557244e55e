"""Ray-cast spinning LiDAR over a :class:`~gen3d_ros.sim.scene.Scene` (open3d ``RaycastingScene``).

The sensor frame follows REP-103: x forward, y left, z up, metres. A sweep has ``n_columns`` firings spread over
one revolution; each firing casts one ray per beam. Beam ``ring`` ids are ordered by elevation, ring 0 the lowest
beam (as Velodyne drivers number rings). The head turns clockwise seen from above (azimuth decreasing), starting
behind the sensor (azimuth +pi) at time 0; ``time`` is the firing's offset within the sweep, seconds.

Returns are corrupted like a real sensor's: Gaussian range noise along the ray, random dropout, and a range
window. Intensity is a 0..1 proxy: per-class reflectivity times an incidence-angle term times a range decay,
plus noise.

    cfg = LidarConfig.preset("hdl64")
    scan = simulate_scan(scene, cfg, T_world_lidar, seed=0)    # scan.points (N, 3) float32, sensor frame
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np

from gen3d_ros.config import known_fields, plain_types
from gen3d_ros.sim.scene import Scene

DEFAULT_REFLECTIVITY: dict[str, float] = {
    "terrain": 0.25,
    "road": 0.12,
    "lane_marking": 0.7,
    "sidewalk": 0.3,
    "curb": 0.35,
    "building": 0.4,
    "car": 0.5,
    "pole": 0.45,
    "traffic_sign": 0.95,
    "trunk": 0.3,
    "vegetation": 0.35,
    "fence": 0.4,
    "wall": 0.45,
}
"""Per-class diffuse reflectivity (0..1) used by the intensity model; unknown classes use 0.4."""

# Velodyne VLP-32C elevation angles (degrees), sorted ascending: dense around the horizon.
_VLP32C_DEG = np.array([
    -25.0, -15.639, -11.31, -8.843, -7.254, -6.148, -5.333, -4.667, -4.0, -3.667, -3.333, -3.0, -2.667,
    -2.333, -2.0, -1.667, -1.333, -1.0, -0.667, -0.333, 0.0, 0.333, 0.667, 1.0, 1.333, 1.667, 2.333,
    3.333, 4.667, 7.0, 10.333, 15.0,
])

# Velodyne HDL-64E: an upper block of 32 lasers from +2 to -8.33 degrees (about 1/3 degree apart) and a lower
# block of 32 from -8.87 to -24.9 degrees (about 1/2 degree apart).
_HDL64E_DEG = np.concatenate([np.linspace(-24.9, -8.87, 32), np.linspace(-8.33, 2.0, 32)])


@dataclass(eq=False)
class LidarConfig:
    """A spinning LiDAR. Angles in degrees, lengths in metres.

    ``vertical_angles_deg`` (n_beams,) gives the beam elevations; when ``None`` the beams are spread uniformly
    over ``vfov_deg`` = (lowest, highest). Compare configs with ``a.to_dict() == b.to_dict()``.
    """

    n_beams: int = 32
    vertical_angles_deg: np.ndarray | None = None
    vfov_deg: tuple[float, float] = (-25.0, 15.0)
    horizontal_resolution_deg: float = 0.2
    rotation_rate_hz: float = 10.0
    """Revolutions per second; one sweep lasts ``1 / rotation_rate_hz`` seconds."""
    max_range_m: float = 100.0
    min_range_m: float = 0.5
    range_noise_std_m: float = 0.02
    dropout: float = 0.0
    """Probability that a return is lost, independently per return (0..1)."""
    intensity_noise_std: float = 0.02
    intensity_range_decay_per_m: float = 0.005
    """Intensity falls as ``exp(-decay * range)``."""
    intensity_ambient: float = 0.25
    """Share of intensity independent of the incidence angle: ``a + (1 - a) * cos(incidence)``."""
    reflectivity: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_REFLECTIVITY))
    default_reflectivity: float = 0.4
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.vertical_angles_deg is not None:
            ang = np.asarray(self.vertical_angles_deg, dtype=np.float64).reshape(-1)
            if ang.shape[0] != int(self.n_beams):
                raise ValueError(
                    f"vertical_angles_deg has {ang.shape[0]} angles but n_beams={self.n_beams}; give one per beam"
                )
            if np.any(np.abs(ang) >= 90.0):
                raise ValueError(f"vertical angles must lie in (-90, 90) degrees, got {ang.tolist()}")
            self.vertical_angles_deg = ang
        if int(self.n_beams) < 1:
            raise ValueError(f"n_beams must be >= 1, got {self.n_beams}")
        lo, hi = (float(v) for v in self.vfov_deg)
        self.vfov_deg = (lo, hi)
        if not (-90.0 < lo <= hi < 90.0):
            raise ValueError(f"vfov_deg must be (lo, hi) within (-90, 90) with lo <= hi, got {self.vfov_deg}")
        if not 0.0 < self.horizontal_resolution_deg <= 45.0:
            raise ValueError(f"horizontal_resolution_deg must lie in (0, 45], got {self.horizontal_resolution_deg}")
        if not 0.0 <= self.min_range_m < self.max_range_m:
            raise ValueError(f"need 0 <= min_range_m < max_range_m, got {self.min_range_m}, {self.max_range_m}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.range_noise_std_m < 0 or self.intensity_noise_std < 0:
            raise ValueError("noise standard deviations must be >= 0")
        if self.rotation_rate_hz <= 0:
            raise ValueError(f"rotation_rate_hz must be positive, got {self.rotation_rate_hz}")

    @property
    def n_columns(self) -> int:
        """Firings per revolution, ``round(360 / horizontal_resolution_deg)``."""
        return int(round(360.0 / self.horizontal_resolution_deg))

    @property
    def sweep_period_s(self) -> float:
        return 1.0 / self.rotation_rate_hz

    def beam_elevations_rad(self) -> np.ndarray:
        """(n_beams,) float64 beam elevations in radians, ascending: entry ``r`` is ring ``r``."""
        if self.vertical_angles_deg is not None:
            return np.sort(np.radians(np.asarray(self.vertical_angles_deg, dtype=np.float64)))
        lo, hi = self.vfov_deg
        return np.radians(np.linspace(lo, hi, int(self.n_beams)))

    def column_azimuths_rad(self) -> np.ndarray:
        """(n_columns,) azimuth of each firing, radians: from +pi, clockwise (decreasing), one revolution."""
        return math.pi - np.arange(self.n_columns) * (2.0 * math.pi / self.n_columns)

    def ray_directions(self) -> np.ndarray:
        """(n_columns, n_beams, 3) float64 unit ray directions in the sensor frame."""
        el = self.beam_elevations_rad()
        az = self.column_azimuths_rad()
        ce, se = np.cos(el)[None, :], np.sin(el)[None, :]
        ca, sa = np.cos(az)[:, None], np.sin(az)[:, None]
        return np.stack([ce * ca, ce * sa, np.broadcast_to(se, (az.size, el.size))], axis=-1)

    @staticmethod
    def preset(name: str) -> LidarConfig:
        """A named sensor model.

        * ``"hdl64"``: Velodyne HDL-64E, 64 beams from +2 to -24.9 degrees, 0.1728 degrees at 10 Hz
          (the sensor does 0.08-0.35 degrees at 5-20 Hz), 120 m.
        * ``"vlp32"``: Velodyne VLP-32C, 32 non-uniform beams from -25 to +15 degrees, 0.2 degrees, 200 m.
        * ``"vlp16"``: Velodyne VLP-16, 16 beams from -15 to +15 degrees, 0.2 degrees, 100 m.
        * ``"os128"``: Ouster OS1-128, 128 uniform beams from -22.5 to +22.5 degrees, 1024 columns (0.352
          degrees) at 10 Hz, 120 m (131k rays).
        * ``"demo"``: small and fast, 16 beams from -15 to +10 degrees, 0.5 degrees, 60 m (11.5k rays).
        """
        key = name.lower().replace("-", "").replace("_", "")
        if key in ("hdl64", "hdl64e"):
            return LidarConfig(n_beams=64, vertical_angles_deg=_HDL64E_DEG.copy(), vfov_deg=(-24.9, 2.0),
                               horizontal_resolution_deg=0.1728, max_range_m=120.0, min_range_m=0.9,
                               range_noise_std_m=0.015, dropout=0.01, name="hdl64")
        if key in ("vlp32", "vlp32c"):
            return LidarConfig(n_beams=32, vertical_angles_deg=_VLP32C_DEG.copy(), vfov_deg=(-25.0, 15.0),
                               horizontal_resolution_deg=0.2, max_range_m=200.0, min_range_m=0.5,
                               range_noise_std_m=0.02, dropout=0.01, name="vlp32")
        if key == "vlp16":
            return LidarConfig(n_beams=16, vfov_deg=(-15.0, 15.0), horizontal_resolution_deg=0.2,
                               max_range_m=100.0, min_range_m=0.5, range_noise_std_m=0.02, dropout=0.01,
                               name="vlp16")
        if key in ("os128", "os1128"):
            return LidarConfig(n_beams=128, vfov_deg=(-22.5, 22.5), horizontal_resolution_deg=360.0 / 1024,
                               max_range_m=120.0, min_range_m=0.5, range_noise_std_m=0.015, dropout=0.01,
                               name="os128")
        if key == "demo":
            return LidarConfig(n_beams=16, vfov_deg=(-15.0, 10.0), horizontal_resolution_deg=0.5,
                               max_range_m=60.0, min_range_m=0.5, range_noise_std_m=0.02, dropout=0.0,
                               name="demo")
        raise ValueError(f"unknown LiDAR preset {name!r}; known: 'hdl64', 'vlp32', 'vlp16', 'os128', 'demo'")

    def to_dict(self) -> dict[str, object]:
        """Plain types only (arrays and tuples as lists), ready for YAML/JSON."""
        return plain_types({f.name: getattr(self, f.name) for f in fields(self)})  # type: ignore[return-value]

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LidarConfig:
        """Inverse of :meth:`to_dict`. A ``preset`` key starts from :meth:`preset` and overrides the rest:
        ``{"preset": "hdl64", "dropout": 0.05}``. Unknown keys raise ``ValueError`` naming them."""
        data = dict(data)
        name = data.pop("preset", None)
        fields_ = known_fields(cls, data)
        if "vertical_angles_deg" in fields_ and fields_["vertical_angles_deg"] is not None:
            fields_["vertical_angles_deg"] = np.asarray(fields_["vertical_angles_deg"], dtype=np.float64)
        if name is not None:
            return cls.preset(str(name)).with_(**fields_)
        return cls(**fields_)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> LidarConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass
class LidarScan:
    """One LiDAR sweep.

    Attributes:
        points: (N, 3) float32, metres, sensor frame at the start of the sweep (REP-103: x forward, z up).
        intensity: (N,) float32 in [0, 1].
        ring: (N,) uint16 beam id, 0 = lowest elevation.
        time: (N,) float32 seconds since the start of the sweep.
        T_world_lidar: (4, 4) float64 sensor pose at the start of the sweep (maps sensor -> world).
        labels: (N,) int32 class id of the surface each point hit (``Scene.class_names``), or ``None``.
    """

    points: np.ndarray
    intensity: np.ndarray
    ring: np.ndarray
    time: np.ndarray
    T_world_lidar: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def points_world(self) -> np.ndarray:
        """(N, 3) float64 points in the world frame (through ``T_world_lidar``)."""
        T = self.T_world_lidar
        return self.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]


def _check_pose(T: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(T, dtype=np.float64)
    if arr.shape != (4, 4):
        raise ValueError(f"{name} must be a (4, 4) homogeneous transform, got shape {arr.shape}")
    rot = arr[:3, :3]
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-5) or np.linalg.det(rot) < 0:
        raise ValueError(f"{name}[:3, :3] is not a rotation matrix: {rot.tolist()}")
    return arr


def _interpolate_poses(T0: np.ndarray, T1: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses between T0 and T1 at fractions u (C,): rotations (C, 3, 3) by slerp, translations (C, 3) linear."""
    from scipy.spatial.transform import Rotation, Slerp

    slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([T0[:3, :3], T1[:3, :3]])))
    rots = slerp(u).as_matrix()
    trans = T0[:3, 3][None] + u[:, None] * (T1[:3, 3] - T0[:3, 3])[None]
    return rots, trans


def simulate_scan(
    scene: Scene,
    config: LidarConfig,
    T_world_lidar: np.ndarray,
    seed: int | np.random.Generator,
    *,
    T_world_lidar_end: np.ndarray | None = None,
) -> LidarScan:
    """Casts one sweep of ``config`` from pose ``T_world_lidar`` into ``scene``.

    Args:
        scene: what to scan (its cached ``RaycastingScene`` is used).
        config: the sensor model.
        T_world_lidar: (4, 4) sensor pose at the start of the sweep, sensor -> world.
        seed: seeds noise, dropout and intensity noise (an int or a numpy ``Generator``).
        T_world_lidar_end: (4, 4) pose at the end of the sweep. When given, the sensor moves during the sweep
            (slerp/linear interpolation per firing) and points are still expressed in the frame at the start of
            the sweep, i.e. with the motion distortion of a raw, un-deskewed sweep.

    Returns:
        The :class:`LidarScan`, returns in firing order (column by column, rings ascending in a column).
    """
    import open3d as o3d

    T0 = _check_pose(T_world_lidar, "T_world_lidar")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    dirs = config.ray_directions()  # (C, B, 3) sensor frame
    n_col, n_beam = dirs.shape[0], dirs.shape[1]
    col_time = np.arange(n_col) * (config.sweep_period_s / n_col)
    if T_world_lidar_end is None:
        rot_w = np.broadcast_to(T0[:3, :3], (n_col, 3, 3))
        org_w = np.broadcast_to(T0[:3, 3], (n_col, 3))
    else:
        T1 = _check_pose(T_world_lidar_end, "T_world_lidar_end")
        rot_w, org_w = _interpolate_poses(T0, T1, np.arange(n_col) / n_col)
    dirs_w = np.einsum("cij,cbj->cbi", rot_w, dirs)  # (C, B, 3)
    rays = np.concatenate([np.broadcast_to(org_w[:, None, :], dirs_w.shape), dirs_w], axis=-1).reshape(-1, 6)
    hits = scene.to_raycasting_scene().cast_rays(o3d.core.Tensor(rays.astype(np.float32)), nthreads=0)
    t_hit = hits["t_hit"].numpy().astype(np.float64)
    prim = hits["primitive_ids"].numpy()
    normals = hits["primitive_normals"].numpy()

    hit = np.isfinite(t_hit)
    ranges = t_hit + rng.normal(0.0, config.range_noise_std_m, t_hit.shape) if config.range_noise_std_m > 0 else t_hit
    keep = hit & (ranges >= config.min_range_m) & (ranges <= config.max_range_m)
    if config.dropout > 0:
        keep &= rng.random(t_hit.shape[0]) >= config.dropout
    idx = np.flatnonzero(keep)
    r = ranges[idx]
    col, beam = np.divmod(idx, n_beam)
    flat_dirs = dirs.reshape(-1, 3)[idx]
    if T_world_lidar_end is None:
        points = flat_dirs * r[:, None]
    else:  # hit in the world, then into the frame at the start of the sweep
        p_world = org_w[col] + dirs_w.reshape(-1, 3)[idx] * r[:, None]
        points = (p_world - T0[:3, 3]) @ T0[:3, :3]

    # intensity: reflectivity * (ambient + (1 - ambient) * cos(incidence)) * exp(-decay * range) + noise
    labels = scene.labels[prim[idx]].astype(np.int32)
    refl_of_class = np.array([config.reflectivity.get(n, config.default_reflectivity) for n in scene.class_names])
    cos_inc = np.abs(np.sum(normals[idx].astype(np.float64) * dirs_w.reshape(-1, 3)[idx], axis=1))
    a = config.intensity_ambient
    intensity = refl_of_class[labels] * (a + (1.0 - a) * cos_inc) * np.exp(-config.intensity_range_decay_per_m * r)
    if config.intensity_noise_std > 0:
        intensity = intensity + rng.normal(0.0, config.intensity_noise_std, intensity.shape)
    return LidarScan(
        points=points.astype(np.float32),
        intensity=np.clip(intensity, 0.0, 1.0).astype(np.float32),
        ring=beam.astype(np.uint16),
        time=col_time[col].astype(np.float32),
        T_world_lidar=T0.copy(),
        labels=labels,
    )
