"""``gen3d train-completion``: infusion training of a GCA kernel on simulated LiDAR scenes.

Training data: :class:`gen3d_ros.sim.dataset.CompletionDataset` (procedural streets, ray-cast LiDAR);
validation: held-out scene seeds, full chains from the input, voxel IoU / F-score / Chamfer against the
complete scene. Outputs in the run folder: ``model.pt`` (weights + every config + backend + version),
``metrics.json`` and ``training_curve.png``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from gen3d_ros import __version__
from gen3d_ros.completion.gca import GCAConfig, GCATransition, complete
from gen3d_ros.completion.infusion import Chain, InfusionSchedule, ReplayBuffer, infusion_step
from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig

log = logging.getLogger("gen3d_ros.completion.training")

CHECKPOINT_FORMAT = "gen3d_ros.gca/1"
VALIDATION_SEED_OFFSET = 1_000_000


@dataclass
class TrainConfig:
    """Optimisation and data of one training run (numbers from the GCA configs where they apply)."""

    iterations: int = 2000
    batch_size: int = 4
    lr: float = 5e-4
    grad_clip: float = 0.5
    infusion_start: float = 0.1
    infusion_speed: float = 0.005
    completion_rate: float = 0.95
    max_phase: int = 30
    buffer_size: int = 32
    val_every: int = 250
    val_samples: int = 4
    seed: int = 0
    device: str = "cpu"
    backend: str | None = None
    threads: int = 0
    """torch intra-op threads; 0 keeps torch's default. 1 is fastest on a busy small CPU (OpenMP spinning)."""
    model: dict = field(default_factory=dict)
    """:class:`GCAConfig` fields."""
    data: dict = field(default_factory=dict)
    """:class:`CompletionDatasetConfig` fields (``lidar: {preset: ...}``, ``scene: {...}``)."""


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on a CPU: tests and CI. Small scenes, demo LiDAR, coarse voxels.
    "tiny": {
        "iterations": 120, "batch_size": 2, "lr": 2e-3, "val_every": 60, "val_samples": 3,
        "buffer_size": 8, "max_phase": 12,
        "model": {"widths": [8, 16], "neighbourhood": "hypercross1", "steps": 6, "mode_steps": 1},
        "data": {"voxel_size_m": 0.5, "half_extent_m": [6.0, 6.0], "z_range_m": [-2.5, 2.5],
                 "lidar": {"preset": "demo"}, "scene": {"size_m": 30.0}, "augment": True, "length": 64},
    },
    # The committed demo model: about an hour on a 2-core CPU.
    "demo": {
        "iterations": 2500, "batch_size": 2, "lr": 1e-3, "val_every": 500, "val_samples": 6,
        "buffer_size": 24, "max_phase": 20,
        "model": {"widths": [16, 32, 64], "neighbourhood": "hypercross2", "steps": 10, "mode_steps": 2},
        "data": {"voxel_size_m": 0.4, "half_extent_m": [12.0, 12.0], "z_range_m": [-2.8, 4.4],
                 "lidar": {"preset": "vlp32"}, "scene": {"size_m": 50.0}, "augment": True, "length": 400},
    },
}


