"""Scene-completion training pairs from simulated streets: (partial LiDAR voxels, complete surface voxels).

Sample ``i`` comes from the scene ``generate_scene(config.scene, base_seed + i // scans_per_scene)``: a sensor
pose on the road near the scene centre, one LiDAR sweep from it, and dense surface samples of the scene. Both
are expressed in the *sample frame* (the sensor frame, then the optional augmentation), cropped to the same box
``[-hx, hx) x [-hy, hy) x [z_lo, z_hi)`` metres and voxelised on the same grid, whose voxel (0, 0, 0) has its
corner at ``origin = (-hx, -hy, z_lo)``. Every voxel index lies in ``[0, grid_shape)``.

``partial`` is a noisy subset of ``complete``: the same surfaces, seen by the sensor (a few voxels differ where
range noise pushes a return across a voxel face).

Sensor randomisation (``sensor="randomized"``): each index draws its own LiDAR
(:func:`~gen3d_ros.sim.lidar.random_lidar` over ``sensor_randomization``), mounting height (``sensor_height_m`` may be a [lo, hi] range, drawn uniformly)
and tilt (roll/pitch up to ``tilt_max_deg``). The sample frame stays *gravity-aligned* at the sensor (x along
the sensor's heading, z up, origin at the sensor, so the ground lies near ``z = -height``): the tilted sweep is
rotated back to level, up to an ``alignment_residual_deg`` error, as a ground/IMU alignment would leave it.
The ground-truth surfaces are in the exact level frame.

Coordination with the runtime (``completion/alignment.py``): a model's ``train_config.data.sensor_height_m``
(a number, or the [lo, hi] range: its middle) is the training sensor height; real sweeps are gravity-aligned
and shifted so their ground lies at ``-sensor_height_m`` before completion.

    ds = CompletionDataset(CompletionDatasetConfig(voxel_size_m=0.2, augment=True))
    sample = ds[0]          # CompletionSample; sample.partial (M, 3) int32, sample.complete (K, 3) int32
    batch = collate_sparse([ds[0], ds[1]])   # {"partial": (N, 4) int32 rows (batch, x, y, z), ...}

Works as a ``torch.utils.data.Dataset`` (``__len__``/``__getitem__``) without importing torch. Scenes are kept in
a small LRU cache, so consecutive indices of one scene (``scans_per_scene > 1``) reuse it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np

from gen3d_ros.completion.grid import VoxelGrid
from gen3d_ros.completion.voxelize import crop_voxels, point_indices, unique_voxels
from gen3d_ros.config import known_fields, plain_types
from gen3d_ros.sim.lidar import LidarConfig, SensorRandomization, random_lidar, simulate_scan
from gen3d_ros.sim.scene import Scene, SceneConfig, generate_scene, sample_surface


@dataclass
class CompletionDatasetConfig:
    """What the completion dataset generates. Lengths in metres, angles in degrees."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    lidar: LidarConfig = field(default_factory=lambda: LidarConfig.preset("hdl64"))
    voxel_size_m: float = 0.2
    half_extent_m: tuple[float, float] = (16.0, 16.0)
    """Crop half sizes in x and y around the sensor, metres."""
    z_range_m: tuple[float, float] = (-3.0, 5.0)
    """Crop heights relative to the sensor, metres (lo inclusive, hi exclusive)."""
    surface_spacing_m: float | None = None
    """Spacing of the dense surface samples behind ``complete``; ``None`` = voxel_size_m / 4."""
    sensor_height_m: float | tuple[float, float] = 1.73
    """Sensor height above the road, metres: a number, or a (lo, hi) range drawn uniformly per sample."""
    sensor: str = "fixed"
    """``"fixed"``: every sample uses ``lidar``; ``"randomized"``: a sensor drawn per sample from
    ``sensor_randomization`` (``lidar`` is then unused)."""
    sensor_randomization: SensorRandomization = field(default_factory=SensorRandomization)
    tilt_max_deg: float = 0.0
    """The sensor's roll/pitch: a random axis in the horizontal plane, angle uniform in [0, tilt_max_deg]."""
    alignment_residual_deg: float = 0.0
    """Standard deviation of the error left after levelling the tilted sweep (per axis, degrees)."""
    warehouse_fraction: float = 0.0
    """Share of scene seeds built as indoor warehouses (``scene`` with ``kind="warehouse"``) instead of streets."""
    lateral_jitter_m: float = 0.3
    """The sensor's lateral offset from the centreline is uniform in [-jitter, jitter]."""
    yaw_jitter_deg: float = 5.0
    """Standard deviation of the sensor's yaw about the road direction."""
    augment: bool = False
    """Random rotation about z and random x/y flips, applied to partial and complete alike."""
    augment_rotation: bool = True
    augment_flips: bool = True
    augment_seed: int | None = None
    """Seeds the augmentation stream; ``None`` draws fresh entropy."""
    base_seed: int = 0
    length: int = 1000
    scans_per_scene: int = 1
    cache_size: int = 4
    """Scenes kept in memory."""

    def __post_init__(self) -> None:
        self.half_extent_m = tuple(float(h) for h in self.half_extent_m)  # type: ignore[assignment]
        self.z_range_m = tuple(float(z) for z in self.z_range_m)  # type: ignore[assignment]
        if len(self.half_extent_m) != 2 or min(self.half_extent_m) <= 0:
            raise ValueError(f"half_extent_m must be two positive numbers (x, y), got {self.half_extent_m}")
        if len(self.z_range_m) != 2 or not self.z_range_m[0] < self.z_range_m[1]:
            raise ValueError(f"z_range_m must be (lo, hi) with lo < hi, got {self.z_range_m}")
        if not self.voxel_size_m > 0:
            raise ValueError(f"voxel_size_m must be positive, got {self.voxel_size_m}")
        for name in ("half_extent_m", "z_range_m"):
            for v in getattr(self, name):
                if abs(v / self.voxel_size_m - round(v / self.voxel_size_m)) > 1e-6:
                    raise ValueError(
                        f"{name}={getattr(self, name)} must be a multiple of voxel_size_m={self.voxel_size_m}"
                    )
        if self.length < 0 or self.scans_per_scene < 1 or self.cache_size < 1:
            raise ValueError("need length >= 0, scans_per_scene >= 1 and cache_size >= 1")
        if isinstance(self.sensor_height_m, (list, tuple)):
            lo, hi = (float(v) for v in self.sensor_height_m)
            if not 0.0 < lo <= hi:
                raise ValueError(f"sensor_height_m range must be (lo, hi) with 0 < lo <= hi, "
                                 f"got {self.sensor_height_m}")
            self.sensor_height_m = (lo, hi)
        if self.sensor not in ("fixed", "randomized"):
            raise ValueError(f"sensor must be 'fixed' or 'randomized', got {self.sensor!r}")
        if not 0.0 <= self.warehouse_fraction <= 1.0:
            raise ValueError(f"warehouse_fraction must lie in [0, 1], got {self.warehouse_fraction}")
        if isinstance(self.sensor_randomization, Mapping):
            self.sensor_randomization = SensorRandomization.from_dict(self.sensor_randomization)
        if not 0.0 <= self.tilt_max_deg < 30.0 or self.alignment_residual_deg < 0:
            raise ValueError(f"need 0 <= tilt_max_deg < 30 and alignment_residual_deg >= 0, got "
                             f"{self.tilt_max_deg}, {self.alignment_residual_deg}")

    def to_dict(self) -> dict[str, object]:
        """Plain types only, nested ``scene`` and ``lidar`` dicts, ready for YAML/JSON."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["scene"] = self.scene.to_dict()
        out["lidar"] = self.lidar.to_dict()
        out["sensor_randomization"] = self.sensor_randomization.to_dict()
        return plain_types(out)  # type: ignore[return-value]

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CompletionDatasetConfig:
        """Inverse of :meth:`to_dict`; ``lidar`` may be ``{"preset": "vlp32", ...}``."""
        values = known_fields(cls, data)
        if isinstance(values.get("scene"), Mapping):
            values["scene"] = SceneConfig.from_dict(values["scene"])  # type: ignore[arg-type]
        if isinstance(values.get("lidar"), Mapping):
            values["lidar"] = LidarConfig.from_dict(values["lidar"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]

    @property
    def grid(self) -> VoxelGrid:
        """The voxel grid of the samples (sample frame): the crop box at ``voxel_size_m``."""
        return VoxelGrid.from_extent(self.voxel_size_m, self.half_extent_m, self.z_range_m)

    @property
    def origin(self) -> np.ndarray:
        """(3,) float64 corner of voxel (0, 0, 0) in the sample frame, metres."""
        return self.grid.origin.copy()

    @property
    def grid_shape(self) -> np.ndarray:
        """(3,) int64 number of voxels per axis."""
        return self.grid.shape.copy()


@dataclass
class CompletionSample:
    """One training pair. Frames: the *sample frame* is the sensor frame followed by the augmentation.

    Attributes:
        partial: (M, 3) int32 unique voxel indices of the LiDAR sweep.
        complete: (K, 3) int32 unique voxel indices of the scene surface.
        voxel_size: voxel edge, metres.
        origin: (3,) float32 corner of voxel (0, 0, 0) in the sample frame, metres.
        scene_seed: seed of the scene (``generate_scene(config.scene, scene_seed)``).
        T_world_lidar: (4, 4) float64 level sensor pose (gravity-aligned, at the sensor), sample-before-
            augmentation frame -> world; the sweep itself was cast from it tilted by the sample's ``sensor_draw``.
        partial_points: (N, 3) float32 raw LiDAR points in the sample frame, cropped to the grid.
        grid_shape: (3,) int64 voxels per axis; indices lie in ``[0, grid_shape)``.
        T_sample_lidar: (4, 4) float64 augmentation, sensor frame -> sample frame (identity without
            augmentation; its rotation part has determinant -1 after an odd number of flips).
        index: dataset index.
    """

    partial: np.ndarray
    complete: np.ndarray
    voxel_size: float
    origin: np.ndarray
    scene_seed: int
    T_world_lidar: np.ndarray
    partial_points: np.ndarray
    grid_shape: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    T_sample_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))
    index: int = -1


class CompletionDataset:
    """Simulated (partial, complete) voxel pairs; indexable, torch-``Dataset`` compatible."""

    def __init__(self, config: CompletionDatasetConfig | None = None) -> None:
        self.config = config if config is not None else CompletionDatasetConfig()
        self._scenes: OrderedDict[int, Scene] = OrderedDict()
        self._aug_rng = np.random.default_rng(self.config.augment_seed)

    def __len__(self) -> int:
        return self.config.length

    def __getitem__(self, index: int) -> CompletionSample:
        return self.sample(index, self._aug_rng if self.config.augment else None)

    def scene_seed(self, index: int) -> int:
        """Seed of the scene behind sample ``index``."""
        return self.config.base_seed + index // self.config.scans_per_scene

    def scene(self, index: int) -> Scene:
        """The scene behind sample ``index`` (generated once, then from the LRU cache)."""
        seed = self.scene_seed(index)
        if seed in self._scenes:
            self._scenes.move_to_end(seed)
            return self._scenes[seed]
        config = self.config.scene
        if self.config.warehouse_fraction > 0 and np.random.default_rng([seed, 7]).random() < \
                self.config.warehouse_fraction:
            config = replace(config, kind="warehouse")
        scene = generate_scene(config, seed)
        self._scenes[seed] = scene
        while len(self._scenes) > self.config.cache_size:
            self._scenes.popitem(last=False)
        return scene

    def sensor_pose(self, index: int) -> np.ndarray:
        """(4, 4) ``T_world_lidar`` of sample ``index``: on the road near the scene centre, deterministic."""
        cfg = self.config
        scene = self.scene(index)
        rng = np.random.default_rng([cfg.base_seed, index, 1])
        road = scene.road
        # keep the crop mostly inside the scene: centreline points within reach of the scene centre
        reach = max(cfg.scene.size_m / 2.0 - max(cfg.half_extent_m), 4.0)
        near = np.linalg.norm(road.xy, axis=1) <= reach
        if near.any():
            s_lo, s_hi = float(road.s[near].min()), float(road.s[near].max())
        else:
            s_mid = float(road.project(np.zeros((1, 2)))[0][0])
            s_lo = s_hi = s_mid
        s = rng.uniform(s_lo, s_hi) if s_hi > s_lo else s_lo
        return scene.road_pose(
            s,
            lateral_offset_m=rng.uniform(-cfg.lateral_jitter_m, cfg.lateral_jitter_m),
            height_m=self.sensor_draw(index).height_m,
            yaw_offset_rad=math.radians(rng.normal(0.0, cfg.yaw_jitter_deg)) if cfg.yaw_jitter_deg > 0 else 0.0,
        )

    def sensor_draw(self, index: int) -> SensorDraw:
        """The sensor of sample ``index``: the fixed ``lidar`` or a randomised one, its height and tilt.

        Deterministic in ``(base_seed, index)``; draws nothing (and changes nothing) for a fixed sensor at a
        fixed height without tilt, so such configs give the samples they always gave.
        """
        cfg = self.config
        rng = np.random.default_rng([cfg.base_seed, index, 4])
        h = cfg.sensor_height_m
        height = float(rng.uniform(*h)) if isinstance(h, tuple) else float(h)
        lidar = (random_lidar(rng, cfg.sensor_randomization, sensor_height_m=height)
                 if cfg.sensor == "randomized" else cfg.lidar)
        tilt = _horizontal_axis_rotation(rng, math.radians(rng.uniform(0.0, cfg.tilt_max_deg))) \
            if cfg.tilt_max_deg > 0 else np.eye(3)
        residual = _small_rotation(rng, math.radians(cfg.alignment_residual_deg)) \
            if cfg.alignment_residual_deg > 0 else np.eye(3)
        return SensorDraw(lidar, height, tilt, residual)

    def augmentation(self, rng: np.random.Generator | None) -> np.ndarray:
        """(4, 4) ``T_sample_lidar``: rotation about z by U[0, 2 pi) and independent x/y flips (p = 0.5)."""
        A = np.eye(4)
        if rng is None:
            return A
        if self.config.augment_rotation:
            a = rng.uniform(0.0, 2.0 * math.pi)
            c, s = math.cos(a), math.sin(a)
            A[:2, :2] = [[c, -s], [s, c]]
        if self.config.augment_flips:
            flips = np.where(rng.random(2) < 0.5, -1.0, 1.0)
            A[:3, :3] = np.diag([flips[0], flips[1], 1.0]) @ A[:3, :3]
        return A

    def sample(self, index: int, aug_rng: np.random.Generator | None = None) -> CompletionSample:
        """Sample ``index``; augmented with draws from ``aug_rng`` when it is given.

        The scene, pose, scan and surface samples depend on ``index`` only, so the same index with and without
        augmentation gives the same data in two frames (related by ``T_sample_lidar``).
        """
        cfg = self.config
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of length {len(self)}")
        scene = self.scene(index)
        T_world_lidar = self.sensor_pose(index)  # level, at the sensor
        draw = self.sensor_draw(index)
        T_world_sensor = T_world_lidar.copy()
        T_world_sensor[:3, :3] = T_world_lidar[:3, :3] @ draw.tilt
        scan = simulate_scan(scene, draw.lidar, T_world_sensor, np.random.default_rng([cfg.base_seed, index, 2]))
        A = self.augmentation(aug_rng)
        T_sample_world = A @ np.linalg.inv(T_world_lidar)

        origin = cfg.origin
        shape = cfg.grid_shape
        # partial: the sweep levelled (up to the alignment residual), in the sample frame, voxelised, cropped
        level = draw.residual @ draw.tilt
        pts = scan.points.astype(np.float64) @ (A[:3, :3] @ level).T + A[:3, 3]
        idx = point_indices(pts, cfg.voxel_size_m, origin)
        inside = crop_voxels(idx, shape)
        partial_points = pts[inside].astype(np.float32)
        partial = unique_voxels(idx[inside])

        # complete: dense surface samples of the triangles near the crop box, same frame, same grid
        lo = origin
        hi = origin + shape * cfg.voxel_size_m
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        T_world_sample = np.linalg.inv(T_sample_world)
        corners_w = corners @ T_world_sample[:3, :3].T + T_world_sample[:3, 3]
        spacing = cfg.surface_spacing_m if cfg.surface_spacing_m is not None else cfg.voxel_size_m / 4.0
        dense_seed = int(np.random.default_rng([cfg.base_seed, index, 3]).integers(2**31))
        dense = sample_surface(scene, spacing, seed=dense_seed,
                               aabb=(corners_w.min(axis=0) - 0.1, corners_w.max(axis=0) + 0.1))
        dense_s = dense @ T_sample_world[:3, :3].T.astype(np.float32) + T_sample_world[:3, 3].astype(np.float32)
        cidx = point_indices(dense_s, cfg.voxel_size_m, origin)
        complete = unique_voxels(cidx[crop_voxels(cidx, shape)])
        return CompletionSample(
            partial=partial,
            complete=complete,
            voxel_size=float(cfg.voxel_size_m),
            origin=origin.astype(np.float32),
            scene_seed=self.scene_seed(index),
            T_world_lidar=T_world_lidar,
            partial_points=partial_points,
            grid_shape=shape.copy(),
            T_sample_lidar=A,
            index=int(index),
        )


@dataclass
class SensorDraw:
    """The sensor of one sample: its LiDAR, height above the road (metres), true tilt (3, 3) (level frame <-
    sensor frame) and the levelling error (3, 3) left in the sample frame."""

    lidar: LidarConfig
    height_m: float
    tilt: np.ndarray
    residual: np.ndarray


def _horizontal_axis_rotation(rng: np.random.Generator, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about a random horizontal axis (a roll/pitch tilt)."""
    from scipy.spatial.transform import Rotation

    a = rng.uniform(0.0, 2.0 * math.pi)
    return Rotation.from_rotvec(angle * np.array([math.cos(a), math.sin(a), 0.0])).as_matrix()


