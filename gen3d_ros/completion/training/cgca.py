"""``gen3d train-completion --stage fine``: infusion training of a cGCA kernel over a frozen latent autoencoder.

The kernel (:class:`~gen3d_ros.completion.cgca.CGCATransition`) grows (cells, latent codes) on the
autoencoder's grid. Chains (:class:`~gen3d_ros.completion.training.infusion.LatentChain`) start from the sweep's cells with
the codes the encoder gives the sweep's points; targets are the encoder's codes of the complete surface
samples (the same samples behind ``CompletionSample.complete``). With ``model.coarse_scale = r > 0`` the kernel
is hGCA's fine stage: every chain is conditioned on the *ground-truth* coarse cells (``floor(complete / r)``),
as hGCA trains its stages separately; at inference the coarse stage's output takes their place.

Validation (held-out scene seeds, no augmentation): full chains from the sweep (conditioned on the ground-truth
coarse cells for a fine stage), voxel IoU / F-score / Chamfer of the final cells against the complete scene.
Outputs in the run folder: ``model.pt`` (format ``gen3d_ros.cgca/1``: weights, every config, the
autoencoder's checkpoint embedded, backend, versions), ``metrics.json``, ``training_curve.png``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from gen3d_ros.completion.cgca import CGCAConfig, CGCATransition, cgca_complete, coarse_start
from gen3d_ros.completion.checkpoint import cgca_checkpoint, load_autoencoder, load_cgca
from gen3d_ros.completion.grid import VoxelGrid
from gen3d_ros.completion.inference import encode_cells
from gen3d_ros.completion.latent import CGCAAutoencoder
from gen3d_ros.completion.training import distributed
from gen3d_ros.completion.training.autoencoder import surface_sample
from gen3d_ros.completion.training.data_presets import RICH_DATA, scaled
from gen3d_ros.completion.training.distributed import DistributedContext
from gen3d_ros.completion.training.infusion import LatentChain, cgca_infusion_step
from gen3d_ros.completion.training.loop import (VALIDATION_SEED_OFFSET, InfusionSetup, InfusionTrainConfig,
                                                init_source, run_infusion_training, seed_everything)
from gen3d_ros.completion.training.prefetch import Prefetcher, completion_sample, make_dataset, sample_tasks
from gen3d_ros.completion.training.precision import check_amp
from gen3d_ros.completion.training.progress import plot_moving_average
from gen3d_ros.config import preset_with_overrides
from gen3d_ros.outputs import save_figure, save_torch, write_json
from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig, CompletionSample
from gen3d_ros.sparse import get_backend

log = logging.getLogger("gen3d_ros.completion.training.cgca")


@dataclass
class CGCATrainConfig(InfusionTrainConfig):
    """Optimisation and data of one cGCA training run. ``data`` must put the sweep on the autoencoder's grid."""

    batch_size: int = 2
    lr: float = 1e-3
    max_phase: int = 20
    buffer_size: int = 16
    val_samples: int = 3
    autoencoder: str = ""
    """Checkpoint (``model.pt``) of ``--stage autoencoder``; its codes are the latent space of the kernel."""
    model: dict = field(default_factory=dict)
    """:class:`CGCAConfig` fields (``z_dim`` comes from the autoencoder)."""
    data: dict = field(default_factory=dict)
    """:class:`CompletionDatasetConfig` fields; empty: the autoencoder's training data."""


