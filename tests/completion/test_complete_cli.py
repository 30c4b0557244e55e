"""`gen3d complete`: scan file in, completed mesh or voxels out, every method of the completion node, K samples
with their diversity (TMD), user errors exit 2 with one line."""

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
    args = ["complete", str(scan_file), "-o", str(out), "--method", "gca", "--checkpoint", str(checkpoint),
            "--samples", "2", "--what", "voxels", "--set", "gravity_align=false"]  # voxel centres on the grid
    assert main(args) == 0
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
    assert main(args) == 2


def test_complete_reports_a_scan_outside_the_grid_clearly(tmp_path, checkpoint, capsys):
    far = tmp_path / "far.npy"
    np.save(far, np.full((100, 3), 500.0, np.float32))
    assert main(["complete", str(far), "-o", str(tmp_path / "x.ply"), "--method", "gca",
                 "--checkpoint", str(checkpoint)]) == 2
    assert "0 usable points after filtering" in capsys.readouterr().err  # cropped by the node's roi_radius


def test_complete_missing_checkpoint_is_a_usage_error(tmp_path, scan_file, capsys):
    code = main(["complete", str(scan_file), "-o", str(tmp_path / "x.ply"), "--method", "gca",
                 "--checkpoint", str(tmp_path / "no.pt")])
    assert code == 2
    assert "no.pt" in capsys.readouterr().err


@pytest.mark.skipif(not OCTOMAP_SCAN.is_file(), reason="real scan needs Debian's liboctomap-dev (apt-get install liboctomap-dev)")
def test_packaged_model_completes_the_real_octomap_scan(tmp_path):
    """Smoke test on a real 3D laser scan (88k points of a building): runs, stays in the grid, adds voxels."""
    out = tmp_path / "real.ply"
    assert main(["complete", str(OCTOMAP_SCAN), "-o", str(out), "--method", "gca", "--what", "voxels"]) == 0
    pts = read_points(out).points
    completer = GCACompleter(Path(__file__).resolve().parents[2] / "gen3d_ros" / "models" / "gca_demo.pt")
    n_in = len(completer.voxelize(read_points(OCTOMAP_SCAN).points))
    assert n_in > 500
    assert len(pts) >= n_in
    assert np.isfinite(pts).all()


@pytest.fixture(scope="module")
def street_file(tmp_path_factory) -> Path:
    """A VLP-32 sweep of the alignment tests' street from 2.2 m, tilted 4 deg (sensor frame), as .npy."""
    from test_alignment import pose, sense, street_scene

    path = tmp_path_factory.mktemp("street") / "street.npy"
    np.save(path, sense(street_scene(), pose(2.2, 4.0)))
    return path


@pytest.mark.parametrize("method, suffix", [("gca", ".ply"), ("poisson", ".obj"), ("cgca", ".ply"),
                                            ("hgca", ".ply")])
def test_every_method_of_the_node_writes_a_mesh_on_the_scan(tmp_path, street_file, method, suffix, capsys):
    """The packaged model of each method (no --checkpoint); the mesh lies on the scan (scan frame)."""
    import open3d as o3d

    out = tmp_path / f"mesh{suffix}"
    assert main(["complete", str(street_file), "-o", str(out), "--method", method,
                 "--set", "region_half_extent=12.0"]) == 0
    printed = capsys.readouterr().out
    mesh = o3d.io.read_triangle_mesh(str(out))
    assert len(mesh.triangles) > 1000, printed
    if method != "poisson":
        assert "aligned (ransac: sensor 2.19" in printed or "aligned (ransac: sensor 2.20" in printed, printed
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    pts = np.load(street_file)
    pts = pts[(np.abs(pts[:, :2]) < 11.5).all(1)]
    d = scene.compute_distance(o3d.core.Tensor(pts.astype(np.float32))).numpy()
    assert np.median(d) < 0.1, np.median(d)  # measured 0.01-0.06 m


def test_params_file_and_set_configure_the_processor_as_the_node(tmp_path, street_file, capsys):
    params = tmp_path / "p.yaml"
    params.write_text("/**/completion_node:\n  ros__parameters:\n    method: gca\n    seed: 3\n"
                      "    cloud_topic: /points\n")
    out = tmp_path / "v.ply"
    assert main(["complete", str(street_file), "-o", str(out), "--params", str(params), "--what", "voxels",
                 "--set", "gravity_align=false"]) == 0
    assert "gca (gca:gca_demo.pt)" in capsys.readouterr().out and "aligned" not in capsys.readouterr().out
    assert len(read_points(out).points) > 1000


@pytest.mark.parametrize("extra, message", [
    (["--method", "nope"], "--method 'nope'"),
    (["--set", "bogus=1"], "unknown CompletionConfig key(s) ['bogus']"),
    (["--set", "steps=-1"], "steps"),
    (["--method", "gca", "--checkpoint", "HGCA"], "is not a GCA checkpoint"),
    (["--what", "voxels", "-o", "x.obj"], "voxels files end in .ply"),
    (["--params", "missing.yaml"], "no such file"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, street_file, capsys, extra, message):
    hgca = Path(__file__).resolve().parents[2] / "gen3d_ros" / "models" / "hgca_demo.pt"
    extra = [str(hgca) if e == "HGCA" else str(tmp_path / e) if e.endswith((".obj", ".yaml")) else e for e in extra]
    out = ["-o", str(tmp_path / "x.ply")] if "-o" not in extra else []
    assert main(["complete", str(street_file), *out, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
