"""hGCA (CVPR 2024): a coarse GCA with the BEV planner, then a fine cGCA conditioned on it, decoded to a mesh.

A :class:`SceneCompleter` runs the hierarchy on one sweep (sensor frame, metres, sensor at the origin):

1. **coarse**: the sweep voxelised on the coarse grid (e.g. 0.4 m); the planned GCA kernel
   (:class:`~gen3d_ros.completion.hgca_coarse.PlannedGCATransition`) plans once from the input and grows it;
2. **fine**: the sweep's points encoded on the fine grid (coarse / ``coarse_scale``, same origin) by the cGCA
   autoencoder; the fine cGCA kernel grows (cells, codes) inside the coarse completion;
3. **mesh**: the decoder's unsigned distance field meshed near the fine cells (:func:`mesh_from_udf`: marching
   cubes at a small level, double walls and islands removed), coloured by height.

The three trained parts live in one bundle file (format ``gen3d_ros.hgca/1``: the coarse checkpoint, the
autoencoder and the fine kernel, each with its own configs), made by :func:`train_hierarchy`
(``gen3d train-completion --stage hierarchy --preset demo``). The stages are trained separately, the fine one on
ground-truth coarse cells, as in hGCA.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from gen3d_ros import __version__
from gen3d_ros.completion import autoencoder_training, cgca_training, training
from gen3d_ros.completion.cgca import cgca_complete
from gen3d_ros.completion.classical import TriangleMesh, height_colors
from gen3d_ros.completion.scan_completion import GCACompleter
from gen3d_ros.completion.udf_mesh import mesh_from_udf
from gen3d_ros.completion.voxelize import voxel_centers
from gen3d_ros.sim.dataset import CompletionDatasetConfig
from gen3d_ros.sparse import SparseTensor

log = logging.getLogger("gen3d_ros.completion.hgca")

BUNDLE_FORMAT = "gen3d_ros.hgca/1"


def default_hgca_checkpoint() -> Path:
    """The hGCA bundle committed with the package (see ``gen3d_ros/models/README.md``)."""
    path = Path(__file__).resolve().parent.parent / "models" / "hgca_demo.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the packaged hGCA model {path} is missing; train one with "
                                "`gen3d train-completion --stage hierarchy --preset demo -o runs/hgca_demo`")
    return path


# ---------------------------------------------------------------------------------------------- bundle


def _half(tree: Any) -> Any:
    """Floating-point tensors of a nested checkpoint as float16 (``load_state_dict`` casts them back)."""
    if isinstance(tree, torch.Tensor):
        return tree.half() if tree.is_floating_point() else tree
    if isinstance(tree, dict):
        return {k: _half(v) for k, v in tree.items()}
    return tree


def save_bundle(path: str | Path, coarse: Mapping, fine: Mapping, metrics: Mapping | None = None,
                command: str = "", *, half: bool = False) -> None:
    """One file holding the coarse checkpoint and the fine checkpoint (which embeds its autoencoder).
    ``half``: store the weights as float16 (half the size; what the packaged demo bundle does)."""
    coarse, fine = (_half(dict(coarse)), _half(dict(fine))) if half else (dict(coarse), dict(fine))
    from gen3d_ros.outputs import save_torch

    save_torch({"format": BUNDLE_FORMAT, "coarse": coarse, "fine": fine, "metrics": dict(metrics or {}),
                "command": command, "weights_dtype": "float16" if half else "float32",
                "gen3d_ros_version": __version__, "torch_version": torch.__version__}, path)


def load_bundle(path: str | Path) -> dict:
    from gen3d_ros.checkpoints import read_checkpoint

    return read_checkpoint(Path(path), "hGCA bundle", (BUNDLE_FORMAT,))[0]


# ---------------------------------------------------------------------------------------------- inference


@dataclass
class SceneCompleterConfig:
    """Inference knobs of :class:`SceneCompleter`. Voxel sizes, grids and neighbourhoods come from the models."""

    coarse_steps: int = 0
    """Coarse GCA transitions; 0: the model's default."""
    fine_steps: int = 0
    """Fine cGCA transitions; 0: the model's default."""
    roi_radius_m: float = 0.0
    """Drop points farther than this (horizontal range from the sensor) before voxelising; 0: the grid decides."""
    max_points: int = 200_000
    """Random subsample of the sweep above this many points (the encoder's memory grows with points)."""
    samples: int = 1
    """Stochastic completions per sweep (``SceneCompletion.samples``); the first one is meshed."""
    mesh_resolution: int = 2
    """Marching-cubes lattice steps per fine voxel edge."""
    mesh: bool = True
    """Decode and mesh (False: cells only, for metrics)."""
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
        return voxel_centers(self.fine_cells, self.fine_voxel, self.origin).astype(np.float32)


