"""hGCA coarse stage end to end: a tiny planned kernel trains (``--preset tiny_planner``), its checkpoint
round-trips, ``gen3d complete`` and the completion processor run it, and its completions depend on the planner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gen3d_ros.cli import main
from gen3d_ros.completion.gca import GCATransition
from gen3d_ros.completion.planned_gca import PlannedGCATransition, complete_planned
from gen3d_ros.completion.planner import BEVFeatures
from gen3d_ros.completion.inference import GCACompleter
from gen3d_ros.completion.checkpoint import GCA_FORMAT as CHECKPOINT_FORMAT
from gen3d_ros.completion.checkpoint import PLANNED_GCA_FORMAT as PLANNED_CHECKPOINT_FORMAT
from gen3d_ros.completion.checkpoint import load_gca as load_checkpoint
from gen3d_ros.completion.inference import planner_points
from gen3d_ros.completion.training.gca import (
    build_model,
    evaluate,
    make_config,
    save_checkpoint,
    train,
    validation_samples,
)
from gen3d_ros.io.pointfiles import read_points

DEMO_MODEL = Path(__file__).resolve().parents[2] / "gen3d_ros" / "models" / "gca_demo.pt"
SEED = 0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny planned training run (about 8 s on one thread): model, summary, config, run folder."""
    out = tmp_path_factory.mktemp("hgca_run")
    config = make_config("tiny_planner", {"seed": SEED, "threads": 1})
    model, summary = train(config, out, progress=False)
    return model, summary, config, out


@pytest.fixture(scope="module")
def val(run):
    return validation_samples(run[2])


def _zero_planner_features(model: PlannedGCATransition):
    """Ablation: the planner's BEV features (what the kernel lifts per voxel) replaced by zeros."""
    def hook(module, inputs, bev: BEVFeatures) -> BEVFeatures:
        return BEVFeatures(torch.zeros_like(bev.features), bev.occupancy_logits, bev.cell_m, bev.origin_xy)
    return model.planner.register_forward_hook(hook)


def _complete(model, sample, seed: int, **kwargs) -> set:
    """Final cells of one chain of ``model`` on ``sample``, planned from its input voxels (as in training)."""
    origin = np.asarray(sample.origin, np.float64)
    s0 = torch.from_numpy(np.c_[np.zeros(len(sample.partial)), sample.partial].astype(np.int32))
    out = complete_planned(model, [planner_points(sample.partial, sample.voxel_size, origin)], origin,
                           sample.grid_shape * sample.voxel_size, s0, bounds=((0, 0, 0), tuple(sample.grid_shape)),
                           generator=torch.Generator().manual_seed(seed), **kwargs)
    return set(map(tuple, out.final[:, 1:].tolist()))


def _jaccard_distance(a: set, b: set) -> float:
    return 1.0 - len(a & b) / max(len(a | b), 1)


