"""Pre-training of cGCA's latent autoencoder (surface points -> codes per cell -> unsigned distance field).

Data: the procedural scenes of :class:`gen3d_ros.sim.dataset.CompletionDataset`, in its sample frame and on its
grid. For scene index ``i`` the encoder sees the dense surface samples behind ``dataset[i].complete`` (same
spacing, seed and crop, so their cells *are* ``complete``: ``tests/completion/test_cgca_autoencoder.py`` checks
it). No LiDAR sweep is simulated: the autoencoder only needs complete surfaces.

Ground-truth UDF (``gt_udf``): ``"mesh"`` (default) is the exact distance to the scene's triangles (open3d
``RaycastingScene.compute_distance``, the scene's cached BVH); ``"samples"`` is the KD-tree distance to a denser
surface sample (``gt_spacing_voxels``) cropped to the grid. Measured on tiny-preset scenes (voxel 0.5 m), the
KD-tree distances at near-surface queries are biased up by the sampling floor: mean 0.060 m at spacing 0.1 voxel
and 0.083 m at 0.25 voxel where the exact mean is 0.047 m, and the dense sample costs ~0.13 s per scene against
~0.01 s for the exact distances. The exact distance also sees surfaces just outside the crop (a query near the
grid's border may be nearer to them than to anything the encoder saw); the KD-tree mode does not.

Queries per sample: half near the surface (surface samples + N(0, sigma = ``near_sigma_voxels``)), half
uniform in the occupied cells grown by ``cell_margin_voxels``. Loss: L1 between the prediction and the target
clamped at the truncation ``trunc_voxels * voxel_size``, where a prediction above the truncation is not
penalised when the target is truncated; in voxel units, so it does not depend on the voxel size.

Validation (held-out scene seeds, offset by ``VALIDATION_SEED_OFFSET``, no augmentation): mean absolute UDF
error at near-surface queries, and Chamfer-L1 between the meshed UDF (:func:`mesh_from_udf`) and the
ground-truth surface samples. Outputs in the run folder: ``model.pt`` (format ``gen3d_ros.cgca_ae/1``: weights
+ every config + grid + backend + versions), ``metrics.json``, ``training_curve.png``, ``val_mesh.ply``.

    model, summary = train_autoencoder(make_autoencoder_config("tiny"), "runs/cgca_ae_tiny")
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from gen3d_ros.completion.checkpoint import autoencoder_checkpoint
from gen3d_ros.completion.latent import AutoencoderConfig, CGCAAutoencoder
from gen3d_ros.completion.training import distributed
from gen3d_ros.completion.training.data_presets import RICH_DATA, scaled
from gen3d_ros.completion.training.distributed import DistributedContext
from gen3d_ros.completion.training.loop import VALIDATION_SEED_OFFSET
from gen3d_ros.completion.training.prefetch import Prefetcher
from gen3d_ros.completion.training.precision import AMP_CHOICES, Precision, check_amp
from gen3d_ros.completion.training.progress import LogWindow, plot_moving_average
from gen3d_ros.completion.training.train_step import TrainStep
from gen3d_ros.completion.udf_mesh import mesh_from_udf, sample_mesh, save_mesh
from gen3d_ros.completion.voxelize import crop_voxels, point_indices, unique_voxels
from gen3d_ros.config import preset_with_overrides
from gen3d_ros.geometry.knn import nearest_distances
from gen3d_ros.outputs import save_figure, save_torch, write_json
from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig
from gen3d_ros.sim.scene import sample_surface
from gen3d_ros.sparse import get_backend

log = logging.getLogger("gen3d_ros.completion.training.autoencoder")


@dataclass
class AutoencoderTrainConfig:
    """Optimisation, queries and data of one autoencoder training run."""

    iterations: int = 3000
    batch_size: int = 2
    lr: float = 5e-4
    grad_clip: float = 1.0
    queries_per_sample: int = 8192
    """Half near the surface, half uniform around the occupied cells."""
    near_sigma_voxels: float = 0.25
    cell_margin_voxels: float = 1.0
    gt_udf: str = "mesh"
    """``"mesh"``: exact distance to the scene triangles; ``"samples"``: KD-tree to a dense surface sample."""
    gt_spacing_voxels: float = 0.1
    """Spacing of the dense ground-truth surface sample (``"samples"`` targets; validation Chamfer)."""
    latent_l2: float = 1e-4
    """Weight of mean(z^2): keeps the codes near the origin for cGCA's Gaussian latent transitions."""
    val_every: int = 500
    val_samples: int = 4
    val_queries: int = 8192
    mesh_resolution: int = 4
    """Lattice steps per voxel edge for validation meshes."""
    seed: int = 0
    device: str = "cpu"
    backend: str | None = None
    threads: int = 0
    """torch intra-op threads; 0 keeps torch's default. 1 is fastest on a busy small CPU (OpenMP spinning)."""
    amp: str = "off"
    """Mixed precision: ``off``, ``bf16`` or ``fp16`` (CUDA only); see :mod:`.precision`."""
    log_every: int = 10
    """Iterations between reads of the loss from the device (history, progress bar, rate)."""
    time_limit_s: float = 0.0
    """Stop after this many seconds of training (validation excluded) and finish as if done; 0 = no limit."""
    data_workers: int = 0
    """Processes making batches (surface samples, queries, exact UDF targets) ahead of the trainer
    (:mod:`.prefetch`); 0 = in the training process, as before."""
    model: dict = field(default_factory=dict)
    """:class:`AutoencoderConfig` fields."""
    data: dict = field(default_factory=dict)
    """:class:`CompletionDatasetConfig` fields."""

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.batch_size < 1 or self.queries_per_sample < 2:
            raise ValueError("need iterations >= 0, batch_size >= 1 and queries_per_sample >= 2")
        if not (self.lr > 0 and self.near_sigma_voxels >= 0 and self.cell_margin_voxels >= 0
                and self.gt_spacing_voxels > 0):
            raise ValueError("need lr > 0, near_sigma_voxels >= 0, cell_margin_voxels >= 0, gt_spacing_voxels > 0")
        if self.gt_udf not in ("mesh", "samples"):
            raise ValueError(f"gt_udf={self.gt_udf!r} is not 'mesh' or 'samples'")
        if self.val_every < 1 or self.val_samples < 0:
            raise ValueError(f"need val_every >= 1 and val_samples >= 0, got {self.val_every}, {self.val_samples}")
        if self.amp not in AMP_CHOICES or self.log_every < 1:
            raise ValueError(f"need amp in {AMP_CHOICES} and log_every >= 1, got {self.amp!r}, {self.log_every}")

    def to_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in AutoencoderTrainConfig.__dataclass_fields__}