def _with_batch(cells: np.ndarray | torch.Tensor) -> torch.Tensor:
    c = torch.as_tensor(np.asarray(cells)).int().reshape(-1, 3)
    return torch.cat([torch.zeros((len(c), 1), dtype=torch.int32), c], 1)


class SceneCompleter:
    """The loaded hierarchy (no ROS). ``complete(points)`` -> :class:`SceneCompletion`."""

    def __init__(self, checkpoint: str | Path | None = None, config: SceneCompleterConfig | None = None,
                 *, backend: str | None = None) -> None:
        from gen3d_ros.devices import check_device

        self.config = config or SceneCompleterConfig()
        check_device(self.config.device)
        from gen3d_ros.checkpoints import CheckpointError, checkpoint_contents

        path = Path(checkpoint) if checkpoint else default_hgca_checkpoint()
        bundle = load_bundle(path)
        dev = self.config.device
        with checkpoint_contents(str(path), "hGCA bundle"):  # errors of a part name the bundle file
            if self.config.coarse_checkpoint:
                self.coarse = GCACompleter(self.config.coarse_checkpoint, device=dev,
                                           steps=self.config.coarse_steps or None, backend=backend)
            else:
                self.coarse = GCACompleter(bundle["coarse"], device=dev, steps=self.config.coarse_steps or None,
                                           backend=backend)
            self.fine, self.autoencoder, fine_ckpt = cgca_training.load_cgca_checkpoint(bundle["fine"], device=dev,
                                                                                        backend=backend)
            data = CompletionDatasetConfig.from_dict(fine_ckpt["train_config"]["data"]
                                                     or fine_ckpt["autoencoder"]["train_config"]["data"])
        if not self.fine.coarse_scale:
            raise CheckpointError(f"{path}: the fine kernel has no coarse condition (coarse_scale = 0)")
        self.fine_data = data
        """The fine stage's training data config (its grid: voxel size, origin, shape; sensor, scenes)."""
        self.fine_voxel = float(data.voxel_size_m)
        self.origin = np.asarray(data.origin, np.float64)
        self.fine_shape = np.asarray(data.grid_shape, np.int64)
        r = self.fine.coarse_scale
        if abs(self.coarse.voxel_size - r * self.fine_voxel) > 1e-6 or not np.allclose(self.coarse.origin, self.origin):
            raise CheckpointError(f"{path}: coarse grid ({self.coarse.voxel_size} m, origin "
                                  f"{self.coarse.origin.tolist()}) is not {r} x the fine grid ({self.fine_voxel} m, "
                                  f"origin {self.origin.tolist()})")
        self.model_id = f"hgca:{path.name}" + (f"+coarse:{Path(self.config.coarse_checkpoint).name}"
                                               if self.config.coarse_checkpoint else "")
        self.rng = np.random.default_rng(self.config.seed)

    @property
    def planned(self) -> bool:
        return self.coarse.planned

    def _fine_input(self, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.floor((points - self.origin) / self.fine_voxel).astype(np.int64)
        inside = ((idx >= 0) & (idx < self.fine_shape)).all(1)
        return cgca_training.encode_cells(self.autoencoder, points[inside], self.fine_voxel, self.origin)

    def complete(self, points: np.ndarray, *, seed: int | None = None) -> SceneCompletion:
        """Complete one sweep: ``points`` (N, 3) metres, sensor frame; NaN/inf rows are dropped."""
        cfg = self.config
        seed = cfg.seed if seed is None else int(seed)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        points = np.asarray(points, np.float64).reshape(-1, 3)
        points = points[np.isfinite(points).all(1)]
        if cfg.roi_radius_m > 0:
            points = points[np.hypot(points[:, 0], points[:, 1]) <= cfg.roi_radius_m]
        if len(points) > cfg.max_points:
            points = points[self.rng.choice(len(points), cfg.max_points, replace=False)]
        coarse_in = self.coarse.voxelize(points)
        if len(coarse_in) == 0:
            raise ValueError(f"no point lies in the model's grid: origin {self.origin.tolist()} m, "
                             f"{self.coarse.grid_shape.tolist()} cells of {self.coarse.voxel_size} m")
        timings["voxelize"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        fine_cells, fine_latents = self._fine_input(points)
        timings["encode"] = (time.perf_counter() - t0) * 1e3
        bounds = ((0, 0, 0), tuple(int(v) for v in self.fine_shape))
        samples, coarse_out, finals = [], None, []
        timings["coarse"] = timings["fine"] = 0.0
        for k in range(max(1, cfg.samples)):
            t0 = time.perf_counter()
            coarse = self.coarse.complete_cells(coarse_in, seed=seed + k)
            timings["coarse"] += (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            gen = torch.Generator(device=cfg.device).manual_seed(seed + k)
            out = cgca_complete(self.fine, _with_batch(fine_cells), fine_latents, steps=cfg.fine_steps or None,
                                bounds=bounds, generator=gen, coarse_cells=_with_batch(coarse))
            timings["fine"] += (time.perf_counter() - t0) * 1e3
            samples.append(out.cells[:, 1:].numpy().astype(np.int32))
            finals.append(out)
            coarse_out = coarse if coarse_out is None else coarse_out
        mesh = TriangleMesh.empty()
        t0 = time.perf_counter()
        if cfg.mesh and len(finals[0].cells):
            latents = SparseTensor(finals[0].latents.to(cfg.device), finals[0].cells.to(cfg.device))
            udf = self.autoencoder.udf_function(latents, self.fine_voxel, self.origin)
            mesh = mesh_from_udf(udf, samples[0], self.fine_voxel, self.origin, resolution=cfg.mesh_resolution)
            if len(mesh.vertices):
                mesh = TriangleMesh(mesh.vertices, mesh.faces, height_colors(mesh.vertices))
        timings["mesh"] = (time.perf_counter() - t0) * 1e3
        steps = (int(self.coarse.steps or self.coarse.model.config.steps),
                 int(cfg.fine_steps or self.fine.config.steps))
        return SceneCompletion(mesh, samples[0], coarse_out, fine_cells.numpy().astype(np.int32), self.fine_voxel,
                               self.coarse.voxel_size, self.origin, steps, len(points), samples, timings)


# ---------------------------------------------------------------------------------------------- training


def fine_data(coarse_data: Mapping, scale: int, half_extent_m: tuple[float, float] | None = None,
              surface_spacing_m: float | None = None) -> dict:
    """The fine stage's data: the coarse data on a grid ``scale`` times finer (same origin when the extent is
    kept; a smaller ``half_extent_m`` crop for the autoencoder, which is local, keeps the grids congruent)."""
    d = CompletionDatasetConfig.from_dict(coarse_data).to_dict()
    d["voxel_size_m"] = float(d["voxel_size_m"]) / scale
    if half_extent_m is not None:
        d["half_extent_m"] = list(half_extent_m)
    if surface_spacing_m is not None:
        d["surface_spacing_m"] = float(surface_spacing_m)
    return d


HIERARCHY_PRESETS: dict[str, dict[str, Any]] = {
    # Tests: about a minute on one CPU core.
    "tiny": {
        "coarse": ["tiny_planner", {"iterations": 60, "val_samples": 1}],
        "autoencoder": ["tiny", {"iterations": 60, "val_samples": 1}],
        "autoencoder_half_extent_m": [3.0, 3.0],
        "fine": ["tiny", {"iterations": 40, "val_samples": 1}],
        "scale": 2, "surface_spacing_m": None,
    },
    # The committed demo model (see gen3d_ros/models/README.md).
    "demo": {
        "coarse": ["demo_planner", {}],
        "autoencoder": ["tiny", {"iterations": 800, "val_every": 400, "val_samples": 2, "queries_per_sample": 8192,
                                 "lr": 1e-3,
                                 "model": {"z_dim": 16, "hidden": 64, "encoder_point_blocks": 2,
                                           "encoder_conv_blocks": 1, "decoder_blocks": 3}}],
        "autoencoder_half_extent_m": [6.0, 6.0],
        "fine": ["demo", {}],
        "scale": 2, "surface_spacing_m": 0.1,
    },
}


def train_hierarchy(preset: str, out_dir: str | Path, *, coarse_checkpoint: str | Path | None = None,
                    threads: int = 0, device: str = "cpu", progress: bool = True, command: str = "") -> dict:
    """Train autoencoder, fine cGCA and coarse planned GCA; write ``out_dir/hgca.pt`` and ``metrics.json``.

    Each stage has its run folder under ``out_dir`` (``autoencoder/``, ``fine/``, ``coarse/``: model, metrics,
    curve); a stage whose ``model.pt`` is already there is reused, so an interrupted run resumes and the stages
    can be trained in parallel processes. ``coarse_checkpoint``: use this trained coarse stage (``model.pt`` of
    ``train-completion``) instead. The fine stage trains on ground-truth coarse cells, so it does not need the
    coarse model, only its grid (the preset's data).
    """
    if preset not in HIERARCHY_PRESETS:
        raise ValueError(f"unknown hierarchy preset {preset!r}; choose from {sorted(HIERARCHY_PRESETS)}")
    spec = HIERARCHY_PRESETS[preset]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    common = {"threads": threads, "device": device}
    start = time.perf_counter()
    coarse_name, coarse_overrides = spec["coarse"]
    coarse_config = training.make_config(coarse_name, {**coarse_overrides, **common})
    coarse_data = (training.load_checkpoint(coarse_checkpoint)[1]["train_config"]["data"]
                   if coarse_checkpoint else coarse_config.data)
    scale, spacing = int(spec["scale"]), spec["surface_spacing_m"]

    def stage(name: str, train_fn) -> Path:
        path = out_dir / name / "model.pt"
        if path.is_file():
            log.info("reusing the trained %s stage %s", name, path)
        else:
            train_fn(out_dir / name)
        return path

    name, overrides = spec["autoencoder"]
    ae_data = fine_data(coarse_data, scale, spec["autoencoder_half_extent_m"], spacing)
    ae_config = autoencoder_training.make_autoencoder_config(name, {**overrides, **common, "data": ae_data})
    ae_path = stage("autoencoder", lambda d: autoencoder_training.train_autoencoder(ae_config, d, progress=progress))
    name, overrides = spec["fine"]
    fine_config = cgca_training.make_cgca_config(name, {**overrides, **common, "autoencoder": str(ae_path),
                                                        "data": fine_data(coarse_data, scale, None, spacing)})
    fine_config.model["coarse_scale"] = scale
    fine_path = stage("fine", lambda d: cgca_training.train_cgca(fine_config, d, progress=progress))
    coarse_path = Path(coarse_checkpoint) if coarse_checkpoint else stage(
        "coarse", lambda d: training.train(coarse_config, d, progress=progress))
    coarse_ckpt = training.load_checkpoint(coarse_path)[1]  # a wrong file fails here, before the bundle is written
    fine_ckpt = cgca_training.load_cgca_checkpoint(fine_path)[2]
    metrics = {"coarse": coarse_ckpt.get("metrics", {}), "autoencoder": fine_ckpt["autoencoder"].get("metrics", {}),
               "fine": fine_ckpt.get("metrics", {}), "train_seconds": time.perf_counter() - start,
               "preset": preset}
    save_bundle(out_dir / "hgca.pt", coarse_ckpt, fine_ckpt, metrics, command)
    from gen3d_ros.outputs import write_json

    write_json(out_dir / "metrics.json", metrics, default=str)
    return metrics
