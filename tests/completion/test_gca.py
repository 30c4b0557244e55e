"""GCA: candidate probabilities, sampler invariants, infusion training, and completion quality on held-out scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gen3d_ros.completion.gca import GCAConfig, GCATransition, complete, isin_coords, pack_coords, union_coords
from gen3d_ros.completion.training.infusion import Chain, InfusionSchedule, ReplayBuffer, bernoulli_kl, infusion_step


def _cells(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int32).reshape(-1, 4)


def test_candidate_probability_is_mean_over_proposing_cells():
    model = GCATransition(GCAConfig(neighbourhood="hypercross1", widths=(4,)))
    offsets = model.offsets.tolist()
    state = _cells([[0, 0, 0, 0], [0, 2, 0, 0]])
    logits = torch.full((2, len(offsets)), -20.0)
    # Cell (1,0,0) is proposed by (0,0,0) through +x and by (2,0,0) through -x.
    logits[0, offsets.index([1, 0, 0])] = 0.0          # p = 0.5
    logits[1, offsets.index([-1, 0, 0])] = np.log(3.0)  # p = 0.75
    cand, p = model.candidates(state, logits)
    row = (cand == torch.tensor([0, 1, 0, 0], dtype=torch.int32)).all(1)
    assert row.sum() == 1
    assert float(p[row]) == pytest.approx(0.625, abs=1e-6)
    # Every candidate lies in some occupied cell's neighbourhood: 2 cells x 7 offsets, (1,0,0) shared.
    assert len(cand) == 13
    assert float(p[~row].max()) < 1e-8


def test_pack_coords_is_injective_and_isin_matches_python_sets():
    rng = np.random.default_rng(0)
    a = rng.integers(-300, 300, (2000, 3))
    b = np.concatenate([a[:700], rng.integers(-300, 300, (500, 3))])
    ta = torch.from_numpy(np.c_[np.zeros(len(a)), a].astype(np.int32))
    tb = torch.from_numpy(np.c_[np.zeros(len(b)), b].astype(np.int32))
    got = isin_coords(ta, tb).numpy()
    ref = np.array([tuple(r) in {tuple(x) for x in b.tolist()} for r in a.tolist()])
    assert (got == ref).all()
    keys = pack_coords(torch.unique(ta, dim=0))
    assert len(torch.unique(keys)) == len(keys)
    with pytest.raises(ValueError, match="exceed"):
        pack_coords(_cells([[0, 300000, 0, 0]]))


def test_sampler_keeps_input_and_grows_at_most_one_neighbourhood_per_step():
    torch.manual_seed(0)
    model = GCATransition(GCAConfig(neighbourhood="hypercross2", widths=(8, 16), steps=4, mode_steps=1))
    rng = np.random.default_rng(1)
    s0 = torch.from_numpy(np.c_[np.zeros(60), rng.integers(10, 20, (60, 3))].astype(np.int32))
    s0 = union_coords(s0, s0)
    chain = complete(model, s0, keep_states=True, bounds=((0, 0, 0), (40, 40, 40)),
                     generator=torch.Generator().manual_seed(0))
    assert len(chain.states) == 5
    for prev, nxt in zip(chain.states[:-1], chain.states[1:]):
        assert isin_coords(s0, nxt).all(), "input cells must survive every transition"
        # L1 distance of every new cell to the previous state is at most the neighbourhood radius 2.
        d = (nxt[:, None, 1:] - prev[None, :, 1:]).abs().sum(-1).min(1).values
        assert int(d.max()) <= 2
        assert ((nxt[:, 1:] >= 0) & (nxt[:, 1:] < 40)).all()


def test_bernoulli_kl_is_zero_iff_equal_and_matches_closed_form():
    p = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(bernoulli_kl(p, p), torch.zeros(3), atol=1e-6)
    q = torch.tensor([0.2, 0.5, 0.5])
    ref = q * torch.log(q / p) + (1 - q) * torch.log((1 - q) / (1 - p))
    assert torch.allclose(bernoulli_kl(q, p), ref, atol=1e-6)
    assert (bernoulli_kl(q, p)[[0, 2]] > 0).all()


def test_infusion_step_moves_chains_towards_ground_truth_and_restarts_complete_ones():
    torch.manual_seed(0)
    model = GCATransition(GCAConfig(neighbourhood="hypercross1", widths=(4, 8)))
    line = torch.tensor([[x, 5, 5] for x in range(0, 20)], dtype=torch.int32)
    chain = Chain(0, line[:3], line[:3], line, (32, 32, 32))
    schedule = InfusionSchedule(start=1.0, speed=0.0)  # full infusion: q = ground truth
    loss, result = infusion_step(model, [chain], schedule, completion_rate=0.99, max_phase=100,
                                 generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    nxt = result.successors[0]
    assert nxt.phase == 1
    # With alpha = 1 the successor is exactly the ground truth within one step's reach.
    assert sorted(map(tuple, nxt.state.tolist())) == [(x, 5, 5) for x in range(0, 4)]
    done_chain = Chain(0, line, line[:3], line, (32, 32, 32))
    _, result = infusion_step(model, [done_chain], schedule, completion_rate=0.95)
    assert result.finished == 1 and not result.successors


def test_replay_buffer_pops_without_replacement_and_respects_capacity():
    buf = ReplayBuffer(capacity=3, seed=0)
    for i in range(5):
        buf.push(Chain(i, _cells([]), _cells([]), _cells([]), (1, 1, 1)))
    assert len(buf) == 3
    popped = buf.pop(2)
    assert len(popped) == 2 and len(buf) == 1
    assert len({c.sample_index for c in popped}) == 2


@pytest.mark.slow
def test_tiny_gca_raises_iou_over_input_on_held_out_scenes(tmp_path):
    from gen3d_ros.completion.checkpoint import load_gca as load_checkpoint
    from gen3d_ros.completion.training.gca import evaluate, make_config, train, validation_samples

    config = make_config("tiny", {"seed": 0})
    model, summary = train(config, tmp_path, progress=False)
    final = summary["final"]
    # Held-out scenes (seeds offset by 1e6): the automaton must add geometry the scan did not see,
    # without flooding the grid.
    assert final["iou"] > final["input_iou"] + 0.15, final
    assert final["recall"] > final["input_recall"] + 0.2, final
    assert final["precision"] > 0.6, final
    for name in ("model.pt", "metrics.json", "training_curve.png"):
        assert (tmp_path / name).stat().st_size > 0
    loaded, ckpt = load_checkpoint(tmp_path / "model.pt")
    assert ckpt["backend"] in ("torch", "minkowski", "spconv") and ckpt["train_config"]["seed"] == 0
    again = evaluate(loaded, validation_samples(config), generator=torch.Generator().manual_seed(0))
    assert again["iou"] == pytest.approx(final["iou"], abs=1e-9)