PRESETS: dict[str, dict[str, Any]] = {
    # ~30 s of training on one CPU core (+ ~1 s validation): tests and CI. A small crop, coarse voxels, a narrow
    # network. Held-out Chamfer-L1 ~0.075 m = 0.15 voxels (seeds 0-2).
    "tiny": {
        "iterations": 150, "batch_size": 2, "lr": 2e-3, "queries_per_sample": 4096, "val_every": 150,
        "val_samples": 2, "val_queries": 4096,
        "model": {"z_dim": 16, "hidden": 64, "encoder_point_blocks": 2, "encoder_conv_blocks": 1,
                  "decoder_blocks": 3},
        "data": {"voxel_size_m": 0.5, "half_extent_m": [4.0, 4.0], "z_range_m": [-2.5, 2.5],
                 "scene": {"size_m": 30.0}, "lidar": {"preset": "demo"}, "augment": True, "length": 64,
                 "cache_size": 64},
    },
    # cGCA's sizes (32-dim codes, 4 x 128 decoder) on the GCA demo grid. ~170k surface points per sample: about
    # 5 s per iteration on one CPU core (hours for the whole run; meant for a GPU).
    "demo": {
        "iterations": 3000, "batch_size": 2, "lr": 5e-4, "queries_per_sample": 8192, "val_every": 500,
        "val_samples": 4,
        "model": {"z_dim": 32, "hidden": 128, "decoder_blocks": 4},
        "data": {"voxel_size_m": 0.4, "half_extent_m": [12.0, 12.0], "z_range_m": [-2.8, 4.4],
                 "scene": {"size_m": 50.0}, "lidar": {"preset": "vlp32"}, "augment": True, "length": 400,
                 "cache_size": 32},
    },
}