@pytest.mark.slow
def test_tiny_planned_model_trains_with_finite_loss_and_a_falling_bev_loss(run):
    model, summary, config, out = run
    assert isinstance(model, PlannedGCATransition)
    assert model.planner_config.voxel_size_m == 0.5 and model.planner_config.target_z_range_m == (-1.2, 10.0)
    history = summary["history"]
    loss, bev = np.asarray(history["loss"]), np.asarray(history["bev_loss"])
    assert len(loss) == len(bev) == config.iterations
    assert np.isfinite(loss).all() and np.isfinite(bev).all() and (bev > 0).all()
    # Measured (seed 0): BEV BCE 0.68 over the first 20 steps -> 0.45 over the last 20.
    first, last = bev[:20].mean(), bev[-20:].mean()
    assert last < 0.85 * first, (first, last)
    # The SPADE modulation (zero-initialised) has learnt to use the planner.
    assert float(model.bev_gamma.weight.detach().abs().max()) > 1e-2 \
        and float(model.bev_beta.weight.detach().abs().max()) > 1e-2
    final = summary["final"]
    assert {"iou", "input_iou", "bev_iou", "input_bev_iou"} <= set(final)
    assert final["iou"] > final["input_iou"] + 0.15, final
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["final"]["bev_iou"] == pytest.approx(final["bev_iou"]) and saved["config"]["planner"]
    for name in ("model.pt", "metrics.json", "training_curve.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_planned_checkpoint_round_trips_to_the_same_completions(run, val):
    model, summary, config, out = run
    loaded, ckpt = load_checkpoint(out / "model.pt")
    assert isinstance(loaded, PlannedGCATransition) and not loaded.training
    assert ckpt["format"] == PLANNED_CHECKPOINT_FORMAT
    assert ckpt["planner_config"] == model.planner_config.to_dict()
    assert ckpt["train_config"]["planner"] == config.planner
    own = model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in loaded.state_dict().items()) and set(own) == set(loaded.state_dict())
    # Same seed, same completion: chains of the trained and the reloaded model, and the run's own validation.
    for seed, sample in enumerate(val):
        assert _complete(loaded, sample, seed) == _complete(model, sample, seed)
    again = evaluate(loaded, val, generator=torch.Generator().manual_seed(config.seed))
    assert again["iou"] == pytest.approx(summary["final"]["iou"], abs=1e-12)
    assert again["bev_iou"] == pytest.approx(summary["final"]["bev_iou"], abs=1e-12)


def test_plain_checkpoints_keep_their_format_and_load_as_plain_kernels(tmp_path):
    plain, ckpt = load_checkpoint(DEMO_MODEL)  # the committed demo model, written before planners existed
    assert type(plain) is GCATransition and "planner_config" not in ckpt
    config = make_config("tiny")
    torch.manual_seed(0)
    model = build_model(config)
    assert type(model) is GCATransition
    save_checkpoint(model, config, tmp_path / "plain.pt")
    again, ckpt = load_checkpoint(tmp_path / "plain.pt")
    assert type(again) is GCATransition and ckpt["format"] == CHECKPOINT_FORMAT and ckpt["planner_config"] is None
    # A planned file whose planner_config went missing is refused by name, not loaded half-way.
    torch.save({**ckpt, "format": PLANNED_CHECKPOINT_FORMAT}, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="broken.pt.*planner_config"):
        load_checkpoint(tmp_path / "broken.pt")


@pytest.mark.slow
def test_gen3d_complete_and_the_gca_processor_run_a_planned_checkpoint(run, val, tmp_path, capsys):
    from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor

    _, _, _, out = run
    checkpoint = out / "model.pt"
    sample = val[0]  # no augmentation: the sample frame is the sensor frame
    scan = tmp_path / "sweep.npy"
    np.save(scan, sample.partial_points.astype(np.float32))
    ply = tmp_path / "done.ply"
    assert main(["complete", str(scan), "-o", str(ply), "--method", "gca", "--checkpoint", str(checkpoint),
                 "--samples", "2", "--what", "voxels", "--set", "gravity_align=false"]) == 0  # cells on the grid
    assert "total mutual difference over 2 samples" in capsys.readouterr().out
    completer = GCACompleter(checkpoint)
    assert completer.planned
    cells = completer.voxelize(read_points(scan).points)
    for k in range(2):
        got = np.floor((read_points(tmp_path / f"done_{k}.ply").points - completer.origin)
                       / completer.voxel_size).astype(np.int64)
        expect = completer.complete_cells(cells, seed=k)  # the CLI's seeds are seed + k
        assert set(map(tuple, got.tolist())) == set(map(tuple, expect.tolist()))
        assert {tuple(c) for c in cells.tolist()} <= set(map(tuple, got.tolist())), "input voxels must survive"
        assert len(got) > len(cells)
    # The completion node's "gca" method with the planned checkpoint.
    processor = CompletionProcessor(CompletionConfig(method="gca", checkpoint=str(checkpoint), threads=1))
    result = processor.process(sample.partial_points)
    assert len(result.voxels) > len(cells) and len(result.mesh.faces) > 0
    assert result.model_id == "gca:model.pt" and result.steps == 6


