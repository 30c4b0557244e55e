"""hGCA end to end on CPU with the tiny hierarchy: coarse planned GCA -> fine cGCA inside it -> decoded mesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gen3d_ros.completion.checkpoint import load_bundle
from gen3d_ros.completion.inference import SceneCompleter, SceneCompleterConfig
from gen3d_ros.completion.metrics import completion_metrics
from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor, EmptyInputError
from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def held_out(tiny_hgca_bundle):
    """Two held-out sweeps on the fine grid (seeds far from training), with their complete fine cells."""
    bundle = load_bundle(tiny_hgca_bundle)
    data = dict(bundle["fine"]["train_config"]["data"])
    ds = CompletionDataset(CompletionDatasetConfig.from_dict({**data, "augment": False, "base_seed": 7_000_000}))
    return [ds[i] for i in range(2)]


@pytest.fixture(scope="module")
def completer(tiny_hgca_bundle):
    torch.set_num_threads(1)
    return SceneCompleter(tiny_hgca_bundle, SceneCompleterConfig(seed=3))


def test_bundle_holds_three_stages_with_aligned_grids(tiny_hgca_bundle, completer):
    bundle = load_bundle(tiny_hgca_bundle)
    assert bundle["coarse"]["planner_config"], "the coarse stage must be the planned GCA"
    assert bundle["fine"]["cgca_config"]["coarse_scale"] == 2
    assert completer.planned
    assert completer.coarse.voxel_size == pytest.approx(2 * completer.fine_voxel)
    np.testing.assert_allclose(completer.coarse.origin, completer.origin)


def test_scene_completer_completes_a_held_out_sweep(completer, held_out):
    rows = []
    for s in held_out:
        out = completer.complete(s.partial_points)
        # every fine cell is an input cell or lies inside the coarse completion
        parents = out.fine_cells // 2
        coarse = {tuple(c) for c in out.coarse_cells.tolist()}
        inputs = {tuple(c) for c in out.input_cells.tolist()}
        outside = [tuple(c) for c, p in zip(out.fine_cells.tolist(), parents.tolist())
                   if tuple(p) not in coarse and tuple(c) not in inputs]
        assert not outside, f"{len(outside)} fine cells outside the coarse completion"
        # the mesh is a valid triangle soup near the fine cells
        m = out.mesh
        assert len(m.faces) > 100 and np.isfinite(m.vertices).all()
        assert m.faces.min() >= 0 and m.faces.max() < len(m.vertices)
        cells_of_vertices = np.floor((m.vertices - out.origin) / out.fine_voxel).astype(int)
        near = np.abs(cells_of_vertices[:, None, :] - out.fine_cells[None, :200, :]).max(-1).min(1) <= 1
        assert near.mean() > 0.05  # a sanity link between mesh and cells on a subset
        assert set(out.timings_ms) >= {"voxelize", "encode", "coarse", "fine", "mesh"}
        assert all(v >= 0 for v in out.timings_ms.values())
        rows.append((completion_metrics(out.fine_cells, s.complete, s.voxel_size)["iou"],
                     completion_metrics(s.partial, s.complete, s.voxel_size)["iou"]))
    iou, input_iou = np.mean(rows, axis=0)
    assert iou > 1.2 * input_iou, f"hGCA fine IoU {iou:.3f} vs sweep {input_iou:.3f}"


def test_samples_differ_and_are_reproducible(tiny_hgca_bundle, held_out):
    c = SceneCompleter(tiny_hgca_bundle, SceneCompleterConfig(samples=2, mesh=False))
    a = c.complete(held_out[0].partial_points, seed=11)
    b = c.complete(held_out[0].partial_points, seed=11)
    assert len(a.samples) == 2 and len(a.mesh.faces) == 0
    np.testing.assert_array_equal(a.fine_cells, b.fine_cells)
    assert not np.array_equal(np.sort(a.samples[0], 0), np.sort(a.samples[1], 0)) or \
        len(a.samples[0]) != len(a.samples[1])


def test_coarse_condition_confines_the_fine_stage(completer, held_out):
    """Conditioning on a coarse set cut to the half-space x < 0 confines growth there (input cells aside)."""
    from gen3d_ros.completion.cgca import cgca_complete
    from gen3d_ros.completion.inference import _with_batch

    s = held_out[0]
    cells, latents = completer._fine_input(np.asarray(s.partial_points, np.float64))
    coarse = completer.coarse.complete_cells(completer.coarse.voxelize(s.partial_points), seed=0)
    half = completer.coarse.grid_shape[0] // 2
    cut = coarse[coarse[:, 0] < half]
    out = cgca_complete(completer.fine, _with_batch(cells), latents, coarse_cells=_with_batch(cut),
                        generator=torch.Generator().manual_seed(0)).cells[:, 1:].numpy()
    grown = out[~(out[:, None, :] == cells.numpy()[None]).all(-1).any(1)]
    assert len(grown) > 0
    assert (grown[:, 0] // 2 < half).all()


def test_processor_hgca_method_and_empty_input(tiny_hgca_bundle, held_out):
    proc = CompletionProcessor(CompletionConfig(method="hgca", checkpoint=str(tiny_hgca_bundle), roi_radius=50.0))
    res = proc.process(held_out[1].partial_points)
    assert res.model_id.startswith("hgca:") and res.steps > 0
    assert len(res.mesh.faces) > 0 and res.voxels.shape[1] == 3
    assert res.voxel_size == pytest.approx(proc.completer.fine_voxel)
    with pytest.raises(EmptyInputError):
        proc.process(np.full((500, 3), 40.0, np.float32) + np.random.default_rng(0).normal(0, 1, (500, 3)))


def test_bench_scores_hgca_rows_on_the_coarse_and_fine_grids(tiny_hgca_bundle, tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    bench_path = Path(__file__).resolve().parents[2] / "bench" / "completion_quality.py"
    spec = importlib.util.spec_from_file_location("bench_cq_hgca", bench_path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    coarse = tmp_path / "coarse.pt"
    torch.save(load_bundle(tiny_hgca_bundle)["coarse"], coarse)
    results, kept = bench.run_benchmark(coarse, n_scenes=1, samples=2, poisson_depth=6, keep_scenes=1,
                                        progress=False, hgca=tiny_hgca_bundle)
    assert results["methods"][-2:] == ["hgca", "hgca_no_planner"]
    for m in ("hgca", "hgca_no_planner"):
        assert 0.0 < results[f"{m}.iou"] <= 1.0 and 0.0 < results[f"{m}.fine_iou"] <= 1.0
        assert results[f"{m}.fine_voxel_size_m"] == pytest.approx(0.25)
        assert results[f"{m}.seconds_per_scene"] > 0
    # the coarse-grid score of hGCA's fine cells beats the scan's (both on the same 0.5 m grid)
    assert results["hgca.iou"] > results["input.iou"]
    assert "hgca" in kept[0].cells and kept[0].cells["hgca"].shape[1] == 3
    bench.plot_scenes(kept, tmp_path / "q.png", title="t")
    assert (tmp_path / "q.png").stat().st_size > 10_000
    assert "hgca (×2)" in bench.markdown_table({**results, **bench.provenance(coarse, "cpu", None, "x")})


def test_wider_region_runs_the_same_models_and_agrees_inside_the_training_box(tiny_hgca_bundle, held_out):
    """``half_extent_m``: the models' grid widened in x and y (same voxels, same z range); a sweep inside the
    training box completes to the same coarse cells (shifted by the origin change) as on the training grid."""
    base = SceneCompleter(tiny_hgca_bundle, SceneCompleterConfig(seed=5, mesh=False))
    r = float(-base.origin[0]) * 2
    wide = SceneCompleter(tiny_hgca_bundle, SceneCompleterConfig(seed=5, mesh=False, half_extent_m=r))
    assert wide.fine_voxel == base.fine_voxel and wide.coarse.voxel_size == base.coarse.voxel_size
    np.testing.assert_allclose(wide.origin, [-r, -r, base.origin[2]])
    assert wide.fine_shape.tolist() == [2 * base.fine_shape[0], 2 * base.fine_shape[1], base.fine_shape[2]]
    assert (wide.coarse.grid_shape * 2 == wide.fine_shape).all()
    s = held_out[0]
    out_base, out_wide = base.complete(s.partial_points), wide.complete(s.partial_points)
    shift = np.round((base.origin - wide.origin) / base.coarse.voxel_size).astype(int)
    inputs_wide = {tuple(c) for c in wide.coarse.voxelize(s.partial_points).tolist()}
    assert inputs_wide == {tuple(c + shift) for c in base.coarse.voxelize(s.partial_points).tolist()}
    # the chain may grow past the old box's edge now; the cells common to both boxes mostly agree
    b = {tuple(c + shift) for c in out_base.coarse_cells.tolist()}
    w = {tuple(c) for c in out_wide.coarse_cells.tolist()}
    assert len(b & w) / len(b | w) > 0.5
    assert len(out_wide.fine_cells) > 0.8 * len(out_base.fine_cells)


def test_on_coarse_is_called_once_with_the_coarse_centres_before_the_fine_stage(completer, held_out):
    seen = []

    def on_coarse(centres):
        seen.append((centres.copy(), len(seen)))

    out = completer.complete(held_out[1].partial_points, on_coarse=on_coarse)
    assert len(seen) == 1
    centres = seen[0][0]
    assert centres.dtype == np.float32 and centres.shape == (len(out.coarse_cells), 3)
    np.testing.assert_allclose(centres, completer.coarse.centers(out.coarse_cells), atol=1e-6)