PRESETS: dict[str, dict[str, Any]] = {
    # Tests and CI: a fine stage (0.25 m cells under 0.5 m coarse cells) on the tiny autoencoder's grid.
    # Fine stages start from the upsampled ground-truth coarse cells, which already cover the target: chains end
    # after max_phase transitions, never on coverage (completion_rate > 1), so later states are trained too.
    "tiny": {
        "iterations": 60, "batch_size": 2, "lr": 2e-3, "val_every": 60, "val_samples": 2, "buffer_size": 6,
        "max_phase": 5, "completion_rate": 1.01,
        "model": {"widths": [8, 16], "neighbourhood": "hypercross1", "steps": 4, "mode_steps": 1,
                  "coarse_scale": 2, "sigma": 0.1},
    },
    # The fine stage of the committed hGCA demo model (0.2 m under 0.4 m): see gen3d_ros/models/README.md.
    "demo": {
        "iterations": 800, "batch_size": 2, "lr": 1e-3, "val_every": 200, "val_samples": 3, "buffer_size": 12,
        "max_phase": 6, "completion_rate": 1.01,
        "model": {"widths": [16, 32], "neighbourhood": "hypercross1", "steps": 4, "mode_steps": 2,
                  "coarse_scale": 2, "sigma": 0.1},
    },
    # Single-level cGCA (no coarse condition) on the hGCA demo's fine grid: the benchmark's `cgca` row. Growing
    # from the sweep alone at 0.2 m needs many transitions; a radius-2 neighbourhood made a step ~8 s on a shared
    # CPU core, so it uses radius 1 and 10 transitions (2 m of reach). Needs
    # `--set autoencoder=runs/hgca_demo/autoencoder/model.pt`.
    "demo_flat": {
        "iterations": 300, "batch_size": 2, "lr": 1e-3, "val_every": 150, "val_samples": 3, "buffer_size": 12,
        "max_phase": 20,
        "model": {"widths": [16, 32], "neighbourhood": "hypercross1", "steps": 10, "mode_steps": 2,
                  "coarse_scale": 0, "sigma": 0.1},
        "data": {"voxel_size_m": 0.2, "half_extent_m": [12.0, 12.0], "z_range_m": [-2.8, 4.4],
                 "surface_spacing_m": 0.1, "scene": {"size_m": 50.0}, "lidar": {"preset": "vlp32"},
                 "augment": True, "length": 400},
    },
}


# The GPU hGCA's fine stage (issue 13): the demo fine stage's size on the 0.2 m grid of data_presets.RICH_DATA
# (same origin as the coarse grid), batch 4, a wall-clock budget, 6 data workers. Needs
# `--set autoencoder=<the gpu_rich autoencoder's model.pt>` (the hierarchy sets it).
PRESETS["gpu_rich"] = {
    **copy.deepcopy(PRESETS["demo"]), "iterations": 100_000, "time_limit_s": 160.0, "batch_size": 4,
    "val_every": 100_000, "val_samples": 3, "buffer_size": 24, "data_workers": 6, "log_every": 20,
    "data": scaled(RICH_DATA, 2, None, 0.1),
}