# The GPU hGCA's autoencoder (issue 13): the demo hierarchy's sizes on ±6 m crops of the 0.2 m grid of
# data_presets.RICH_DATA, batch 4, a wall-clock budget; batches made by 6 worker processes.
PRESETS["gpu_rich"] = {
    "iterations": 100_000, "time_limit_s": 100.0, "batch_size": 4, "lr": 1e-3, "queries_per_sample": 8192,
    "val_every": 100_000, "val_samples": 2, "data_workers": 6, "log_every": 20,
    "model": {"z_dim": 16, "hidden": 64, "encoder_point_blocks": 2, "encoder_conv_blocks": 1, "decoder_blocks": 3},
    "data": scaled(RICH_DATA, 2, (6.0, 6.0), 0.1),
}


def make_autoencoder_config(preset: str | None = None,
                            overrides: Mapping[str, Any] | None = None) -> AutoencoderTrainConfig:
    """An :class:`AutoencoderTrainConfig` from a preset plus overrides (dotted keys reach nested dicts)."""
    values = preset_with_overrides(PRESETS, preset, overrides, AutoencoderTrainConfig)
    config = AutoencoderTrainConfig(**values)
    AutoencoderConfig.from_dict(config.model)  # a typo fails before any data is generated
    check_amp(config.amp, config.device)
    CompletionDatasetConfig.from_dict(config.data)
    return config


# ---------------------------------------------------------------------------------------------- data


@dataclass
class SurfaceSample:
    """Complete surfaces of one dataset index on its grid (sample frame, metres).

    Attributes:
        points: (P, 3) float32 encoder input: the dense samples behind ``complete``, cropped to the grid.
        gt_points: (G, 3) float32 denser samples of the same surfaces, cropped alike (KD-tree targets,
            Chamfer), or None when not asked for.
        cells: (N, 3) int32 unique voxels of ``points`` (== the dataset's ``complete``).
        voxel_size: metres; origin: (3,) float64 corner of voxel (0, 0, 0); grid_shape: (3,) int64.
        sensor: (3,) float64 sensor position in the sample frame.
        T_world_sample: (4, 4) float64 sample frame -> world (the scene mesh's frame).
        scene: the scene (its cached ``RaycastingScene`` gives exact distances).
        index: dataset index.
    """

    points: np.ndarray
    gt_points: np.ndarray | None
    cells: np.ndarray
    voxel_size: float
    origin: np.ndarray
    grid_shape: np.ndarray
    sensor: np.ndarray
    T_world_sample: np.ndarray
    scene: Any
    index: int


def _surface_in_grid(dataset: CompletionDataset, index: int, T_sample_world: np.ndarray, spacing: float,
                     seed: int) -> np.ndarray:
    """Surface samples of scene ``index`` in the sample frame, cropped to the grid, exactly as
    :meth:`CompletionDataset.sample` builds ``complete`` (same box, margin and transform)."""
    cfg = dataset.config
    origin, shape = cfg.origin, cfg.grid_shape
    lo, hi = origin, origin + shape * cfg.voxel_size_m
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    T_world_sample = np.linalg.inv(T_sample_world)
    corners_w = corners @ T_world_sample[:3, :3].T + T_world_sample[:3, 3]
    dense = sample_surface(dataset.scene(index), spacing, seed=seed,
                           aabb=(corners_w.min(axis=0) - 0.1, corners_w.max(axis=0) + 0.1))
    dense_s = dense @ T_sample_world[:3, :3].T.astype(np.float32) + T_sample_world[:3, 3].astype(np.float32)
    return dense_s[crop_voxels(point_indices(dense_s, cfg.voxel_size_m, origin), shape)]


def surface_sample(dataset: CompletionDataset, index: int, T_sample_lidar: np.ndarray | None = None, *,
                   gt_spacing_voxels: float | None = 0.1) -> SurfaceSample:
    """The complete surfaces of dataset index ``index``, in the frame ``T_sample_lidar`` (identity: sensor frame).

    ``points`` are the samples behind ``dataset.sample(index, ...).complete`` (seed and spacing of the dataset),
    so ``cells`` equals that sample's ``complete`` when the same augmentation is passed. ``gt_spacing_voxels``:
    spacing of the denser ``gt_points`` (None: skip them).
    """
    cfg = dataset.config
    A = np.eye(4) if T_sample_lidar is None else np.asarray(T_sample_lidar, np.float64)
    T_sample_world = A @ np.linalg.inv(dataset.sensor_pose(index))
    spacing = cfg.surface_spacing_m if cfg.surface_spacing_m is not None else cfg.voxel_size_m / 4.0
    seed = int(np.random.default_rng([cfg.base_seed, index, 3]).integers(2**31))
    points = _surface_in_grid(dataset, index, T_sample_world, spacing, seed)
    gt_points = None
    if gt_spacing_voxels is not None:
        gt_seed = int(np.random.default_rng([cfg.base_seed, index, 4]).integers(2**31))
        gt_points = _surface_in_grid(dataset, index, T_sample_world, gt_spacing_voxels * cfg.voxel_size_m,
                                     gt_seed).astype(np.float32)
    cells = unique_voxels(point_indices(points, cfg.voxel_size_m, cfg.origin))
    return SurfaceSample(points.astype(np.float32), gt_points, cells, float(cfg.voxel_size_m),
                         cfg.origin.astype(np.float64), cfg.grid_shape.copy(), A[:3, 3].copy(),
                         np.linalg.inv(T_sample_world), dataset.scene(index), int(index))


