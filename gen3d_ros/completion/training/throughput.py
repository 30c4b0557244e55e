"""Training throughput of the completion stages: iterations per second of each stage's real training step.

    from gen3d_ros.completion.training.throughput import measure_train_throughput
    measure_train_throughput("transition", "demo", device="cuda", steps=20, amp="bf16")
    # {'stage': 'transition', 'preset': 'demo', 'device': 'cuda', 'amp': 'bf16', 'iters_per_s': ..., ...}

Each measurement builds the stage as its training command does (model, simulated data, replay buffer, optimiser,
autocast) and runs ``warmup`` iterations, then ``steps`` timed ones, of the same ``iteration()`` the training loop
calls, with no validation and no file written. The timed span ends with a device synchronisation, so a GPU's queued
work is counted. Data simulation (scenes, ray casting) happens inside the iterations, as in training: the numbers
are what a training run gets, not the network alone.

The infusion stages simulate a scene only when a chain in the replay buffer finishes (at ``completion_rate`` or
after ``max_phase`` visits), and warm-up fills the buffer: a short timed span sees few refills, so its
``data_fraction`` understates the simulator's share over a whole run; ``seconds_per_fresh_chain`` is the cost of
one refill. The autoencoder simulates every step, so its ``data_fraction`` is representative.

Stages (those of ``gen3d train-completion --stage``): ``transition`` (GCA, or hGCA's planned coarse kernel with a
``*_planner`` preset), ``autoencoder``, ``fine`` (cGCA over an *untrained* autoencoder built from the
autoencoder preset of the same name, or ``tiny``: the codes are meaningless, the shapes and costs are real), and
``hierarchy``: the three stages of a hierarchy preset, in ``stages``, with the time they would take together.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import torch

from gen3d_ros.completion.checkpoint import autoencoder_checkpoint
from gen3d_ros.completion.training import autoencoder, cgca, gca, hierarchy
from gen3d_ros.completion.training.distributed import DistributedContext
from gen3d_ros.completion.training.loop import InfusionTrainer
from gen3d_ros.devices import check_device
from gen3d_ros.sparse import get_backend

STAGES = ("transition", "autoencoder", "fine", "hierarchy")


def measure_train_throughput(stage: str, preset: str = "tiny", device: str = "cpu", steps: int = 10,
                             amp: str = "off", *, warmup: int | None = None,
                             overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Iterations per second of one stage's training step (see the module docstring).

    Args:
        stage: ``transition``, ``autoencoder``, ``fine`` or ``hierarchy``.
        preset: a preset of that stage (``hierarchy``: a hierarchy preset, e.g. ``tiny`` or ``demo``).
        device: torch device (``cpu``, ``cuda``, ``cuda:1``). steps: timed iterations (>= 1).
        amp: ``off``, ``bf16`` or ``fp16`` (CUDA only). warmup: untimed iterations first (default: ``steps``).
        overrides: config keys over the preset (dotted for nested keys), e.g. ``{"batch_size": 8}``.
    Returns:
        ``stage``, ``preset``, ``device``, ``amp``, ``steps``, ``warmup``, ``seconds`` (timed span),
        ``iters_per_s``, ``seconds_per_iter``, ``data_seconds`` / ``data_fraction`` (host time spent simulating
        data in the span: scenes, sweeps, UDF targets), ``seconds_per_fresh_chain`` (infusion stages: the cost of
        one new chain; see below), ``batch_size``, ``iterations`` (the preset's run length) and
        ``predicted_train_seconds`` (``iterations / iters_per_s``, validation excluded). ``hierarchy`` adds
        ``stages`` (a result per stage) and totals ``iterations`` and ``predicted_train_seconds`` over them,
        ``iters_per_s`` being their ratio.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {STAGES}")
    if steps < 1 or (warmup is not None and warmup < 0):
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    check_device(device)
    warmup = steps if warmup is None else int(warmup)
    common = {**dict(overrides or {}), "device": device, "amp": amp}
    if stage == "hierarchy":
        return _hierarchy_throughput(preset, common, steps, warmup)
    if stage == "transition":
        config = gca.make_config(preset, common)
        trainer = InfusionTrainer(config, gca.prepare_training(config), DistributedContext())
    elif stage == "autoencoder":
        config = autoencoder.make_autoencoder_config(preset, common)
        trainer = autoencoder.AutoencoderTrainer(config)
    else:
        config = cgca.make_cgca_config(preset, common)
        trainer = _fine_trainer(config, preset)
    result = _time(trainer, steps, warmup, device)
    return {"stage": stage, "preset": preset, "device": device, "amp": amp, **result,
            "batch_size": int(config.batch_size), "iterations": int(config.iterations),
            "predicted_train_seconds": config.iterations / result["iters_per_s"]}


def _fine_trainer(config: cgca.CGCATrainConfig, preset: str,
                  ae_config: autoencoder.AutoencoderTrainConfig | None = None) -> InfusionTrainer:
    """The cGCA trainer over an untrained autoencoder (in memory: no checkpoint file is needed or written) on the
    run's grid (``config.data``, else the autoencoder preset's)."""
    if ae_config is None:
        name = preset if preset in autoencoder.PRESETS else "tiny"
        ae_config = autoencoder.make_autoencoder_config(
            name, {"backend": config.backend, **({"data": config.data} if config.data else {})})
    model = autoencoder.build_model(ae_config)
    checkpoint = autoencoder_checkpoint(model, ae_config.to_dict(), backend=get_backend(config.backend).name)
    run = cgca.prepare_cgca_training(config, autoencoder_checkpoint=checkpoint)
    return InfusionTrainer(config, run.infusion, DistributedContext())


def _hierarchy_throughput(preset: str, common: dict, steps: int, warmup: int) -> dict[str, Any]:
    configs = hierarchy.stage_configs(preset, common)
    device = common["device"]
    trainers = {
        "autoencoder": autoencoder.AutoencoderTrainer(configs["autoencoder"]),
        "fine": _fine_trainer(configs["fine"], preset, configs["autoencoder"]),
        "coarse": InfusionTrainer(configs["coarse"], gca.prepare_training(configs["coarse"]), DistributedContext()),
    }
    stages = {}
    for name, trainer in trainers.items():
        result = _time(trainer, steps, warmup, device)
        n = int(configs[name].iterations)
        stages[name] = {**result, "batch_size": int(configs[name].batch_size), "iterations": n,
                        "predicted_train_seconds": n / result["iters_per_s"]}
    total_iterations = sum(r["iterations"] for r in stages.values())
    total_seconds = sum(r["predicted_train_seconds"] for r in stages.values())
    return {"stage": "hierarchy", "preset": preset, "device": device, "amp": common["amp"], "steps": steps,
            "warmup": warmup, "stages": stages, "iterations": total_iterations,
            "predicted_train_seconds": total_seconds, "iters_per_s": total_iterations / total_seconds}


def _synchronise(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _time(trainer: Any, steps: int, warmup: int, device: str) -> dict[str, float]:
    """Run ``warmup`` then ``steps`` of ``trainer.iteration()``; the timed span's seconds and rate (device work
    included) and the share of it the host spent making data (``trainer.data_seconds``)."""
    for _ in range(warmup):
        trainer.iteration()
    _synchronise(device)
    data_start, start = trainer.data_seconds, time.perf_counter()
    for _ in range(steps):
        trainer.iteration()
    _synchronise(device)
    seconds = time.perf_counter() - start
    data_seconds = trainer.data_seconds - data_start
    result = {"steps": steps, "warmup": warmup, "seconds": seconds, "iters_per_s": steps / seconds,
              "seconds_per_iter": seconds / steps, "data_seconds": data_seconds, "data_fraction": data_seconds / seconds}
    chains = getattr(trainer, "chains_made", 0)
    if chains:  # infusion stages: the cost of one fresh chain, mostly measured while warm-up filled the buffer
        result["seconds_per_fresh_chain"] = trainer.data_seconds / chains
    return result
