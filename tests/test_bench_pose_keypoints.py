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


def test_joint_error_wraps_revolute_angles_over_two_pi():
    import numpy as np

    from bench.pose_keypoints import joint_error

    err = joint_error([6.2, -3.0, 0.1, 2 * np.pi + 0.3], [-0.05, 3.0, 0.0, 0.0])
    # UR joints range over +-2 pi: 6.2 and -0.05 rad are 0.033 rad apart, not 6.25 (or -0.03 as before)
    np.testing.assert_allclose(err, [2 * np.pi - 6.25, 2 * np.pi - 6.0, 0.1, 0.3], atol=1e-12)
    assert (err >= 0).all() and (err <= np.pi).all()


def test_failed_views_count_as_misses_not_as_errors():
    from bench.pose_keypoints import FAILED_VIEW, summarise

    ok = {"joint": 2.0, "rot": 1.0, "trans": 0.5, "add": 0.01}
    s = summarise([ok, FAILED_VIEW, ok, FAILED_VIEW], [0.1, 0.1])
    assert s["views"] == 4 and s["failed_views"] == 2
    assert s["success_rate"] == 0.5 and 0.0 < s["add_auc"] < 0.5
    assert s["joint_err_deg_median"] == 2.0
    none = summarise([FAILED_VIEW], [])
    assert none["joint_err_deg_median"] is None and none["add_auc"] == 0.0 and none["fps"] is None
    setup = {"views": 1, "frames": 0, "image_size": 64, "device": "cpu", "keypoints": "kp.pt", "drrobot": "dr.pt"}
    results = {"robots": ["arm"], **flatten_params(setup, setup_prefix("arm", ["full"])),
               **{f"arm.known_joints.{k}": v for k, v in none.items()}}
    assert "| known_joints | full | 0.000 | 0.00 | nan | nan | nan | nan | nan | 1 (1 failed) |" \
        in "\n".join(keypoint_tables(results))
