"""bench/completion_quality.py: the JSON it writes, and that its input baseline is the plain metric of the scan.

The checkpoint is an untrained GCA kernel (random weights) on a tiny grid: the bench's plumbing is under test,
not the model, so no GCA number is asserted beyond being present and sane.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gen3d_ros.completion.gca import GCAConfig, GCATransition
from gen3d_ros.completion.metrics import completion_metrics
from gen3d_ros.completion.training.gca import TrainConfig, save_checkpoint
from gen3d_ros.completion.training.loop import VALIDATION_SEED_OFFSET
from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig

BENCH = Path(__file__).resolve().parents[2] / "bench" / "completion_quality.py"
DATA = {"voxel_size_m": 0.5, "half_extent_m": [6.0, 6.0], "z_range_m": [-2.5, 2.5], "lidar": {"preset": "demo"},
        "scene": {"size_m": 30.0}, "augment": True, "length": 64, "base_seed": 7}


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_completion_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    model = GCATransition(GCAConfig(neighbourhood="hypercross1", widths=(4, 8), steps=3, mode_steps=1))
    checkpoint = tmp / "random.pt"
    save_checkpoint(model, TrainConfig(model=model.config.to_dict(), data=DATA), checkpoint)
    out = tmp / "results"
    bench = _load_bench()
    bench.main(["--checkpoint", str(checkpoint), "--scenes", "2", "--samples", "2", "--out", str(out),
                "--no-progress", "--region-m", "0", "--world", "checkpoint", "--heldout-scenes", "0"])
    return json.loads((out / "completion_quality.json").read_text()), out


def test_bench_scores_the_whole_region_and_the_held_out_classes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GCATransition(GCAConfig(neighbourhood="hypercross1", widths=(4, 8), steps=2, mode_steps=1))
    checkpoint = tmp_path / "random.pt"
    save_checkpoint(model, TrainConfig(model=model.config.to_dict(), data=DATA), checkpoint)
    out = tmp_path / "results"
    results = _load_bench().main(["--checkpoint", str(checkpoint), "--scenes", "1", "--samples", "1", "--out",
                                  str(out), "--no-progress", "--no-plot", "--region-m", "9",
                                  "--heldout-scenes", "1"])
    assert results["region_m"] == 9.0 and results["grid_shape"][:2] == [36, 36]  # the whole +-9 m box, 0.5 m
    assert results["scene_size_m"] >= 28.0 and results["lidar"] == "randomized"
    assert results["heldout_classes"] == ["cyclist", "hedge"] and results["heldout.n_scenes"] == 1
    for method in ("input", "poisson", "gca"):
        for metric in ("iou", "fscore_1vox", "chamfer_l1"):
            assert math.isfinite(results[f"heldout.{method}.{metric}"]), (method, metric)
    assert results["heldout.gt.n_voxels"] > 0
    assert "Held-out classes" in (out / "completion_quality.md").read_text()


def test_bench_writes_flat_json_with_every_method_metric_ratio_and_provenance(bench_run) -> None:
    results, out = bench_run
    assert all(not isinstance(v, dict) for v in results.values()), "keys must be flat"
    for method in ("input", "dilation", "poisson", "gca"):
        for metric in ("iou", "precision", "recall", "fscore_1vox", "fscore_2vox", "chamfer_l1", "chamfer_l2",
                       "seconds_per_scene"):
            value = results[f"{method}.{metric}"]
            assert isinstance(value, float) and math.isfinite(value), (method, metric, value)
    for metric in ("iou", "fscore_1vox", "chamfer_l1"):
        assert results[f"ratio.gca_over_input.{metric}"] == pytest.approx(
            results[f"gca.{metric}"] / results[f"input.{metric}"])
        assert results[f"ratio.gca_over_poisson.{metric}"] == pytest.approx(
            results[f"gca.{metric}"] / results[f"poisson.{metric}"])
    assert results["gca.tmd"] >= 0.0
    base = DATA["base_seed"] + VALIDATION_SEED_OFFSET + 1000
    assert results["scene_seeds"] == [base, base + 1]
    assert results["n_scenes"] == 2 and results["samples"] == 2
    assert results["grid_shape"] == [24, 24, 10] and results["voxel_size_m"] == 0.5
    assert len(results["checkpoint_sha256"]) == 64
    assert results["device"].startswith("cpu: ") and results["device"].endswith("cores")
    for key in ("torch", "open3d", "numpy", "gen3d_ros", "sparse_backend", "date"):
        assert isinstance(results[key], str) and results[key]
    assert "--scenes 2" in results["command"]
    assert (out / "completion_quality.md").read_text().count("\n| ") == 5  # header + 4 methods
    png = out / "completion_quality.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 600_000


def test_bench_input_baseline_is_the_metric_of_the_unaugmented_held_out_scan(bench_run) -> None:
    results, _ = bench_run
    config = CompletionDatasetConfig.from_dict({**DATA, "augment": False,
                                                "base_seed": DATA["base_seed"] + VALIDATION_SEED_OFFSET + 1000})
    dataset = CompletionDataset(config)
    rows = [completion_metrics(s.partial, s.complete, s.voxel_size) for s in (dataset[0], dataset[1])]
    for key in ("iou", "precision", "recall", "chamfer_l1", "chamfer_l2"):
        assert results[f"input.{key}"] == pytest.approx(np.mean([r[key] for r in rows]), rel=1e-12), key
    assert results["input.fscore_1vox"] == pytest.approx(np.mean([r["fscore"] for r in rows]), rel=1e-12)
    # a one-voxel dilation of the scan keeps every scanned voxel: its recall cannot drop
    assert results["dilation.recall"] >= results["input.recall"]