def sample_queries(s: SurfaceSample, n: int, rng: np.random.Generator, *, near_sigma_voxels: float = 0.25,
                   cell_margin_voxels: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Training queries of one sample: (n, 3) float32 metres and (n,) bool "near the surface".

    ``n // 2`` are surface samples (``s.points``) plus N(0, sigma^2) per axis; the rest are uniform in a random
    occupied cell grown by ``cell_margin_voxels`` on every side.
    """
    v = s.voxel_size
    n_near = n // 2
    near = s.points[rng.integers(len(s.points), size=n_near)].astype(np.float64)
    near += rng.normal(0.0, near_sigma_voxels * v, size=near.shape)
    cells = s.cells[rng.integers(len(s.cells), size=n - n_near)].astype(np.float64)
    m = cell_margin_voxels
    far = s.origin + (cells + rng.uniform(-m, 1.0 + m, size=cells.shape)) * v
    flags = np.r_[np.ones(n_near, bool), np.zeros(n - n_near, bool)]
    return np.concatenate([near, far]).astype(np.float32), flags


def udf_targets(queries: np.ndarray, s: SurfaceSample, trunc: float, mode: str = "mesh") -> np.ndarray:
    """(M,) float32 ground-truth unsigned distance of (M, 3) sample-frame queries, clamped at ``trunc`` metres.

    ``mode``: ``"mesh"``, exact distance to the scene's triangles; ``"samples"``, distance to the nearest of
    ``s.gt_points`` (KD-tree).
    """
    if mode == "samples":
        if s.gt_points is None:
            raise ValueError("udf_targets(mode='samples') needs gt_points; build the sample with gt_spacing_voxels")
        d = nearest_distances(queries, s.gt_points)
    elif mode == "mesh":
        import open3d as o3d

        T = s.T_world_sample
        qw = np.ascontiguousarray(queries @ T[:3, :3].T + T[:3, 3], dtype=np.float32)
        d = s.scene.to_raycasting_scene().compute_distance(o3d.core.Tensor(qw)).numpy()
    else:
        raise ValueError(f"mode {mode!r} is not 'mesh' or 'samples'")
    return np.minimum(d, trunc).astype(np.float32)


def udf_loss(pred: torch.Tensor, target: torch.Tensor, trunc: float, voxel_size: float) -> torch.Tensor:
    """Mean L1 in voxel units between the raw prediction and the clamped target; a truncated target only asks
    for ``pred >= trunc`` (so the clamp does not cut the gradient of predictions above it)."""
    err = torch.where(target < trunc, (pred - target).abs(), torch.relu(trunc - pred))
    return err.mean() / float(voxel_size)


# ---------------------------------------------------------------------------------------------- model


def build_model(config: AutoencoderTrainConfig) -> CGCAAutoencoder:
    data = CompletionDatasetConfig.from_dict(config.data)
    return CGCAAutoencoder.from_config(AutoencoderConfig.from_dict(config.model), data.voxel_size_m,
                                       tuple(data.origin), backend=config.backend)


# ---------------------------------------------------------------------------------------------- evaluation


@dataclass
class ValidationItem:
    """A held-out surface with fixed near-surface queries and their targets."""

    surface: SurfaceSample
    queries: np.ndarray
    targets: np.ndarray


def validation_items(config: AutoencoderTrainConfig) -> list[ValidationItem]:
    """Held-out samples: scene seeds offset by ``VALIDATION_SEED_OFFSET``, sensor frame, fixed queries."""
    data = CompletionDatasetConfig.from_dict({**config.data, "augment": False,
                                              "base_seed": int(config.data.get("base_seed", 0))
                                              + VALIDATION_SEED_OFFSET})
    dataset = CompletionDataset(data)
    trunc = AutoencoderConfig.from_dict(config.model).trunc_voxels * data.voxel_size_m
    items = []
    for i in range(config.val_samples):
        s = surface_sample(dataset, i, gt_spacing_voxels=config.gt_spacing_voxels)
        rng = np.random.default_rng([config.seed, i, 7])
        q, near = sample_queries(s, 2 * config.val_queries, rng, near_sigma_voxels=config.near_sigma_voxels,
                                 cell_margin_voxels=config.cell_margin_voxels)
        q = q[near]
        items.append(ValidationItem(s, q, udf_targets(q, s, trunc, config.gt_udf)))
    return items


def reconstruct_mesh(model: CGCAAutoencoder, surface: SurfaceSample, *, resolution: int = 4, **mesh_kwargs):
    """Encode a surface and mesh the decoded UDF around its cells (sensor side kept)."""
    with torch.no_grad():
        latents = model.encode(surface.points, surface.voxel_size, surface.origin)
    return mesh_from_udf(model.udf_function(latents, surface.voxel_size, surface.origin), surface.cells,
                         surface.voxel_size, surface.origin, resolution=resolution,
                         sensor_origin=surface.sensor, **mesh_kwargs)


def evaluate_autoencoder(model: CGCAAutoencoder, items: list[ValidationItem], *, resolution: int = 4,
                         mesh_points: int = 50_000) -> dict[str, float]:
    """Means over ``items``: ``udf_mae`` (m, near-surface queries), ``chamfer_l1`` (m, mesh vs ground-truth
    samples; ``inf`` for an empty mesh), ``chamfer_l1_voxels``, ``faces`` and ``mesh_seconds`` per item."""
    from gen3d_ros.completion.metrics import chamfer_l1

    was_training = model.training
    model.eval()
    mae, chamfer, faces, seconds = [], [], [], []
    for k, item in enumerate(items):
        s = item.surface
        with torch.no_grad():
            latents = model.encode(s.points, s.voxel_size, s.origin)
            pred = model.decode(latents, item.queries, s.voxel_size, s.origin).cpu().numpy()
        mae.append(float(np.mean(np.abs(pred - item.targets))))
        t0 = time.perf_counter()
        mesh = reconstruct_mesh(model, s, resolution=resolution)
        seconds.append(time.perf_counter() - t0)
        faces.append(len(mesh.faces))
        chamfer.append(chamfer_l1(sample_mesh(mesh, mesh_points, seed=k), s.gt_points))
    model.train(was_training)
    v = items[0].surface.voxel_size if items else 1.0
    out = {"udf_mae": float(np.mean(mae)), "chamfer_l1": float(np.mean(chamfer)),
           "faces": float(np.mean(faces)), "mesh_seconds": float(np.mean(seconds))}
    out["chamfer_l1_voxels"] = out["chamfer_l1"] / v
    return out


# ---------------------------------------------------------------------------------------------- training


class AutoencoderTrainer:
    """One rank's autoencoder optimisation: scene draws (seeded per rank), queries and UDF targets, and one
    :class:`~gen3d_ros.completion.training.train_step.TrainStep` (autocast, DDP, clip, Adam) per iteration."""

    def __init__(self, config: AutoencoderTrainConfig, dist: DistributedContext | None = None) -> None:
        dist = dist or DistributedContext()
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.config, self.dist = config, dist
        self.rng = np.random.default_rng(dist.seed(config.seed))
        self.aug_rng = np.random.default_rng([dist.seed(config.seed), 1])
        self.device = dist.device(config.device)
        self.model = build_model(config).to(self.device)
        data = CompletionDatasetConfig.from_dict(config.data)
        self.dataset = CompletionDataset(data)
        self.voxel_size, self.origin = data.voxel_size_m, data.origin
        self.trunc = self.model.decoder.trunc_voxels * self.voxel_size
        self.train_step = TrainStep(self.model, self._loss, lr=config.lr, grad_clip=config.grad_clip,
                                    precision=Precision.create(config.amp, self.device), dist=dist)
        self.data_seconds = 0.0
        """Host seconds spent making batches (surface samples, queries, exact UDF targets) so far."""
        self._pool = None
        if config.data_workers > 0:  # batches made ahead by workers, one seed per batch drawn here
            seeds = iter(lambda: int(self.rng.integers(2**63)), None)
            self._pool = Prefetcher(_batch_state, (config.to_dict(),), _seeded_batch, seeds,
                                    workers=config.data_workers)

    def _loss(self, model: CGCAAutoencoder, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(L1 + latent_l2 * mean(z^2), the L1 alone detached) of one batch; float32 under autocast too."""
        pts, pb, qs, qb, target = batch
        latents = model.encode(pts, self.voxel_size, self.origin, pb)
        pred = model.decode(latents, qs, self.voxel_size, self.origin, qb, clamp=False).float()
        loss = udf_loss(pred, target, self.trunc, self.voxel_size)
        if self.config.latent_l2 > 0:
            return loss + self.config.latent_l2 * latents.feats.float().square().mean(), loss.detach()
        return loss, loss.detach()

    def iteration(self) -> torch.Tensor | None:
        """One optimiser step; its L1 loss (0-dim, on the device), or None when every drawn scene was empty.

        In a multi-rank run an empty draw is drawn again (every rank must take part in every step).
        """
        start = time.perf_counter()
        for _ in range(100):
            batch = (next(self._pool) if self._pool is not None
                     else _training_batch(self.config, self.dataset, self.rng, self.aug_rng, self.trunc))
            if batch is not None or not self.dist.active:
                break
        self.data_seconds += time.perf_counter() - start
        if batch is None:
            if self.dist.active:
                raise RuntimeError("100 autoencoder batches in a row had no surface in the crop; check data.*")
            return None
        _, loss = self.train_step(tuple(torch.from_numpy(a).to(self.device) for a in batch))
        return loss


def train_autoencoder(config: AutoencoderTrainConfig, out_dir: str | Path | None = None, *, progress: bool = True,
                      on_validation: Callable[[int, dict], None] | None = None) -> tuple[CGCAAutoencoder, dict]:
    """Train the latent autoencoder; returns the model (eval mode) and a summary (curves, final validation
    metrics, ``train_seconds``, ``iters_per_s``). In a ``torchrun`` job rank 0 alone validates and writes."""
    from tqdm import tqdm

    dist = distributed.current()
    trainer = AutoencoderTrainer(config, dist)
    model = trainer.model
    val = validation_items(config) if config.val_samples and dist.is_main else []
    history: dict[str, list] = {"iteration": [], "loss": [], "val_iteration": [], "val": [], "log_iteration": [],
                                "iters_per_s": []}
    window = LogWindow(history)
    bar = tqdm(range(1, config.iterations + 1), desc="train cGCA autoencoder", unit="it",
               disable=not progress or not dist.is_main, dynamic_ncols=True)
    start, validation_seconds, done = time.perf_counter(), 0.0, 0
    for it in bar:
        if config.time_limit_s and time.perf_counter() - start - validation_seconds > config.time_limit_s:
            window.flush()
            if val and done and history["val_iteration"][-1:] != [done]:
                metrics = evaluate_autoencoder(model, val, resolution=config.mesh_resolution)
                history["val_iteration"].append(done)
                history["val"].append(metrics)
            break
        loss = trainer.iteration()
        done = it
        if loss is not None:
            window.add(it, {"loss": loss})
        if it % config.log_every == 0 or it == config.iterations:
            bar.set_postfix(window.flush())
        if val and (it % config.val_every == 0 or it == config.iterations):
            t0 = time.perf_counter()
            metrics = evaluate_autoencoder(model, val, resolution=config.mesh_resolution)
            history["val_iteration"].append(it)
            history["val"].append(metrics)
            log.info("iteration %d: val UDF MAE %.4f m, Chamfer-L1 %.4f m (%.2f voxels)", it, metrics["udf_mae"],
                     metrics["chamfer_l1"], metrics["chamfer_l1_voxels"])
            if on_validation:
                on_validation(it, metrics)
            validation_seconds += time.perf_counter() - t0
            window.restart()
    model.eval()
    train_seconds = time.perf_counter() - start
    summary = {"history": history, "final": history["val"][-1] if history["val"] else {},
               "train_seconds": train_seconds, "validation_seconds": validation_seconds,
               "iterations_done": done, "iters_per_s": done / max(train_seconds - validation_seconds, 1e-9)}
    if out_dir is not None and dist.is_main:
        save_run(model, config, summary, Path(out_dir), val)
    dist.barrier()  # the other ranks return once the run folder is complete
    return model, summary


def _batch_state(config: Mapping[str, Any]) -> tuple[AutoencoderTrainConfig, CompletionDataset, float]:
    """A data worker's state: the run's config, its dataset and the UDF truncation (metres)."""
    cfg = AutoencoderTrainConfig(**config)
    model_cfg = AutoencoderConfig.from_dict(cfg.model)
    data = CompletionDatasetConfig.from_dict(cfg.data)
    return cfg, CompletionDataset(data), model_cfg.trunc_voxels * data.voxel_size_m


def _seeded_batch(state: tuple[AutoencoderTrainConfig, CompletionDataset, float],
                  seed: int) -> tuple[np.ndarray, ...] | None:
    """:func:`_training_batch` with generators seeded from ``seed`` (a worker's unit of work)."""
    cfg, dataset, trunc = state
    return _training_batch(cfg, dataset, np.random.default_rng(seed), np.random.default_rng([seed, 1]), trunc)


def _training_batch(config: AutoencoderTrainConfig, dataset: CompletionDataset, rng: np.random.Generator,
                    aug_rng: np.random.Generator, trunc: float) -> tuple[np.ndarray, ...] | None:
    """One batch: surface points + their batch index, queries + their batch index, truncated UDF targets
    (None when every drawn scene was empty in the crop)."""
    pts, pb, qs, qb, tg = [], [], [], [], []
    for b in range(config.batch_size):
        index = int(rng.integers(len(dataset)))
        A = dataset.augmentation(aug_rng if dataset.config.augment else None)
        s = surface_sample(dataset, index, A,
                           gt_spacing_voxels=config.gt_spacing_voxels if config.gt_udf == "samples" else None)
        if len(s.points) == 0:
            continue
        q, _ = sample_queries(s, config.queries_per_sample, rng, near_sigma_voxels=config.near_sigma_voxels,
                              cell_margin_voxels=config.cell_margin_voxels)
        pts.append(s.points)
        pb.append(np.full(len(s.points), b))
        qs.append(q)
        qb.append(np.full(len(q), b))
        tg.append(udf_targets(q, s, trunc, config.gt_udf))
    if not pts:
        return None
    return tuple(np.concatenate(a) for a in (pts, pb, qs, qb, tg))


def save_checkpoint(model: CGCAAutoencoder, config: AutoencoderTrainConfig, path: Path,
                    metrics: Mapping | None = None) -> None:
    """Write ``model`` as an autoencoder checkpoint (:func:`~gen3d_ros.completion.checkpoint.autoencoder_checkpoint`)."""
    save_torch(autoencoder_checkpoint(model, config.to_dict(), backend=get_backend(config.backend).name,
                                      metrics=metrics), path)


def save_run(model: CGCAAutoencoder, config: AutoencoderTrainConfig, summary: dict, out_dir: Path,
             val: list[ValidationItem] | None = None) -> None:
    """``model.pt``, ``metrics.json``, ``training_curve.png`` and (with validation items) ``val_mesh.ply``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, config, out_dir / "model.pt", summary.get("final"))
    metrics = {"final": summary["final"], "train_seconds": summary["train_seconds"],
               "iters_per_s": summary.get("iters_per_s"), "config": config.to_dict()}
    write_json(out_dir / "metrics.json", metrics, default=str)
    plot_training_curve(summary["history"], out_dir / "training_curve.png")
    if val:
        save_mesh(out_dir / "val_mesh.ply", reconstruct_mesh(model, val[0].surface, resolution=config.mesh_resolution))


def plot_training_curve(history: dict, path: Path) -> None:
    """Loss (raw + moving average) and the validation UDF error / Chamfer-L1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    its, loss = np.asarray(history["iteration"]), np.asarray(history["loss"])
    ax_loss.plot(its, loss, color="0.75", lw=0.8, label="L1 per step")
    plot_moving_average(ax_loss, its, loss, "C0")
    ax_loss.set(xlabel="iteration", ylabel="loss [voxels]", title="truncated UDF L1", yscale="log")
    ax_loss.legend()
    if history["val"]:
        vits = history["val_iteration"]
        ax_val.plot(vits, [m["udf_mae"] for m in history["val"]], "o-", color="C1", label="UDF MAE near surface")
        ax_val.plot(vits, [m["chamfer_l1"] for m in history["val"]], "s-", color="C2", label="mesh Chamfer-L1")
        ax_val.set(xlabel="iteration", ylabel="metres", title="held-out scenes")
        ax_val.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
