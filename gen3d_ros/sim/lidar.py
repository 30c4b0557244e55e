"""Ray-cast spinning LiDAR over a :class:`~gen3d_ros.sim.scene.Scene` (open3d ``RaycastingScene``).

The sensor frame follows REP-103: x forward, y left, z up, metres. A sweep has ``n_columns`` firings spread over
one revolution; each firing casts one ray per beam. Beam ``ring`` ids are ordered by elevation, ring 0 the lowest
beam (as Velodyne drivers number rings). The head turns clockwise seen from above (azimuth decreasing), starting
behind the sensor (azimuth +pi) at time 0; ``time`` is the firing's offset within the sweep, seconds.

Returns are corrupted like a real sensor's: Gaussian range noise along the ray, random dropout, and a range
window. Intensity is a 0..1 proxy: per-class reflectivity times an incidence-angle term times a range decay,
plus noise. Optional real-sensor effects (all off in the presets): a partial horizontal field of view
(``hfov_deg``), per-ring dropout (``ring_dropout``: weak or dead lasers), range-dependent rain-like drops
(``rain_dropout_per_100m``), dark/specular surfaces (``class_dropout`` per class, ``dark_dropout`` for weak
returns) and an ego vehicle (``ego_box_m``: rays into it return nothing, as after a driver's self-filter).

Sensor randomisation for training (:class:`SensorRandomization`, :func:`random_lidar`) draws a sensor per
sample: 16/32/64/128 beams, uniform (Ouster-like), two-block (HDL-64-like), horizon-dense (VLP-32-like) or
centre-band (Hesai-like) layouts, field of view, resolution, noise and the dropout patterns above. The mounting
(height, tilt) is the dataset's (``sim/dataset.py``).

    cfg = LidarConfig.preset("hdl64")
    scan = simulate_scan(scene, cfg, T_world_lidar, seed=0)    # scan.points (N, 3) float32, sensor frame
    cfg = random_lidar(np.random.default_rng(0), SensorRandomization(), sensor_height_m=1.8)
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
    "hedge": 0.3,
    "grass": 0.3,
    "bush": 0.3,
    "pedestrian": 0.35,
    "cyclist": 0.4,
    "floor": 0.3,
    "rack": 0.5,
    "pallet": 0.35,
    "crate": 0.45,
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
    hfov_deg: tuple[float, float] | None = None
    """Partial horizontal field of view: azimuths (degrees, sensor frame, 0 = +x, anticlockwise) in [lo, hi]
    are cast, the rest not (e.g. a sensor behind a vehicle's cab); ``None`` = 360 degrees."""
    ring_dropout: tuple[float, ...] | None = None
    """Per-ring loss probability (n_beams,), ring 0 the lowest: weak or dead lasers; on top of ``dropout``."""
    rain_dropout_per_100m: float = 0.0
    """Rain-like loss: a return at range r is lost with probability ``rain_dropout_per_100m * r / 100``."""
    class_dropout: dict[str, float] = field(default_factory=dict)
    """Loss probability per hit class (dark or specular surfaces: car glass and paint, wet asphalt)."""
    dark_dropout: float = 0.0
    """Weak returns are lost: probability ``dark_dropout * max(0, 1 - intensity / 0.15)``."""
    ego_box_m: tuple[float, ...] | None = None
    """Ego vehicle (x0, y0, z0, x1, y1, z1), sensor frame, metres: rays that enter it return nothing."""
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
        self._check_effects()

    def _check_effects(self) -> None:
        """Validates the optional real-sensor effects (see the field docs)."""
        if self.hfov_deg is not None:
            lo, hi = (float(v) for v in self.hfov_deg)
            if not (-360.0 <= lo < hi <= lo + 360.0):
                raise ValueError(f"hfov_deg must be (lo, hi) degrees with lo < hi <= lo + 360, got {self.hfov_deg}")
            self.hfov_deg = (lo, hi)
        if self.ring_dropout is not None:
            rd = tuple(float(v) for v in self.ring_dropout)
            if len(rd) != int(self.n_beams) or not all(0.0 <= v <= 1.0 for v in rd):
                raise ValueError(f"ring_dropout needs n_beams={self.n_beams} probabilities in [0, 1], got {rd}")
            self.ring_dropout = rd
        probs = [self.rain_dropout_per_100m, self.dark_dropout, *self.class_dropout.values()]
        if not all(0.0 <= float(v) <= 1.0 for v in probs):
            raise ValueError(f"dropout probabilities must lie in [0, 1], got {probs}")
        if self.ego_box_m is not None:
            box = tuple(float(v) for v in self.ego_box_m)
            if len(box) != 6 or not all(box[i] < box[i + 3] for i in range(3)):
                raise ValueError(f"ego_box_m must be (x0, y0, z0, x1, y1, z1) with lo < hi, got {self.ego_box_m}")
            self.ego_box_m = box

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


def _cast_mask(config: LidarConfig, n_col: int, n_beam: int) -> np.ndarray | None:
    """(n_col * n_beam,) bool: the rays inside ``hfov_deg`` (None: all rays)."""
    if config.hfov_deg is None:
        return None
    lo, hi = config.hfov_deg
    az = np.degrees(config.column_azimuths_rad())
    inside = np.mod(az - lo, 360.0) <= (hi - lo)
    return np.repeat(inside, n_beam)


def _cast(scene: Scene, rays: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Casts ``rays`` (R, 6) (only those of ``mask``); t_hit (R,) float64 (inf: no hit), primitive ids (R,),
    normals (R, 3). Rays outside the mask are never cast (a partial field of view costs less)."""
    import open3d as o3d

    sel = np.arange(rays.shape[0]) if mask is None else np.flatnonzero(mask)
    hits = scene.to_raycasting_scene().cast_rays(o3d.core.Tensor(rays[sel].astype(np.float32)), nthreads=0)
    t_hit = np.full(rays.shape[0], np.inf)
    prim = np.zeros(rays.shape[0], np.uint32)
    normals = np.zeros((rays.shape[0], 3), np.float32)
    t_hit[sel] = hits["t_hit"].numpy()
    prim[sel] = hits["primitive_ids"].numpy()
    normals[sel] = hits["primitive_normals"].numpy()
    return t_hit, prim, normals


def _ray_box_entry(dirs: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """(R,) distance along rays from the sensor origin, directions ``dirs`` (R, 3), to where they enter the
    axis-aligned ``box`` (x0, y0, z0, x1, y1, z1) (slab test); inf for rays that miss it, metres."""
    lo, hi = np.asarray(box[:3]), np.asarray(box[3:])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        t0, t1 = lo * inv, hi * inv
    t_near = np.nanmax(np.minimum(t0, t1), axis=1)
    t_far = np.nanmin(np.maximum(t0, t1), axis=1)
    return np.where((t_near <= t_far) & (t_far > 0.0), np.maximum(t_near, 0.0), np.inf)


def _surface_dropout(config: LidarConfig, class_names: list[str], labels: np.ndarray,
                     intensity: np.ndarray) -> np.ndarray:
    """(N,) loss probability of each return: its class's ``class_dropout`` or the weak-return term, the larger."""
    per_class = np.array([config.class_dropout.get(n, 0.0) for n in class_names], dtype=np.float64)
    weak = config.dark_dropout * np.clip(1.0 - intensity / 0.15, 0.0, 1.0)
    return np.maximum(per_class[labels], weak)


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
    t_hit, prim, normals = _cast(scene, rays, _cast_mask(config, n_col, n_beam))
    if config.ego_box_m is not None:  # rays into the ego vehicle return nothing (a driver's self-filter)
        t_hit = np.where(_ray_box_entry(dirs.reshape(-1, 3), config.ego_box_m) < t_hit, np.inf, t_hit)

    hit = np.isfinite(t_hit)
    ranges = t_hit + rng.normal(0.0, config.range_noise_std_m, t_hit.shape) if config.range_noise_std_m > 0 else t_hit
    keep = hit & (ranges >= config.min_range_m) & (ranges <= config.max_range_m)
    if config.dropout > 0:
        keep &= rng.random(t_hit.shape[0]) >= config.dropout
    if config.ring_dropout is not None:  # flat ray index = column * n_beam + ring
        keep &= rng.random(t_hit.shape[0]) >= np.tile(np.asarray(config.ring_dropout), n_col)
    if config.rain_dropout_per_100m > 0:
        keep &= rng.random(t_hit.shape[0]) >= config.rain_dropout_per_100m * np.nan_to_num(ranges, posinf=0.0) / 100
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
    if config.class_dropout or config.dark_dropout > 0:
        lost = _surface_dropout(config, scene.class_names, labels, intensity)
        ok = rng.random(lost.shape[0]) >= lost
        points, intensity, labels, col, beam = points[ok], intensity[ok], labels[ok], col[ok], beam[ok]
    return LidarScan(
        points=points.astype(np.float32),
        intensity=np.clip(intensity, 0.0, 1.0).astype(np.float32),
        ring=beam.astype(np.uint16),
        time=col_time[col].astype(np.float32),
        T_world_lidar=T0.copy(),
        labels=labels,
    )


LAYOUTS = ("uniform", "two_block", "horizon_dense", "centre_band")
"""Vertical beam layouts of :func:`random_lidar`: Ouster-like uniform, HDL-64-like two blocks, VLP-32-like
dense around the horizon, Hesai-like (Pandar) a dense band below the horizon with sparse beams outside."""


@dataclass
class SensorRandomization:
    """Ranges of the sensors :func:`random_lidar` draws for training. Angles in degrees, lengths in metres."""

    beams: tuple[int, ...] = (16, 32, 64, 128)
    beam_weights: tuple[float, ...] = (0.2, 0.3, 0.3, 0.2)
    layouts: tuple[str, ...] = LAYOUTS
    lower_fov_deg: tuple[float, float] = (-30.0, -15.0)
    upper_fov_deg: tuple[float, float] = (2.0, 22.5)
    max_rays: int = 160_000
    """Columns are thinned until beams * columns <= max_rays (the cost of a sweep is the rays cast)."""
    horizontal_resolution_deg: tuple[float, float] = (0.1, 0.4)
    range_noise_std_m: tuple[float, float] = (0.005, 0.04)
    dropout: tuple[float, float] = (0.0, 0.08)
    ring_dropout_max: float = 0.3
    """Each ring's loss probability is uniform in [0, ring_dropout_max * u], u ~ U(0, 1) per sweep."""
    dead_ring_probability: float = 0.1
    """Probability that one ring of the sweep returns nothing."""
    rain_probability: float = 0.2
    rain_dropout_per_100m: tuple[float, float] = (0.05, 0.4)
    dark_dropout: tuple[float, float] = (0.0, 0.6)
    specular_classes: tuple[str, ...] = ("car",)
    specular_dropout: tuple[float, float] = (0.0, 0.3)
    partial_fov_probability: float = 0.15
    partial_fov_deg: tuple[float, float] = (180.0, 300.0)
    ego_probability: float = 0.6
    max_range_m: tuple[float, float] = (60.0, 200.0)
    min_range_m: tuple[float, float] = (0.3, 1.5)

    def to_dict(self) -> dict[str, object]:
        return plain_types({f.name: getattr(self, f.name) for f in fields(self)})  # type: ignore[return-value]

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SensorRandomization:
        values = known_fields(cls, data)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})  # type: ignore[arg-type]