@pytest.mark.slow
def test_zeroing_the_planners_features_changes_the_trained_models_completions(run, val):
    """Ablation on the trained model, seed-free: deterministic chains (every transition keeps p > 0.5) and the
    first transition's candidate probabilities, with the planner's BEV features as planned vs zeroed. (Sampled
    chains diverge after the first differing Bernoulli draw, so their differences would mix the planner's effect
    with sampling noise: two seeds of one model already differ by a Jaccard distance of ~0.15-0.28.)"""
    model, _, _, _ = run
    steps = model.config.steps

    def deterministic(sample):
        return _complete(model, sample, 0, mode_steps=steps)

    def first_transition(sample):
        origin = np.asarray(sample.origin, np.float64)
        s0 = torch.from_numpy(np.c_[np.zeros(len(sample.partial)), sample.partial].astype(np.int32))
        model.eval()
        try:
            with torch.no_grad():
                model.plan([planner_points(sample.partial, sample.voxel_size, origin)], origin,
                           sample.grid_shape * sample.voxel_size)
                return model.candidates(s0, model(s0, s0))
        finally:
            model.clear_plan()

    planned = [deterministic(s) for s in val]
    assert planned == [deterministic(s) for s in val]  # control: reproducible, so differences are the planner's
    first = [first_transition(s) for s in val]
    handle = _zero_planner_features(model)
    try:
        ablated = [deterministic(s) for s in val]
        first_ablated = [first_transition(s) for s in val]
    finally:
        handle.remove()
    distances = [_jaccard_distance(a, b) for a, b in zip(planned, ablated)]
    dp, flips = [], []
    for (cand, p), (cand_z, p_z) in zip(first, first_ablated):
        assert torch.equal(cand, cand_z)  # same state, same candidates: only their probabilities move
        dp.append(float((p - p_z).abs().mean()))
        flips.append(float(((p > 0.5) != (p_z > 0.5)).float().mean()))
    print(f"planner ablation: Jaccard distance of deterministic completions {np.round(distances, 3).tolist()}, "
          f"mean |dp| of first-step candidates {np.round(dp, 3).tolist()}, "
          f"decisions flipped {np.round(flips, 3).tolist()}")
    # Measured (seed 0): distances 0.12..0.22, mean |dp| 0.064..0.085, 5..8 % of the p > 0.5 decisions flipped.
    assert min(distances) > 0.05, distances
    assert min(dp) > 0.02, dp
    assert min(flips) > 0.01, flips


@pytest.mark.slow
def test_tiny_and_tiny_planner_from_the_same_seed_both_complete_held_out_scenes(run, capsys):
    """The plain baseline from the same seed and iterations; both IoUs are printed (measured, not ranked)."""
    _, summary, planned_config, _ = run
    plain_config = make_config("tiny", {"seed": SEED, "threads": 1})
    assert plain_config.iterations == planned_config.iterations
    # Same seed -> the same initial GCA weights: the planned kernel starts as exactly the plain one.
    torch.manual_seed(SEED)
    plain_init = build_model(plain_config).unet.state_dict()
    torch.manual_seed(SEED)
    planned_init = build_model(planned_config).unet.state_dict()
    assert all(torch.equal(v, planned_init[k]) for k, v in plain_init.items())
    _, plain = train(plain_config, None, progress=False)
    p, q = plain["final"], summary["final"]
    with capsys.disabled():
        print(f"\nheld-out IoU, seed {SEED}, {plain_config.iterations} its: tiny {p['iou']:.3f}, "
              f"tiny_planner {q['iou']:.3f} (input {p['input_iou']:.3f}); planner BEV IoU {q['bev_iou']:.3f} "
              f"(input {q['input_bev_iou']:.3f})")
    assert q["input_iou"] == pytest.approx(p["input_iou"])  # same held-out scenes
    assert p["iou"] > p["input_iou"] + 0.15 and q["iou"] > q["input_iou"] + 0.15
