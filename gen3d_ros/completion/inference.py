"""Completion at run time: a trained model applied to one sweep. What a node loads; no training, no simulator.

- :class:`GCACompleter`: a (planned) GCA kernel and its grid: points -> cells -> completed cells.
- :class:`SceneCompleter`: hGCA (CVPR 2024) — a coarse GCA with the BEV planner, then a fine cGCA conditioned on
  it, decoded to a mesh, on one sweep (sensor frame, metres, sensor at the origin):

  1. **coarse**: the sweep voxelised on the coarse grid (e.g. 0.4 m); the planned GCA kernel
     (:class:`~gen3d_ros.completion.planned_gca.PlannedGCATransition`) plans once from the input and grows it;
  2. **fine**: the sweep's points encoded on the fine grid (coarse / ``coarse_scale``, same origin) by the cGCA
     autoencoder; the fine cGCA kernel grows (cells, codes) inside the coarse completion;
  3. **mesh**: the decoder's unsigned distance field meshed near the fine cells (:func:`mesh_from_udf`: marching
     cubes at a small level, double walls and islands removed), coloured by height.

  The three trained parts live in one bundle file (:mod:`gen3d_ros.completion.checkpoint`), made by
  ``gen3d train-completion --stage hierarchy``; the stages are trained separately, the fine one on ground-truth
  coarse cells, as in hGCA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from gen3d_ros.checkpoints import CheckpointError, checkpoint_contents
from gen3d_ros.completion.cgca import cgca_complete
from gen3d_ros.completion.checkpoint import (checkpoint_grid, default_cgca_checkpoint, default_hgca_checkpoint,
                                            load_bundle, load_cgca, load_gca)
from gen3d_ros.completion.gca import complete
from gen3d_ros.completion.grid import prepare_sweep
from gen3d_ros.completion.latent import CGCAAutoencoder
from gen3d_ros.completion.mesh import TriangleMesh, height_colors
from gen3d_ros.completion.planned_gca import PlannedGCATransition, complete_planned
from gen3d_ros.completion.planner import cell_centres
from gen3d_ros.completion.udf_mesh import mesh_from_udf
from gen3d_ros.completion.udf_mesh_torch import mesh_from_udf_torch
from gen3d_ros.completion.voxelize import voxel_centers
from gen3d_ros.devices import check_device
from gen3d_ros.sparse import SparseTensor


def planner_points(cells: np.ndarray | torch.Tensor, voxel_size: float, origin) -> torch.Tensor:
    """(M, 3) float32 voxel centres (metres, grid frame) of ``cells`` (M, 3): what the planner sees.

    Bit-identical to what :meth:`PlannedGCATransition.plan_from_cells` (used in training) feeds the planner.
    """
    c = torch.as_tensor(np.asarray(cells) if not isinstance(cells, torch.Tensor) else cells).long().reshape(-1, 3)
    rows = torch.cat([torch.zeros((len(c), 1), dtype=torch.long), c.cpu()], 1)
    return cell_centres(rows, float(voxel_size), np.asarray(origin, np.float64), 1).float()


@torch.no_grad()
def encode_cells(autoencoder: CGCAAutoencoder, points: np.ndarray, voxel_size: float,
                 origin: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder codes of ``points`` (P, 3) metres: cells (N, 3) int32 and latents (N, z) float32, on the CPU."""
    if len(points) == 0:
        return torch.zeros((0, 3), dtype=torch.int32), torch.zeros((0, autoencoder.encoder.z_dim))
    z = autoencoder.encode(np.ascontiguousarray(points, np.float32), voxel_size, origin)
    return z.coords[:, 1:].int().cpu(), z.feats.float().cpu()