def beam_layout(layout: str, n_beams: int, lo: float, hi: float) -> np.ndarray:
    """(n_beams,) ascending beam elevations in degrees over [lo, hi] for one of :data:`LAYOUTS`."""
    u = np.linspace(0.0, 1.0, n_beams)
    if layout == "uniform":
        return lo + (hi - lo) * u
    if layout == "two_block":  # lower half of the lasers over the lower ~60 % of the FOV, coarser
        split = lo + 0.6 * (hi - lo)
        n_lo = n_beams // 2
        return np.concatenate([np.linspace(lo, split, n_lo, endpoint=False), np.linspace(split, hi, n_beams - n_lo)])
    if layout == "horizon_dense":  # spacing grows with distance from the horizon: a cubic warp around 0
        t = np.linspace(-1.0, 1.0, n_beams)
        w = 0.35 * t + 0.65 * t**3
        return np.where(w < 0, -w * lo, w * hi)
    if layout == "centre_band":  # 70 % of the beams within [-6, +2] degrees, the rest spread outside
        b_lo, b_hi = max(lo, -6.0), min(hi, 2.0)
        n_band = int(round(0.7 * n_beams))
        n_below = (n_beams - n_band) // 2
        n_above = n_beams - n_band - n_below
        below = np.linspace(lo, b_lo, n_below, endpoint=False)
        above = np.linspace(b_hi, hi, n_above + 1)[1:]
        return np.concatenate([below, np.linspace(b_lo, b_hi, n_band), above])
    raise ValueError(f"unknown beam layout {layout!r}; choose from {LAYOUTS}")


