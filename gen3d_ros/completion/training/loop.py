"""The one infusion training loop of GCA, hGCA's planned coarse GCA and cGCA.

Each iteration keeps the replay buffer full of chains (fresh ones from the data), pops a batch, runs ONE infusion
step (one forward pass of the kernel; the step function says which kind), takes an optimiser step, pushes the
successors back, records the losses and, every ``val_every`` iterations and at the end, runs full chains on
held-out scenes. The kernels differ only in their chains, their step and their evaluation, which the caller
passes in.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

import numpy as np
import torch

from gen3d_ros.completion.training.infusion import InfusionSchedule, ReplayBuffer

log = logging.getLogger("gen3d_ros.completion.training")

#: Validation scenes use seeds this far from the training seeds (never the same scene).
VALIDATION_SEED_OFFSET = 1_000_000


@dataclass
class InfusionTrainConfig:
    """Optimisation of one infusion training run (numbers from the GCA configs where they apply)."""

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

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("need iterations >= 0, batch_size >= 1 and lr > 0")
        if self.val_every < 1 or self.val_samples < 0:
            raise ValueError(f"need val_every >= 1 and val_samples >= 0, got {self.val_every}, {self.val_samples}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


#: ``step(model, chains, schedule, generator) -> (loss graph, step result)``; the result has ``loss`` (float),
#: ``successors`` (chains), ``completion`` (per chain) and the attributes named in ``extras``.
StepFn = Callable[[Any, list, InfusionSchedule, torch.Generator], tuple[torch.Tensor, Any]]


def run_infusion_training(config: InfusionTrainConfig, model: torch.nn.Module, *, fresh_chain: Callable[[], Any],
                          step: StepFn, evaluate: Callable[[], dict] | None, desc: str, extras: Sequence[str] = (),
                          progress: bool = True, on_validation: Callable[[int, dict], None] | None = None,
                          describe: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``model`` in place; return the summary: ``history`` (per-iteration losses, coverage, extras and the
    validation metrics), ``final`` (last validation) and ``train_seconds``.

    ``evaluate()``: held-out metrics (None: no validation); ``describe(it, metrics)``: log them.
    """
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = InfusionSchedule(config.infusion_start, config.infusion_speed)
    buffer = ReplayBuffer(config.buffer_size, seed=config.seed)
    history: dict[str, list] = {"iteration": [], "loss": [], **{k: [] for k in extras}, "completion": [],
                                "val_iteration": [], "val": []}
    start = time.perf_counter()
    bar = tqdm(range(1, config.iterations + 1), desc=desc, unit="it", disable=not progress, dynamic_ncols=True)
    for it in bar:
        # Keep the buffer full: batches then mix chains of different phases (and scenes).
        while len(buffer) < max(config.buffer_size, config.batch_size):
            buffer.push(fresh_chain())
        chains = buffer.pop(config.batch_size)
        model.train()
        loss, result = step(model, chains, schedule, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()
        for chain in result.successors:
            buffer.push(chain)
        _record(history, it, result, extras)
        bar.set_postfix(loss=f"{result.loss:.4f}", **{k: f"{getattr(result, k):.3f}" for k in extras},
                        cover=f"{np.mean(result.completion):.2f}")
        if evaluate is not None and (it % config.val_every == 0 or it == config.iterations):
            metrics = evaluate()
            history["val_iteration"].append(it)
            history["val"].append(metrics)
            if describe is not None:
                describe(it, metrics)
            if on_validation:
                on_validation(it, metrics)
    model.eval()
    return {"history": history, "final": history["val"][-1] if history["val"] else {},
            "train_seconds": time.perf_counter() - start}


def _record(history: dict[str, list], it: int, result: Any, extras: Sequence[str]) -> None:
    history["iteration"].append(it)
    history["loss"].append(result.loss)
    for key in extras:
        history[key].append(getattr(result, key))
    history["completion"].append(float(np.mean(result.completion)))


def seed_everything(config: InfusionTrainConfig) -> np.random.Generator:
    """torch's threads and seed from ``config``; the numpy generator of the run's data draws."""
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    return np.random.default_rng(config.seed)
