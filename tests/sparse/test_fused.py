"""The fused inference path of the sparse UNet (``gen3d_ros/sparse/fused.py``: norms folded into the convs,
kernel-2 resampling without hash lookups) against the layer-by-layer reference: same features to float rounding,
fewer ops, the same sampled GCA chain under a fixed seed, and the reference wherever it can't fold."""

from __future__ import annotations

import pytest
import torch

from gen3d_ros.sparse import SparseTensor, SparseUNet
from gen3d_ros.sparse.backends.torch_backend import set_conv_algorithm
from gen3d_ros.sparse.fused import fused_for, fused_inference_applies, set_fused_inference

from tests.sparse.test_backends import _scene


@pytest.fixture
def modes():
    previous = set_fused_inference("auto"), set_conv_algorithm("gather_gemm")
    yield set_fused_inference
    set_fused_inference(previous[0])
    set_conv_algorithm(previous[1])


def _net(seed: int, **kwargs) -> SparseUNet:
    """A UNet with random weights and random batch-norm statistics (as after training), in eval mode."""
    torch.manual_seed(seed)
    net = SparseUNet(3, 5, backend="torch", **kwargs)
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return net.eval()


def _forward(net: SparseUNet, coords: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(SparseTensor(feats, coords)).feats


@pytest.mark.parametrize("kwargs", [
    dict(widths=(8, 16, 32)),
    dict(widths=(8, 16), blocks_per_level=2, activation="elu"),
    dict(widths=(6, 12, 24), kernel="hypercross2", norm="none"),
], ids=["cube3_relu", "two_blocks_elu", "hypercross_no_norm"])
def test_fused_unet_equals_the_reference(modes, kwargs):
    net = _net(1, **kwargs)
    coords = _scene(2)  # two batch items, negative coordinates
    feats = torch.randn(len(coords), 3, generator=torch.Generator().manual_seed(3))
    modes("off")
    ref = _forward(net, coords, feats)
    modes("on")
    out = _forward(net, coords, feats)
    assert out.shape == ref.shape
    scale = max(1.0, ref.abs().max().item())
    assert (out - ref).abs().max().item() < 2e-5 * scale
    assert fused_for(net) is not None  # it did run fused


def test_fused_runs_fewer_ops(modes):
    from gen3d_ros.robot.pose.timing import count_ops

    net = _net(4, widths=(8, 16, 32))
    coords = _scene(5)
    feats = torch.randn(len(coords), 3)
    counts = {}
    for mode in ("off", "on"):
        modes(mode)
        _forward(net, coords, feats)  # weights folded once, outside the count
        counts[mode] = count_ops(lambda: _forward(net, coords, feats), "cpu").ops
    print("aten ops per UNet forward:", counts)
    assert counts["on"] < 0.8 * counts["off"]


def test_auto_mode_training_and_unfoldable_nets_keep_the_reference(modes):
    net = _net(6, widths=(8, 16))
    x = SparseTensor(torch.randn(len(_scene(0)), 3), _scene(0))
    modes("auto")
    assert not fused_inference_applies(net, x)  # CPU tensors
    modes("on")
    with torch.no_grad():
        assert fused_inference_applies(net, x)
        net.train()
        assert not fused_inference_applies(net, x)
        net.eval()
    assert not fused_inference_applies(net, x)  # gradients on
    inst = _net(6, widths=(8, 16), norm="instance")
    assert fused_for(inst) is None  # per-item statistics: not a fixed affine map
    coords = _scene(1)
    feats = torch.randn(len(coords), 3)
    out = _forward(inst, coords, feats)
    modes("off")
    assert torch.equal(out, _forward(inst, coords, feats))
    with pytest.raises(ValueError, match="fused inference mode"):
        set_fused_inference("fast")


def test_folded_weights_follow_a_weight_change(modes):
    net = _net(7, widths=(8, 16))
    coords = _scene(3)
    feats = torch.randn(len(coords), 3)
    modes("on")
    first = fused_for(net)
    assert fused_for(net) is first  # cached
    with torch.no_grad():
        net.stem[0].weight.mul_(2.0)
    assert fused_for(net) is not first
    out = _forward(net, coords, feats)
    modes("off")
    ref = _forward(net, coords, feats)
    assert (out - ref).abs().max().item() < 2e-5 * max(1.0, ref.abs().max().item())


def test_gca_chain_of_the_packaged_coarse_model_samples_the_same_states(modes):
    """The hGCA coarse stage (planner + GCA, the packaged bundle) on a small synthetic scan: the fused path grows
    the same cells under a fixed seed as the reference."""
    import numpy as np

    from gen3d_ros.completion.inference import GCACompleter
    from gen3d_ros.completion.checkpoint import default_hgca_checkpoint, load_bundle

    completer = GCACompleter(load_bundle(default_hgca_checkpoint())["coarse"], half_extent_m=8.0)
    g = np.random.default_rng(0)
    shape = completer.grid_shape
    ground = np.stack([g.integers(0, shape[0], 600), g.integers(0, shape[1], 600), np.full(600, 3)], 1)
    wall = np.stack([np.full(200, shape[0] // 2), g.integers(0, shape[1], 200), g.integers(3, 9, 200)], 1)
    cells = np.unique(np.concatenate([ground, wall]).astype(np.int32), axis=0)
    modes("off")
    ref = completer.complete_cells(cells, seed=3, steps=3)
    modes("on")
    out = completer.complete_cells(cells, seed=3, steps=3)
    assert len(ref) > len(cells)  # it grew
    assert np.array_equal(out, ref)


def test_levels_too_big_for_a_dense_box_use_the_managers_tables(modes, monkeypatch):
    from gen3d_ros.sparse import fused

    net = _net(8, widths=(8, 16, 32))
    coords = _scene(4)
    coords[:, 1] *= 40  # a wide, sparse box
    feats = torch.randn(len(coords), 3)
    modes("off")
    ref = _forward(net, coords, feats)
    modes("on")
    monkeypatch.setattr(fused, "_DENSE_MAX_CELLS", 1000)
    out = _forward(net, coords, feats)
    assert (out - ref).abs().max().item() < 2e-5 * max(1.0, ref.abs().max().item())


def test_boxed_gca_chain_keeps_every_state_of_the_reference(modes):
    """A small untrained GCA on two batch items: the boxed chain (keys in one box, two ``unique`` a step) samples
    the same states as the reference step by step, the last two by mode seeking, inside the bounds."""
    from gen3d_ros.completion.gca import GCAConfig, GCATransition, complete

    torch.manual_seed(0)
    model = GCATransition(GCAConfig(widths=(8, 16), steps=4, mode_steps=1)).eval()
    with torch.no_grad():
        model.unet.head.bias.fill_(0.5)  # grow
    s0 = _scene(6)
    s0[:, 1:] += 6  # inside [0, 12)^3
    bounds = ((0, 0, 0), (14, 13, 12))
    chains = {}
    for mode in ("off", "on"):
        modes(mode)
        chains[mode] = complete(model, s0, bounds=bounds, keep_states=True,
                                generator=torch.Generator().manual_seed(5)).states
    assert len(chains["on"]) == len(chains["off"]) == 5
    for a, b in zip(chains["off"], chains["on"]):
        assert torch.equal(a, b)
    assert len(chains["on"][-1]) > len(s0)
    assert int(chains["on"][-1][:, 1:].max()) < 14 and int(chains["on"][-1][:, 1:].min()) >= 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auto_runs_the_fast_paths_and_matches_the_reference(modes):
    """On CUDA ``auto`` fuses: the UNet's features equal the CPU reference's, and the packaged coarse model's chain
    grows the same cells as the reference path on the GPU (the candidates' probability sums use atomics on both
    paths, so a draw may flip at the last bit and its neighbourhood grow differently: at most 1 % of the cells
    differ; a wrong chain differs everywhere)."""
    import numpy as np

    from gen3d_ros.completion.checkpoint import default_hgca_checkpoint, load_bundle
    from gen3d_ros.completion.inference import GCACompleter

    net = _net(9, widths=(8, 16, 32))
    coords = _scene(7)
    feats = torch.randn(len(coords), 3)
    modes("off")
    ref = _forward(net, coords, feats)
    modes("auto")
    x = SparseTensor(feats.cuda(), coords.cuda())
    with torch.no_grad():
        assert fused_inference_applies(net.cuda(), x)
        out = net(x).feats.cpu()
    assert (out - ref).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())
    completer = GCACompleter(load_bundle(default_hgca_checkpoint())["coarse"], device="cuda", half_extent_m=16.0)
    g = np.random.default_rng(1)
    shape = completer.grid_shape
    cells = np.unique(np.stack([g.integers(0, shape[0], 3000), g.integers(0, shape[1], 3000),
                                g.integers(2, 6, 3000)], 1).astype(np.int32), axis=0)
    grown = {}
    for mode in ("off", "auto"):
        modes(mode)
        grown[mode] = {tuple(c) for c in completer.complete_cells(cells, seed=2, steps=4).tolist()}
    assert len(grown["off"]) > len(cells)
    assert len(grown["off"] ^ grown["auto"]) <= 0.01 * len(grown["off"])