def random_lidar(rng: np.random.Generator, ranges: SensorRandomization | None = None, *,
                 sensor_height_m: float = 1.73) -> LidarConfig:
    """A sensor drawn from ``ranges``: beams, layout, fields of view, resolution, noise and dropout patterns.

    ``sensor_height_m`` (metres above the ground) sizes the ego vehicle box (from the ground to 0.3-0.8 m below
    the sensor). The result's ``name`` is ``random-<beams>-<layout>``.
    """
    R = ranges if ranges is not None else SensorRandomization()
    n = int(rng.choice(np.asarray(R.beams), p=np.asarray(R.beam_weights) / np.sum(R.beam_weights)))
    layout = str(rng.choice(list(R.layouts)))
    lo, hi = rng.uniform(*R.lower_fov_deg), rng.uniform(*R.upper_fov_deg)
    angles = np.sort(beam_layout(layout, n, lo, hi))
    res = max(rng.uniform(*R.horizontal_resolution_deg), 360.0 * n / R.max_rays)
    ring_dropout = rng.uniform(0.0, R.ring_dropout_max * rng.random(), n)
    if rng.random() < R.dead_ring_probability:
        ring_dropout[rng.integers(n)] = 1.0
    hfov = None
    if rng.random() < R.partial_fov_probability:
        width = rng.uniform(*R.partial_fov_deg)
        start = rng.uniform(-180.0, 180.0)
        hfov = (start, start + width)
    ego = None
    if rng.random() < R.ego_probability:  # a vehicle under the sensor: roof 0.3-0.8 m below it
        length, width, back = rng.uniform(3.5, 5.5), rng.uniform(1.6, 2.2), rng.uniform(0.3, 0.7)
        ego = (-back * length, -width / 2, -sensor_height_m - 0.1, (1.0 - back) * length, width / 2,
               -rng.uniform(0.3, 0.8))
    specular = rng.uniform(*R.specular_dropout)
    return LidarConfig(
        n_beams=n, vertical_angles_deg=angles, vfov_deg=(float(angles[0]), float(angles[-1])),
        horizontal_resolution_deg=float(360.0 / max(1, round(360.0 / res))),
        max_range_m=float(rng.uniform(*R.max_range_m)), min_range_m=float(rng.uniform(*R.min_range_m)),
        range_noise_std_m=float(rng.uniform(*R.range_noise_std_m)), dropout=float(rng.uniform(*R.dropout)),
        ring_dropout=tuple(float(v) for v in ring_dropout),
        rain_dropout_per_100m=float(rng.uniform(*R.rain_dropout_per_100m)) if rng.random() < R.rain_probability
        else 0.0,
        class_dropout={c: float(specular) for c in R.specular_classes},
        dark_dropout=float(rng.uniform(*R.dark_dropout)), hfov_deg=hfov, ego_box_m=ego,
        name=f"random-{n}-{layout}",
    )