class GCACompleter:
    """A loaded GCA model and the grid it was trained on.

    The grid is a box around the sensor: ``origin`` (3,) metres (corner of voxel 0), ``grid_shape`` (3,)
    voxels of ``voxel_size`` metres, in the sensor frame (x forward, z up, sensor at the origin).

    A planned checkpoint (hGCA coarse stage, ``planner_config`` in the file) loads as a
    :class:`~gen3d_ros.completion.planned_gca.PlannedGCATransition` (``planned`` is True); it plans from the voxel
    centres of the input cells before each chain, as in training.
    """

    def __init__(self, checkpoint: str | Path | Mapping, *, device: str = "cpu", steps: int | None = None,
                 backend: str | None = None, half_extent_m: float = 0.0) -> None:
        if steps is not None and steps < 1:
            raise ValueError(f"GCA steps must be at least 1 (None: the model's default), got {steps}")
        self.model, self.checkpoint = load_gca(checkpoint, device=check_device(device), backend=backend)
        name = "<bundle>" if isinstance(checkpoint, Mapping) else str(checkpoint)
        self.model_grid = checkpoint_grid(self.checkpoint, name)
        """The grid the model was trained on; ``grid`` is where it runs (``half_extent_m`` > 0: a wider box)."""
        self.grid = self.model_grid.with_half_extent(half_extent_m) if half_extent_m > 0 else self.model_grid
        self.steps = steps
        self.device = device
        self.model_id = f"gca:{'bundle' if isinstance(checkpoint, Mapping) else Path(checkpoint).name}"
        self.planned = isinstance(self.model, PlannedGCATransition)

    @property
    def voxel_size(self) -> float:
        return self.grid.voxel_size

    @property
    def origin(self) -> np.ndarray:
        return self.grid.origin

    @property
    def grid_shape(self) -> np.ndarray:
        return self.grid.shape

    def voxelize(self, points: np.ndarray) -> np.ndarray:
        """(N,3) metres, sensor frame -> (M,3) int32 unique cells inside the grid."""
        return self.grid.voxelize(points)

    def voxelize_tensor(self, points: torch.Tensor) -> torch.Tensor:
        """:meth:`voxelize` on the points' device: (N, 3) float metres -> (M, 3) int32 unique cells inside the
        grid, sorted (x, y, z); non-finite points are ignored. Float64 arithmetic, as the numpy version."""
        g = self.grid
        dev = points.device
        idx = torch.floor((points.double() - torch.as_tensor(g.origin, device=dev)) / g.voxel_size)
        shape = torch.as_tensor(g.shape, device=dev)
        inside = (torch.isfinite(idx) & (idx >= 0) & (idx < shape)).all(dim=1)
        idx = idx[inside].long()
        ny, nz = int(g.shape[1]), int(g.shape[2])
        keys = torch.unique((idx[:, 0] * ny + idx[:, 1]) * nz + idx[:, 2])  # sorted: x, then y, then z
        return torch.stack([keys // (ny * nz), (keys // nz) % ny, keys % nz], dim=1).int()

    def complete_cells(self, cells: np.ndarray | torch.Tensor, *, seed: int = 0,
                       steps: int | None = None) -> np.ndarray:
        """Run the automaton from ``cells`` (M,3) int32 (numpy, or a tensor on any device); returns the final
        state (K,3) int32."""
        cells_t = torch.as_tensor(cells).int().reshape(-1, 3)
        s0 = torch.cat([torch.zeros((len(cells_t), 1), dtype=torch.int32, device=cells_t.device), cells_t], 1)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        kwargs = dict(steps=steps if steps is not None else self.steps,
                      bounds=self.grid.bounds, generator=gen)
        if self.planned:
            points = [planner_points(cells, self.voxel_size, self.origin)]
            extent = self.grid_shape.astype(np.float64) * self.voxel_size
            out = complete_planned(self.model, points, self.origin, extent, s0, **kwargs)
        else:
            out = complete(self.model, s0, **kwargs)
        return out.final[:, 1:].numpy().astype(np.int32)

    def centers(self, cells: np.ndarray) -> np.ndarray:
        """(K,3) int32 cells -> (K,3) float32 voxel centres, metres, sensor frame."""
        return self.grid.centres(cells)


MESHERS = ("torch", "numpy")


@dataclass
class SceneCompleterConfig:
    """Inference knobs of :class:`SceneCompleter`. Voxel sizes, grids and neighbourhoods come from the models."""

    coarse_steps: int = 0
    """Coarse GCA transitions; 0: the model's default."""
    fine_steps: int = 0
    """Fine cGCA transitions; 0: the model's default."""
    roi_radius_m: float = 0.0
    """Drop points farther than this (horizontal range from the sensor) before voxelising; 0: the grid decides."""
    half_extent_m: float = 0.0
    """Run on the box ``[-r, r)^2`` metres (x, y) around the sensor instead of the models' training grid (same
    voxels and z range; the kernels are local and the planner fully convolutional); 0: the training grid."""
    max_points: int = 200_000
    """Random subsample of the sweep above this many points (the encoder's memory grows with points); 0: none
    (the caller prepared the sweep, as :class:`~gen3d_ros.completion.processor.CompletionProcessor` does)."""
    samples: int = 1
    """Stochastic completions per sweep (``SceneCompletion.samples``); the first one is meshed."""
    mesh_resolution: int = 2
    """Marching-cubes lattice steps per fine voxel edge."""
    mesh: bool = True
    """Decode and mesh (False: cells only, for metrics)."""
    mesher: str = "torch"
    """``torch``: the UDF decoded and meshed on the model's device (:func:`mesh_from_udf_torch`: batched decoder,
    torch marching cubes); ``numpy``: the reference (:func:`mesh_from_udf`: scikit-image per block)."""
    half_precision_decoder: bool = False
    """``torch`` mesher: the decoder's MLP under autocast (float16 on CUDA, bfloat16 on the CPU)."""
    device: str = "cpu"
    coarse_checkpoint: str = ""
    """Replace the bundle's coarse stage (e.g. a plain GCA model: the no-planner ablation)."""
    seed: int = 0


@dataclass
class SceneCompletion:
    """Output of one sweep, sensor frame, metres.

    ``mesh``: decoded surface; ``fine_cells`` (K, 3) int32 and ``coarse_cells`` (C, 3) int32 on their grids
    (corner ``origin``, edges ``fine_voxel`` / ``coarse_voxel``); ``samples``: fine cells of every completion;
    ``timings_ms``: per stage.
    """

    mesh: TriangleMesh
    fine_cells: np.ndarray
    coarse_cells: np.ndarray
    input_cells: np.ndarray
    fine_voxel: float
    coarse_voxel: float
    origin: np.ndarray
    steps: tuple[int, int]
    input_points: int
    samples: list[np.ndarray] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def fine_centres(self) -> np.ndarray:
        return voxel_centers(self.fine_cells, self.fine_voxel, self.origin)


def _with_batch(cells: np.ndarray | torch.Tensor) -> torch.Tensor:
    c = torch.as_tensor(np.asarray(cells)).int().reshape(-1, 3)
    return torch.cat([torch.zeros((len(c), 1), dtype=torch.int32), c], 1)


class SceneCompleter:
    """The loaded hierarchy (no ROS). ``complete(points)`` -> :class:`SceneCompletion`."""

    def __init__(self, checkpoint: str | Path | None = None, config: SceneCompleterConfig | None = None,
                 *, backend: str | None = None) -> None:
        self.config = config or SceneCompleterConfig()
        check_device(self.config.device)
        if self.config.mesher not in MESHERS:
            raise ValueError(f"unknown mesher {self.config.mesher!r}; choose one of {', '.join(MESHERS)}")
        path = Path(checkpoint) if checkpoint else default_hgca_checkpoint()
        bundle = load_bundle(path)
        dev = self.config.device
        with checkpoint_contents(str(path), "hGCA bundle"):  # errors of a part name the bundle file
            self.coarse = GCACompleter(self.config.coarse_checkpoint or bundle["coarse"], device=dev,
                                       steps=self.config.coarse_steps or None, backend=backend,
                                       half_extent_m=self.config.half_extent_m)
            self.fine, self.autoencoder, fine_ckpt = load_cgca(bundle["fine"], device=dev, backend=backend)
            self.fine_data = dict(fine_ckpt["train_config"]["data"] or fine_ckpt["autoencoder"]["train_config"]["data"])
            """The fine stage's training data config (plain dict: grid, sensor, scenes)."""
            self.fine_grid = checkpoint_grid(fine_ckpt, str(path))
        if not self.fine.coarse_scale:
            raise CheckpointError(f"{path}: the fine kernel has no coarse condition (coarse_scale = 0)")
        if self.config.half_extent_m > 0:  # the fine box is the coarse one, refined: their edges coincide
            self._check_grids(path, self.coarse.model_grid)
            self.fine_grid = self.coarse.grid.refined(self.fine.coarse_scale)
        self._check_grids(path, self.coarse.grid)
        self.fine_voxel = self.fine_grid.voxel_size
        self.origin = self.fine_grid.origin
        self.fine_shape = self.fine_grid.shape
        self.model_id = f"hgca:{path.name}" + (f"+coarse:{Path(self.config.coarse_checkpoint).name}"
                                               if self.config.coarse_checkpoint else "")
        self.rng = np.random.default_rng(self.config.seed)

    def _check_grids(self, path: Path, coarse_grid) -> None:
        r = self.fine.coarse_scale
        fine = self.fine_grid
        if abs(coarse_grid.voxel_size - r * fine.voxel_size) > 1e-6 or not np.allclose(coarse_grid.origin,
                                                                                         fine.origin):
            raise CheckpointError(f"{path}: coarse grid ({coarse_grid.voxel_size} m, origin "
                                  f"{coarse_grid.origin.tolist()}) is not {r} x the fine grid ({fine.voxel_size} m, "
                                  f"origin {fine.origin.tolist()})")

    @property
    def planned(self) -> bool:
        return self.coarse.planned

    def _fine_input(self, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.floor((points - self.origin) / self.fine_voxel).astype(np.int64)
        inside = ((idx >= 0) & (idx < self.fine_shape)).all(1)
        return encode_cells(self.autoencoder, points[inside], self.fine_voxel, self.origin)

    def _on_gpu(self) -> bool:
        return str(self.config.device).startswith("cuda")

    def _sync(self) -> None:
        """Wait for queued GPU work, so that stage timings measure the work and not its launch."""
        if self._on_gpu():
            torch.cuda.synchronize(self.config.device)

    def _clock(self, timings: dict[str, float], key: str, t0: float) -> float:
        self._sync()
        now = time.perf_counter()
        timings[key] = timings.get(key, 0.0) + (now - t0) * 1e3
        return now

    def complete(self, points: np.ndarray, *, seed: int | None = None,
                 on_coarse: Callable[[np.ndarray], None] | None = None) -> SceneCompletion:
        """Complete one sweep: ``points`` (N, 3) metres, sensor frame; NaN/inf rows are dropped.

        ``on_coarse``, when given, is called with the (C, 3) float32 coarse voxel centres (metres, sensor frame)
        of the first sample as soon as the coarse chain has run, before the fine stage and the mesh: a node
        publishes the coarse scene at once (it is ready ~10x sooner than the mesh).
        """
        cfg = self.config
        seed = cfg.seed if seed is None else int(seed)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        points = np.asarray(points).reshape(-1, 3)
        # float32 sweeps (PointCloud2) stay float32 up to the upload (half the bytes to copy and send; float64 is
        # exact for them, so every result is unchanged); all else becomes float64 as before
        points = prepare_sweep(points if points.dtype == np.float32 else points.astype(np.float64),
                               roi_radius_m=cfg.roi_radius_m, max_points=cfg.max_points, rng=self.rng).points
        if self._on_gpu():  # one upload; voxelised where the chain runs (in float64: voxelize_tensor)
            coarse_in = self.coarse.voxelize_tensor(torch.from_numpy(np.ascontiguousarray(points)).to(cfg.device))
        else:
            points = points.astype(np.float64, copy=False)
            coarse_in = self.coarse.voxelize(points)
        if len(coarse_in) == 0:
            raise ValueError(f"no point lies in the model's grid: origin {self.origin.tolist()} m, "
                             f"{self.coarse.grid_shape.tolist()} cells of {self.coarse.voxel_size} m")
        t0 = self._clock(timings, "voxelize", t0)
        coarse = [self.coarse.complete_cells(coarse_in, seed=seed)]
        t0 = self._clock(timings, "coarse", t0)
        if on_coarse is not None:
            on_coarse(self.coarse.centers(coarse[0]))
            t0 = time.perf_counter()
        points = points.astype(np.float64, copy=False)
        fine_cells, fine_latents = self._fine_input(points)
        t0 = self._clock(timings, "encode", t0)
        bounds = ((0, 0, 0), tuple(int(v) for v in self.fine_shape))
        samples, finals = [], []
        for k in range(max(1, cfg.samples)):
            if k > 0:
                coarse.append(self.coarse.complete_cells(coarse_in, seed=seed + k))
                t0 = self._clock(timings, "coarse", t0)
            gen = torch.Generator(device=cfg.device).manual_seed(seed + k)
            out = cgca_complete(self.fine, _with_batch(fine_cells), fine_latents, steps=cfg.fine_steps or None,
                                bounds=bounds, generator=gen, coarse_cells=_with_batch(coarse[k]))
            samples.append(out.cells[:, 1:].numpy().astype(np.int32))
            finals.append(out)
            t0 = self._clock(timings, "fine", t0)
        mesh = self._mesh(finals[0], samples[0]) if cfg.mesh and len(finals[0].cells) else TriangleMesh.empty()
        self._clock(timings, "mesh", t0)
        steps = (int(self.coarse.steps or self.coarse.model.config.steps),
                 int(cfg.fine_steps or self.fine.config.steps))
        return SceneCompletion(mesh, samples[0], coarse[0], fine_cells.numpy().astype(np.int32), self.fine_voxel,
                               self.coarse.voxel_size, self.origin, steps, len(points), samples, timings)

    def _mesh(self, final, cells: np.ndarray) -> TriangleMesh:
        return decode_mesh(self.autoencoder, final, cells, self.fine_voxel, self.origin, self.config)


def decode_mesh(autoencoder: CGCAAutoencoder, final, cells: np.ndarray, voxel: float, origin: np.ndarray,
                cfg: SceneCompleterConfig) -> TriangleMesh:
    """The decoder's UDF around the final cGCA cells (``final``: a ``CGCAResult``; ``cells`` (K, 3) int32 on the
    grid of ``voxel`` metres, corner ``origin``), meshed by ``cfg.mesher``, coloured by height."""
    latents = SparseTensor(final.latents.to(cfg.device), final.cells.to(cfg.device))
    if cfg.mesher == "torch":
        udf_t = autoencoder.udf_function_torch(latents, voxel, origin, half=cfg.half_precision_decoder)
        return mesh_from_udf_torch(udf_t, final.cells[:, 1:].to(cfg.device), voxel, origin,
                                   resolution=cfg.mesh_resolution, device=cfg.device)
    udf = autoencoder.udf_function(latents, voxel, origin)
    mesh = mesh_from_udf(udf, cells, voxel, origin, resolution=cfg.mesh_resolution)
    if len(mesh.vertices):
        mesh = TriangleMesh(mesh.vertices, mesh.faces, height_colors(mesh.vertices))
    return mesh


class CGCACompleter:
    """A single-level cGCA (``gen3d train-completion --stage fine`` without a coarse condition, e.g. the packaged
    ``cgca_demo.pt``): the sweep's points encoded on its grid, grown by the kernel, decoded to a mesh.
    ``complete(points)`` -> :class:`SceneCompletion` (no coarse stage: ``coarse_cells`` empty)."""

    def __init__(self, checkpoint: str | Path | None = None, config: SceneCompleterConfig | None = None,
                 *, backend: str | None = None) -> None:
        self.config = config or SceneCompleterConfig()
        check_device(self.config.device)
        path = Path(checkpoint) if checkpoint else default_cgca_checkpoint()
        self.model, self.autoencoder, ckpt = load_cgca(path, device=self.config.device, backend=backend)
        if self.model.coarse_scale:
            raise CheckpointError(f"{path}: a fine stage conditioned on a coarse one (coarse_scale "
                                  f"{self.model.coarse_scale}); run it inside an hGCA bundle (method hgca)")
        self.fine_data = dict(ckpt["train_config"]["data"] or ckpt["autoencoder"]["train_config"]["data"])
        grid = checkpoint_grid(ckpt, str(path))
        self.grid = grid.with_half_extent(self.config.half_extent_m) if self.config.half_extent_m > 0 else grid
        self.model_id = f"cgca:{path.name}"
        self.rng = np.random.default_rng(self.config.seed)

    def complete(self, points: np.ndarray, *, seed: int | None = None) -> SceneCompletion:
        """Complete one sweep: ``points`` (N, 3) metres, sensor frame (model frame when aligned)."""
        cfg, g = self.config, self.grid
        seed = cfg.seed if seed is None else int(seed)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        points = prepare_sweep(np.asarray(points, np.float64).reshape(-1, 3), roi_radius_m=cfg.roi_radius_m,
                               max_points=cfg.max_points, rng=self.rng).points
        idx = g.cell_indices(points)
        inside = g.contains(idx)
        if not inside.any():
            raise ValueError(f"no point lies in the model's grid: {g}")
        cells, latents = encode_cells(self.autoencoder, points[inside], g.voxel_size, g.origin)
        timings["encode"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        out = cgca_complete(self.model, _with_batch(cells), latents, steps=cfg.fine_steps or None,
                            bounds=g.bounds, generator=torch.Generator(device=cfg.device).manual_seed(seed))
        final = out.cells[:, 1:].numpy().astype(np.int32)
        timings["fine"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        mesh = (decode_mesh(self.autoencoder, out, final, g.voxel_size, g.origin, cfg) if cfg.mesh and len(final)
                else TriangleMesh.empty())
        timings["mesh"] = (time.perf_counter() - t0) * 1e3
        steps = int(cfg.fine_steps or self.model.config.steps)
        return SceneCompletion(mesh, final, np.zeros((0, 3), np.int32), cells.numpy().astype(np.int32),
                               g.voxel_size, 0.0, g.origin, (0, steps), len(points), [final], timings)