def _small_rotation(rng: np.random.Generator, std: float) -> np.ndarray:
    """(3, 3) rotation with roll and pitch ~ N(0, std) radians (yaw untouched: levelling does not see it)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.array([*rng.normal(0.0, std, 2), 0.0])).as_matrix()


def collate_sparse(samples: list[CompletionSample]) -> dict[str, np.ndarray]:
    """Batches samples as sparse coordinates with a leading batch column.

    Returns:
        ``partial`` (N, 4) int32 and ``complete`` (K, 4) int32 rows (batch, x, y, z); ``partial_points``
        (P, 4) float32 rows (batch, x, y, z metres); ``origin`` (B, 3) float32; ``voxel_size`` (B,) float32;
        ``T_world_lidar`` and ``T_sample_lidar`` (B, 4, 4) float64; ``scene_seed`` (B,) int64.
    """
    def stack(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
        rows = [np.column_stack([np.full(a.shape[0], b, dtype=dtype), a.astype(dtype)]) for b, a in enumerate(arrays)]
        return np.concatenate(rows) if rows else np.zeros((0, 4), dtype)

    return {
        "partial": stack([s.partial for s in samples], np.int32),
        "complete": stack([s.complete for s in samples], np.int32),
        "partial_points": stack([s.partial_points for s in samples], np.float32),
        "origin": np.stack([s.origin for s in samples]).astype(np.float32),
        "voxel_size": np.array([s.voxel_size for s in samples], np.float32),
        "T_world_lidar": np.stack([s.T_world_lidar for s in samples]),
        "T_sample_lidar": np.stack([s.T_sample_lidar for s in samples]),
        "scene_seed": np.array([s.scene_seed for s in samples], np.int64),
    }