def make_cgca_config(preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> CGCATrainConfig:
    """A :class:`CGCATrainConfig` from a preset plus overrides (dotted keys reach nested dicts)."""
    values = preset_with_overrides(PRESETS, preset, overrides, CGCATrainConfig)
    config = CGCATrainConfig(**values)
    CGCAConfig(**config.model)  # a typo fails before any data is generated
    check_amp(config.amp, config.device)
    if config.data:
        CompletionDatasetConfig.from_dict(config.data)
    return config


@dataclass
class LatentSample:
    """One scene on the autoencoder's grid: the sweep and the complete surface, as cells with codes.

    ``input_cells`` (S, 3) int32 / ``input_latents`` (S, z): the encoder on the sweep's points;
    ``target`` (T, 3) int32 / ``target_latents`` (T, z): the encoder on the complete surface samples;
    ``coarse`` (C, 3) int32: ``unique(floor(target / r))`` for a fine stage (None otherwise).
    """

    sample: CompletionSample
    input_cells: torch.Tensor
    input_latents: torch.Tensor
    target: torch.Tensor
    target_latents: torch.Tensor
    coarse: torch.Tensor | None


def coarse_cells_of(cells: np.ndarray | torch.Tensor, scale: int) -> torch.Tensor:
    """(N, 3) fine cells -> (C, 3) int32 unique coarse cells, ``scale`` fine cells per coarse edge."""
    c = torch.as_tensor(np.asarray(cells)).long().reshape(-1, 3)
    return torch.unique(torch.div(c, scale, rounding_mode="floor"), dim=0).int()


def latent_sample(autoencoder: CGCAAutoencoder, dataset: CompletionDataset, index: int,
                  aug_rng: np.random.Generator | None, coarse_scale: int) -> LatentSample:
    """Simulate the sweep of ``dataset[index]`` (augmented from ``aug_rng``) and encode sweep and surface."""
    s = dataset.sample(index, aug_rng)
    surface = surface_sample(dataset, index, s.T_sample_lidar, gt_spacing_voxels=None)
    return encode_sample(autoencoder, s, surface.points, coarse_scale)


def sample_and_surface(dataset: CompletionDataset, task: tuple[int, int | None]) -> tuple[Any, np.ndarray]:
    """A data worker's part of a fresh chain: the sample of a :func:`~.prefetch.sample_tasks` task and its dense
    surface points (sample frame, metres)."""
    s = completion_sample(dataset, task)
    return s, surface_sample(dataset, s.index, s.T_sample_lidar, gt_spacing_voxels=None).points


def encode_sample(autoencoder: CGCAAutoencoder, s: Any, surface_points: np.ndarray,
                  coarse_scale: int) -> LatentSample:
    """Encode a sample's sweep and surface points into cells and codes (on the autoencoder's device)."""
    v, origin = float(s.voxel_size), np.asarray(s.origin, np.float64)
    input_cells, input_latents = encode_cells(autoencoder, s.partial_points, v, origin)
    target, target_latents = encode_cells(autoencoder, surface_points, v, origin)
    coarse = coarse_cells_of(target, coarse_scale) if coarse_scale else None
    return LatentSample(s, input_cells, input_latents, target, target_latents, coarse)


def _check_grid(autoencoder: CGCAAutoencoder, data: CompletionDatasetConfig) -> None:
    """Same voxel size and congruent origins (the codes are local: the autoencoder may train on a smaller crop)."""
    shift = (np.asarray(autoencoder.origin) - data.origin) / data.voxel_size_m
    if abs(autoencoder.voxel_size - data.voxel_size_m) > 1e-9 or not np.allclose(shift, np.round(shift), atol=1e-6):
        raise ValueError(f"the data grid (voxel {data.voxel_size_m} m, origin {data.origin.tolist()}) is not the "
                         f"autoencoder's (voxel {autoencoder.voxel_size} m, origin {list(autoencoder.origin)})")


def data_config(config: CGCATrainConfig, ae_checkpoint: Mapping) -> CompletionDatasetConfig:
    """The run's data: ``config.data`` or, when empty, the autoencoder's training data."""
    return CompletionDatasetConfig.from_dict(config.data or ae_checkpoint["train_config"]["data"])


def evaluate_cgca(model: CGCATransition, samples: list[LatentSample], *,
                  generator: torch.Generator | None = None) -> dict[str, float]:
    """Mean voxel metrics of full chains over ``samples`` (fine stage: conditioned on the true coarse cells),
    plus the sweep-only baseline (``input_*``)."""
    from gen3d_ros.completion.metrics import completion_metrics

    rows, base = [], []
    for ls in samples:
        s = ls.sample
        bounds = ((0, 0, 0), tuple(int(v) for v in s.grid_shape))
        cells = torch.cat([torch.zeros((len(ls.input_cells), 1), dtype=torch.int32), ls.input_cells], 1)
        coarse = None
        if ls.coarse is not None:
            coarse = torch.cat([torch.zeros((len(ls.coarse), 1), dtype=torch.int32), ls.coarse], 1)
        out = cgca_complete(model, cells, ls.input_latents, bounds=bounds, generator=generator, coarse_cells=coarse)
        rows.append(completion_metrics(out.cells[:, 1:].numpy(), ls.target.numpy(), s.voxel_size))
        base.append(completion_metrics(ls.input_cells.numpy(), ls.target.numpy(), s.voxel_size))
    keys = ("iou", "precision", "recall", "fscore", "chamfer_l1")
    result = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    result.update({f"input_{k}": float(np.mean([r[k] for r in base])) for k in keys})
    return result


def validation_latent_samples(config: CGCATrainConfig, autoencoder: CGCAAutoencoder,
                              data: CompletionDatasetConfig) -> list[LatentSample]:
    """Held-out scenes: seeds offset by ``VALIDATION_SEED_OFFSET``, no augmentation."""
    held_out = CompletionDataset(CompletionDatasetConfig.from_dict(
        {**data.to_dict(), "augment": False, "base_seed": int(data.base_seed) + VALIDATION_SEED_OFFSET}))
    scale = int(config.model.get("coarse_scale", 0))
    return [latent_sample(autoencoder, held_out, i, None, scale) for i in range(config.val_samples)]


def build_model(config: CGCATrainConfig, z_dim: int) -> CGCATransition:
    return CGCATransition(CGCAConfig(**{**config.model, "z_dim": int(z_dim)}), backend=config.backend)


@dataclass
class CGCASetup:
    """A cGCA run's infusion setup plus the frozen autoencoder, its checkpoint and the run's data."""

    infusion: InfusionSetup
    autoencoder: CGCAAutoencoder
    autoencoder_checkpoint: dict
    data: CompletionDatasetConfig


def prepare_cgca_training(config: CGCATrainConfig, dist: DistributedContext | None = None, *,
                          autoencoder_checkpoint: Mapping | None = None) -> CGCASetup:
    """Load the frozen autoencoder (``config.autoencoder`` or an already-loaded ``autoencoder_checkpoint``), build
    the kernel on this rank's device, and the fresh latent chains and step of the run."""
    dist = dist or DistributedContext()
    rng = seed_everything(config, dist)
    aug_rng = np.random.default_rng([dist.seed(config.seed), 1])
    source = autoencoder_checkpoint if autoencoder_checkpoint is not None else config.autoencoder
    if not source:
        raise ValueError("cGCA training needs a trained autoencoder: set `autoencoder` to the model.pt of "
                         "`gen3d train-completion --stage autoencoder`")
    # The encoder only makes the chains' codes (once per fresh chain, on the CPU where the scenes are simulated).
    autoencoder, ae_ckpt = load_autoencoder(source, device="cpu", backend=config.backend)
    autoencoder.requires_grad_(False)
    data = data_config(config, ae_ckpt)
    _check_grid(autoencoder, data)
    dataset = CompletionDataset(CompletionDatasetConfig.from_dict({**data.to_dict(),
                                                                   "augment_seed": dist.seed(config.seed)}))
    device = dist.device(config.device)
    model = build_model(config, autoencoder.encoder.z_dim).to(device)
    if config.init_checkpoint:  # fine-tuning: the same architecture's trained weights
        model.load_state_dict(load_cgca(init_source(config.init_checkpoint), backend=config.backend)[0].state_dict())
    scale = model.coarse_scale

    def fresh_chain() -> LatentChain:
        index = int(rng.integers(len(dataset)))
        return latent_chain(latent_sample(autoencoder, dataset, index, aug_rng if data.augment else None, scale),
                            index, scale)

    if config.data_workers > 0:  # sweeps and surfaces simulated ahead by workers; codes on the training device
        autoencoder.to(device)
        pool = Prefetcher(make_dataset, (dataset.config.to_dict(),), sample_and_surface,
                          sample_tasks(rng, len(dataset), data.augment), workers=config.data_workers)

        def fresh_chain() -> LatentChain:  # noqa: F811 - the prefetching variant
            s, surface_points = next(pool)
            return latent_chain(encode_sample(autoencoder, s, surface_points, scale), s.index, scale)

    def step(model, chains, schedule, generator):
        return cgca_infusion_step(model, chains, schedule, completion_rate=config.completion_rate,
                                  max_phase=config.max_phase, generator=generator)

    infusion = InfusionSetup(model, fresh_chain, step, device, extras=("occupancy_kl", "latent_kl"),
                             desc="train cGCA" + (" fine stage" if scale else ""))
    return CGCASetup(infusion, autoencoder, dict(ae_ckpt), data)


def train_cgca(config: CGCATrainConfig, out_dir: str | Path | None = None, *, progress: bool = True,
               autoencoder_checkpoint: Mapping | None = None,
               on_validation: Callable[[int, dict], None] | None = None) -> tuple[CGCATransition, dict]:
    """Train a cGCA kernel over the frozen autoencoder ``config.autoencoder`` (or ``autoencoder_checkpoint``,
    an already-loaded checkpoint dict); returns the model and a summary (curves, final validation metrics,
    ``iters_per_s``). In a ``torchrun`` job rank 0 alone validates and writes ``out_dir``."""
    dist = distributed.current()
    run = prepare_cgca_training(config, dist, autoencoder_checkpoint=autoencoder_checkpoint)
    model = run.infusion.model
    val = validation_latent_samples(config, run.autoencoder, run.data) if dist.is_main else []

    def describe(it: int, metrics: dict) -> None:
        log.info("iteration %d: val IoU %.3f (input %.3f), Chamfer-L1 %.3f m", it, metrics["iou"],
                 metrics["input_iou"], metrics["chamfer_l1"])

    def validate() -> dict:
        return evaluate_cgca(model, val, generator=torch.Generator(device=run.infusion.device).manual_seed(config.seed))

    summary = run_infusion_training(config, run.infusion, evaluate=validate if val else None, progress=progress,
                                    on_validation=on_validation, describe=describe, dist=dist)
    if out_dir is not None and dist.is_main:
        save_run(model, config, summary, Path(out_dir), run.autoencoder_checkpoint, run.data.grid)
    dist.barrier()  # the other ranks return once the run folder is complete
    return model, summary


def latent_chain(ls: LatentSample, index: int, scale: int) -> LatentChain:
    """A fresh chain of a latent sample: the sweep's cells and codes; a fine stage (``scale`` > 0) starts from the
    upsampled ground-truth coarse cells + the sweep, cropped to the grid."""
    state, latents = ls.input_cells, ls.input_latents
    if scale:
        zeros = torch.zeros((len(ls.input_cells), 1), dtype=torch.int32)
        cells, latents = coarse_start(torch.cat([zeros, ls.input_cells], 1), ls.input_latents,
                                      torch.cat([torch.zeros((len(ls.coarse), 1), dtype=torch.int32), ls.coarse], 1),
                                      scale)
        keep = ((cells[:, 1:] >= 0) & (cells[:, 1:] < torch.as_tensor(ls.sample.grid_shape))).all(1)
        state, latents = cells[keep, 1:], latents[keep]
    return LatentChain(index, state, ls.input_cells, ls.target, tuple(int(v) for v in ls.sample.grid_shape),
                       latents=latents, target_latents=ls.target_latents, input_latents=ls.input_latents,
                       coarse=ls.coarse)


def save_run(model: CGCATransition, config: CGCATrainConfig, summary: dict, out_dir: Path,
             ae_checkpoint: Mapping, grid: VoxelGrid) -> None:
    """``model.pt``, ``metrics.json`` and ``training_curve.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_torch(cgca_checkpoint(model, config.to_dict(), ae_checkpoint, grid, backend=get_backend(config.backend).name,
                               metrics=summary.get("final")), out_dir / "model.pt")
    metrics = {"final": summary["final"], "train_seconds": summary["train_seconds"],
               "iters_per_s": summary.get("iters_per_s"), "config": config.to_dict()}
    write_json(out_dir / "metrics.json", metrics, default=str)
    plot_training_curve(summary["history"], out_dir / "training_curve.png")


def plot_training_curve(history: dict, path: Path) -> None:
    """Occupancy and latent KL per step, and validation IoU against the sweep's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    its = np.asarray(history["iteration"])
    for key, colour in (("occupancy_kl", "C0"), ("latent_kl", "C1")):
        plot_moving_average(ax_loss, its, np.asarray(history[key]), colour, label=key, lw=None)
    ax_loss.set(xlabel="iteration", ylabel="KL (moving average)", title="cGCA infusion loss", yscale="log")
    ax_loss.legend()
    if history["val"]:
        vits = history["val_iteration"]
        ax_val.plot(vits, [m["iou"] for m in history["val"]], "o-", color="C2", label="cGCA")
        ax_val.plot(vits, [m["input_iou"] for m in history["val"]], "--", color="0.5", label="sweep only")
        ax_val.set(xlabel="iteration", ylabel="voxel IoU", title="held-out scenes")
        ax_val.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
