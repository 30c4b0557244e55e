"""bench/pose_estimation.py's results: flat keys (scalars or short lists; the set-up of a run as
``<robot>.setup.<field>``), and the markdown tables read back from them."""

from __future__ import annotations

import json
from pathlib import Path

from bench.pose_estimation import setup_of, write_markdown
from gen3d_ros.config import flatten_params

RESULTS = Path(__file__).resolve().parents[1] / "bench/results/pose_estimation.json"


def _flat_value(value) -> bool:
    scalar = (str, int, float, bool, type(None))
    return isinstance(value, scalar) or (isinstance(value, list) and len(value) <= 8
                                         and all(isinstance(v, scalar) for v in value))


def test_committed_results_are_flat():
    results = json.loads(RESULTS.read_text())
    nested = {k: type(v).__name__ for k, v in results.items() if not _flat_value(v)}
    assert not nested, f"nested values in {RESULTS.name}: {nested}"
    assert all(r in results["robots"] for r in ("gen3d_test_arm", "panda"))
    assert setup_of(results, "panda")["device"]  # the old benchmark's set-up, read back from flat keys


def test_markdown_reads_the_setup_from_flat_keys(tmp_path):
    setup = {"image_source": "mesh_renderer", "checkpoint": "m.pt", "views": 3, "image_size": [96, 96],
             "fov_deg": 40.0, "background": [1.0, 1.0, 1.0], "seed": 1, "device": "cpu", "backend": "auto",
             "versions": {"python": "3.11", "torch": "2.13"}, "config": {}, "command": "python x"}
    metrics = {"joint_err_deg_median": 4.0, "cam_rot_err_deg_median": 2.0, "cam_trans_err_cm_median": 1.0,
               "add_m_median": 0.02, "add_auc": 0.75, "success_rate": 1.0, "seconds_to_converge": 3.0, "views": 3}
    results = {"robots": ["arm"], **flatten_params(setup, "arm.setup."),
               **flatten_params(metrics, "arm.multi_hypothesis."),
               **flatten_params({"search": 0.5}, "arm.multi_hypothesis.phase_seconds.")}
    assert all(_flat_value(v) for v in results.values())
    assert setup_of(results, "arm")["versions"] == {"python": "3.11", "torch": "2.13"}
    write_markdown(results, tmp_path / "pose.md")
    text = (tmp_path / "pose.md").read_text()
    assert "## arm: 3 views, [96, 96] px, 40.0 deg FOV, images: mesh_renderer, model `m.pt`" in text
    assert "Device: cpu, backend auto; versions {'python': '3.11', 'torch': '2.13'}" in text
    assert "| multi_hypothesis | 4.0 | 2.0 | 1.0 | 2.0 | 0.750 | 1.00 | 3.0 |" in text
