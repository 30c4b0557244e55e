"""`gen3d complete`: scan file in, completed voxels out as PLY, K samples with their diversity (TMD)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gen3d_ros.cli import main
from gen3d_ros.completion.gca import GCAConfig, GCATransition
from gen3d_ros.completion.inference import GCACompleter
from gen3d_ros.completion.training.gca import make_config, save_checkpoint
from gen3d_ros.io.pointfiles import read_points
from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig

OCTOMAP_SCAN = Path("/usr/share/doc/liboctomap-dev/examples/data/scan.dat.bz2")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained kernel on the tiny preset's grid: enough to exercise the file path end to end."""
    torch.manual_seed(0)
    config = make_config("tiny")
    model = GCATransition(GCAConfig(**config.model))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(model, config, path)
    return path


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory, checkpoint) -> Path:
    """A simulated sweep in the sensor frame, saved as .npy (x, y, z, intensity)."""
    data = CompletionDatasetConfig.from_dict(make_config("tiny").data)
    sample = CompletionDataset(data)[0]
    path = tmp_path_factory.mktemp("scan") / "sweep.npy"
    # partial_points are in the sample frame = the sensor frame (no augmentation here)
    np.save(path, np.c_[sample.partial_points, np.ones(len(sample.partial_points))].astype(np.float32))
    return path


def test_complete_writes_one_ply_per_sample_keeping_the_input_voxels(tmp_path, checkpoint, scan_file, capsys):
    out = tmp_path / "done.ply"
    assert main(["complete", str(scan_file), "-o", str(out), "--checkpoint", str(checkpoint), "--samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "total mutual difference over 2 samples" in printed
    completer = GCACompleter(checkpoint)
    input_cells = completer.voxelize(read_points(scan_file).points)
    for k in range(2):
        pts = read_points(tmp_path / f"done_{k}.ply").points
        cells = np.floor((pts - completer.origin) / completer.voxel_size).astype(np.int64)
        assert ((cells >= 0) & (cells < completer.grid_shape)).all(), "completion left the model's grid"
        kept = {tuple(c) for c in cells.tolist()}
        assert all(tuple(c) in kept for c in input_cells.tolist()), "input voxels must survive"
        assert len(kept) >= len(input_cells)
    # refuses to overwrite without --force
    assert main(["complete", str(scan_file), "-o", str(out), "--checkpoint", str(checkpoint), "--samples", "2"]) == 2


def test_complete_reports_a_scan_outside_the_grid_clearly(tmp_path, checkpoint, capsys):
    far = tmp_path / "far.npy"
    np.save(far, np.full((100, 3), 500.0, np.float32))
    assert main(["complete", str(far), "-o", str(tmp_path / "x.ply"), "--checkpoint", str(checkpoint)]) == 2
    assert "grid" in capsys.readouterr().err


def test_complete_missing_checkpoint_is_a_usage_error(tmp_path, scan_file, capsys):
    code = main(["complete", str(scan_file), "-o", str(tmp_path / "x.ply"), "--checkpoint", str(tmp_path / "no.pt")])
    assert code == 2
    assert "no.pt" in capsys.readouterr().err


@pytest.mark.skipif(not OCTOMAP_SCAN.is_file(), reason="real scan needs Debian's liboctomap-dev (apt-get install liboctomap-dev)")
def test_packaged_model_completes_the_real_octomap_scan(tmp_path):
    """Smoke test on a real 3D laser scan (88k points of a building): runs, stays in the grid, adds voxels."""
    out = tmp_path / "real.ply"
    assert main(["complete", str(OCTOMAP_SCAN), "-o", str(out), "--checkpoint",
                 str(Path(__file__).resolve().parents[2] / "gen3d_ros" / "models" / "gca_demo.pt")]) == 0
    pts = read_points(out).points
    completer = GCACompleter(Path(__file__).resolve().parents[2] / "gen3d_ros" / "models" / "gca_demo.pt")
    n_in = len(completer.voxelize(read_points(OCTOMAP_SCAN).points))
    assert n_in > 500
    assert len(pts) >= n_in
    assert np.isfinite(pts).all()
