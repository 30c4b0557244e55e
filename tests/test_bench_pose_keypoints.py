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


def test_tracking_under_the_calibrated_camera_is_reported_beside_the_unknown_start():
    setup = {"views": 1, "frames": 100, "image_size": 64, "device": "cpu", "keypoints": "kp.pt", "drrobot": "dr.pt"}
    p = "arm.tracking.keypoint_only."
    track = {"add_auc": 0.9, "success_rate": 1.0, "joint_err_deg_mean": 4.35, "joint_err_deg_first20": 4.2,
             "joint_err_deg_last20": 4.8, "joint_err_deg_mean_by_joint": [11.8, 1.3], "cam_rot_err_deg_mean": 12.0,
             "coast_frames": 0, "reinit_frames": 0, "frames": 100, "selfcal_frames": 10, "selfcal_cam_trans_err_cm": 1.09,
             "selfcal_cam_rot_err_deg": 1.66, "selfcal_joint_err_deg_mean": 2.58, "selfcal_joint_err_deg_first20": 2.38,
             "selfcal_joint_err_deg_last20": 3.04, "selfcal_joint_err_deg_mean_by_joint": [2.26, 1.51]}
    results = {"robots": ["arm"], **flatten_params(setup, setup_prefix("arm", ["full", "keypoint_only"])),
               **{p + k: v for k, v in track.items()}}
    text = "\n".join(keypoint_tables(results))
    assert ("under the camera that calibrate found from the first 10 frames with their joint readings (camera off by "
            "1.09 cm, 1.66 deg), then every frame from an unknown joint start: mean joint error 2.58 deg, first / last "
            "20 frames 2.38 / 3.04 deg; per joint [2.3, 1.5] deg.") in text
