"""The one infusion training loop of GCA, hGCA's planned coarse GCA and cGCA.

Each iteration keeps the replay buffer full of chains (fresh ones from the data), pops a batch, runs ONE infusion
step (one forward pass of the kernel; the step function says which kind), takes an optimiser step, pushes the
successors back, records the losses and, every ``val_every`` iterations and at the end, runs full chains on
held-out scenes. The kernels differ only in their chains, their step and their evaluation, which the caller
passes in (:class:`InfusionSetup`).

The step runs under the run's mixed precision (``amp``, :mod:`.precision`) and, when ``torchrun`` started several
processes, inside ``DistributedDataParallel`` (:mod:`.distributed`): each rank has its own replay buffer and
data seed, gradients are averaged. Losses stay on the device and are read every ``log_every`` iterations, with
the training rate of that window (``history["iters_per_s"]``; the summary's ``iters_per_s`` excludes validation).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np
import torch

from gen3d_ros.completion.training.distributed import DistributedContext
from gen3d_ros.completion.training.infusion import InfusionSchedule, ReplayBuffer
from gen3d_ros.completion.training.precision import AMP_CHOICES, Precision
from gen3d_ros.completion.training.progress import LogWindow
from gen3d_ros.completion.training.train_step import TrainStep

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
    amp: str = "off"
    """Mixed precision: ``off`` (float32), ``bf16`` (autocast; CUDA or CPU), ``fp16`` (autocast + GradScaler;
    CUDA only). See :mod:`gen3d_ros.completion.training.precision`."""
    log_every: int = 10
    """Iterations between reads of the losses from the device (history, progress bar, rate): a GPU run is not
    synchronised for logging after every step."""
    init_checkpoint: str = ""
    """Start from this trained model's weights (same architecture): a ``model.pt`` of the same stage, or
    ``BUNDLE.pt:coarse`` / ``BUNDLE.pt:fine`` for a part of an hGCA bundle. Fine-tuning on new data."""
    time_limit_s: float = 0.0
    """Stop after this many seconds of training (validation excluded) and finish the run as if the iterations
    were done (final validation, files); 0 = no limit. For runs inside a fixed GPU-time grant."""
    data_workers: int = 0
    """Processes simulating fresh chains' scenes and sweeps ahead of the trainer (:mod:`.prefetch`); 0 = in the
    training process, as before. On a GPU host give it most of the CPU cores."""

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("need iterations >= 0, batch_size >= 1 and lr > 0")
        if self.amp not in AMP_CHOICES or self.log_every < 1:
            raise ValueError(f"need amp in {AMP_CHOICES} and log_every >= 1, got {self.amp!r}, {self.log_every}")
        if self.val_every < 1 or self.val_samples < 0:
            raise ValueError(f"need val_every >= 1 and val_samples >= 0, got {self.val_every}, {self.val_samples}")
        if self.init_checkpoint and self.init_checkpoint.rsplit(":", 1)[-1] not in ("coarse", "fine") \
                and not self.init_checkpoint.endswith(".pt"):
            raise ValueError(f"init_checkpoint must be a .pt file or BUNDLE.pt:coarse|fine, "
                             f"got {self.init_checkpoint!r}")
        if self.data_workers < 0:
            raise ValueError(f"data_workers must be >= 0, got {self.data_workers}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


#: ``step(model, chains, schedule, generator) -> (loss graph, step result)``; the result has ``loss`` (0-dim tensor
#: or float), ``successors`` (chains), ``completion`` (per chain) and the attributes named in ``extras``.
StepFn = Callable[[Any, list, InfusionSchedule, torch.Generator], tuple[torch.Tensor, Any]]


@dataclass
class InfusionSetup:
    """What one infusion stage trains: the model (already on ``device``), where fresh chains come from, the step."""

    model: torch.nn.Module
    fresh_chain: Callable[[], Any]
    step: StepFn
    device: str
    extras: tuple[str, ...] = ()
    """Result attributes recorded per iteration besides ``loss`` (e.g. ``bev_loss``)."""
    desc: str = "train"


class InfusionTrainer:
    """The optimisation state of one infusion run on one rank: replay buffer, schedule, sampling generator (on the
    model's device, seeded per rank) and the :class:`TrainStep` (autocast, DDP, clip, Adam)."""

    def __init__(self, config: InfusionTrainConfig, setup: InfusionSetup, dist: DistributedContext) -> None:
        seed = dist.seed(config.seed)
        self.config = config
        self.setup = setup
        self.generator = torch.Generator(device=setup.device).manual_seed(seed)
        self.schedule = InfusionSchedule(config.infusion_start, config.infusion_speed)
        self.buffer = ReplayBuffer(config.buffer_size, seed=seed)
        self.train_step = TrainStep(setup.model, setup.step, lr=config.lr, grad_clip=config.grad_clip,
                                    precision=Precision.create(config.amp, setup.device), dist=dist)
        self.data_seconds = 0.0
        """Host seconds spent making fresh chains (simulating scenes and sweeps) so far."""
        self.chains_made = 0

    def iteration(self) -> Any:
        """Refill the buffer, pop a batch, take one optimiser step, push the successors back; the step's result."""
        start = time.perf_counter()
        # Keep the buffer full: batches then mix chains of different phases (and scenes).
        while len(self.buffer) < max(self.config.buffer_size, self.config.batch_size):
            self.buffer.push(self.setup.fresh_chain())
            self.chains_made += 1
        self.data_seconds += time.perf_counter() - start
        chains = self.buffer.pop(self.config.batch_size)
        _, result = self.train_step(chains, self.schedule, self.generator)
        for chain in result.successors:
            self.buffer.push(chain)
        return result


def run_infusion_training(config: InfusionTrainConfig, setup: InfusionSetup, *,
                          evaluate: Callable[[], dict] | None, progress: bool = True,
                          on_validation: Callable[[int, dict], None] | None = None,
                          describe: Callable[[int, dict], None] | None = None,
                          dist: DistributedContext | None = None) -> dict:
    """Train ``setup.model`` in place; return the summary: ``history`` (per-iteration losses, coverage, extras, the
    validation metrics and the training rate per logging window), ``final`` (last validation), ``train_seconds``,
    ``validation_seconds`` and ``iters_per_s`` (iterations per second of training, validation excluded).

    ``evaluate()``: held-out metrics (None: no validation, e.g. on ranks other than 0); ``describe(it, metrics)``:
    log them. Losses are read from the device every ``config.log_every`` iterations (not after every step).
    """
    from tqdm import tqdm

    dist = dist or DistributedContext()
    trainer = InfusionTrainer(config, setup, dist)
    history: dict[str, list] = {"iteration": [], "loss": [], **{k: [] for k in setup.extras}, "completion": [],
                                "val_iteration": [], "val": [], "log_iteration": [], "iters_per_s": []}
    log_window = LogWindow(history)
    bar = tqdm(range(1, config.iterations + 1), desc=setup.desc, unit="it", dynamic_ncols=True,
               disable=not progress or not dist.is_main)
    validation_seconds, done = 0.0, 0
    start = time.perf_counter()
    for it in bar:
        if config.time_limit_s and time.perf_counter() - start - validation_seconds > config.time_limit_s:
            log_window.flush()
            _final_validation(history, evaluate, describe, on_validation, done)
            break
        result = trainer.iteration()
        done = it
        log_window.add(it, {"loss": result.loss, **{k: getattr(result, k) for k in setup.extras},
                            "completion": float(np.mean(result.completion))})
        if it % config.log_every == 0 or it == config.iterations:
            bar.set_postfix(log_window.flush())
        if evaluate is not None and (it % config.val_every == 0 or it == config.iterations):
            t0 = time.perf_counter()
            _validate(history, evaluate, describe, on_validation, it)
            validation_seconds += time.perf_counter() - t0
            log_window.restart()  # the next window's rate counts training only
    setup.model.eval()
    train_seconds = time.perf_counter() - start
    return {"history": history, "final": history["val"][-1] if history["val"] else {},
            "train_seconds": train_seconds, "validation_seconds": validation_seconds,
            "iterations_done": done, "iters_per_s": done / max(train_seconds - validation_seconds, 1e-9)}


def init_source(spec: str) -> Any:
    """What ``init_checkpoint`` names: a path, or (``BUNDLE.pt:part``) that part of an hGCA bundle (a dict)."""
    from gen3d_ros.completion.checkpoint import load_bundle

    path, _, part = spec.rpartition(":")
    if part in ("coarse", "fine") and path:
        return load_bundle(path)[part]
    return spec


def _final_validation(history: dict, evaluate: Callable[[], dict] | None, describe, on_validation,
                      it: int) -> None:
    """The validation of the last iteration of a run stopped by its time limit (unless it just ran)."""
    if evaluate is None or it < 1 or (history["val_iteration"] and history["val_iteration"][-1] == it):
        return
    _validate(history, evaluate, describe, on_validation, it)


def _validate(history: dict, evaluate: Callable[[], dict], describe, on_validation, it: int) -> None:
    """One validation after iteration ``it``: recorded in ``history``, described and handed to the callback."""
    metrics = evaluate()
    history["val_iteration"].append(it)
    history["val"].append(metrics)
    if describe is not None:
        describe(it, metrics)
    if on_validation:
        on_validation(it, metrics)


def seed_everything(config: InfusionTrainConfig, dist: DistributedContext | None = None) -> np.random.Generator:
    """torch's threads and seed from ``config``; the numpy generator of this rank's data draws.

    torch's seed is the same on every rank (identical initial weights; DDP also copies rank 0's); the data
    generator is seeded per rank (:meth:`DistributedContext.seed`), so ranks draw different scenes.
    """
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    return np.random.default_rng((dist or DistributedContext()).seed(config.seed))
