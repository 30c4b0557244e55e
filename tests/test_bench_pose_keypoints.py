"""bench/pose_keypoints.py's result layout: run set-ups as flat keys (the bench results' habit), read back per
tag for the markdown tables."""

from __future__ import annotations

from bench.pose_keypoints import keypoint_tables, setup_prefix, setups
from gen3d_ros.config import flatten_params


def test_setups_are_flat_keys_read_back_per_run():
    setup = {"views": 24, "frames": 100, "image_size": 256, "device": "cpu", "keypoints": "kp.pt",
             "drrobot": "dr.pt", "versions": {"torch": "2.13"}, "config": {"restarts": 48}, "command": "python x"}
    results = {"robots": ["arm"], **flatten_params(setup, setup_prefix("arm", ["full", "keypoint_only"])),
               **flatten_params({**setup, "views": 4, "note": "short"}, setup_prefix("arm", ["refinement_only"])),
               "arm.known_joints.add_auc": 0.9, "arm.known_joints.success_rate": 1.0}
    assert all(not isinstance(v, dict) for v in results.values())
    assert results["arm.keypoint_bench.full.versions.torch"] == "2.13"
    assert results["arm.keypoint_bench.refinement_only.config.restarts"] == 48
    runs = setups(results, "arm")
    assert sorted(runs) == ["full", "refinement_only"]
    assert runs["full"]["views"] == 24 and runs["refinement_only"]["views"] == 4
    text = "\n".join(keypoint_tables(results))
    assert "24 views / 100 video frames, 256 px" in text
    assert "| known_joints | full | 0.900 | 1.00 |" in text
    assert "Rows of refinement_only measured separately: device cpu, 4 views, `python x`. short" in text