def make_config(preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a preset plus overrides (dotted keys reach nested dicts: ``model.steps``)."""
    values: dict[str, Any] = copy.deepcopy(PRESETS[preset]) if preset else {}
    if preset and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    for key, value in (overrides or {}).items():
        target = values
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(target.get(leaf), Mapping):
            target[leaf] = {**target[leaf], **value}
        else:
            target[leaf] = value
    known = set(TrainConfig.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown training key(s) {sorted(unknown)}; known: {sorted(known)}")
    config = TrainConfig(**values)
    GCAConfig(**config.model)  # validate early: a typo should fail before any data is generated
    CompletionDatasetConfig.from_dict(config.data)
    return config


def _cells(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int32))


def evaluate(model: GCATransition, samples: list, *, generator: torch.Generator | None = None,
             samples_per_input: int = 1) -> dict[str, float]:
    """Mean completion metrics of full chains over ``samples`` (CompletionSample), plus the input-only baseline."""
    from gen3d_ros.completion.metrics import completion_metrics

    rows, base = [], []
    for s in samples:
        bounds = ((0, 0, 0), tuple(int(v) for v in s.grid_shape))
        s0 = torch.cat([torch.zeros((len(s.partial), 1), dtype=torch.int32), _cells(s.partial)], 1)
        for _ in range(samples_per_input):
            out = complete(model, s0, bounds=bounds, generator=generator).final[:, 1:].numpy()
            rows.append(completion_metrics(out, s.complete, s.voxel_size))
        base.append(completion_metrics(s.partial, s.complete, s.voxel_size))
    keys = ("iou", "precision", "recall", "fscore", "chamfer_l1")
    result = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    result.update({f"input_{k}": float(np.mean([r[k] for r in base])) for k in keys})
    return result


def validation_samples(config: TrainConfig) -> list:
    """Held-out samples: scene seeds offset far from the training seeds, no augmentation."""
    data = CompletionDatasetConfig.from_dict({**config.data, "augment": False,
                                              "base_seed": int(config.data.get("base_seed", 0))
                                              + VALIDATION_SEED_OFFSET})
    dataset = CompletionDataset(data)
    return [dataset[i] for i in range(config.val_samples)]


def train(config: TrainConfig, out_dir: str | Path | None = None, *, progress: bool = True,
          on_validation: Callable[[int, dict], None] | None = None) -> tuple[GCATransition, dict]:
    """Train a GCA kernel; returns the model and a summary (curves, final validation metrics, timings)."""
    from tqdm import tqdm

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = GCATransition(GCAConfig(**config.model), backend=config.backend).to(config.device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = InfusionSchedule(config.infusion_start, config.infusion_speed)
    data_config = CompletionDatasetConfig.from_dict({**config.data, "augment_seed": config.seed})
    dataset = CompletionDataset(data_config)
    buffer = ReplayBuffer(config.buffer_size, seed=config.seed)
    val = validation_samples(config)
    history: dict[str, list] = {"iteration": [], "loss": [], "completion": [], "val_iteration": [], "val": []}

    def fresh_chain() -> Chain:
        index = int(rng.integers(len(dataset)))
        s = dataset[index]
        return Chain(index, _cells(s.partial), _cells(s.partial), _cells(s.complete),
                     tuple(int(v) for v in s.grid_shape))

    start = time.perf_counter()
    bar = tqdm(range(1, config.iterations + 1), desc="train GCA", unit="it", disable=not progress, dynamic_ncols=True)
    for it in bar:
        # Keep the buffer full: batches then mix chains of different phases (and scenes).
        while len(buffer) < max(config.buffer_size, config.batch_size):
            buffer.push(fresh_chain())
        chains = buffer.pop(config.batch_size)
        model.train()
        loss, step = infusion_step(model, chains, schedule, completion_rate=config.completion_rate,
                                   max_phase=config.max_phase, generator=generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()
        for chain in step.successors:
            buffer.push(chain)
        history["iteration"].append(it)
        history["loss"].append(step.loss)
        history["completion"].append(float(np.mean(step.completion)))
        bar.set_postfix(loss=f"{step.loss:.4f}", cover=f"{np.mean(step.completion):.2f}")
        if it % config.val_every == 0 or it == config.iterations:
            metrics = evaluate(model, val, generator=torch.Generator().manual_seed(config.seed))
            history["val_iteration"].append(it)
            history["val"].append(metrics)
            log.info("iteration %d: val IoU %.3f (input %.3f), Chamfer-L1 %.3f m", it, metrics["iou"],
                     metrics["input_iou"], metrics["chamfer_l1"])
            if on_validation:
                on_validation(it, metrics)
    summary = {"history": history, "final": history["val"][-1] if history["val"] else {},
               "train_seconds": time.perf_counter() - start}
    if out_dir is not None:
        save_run(model, config, summary, Path(out_dir))
    return model, summary


def save_checkpoint(model: GCATransition, config: TrainConfig, path: Path, metrics: Mapping | None = None) -> None:
    """Weights + model/data/training config + sparse backend + package/torch versions, in one file."""
    from gen3d_ros.sparse import get_backend

    torch.save({
        "format": CHECKPOINT_FORMAT,
        "gca_config": model.config.to_dict(),
        "train_config": {k: getattr(config, k) for k in TrainConfig.__dataclass_fields__},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "backend": get_backend(config.backend).name,
        "gen3d_ros_version": __version__,
        "torch_version": torch.__version__,
        "metrics": dict(metrics or {}),
    }, path)


def load_checkpoint(path: str | Path, *, device: str = "cpu", backend: str | None = None) -> tuple[GCATransition, dict]:
    """Model (eval mode) and the checkpoint dict. Errors name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GCA checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a gen3d_ros GCA checkpoint (format {CHECKPOINT_FORMAT!r})")
    model = GCATransition(GCAConfig(**ckpt["gca_config"]), backend=backend)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def save_run(model: GCATransition, config: TrainConfig, summary: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, config, out_dir / "model.pt", summary.get("final"))
    (out_dir / "metrics.json").write_text(json.dumps({"final": summary["final"],
                                                      "train_seconds": summary["train_seconds"],
                                                      "config": summary.get("config", None) or
                                                      {k: getattr(config, k) for k in TrainConfig.__dataclass_fields__}},
                                                     indent=2, default=str))
    plot_training_curve(summary["history"], out_dir / "training_curve.png")


def plot_training_curve(history: dict, path: Path) -> None:
    """Loss (raw + moving average) and validation IoU against the input-only IoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    its, loss = np.asarray(history["iteration"]), np.asarray(history["loss"])
    ax_loss.plot(its, loss, color="0.75", lw=0.8, label="KL(q||p) per step")
    if len(loss) >= 5:
        w = max(5, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax_loss.plot(its[w - 1:], smooth, color="C0", lw=1.8, label=f"moving average ({w})")
    ax_loss.set(xlabel="iteration", ylabel="loss [nats / candidate cell]", title="infusion training loss")
    ax_loss.legend()
    if history["val"]:
        vits = history["val_iteration"]
        for key, label, colour in (("iou", "GCA IoU", "C1"), ("fscore", "GCA F-score", "C2")):
            ax_val.plot(vits, [v[key] for v in history["val"]], "o-", color=colour, label=label)
            ax_val.plot(vits, [v[f"input_{key}"] for v in history["val"]], "--", color=colour,
                        label=f"input-only {label.split()[-1]}")
        ax_val.set(xlabel="iteration", ylabel="held-out score", title="validation (full chains)", ylim=(0, 1))
        ax_val.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
