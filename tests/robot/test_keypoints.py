"""Keypoints of a robot: definition, heatmaps, PnP / FK fitting, the estimator's modes with an oracle detector,
domain randomisation, checkpoints and the training command."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.robot.keypoints.definition import KeypointSet, project, visibility
from gen3d_ros.robot.keypoints.detector import Detection, KeypointDetector
from gen3d_ros.robot.keypoints.estimator import KeypointPoseConfig, KeypointPoseEstimator
from gen3d_ros.robot.keypoints.network import KeypointNet, decode_heatmaps, heatmap_targets
from gen3d_ros.robot.keypoints.solve import camera_from_keypoints, joints_from_keypoints
from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf

CAMERA = PinholeCamera.from_fov(256, 256, 40.0)


@pytest.fixture(scope="module")
def arm():
    robot = load_urdf(test_arm_urdf())
    return robot, ForwardKinematics(robot, dtype=torch.float64), KeypointSet.from_robot(robot)


def _view(robot, fk, kps, seed: int):
    """A (q, T_camera_base, uv) with the whole robot in view, from a seeded random pose and camera."""
    rng = np.random.default_rng(seed)
    q = robot.lower + (0.15 + 0.7 * rng.random(len(robot.lower))) * (robot.upper - robot.lower)
    T = sphere_camera(rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(10, 50)), 1.6, target=[0, 0, 0.35])
    with torch.no_grad():
        uv, z = project(kps.points(fk, torch.as_tensor(q)), torch.as_tensor(T), CAMERA)
    return q, T, uv.numpy(), z.numpy()


def _add(fk, q1, T1, q2, T2) -> float:
    """Mean distance (m) of the link origins in the camera frame."""
    with torch.no_grad():
        a = fk(torch.as_tensor(q1))[:, :3, 3].numpy() @ T1[:3, :3].T + T1[:3, 3]
        b = fk(torch.as_tensor(q2))[:, :3, 3].numpy() @ T2[:3, :3].T + T2[:3, 3]
    return float(np.linalg.norm(a - b, axis=1).mean())


def test_keypoint_set_has_link_origins_and_no_duplicates(arm):
    robot, fk, kps = arm
    origins = [n for n in kps.names if n.endswith("/origin")]
    assert origins[0] == f"{robot.links[0]}/origin" and len(kps) > len(origins)
    q = fk.sample(16, torch.Generator().manual_seed(1))
    p = kps.points(fk, q)
    for k, name in enumerate(kps.names):  # an origin keypoint is its link's FK origin
        if name.endswith("/origin"):
            assert torch.allclose(p[:, k], fk(q)[:, fk.link_index(kps.links[k]), :3, 3])
    d = (p[:, :, None] - p[:, None]).norm(dim=-1).amax(0)  # worst case over poses of each pair's distance
    assert (d + torch.eye(len(kps), dtype=d.dtype) * 1.0).min() >= 0.02
    again = KeypointSet.from_dict(kps.to_dict())
    assert again.names == kps.names and np.allclose(again.offsets, kps.offsets)


def test_visibility_marks_points_behind_another_link_occluded():
    depth = np.zeros((10, 10), np.float32)
    link_id = np.full((10, 10), -1, np.int16)
    depth[5, 5], link_id[5, 5] = 1.0, 3  # link 3's surface at 1 m on pixel (5, 5)
    uv = np.array([[5.5, 5.5], [5.5, 5.5], [5.5, 5.5], [20.0, 5.0]])
    z = np.array([1.5, 1.5, 1.01, 1.0])
    link_of = np.array([1, 3, 1, 1])
    parents = np.array([-1, 0, 1, 2])
    vis = visibility(uv, z, link_of, depth, link_id, parents)
    # behind link 3: occluded; on link 3 itself: visible; 1 cm behind the surface: visible; off-image: 0
    assert vis.tolist() == [1, 2, 2, 0]


def test_heatmap_decoding_recovers_subpixel_positions():
    uv = torch.tensor([[[37.3, 80.9], [120.2, 5.6], [64.0, 64.0]]])
    target = heatmap_targets(uv, torch.ones(1, 3, dtype=torch.bool), (32, 32), stride=4, sigma=1.0)
    assert torch.allclose(target.sum(dim=(-1, -2)), torch.ones(1, 3))
    decoded, conf = decode_heatmaps(torch.log(target + 1e-12), stride=4)
    assert (decoded - uv).abs().max() < 0.3
    assert conf.min() > 0.9


def test_network_shapes_and_checkpoint_round_trip(arm, tmp_path):
    _, _, kps = arm
    torch.manual_seed(0)
    det = KeypointDetector(KeypointNet(len(kps), width=8), kps, input_size=64)
    image = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)  # not square: padded
    a = det.detect(image)
    assert a.uv.shape == (len(kps), 2) and a.confidence.shape == (len(kps),) and a.mask.shape == (48, 80)
    det.save(tmp_path / "kp.pt", metrics={"val_px_err_median": 1.0})
    loaded = KeypointDetector.load(tmp_path / "kp.pt")
    b = loaded.detect(image)
    assert loaded.keypoints.names == kps.names and loaded.input_size == 64
    assert np.abs(a.uv - b.uv).max() < 0.5  # float16 weights: near-identical decoding
    from gen3d_ros.checkpoints import CheckpointError
    from gen3d_ros.outputs import save_torch

    save_torch({"format": "gen3d_ros.drrobot/1"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="keypoint network"):
        KeypointDetector.load(tmp_path / "other.pt")


def test_pnp_recovers_the_camera_despite_outliers(arm):
    robot, fk, kps = arm
    rng = np.random.default_rng(3)
    for seed in range(3):
        q, T, uv, _ = _view(robot, fk, kps, seed)
        noisy = uv + rng.normal(0, 0.5, uv.shape)
        noisy[:4] += rng.uniform(30, 60, (4, 2))  # four wrong detections: RANSAC leaves them out
        p = kps.points(fk, torch.as_tensor(q)).numpy()
        T_est, inliers = camera_from_keypoints(p, noisy, np.ones(len(kps)), CAMERA)
        assert T_est is not None
        # 0.5 px noise at ~1.8 m: the depth is what moves (about 1 cm); rotation and lateral position far less
        assert np.linalg.norm(T_est[:3, 3] - T[:3, 3]) < 0.02
        assert np.linalg.norm(T_est[:2, 3] - T[:2, 3]) < 0.005
        assert not inliers[:4].any() and inliers[4:].mean() > 0.9


def test_joints_from_keypoints_finds_the_pose(arm):
    robot, fk, kps = arm
    q, T, uv, _ = _view(robot, fk, kps, 7)
    fits = joints_from_keypoints(kps, fk, uv, np.ones(len(kps)), CAMERA, restarts=24, keep=3)
    assert fits and fits[0].rms_px < 1.0
    assert _add(fk, fits[0].q, fits[0].T_camera_base, q, T) < 0.01


class _OracleDetector:
    """A detector returning the true keypoints (plus noise) of a scene it is told about: tests the geometry."""

    def __init__(self, kps, noise_px: float = 0.5) -> None:
        self.keypoints, self.noise, self.uv = kps, noise_px, None
        self.rng = np.random.default_rng(0)

    def detect(self, image) -> Detection:
        return Detection(self.uv + self.rng.normal(0, self.noise, self.uv.shape), np.ones(len(self.uv)),
                         np.ones(image.shape[:2], np.float32))


def test_estimator_modes_calibration_and_tracking_with_an_oracle_detector(arm):
    robot, fk, kps = arm
    oracle = _OracleDetector(kps)
    kpe = KeypointPoseEstimator(oracle, None, KeypointPoseConfig(restarts=24), fk=fk)
    image = np.zeros((256, 256, 3), np.uint8)
    q, T, uv, _ = _view(robot, fk, kps, 11)
    oracle.uv = uv
    est = kpe.estimate(image, CAMERA, q=q)  # known joints: the camera
    assert np.linalg.norm(est.T_camera_base[:3, 3] - T[:3, 3]) < 0.01 and np.allclose(est.q, q)
    est = kpe.estimate(image, CAMERA)  # unknown joints
    assert _add(fk, est.q, est.T_camera_base, q, T) < 0.01
    # calibration: the same camera over 5 frames of different joints, 1 px noise
    frames, joints = [], []
    oracle.noise = 1.0
    cal_uv = []
    for seed in range(5):
        qi = _view(robot, fk, kps, 20 + seed)[0]
        with torch.no_grad():
            cal_uv.append(project(kps.points(fk, torch.as_tensor(qi)), torch.as_tensor(T), CAMERA)[0].numpy())
        frames.append(image)
        joints.append(qi)
    it = iter(cal_uv)
    oracle.detect = lambda img: Detection(next(it) + oracle.rng.normal(0, 1.0, uv.shape), np.ones(len(uv)),
                                          np.ones((256, 256), np.float32))
    cal = kpe.calibrate(frames, CAMERA, joints)
    assert cal.frames_used >= 4 and np.linalg.norm(cal.T_camera_base[:3, 3] - T[:3, 3]) < 0.01
    assert 0 < cal.translation_std_m < 0.02 and cal.rotation_std_deg < 2.0  # per-frame spread at 1 px noise
    # tracking: a moving arm, each frame re-anchored on its keypoints: no drift
    del oracle.detect
    oracle.noise, prev, errors = 0.5, None, []
    for t in range(12):
        qt = q + 0.03 * t * np.sign(np.arange(len(q)) % 2 - 0.5)
        with torch.no_grad():
            oracle.uv = project(kps.points(fk, torch.as_tensor(qt)), torch.as_tensor(T), CAMERA)[0].numpy()
        prev = kpe.track_step(image, CAMERA, prev)
        errors.append(_add(fk, prev.q, prev.T_camera_base, qt, T))
    assert max(errors) < 0.01 and np.mean(errors[-4:]) < 0.006


def test_augmentation_moves_keypoints_with_the_image(arm):
    from gen3d_ros.robot.training.keypoint_data import augment

    S, B = 64, 6
    rgb = torch.zeros(B, S, S, 3, dtype=torch.uint8)
    mask = torch.zeros(B, S, S, dtype=torch.bool)
    uv = torch.tensor([[20.5, 30.5], [40.5, 12.5]]).expand(B, 2, 2).clone()
    for b in range(B):  # a 3x3 robot blob under each keypoint
        for u, v in uv[b].long().tolist():
            mask[b, v - 1:v + 2, u - 1:u + 2] = True
            rgb[b, v - 1:v + 2, u - 1:u + 2] = 255
    vis = torch.full((B, 2), 2, dtype=torch.int8)
    img, m, uv_out, w = augment(rgb, mask, uv, vis, torch.zeros(0, S, S, 3, dtype=torch.uint8), 64,
                                torch.Generator().manual_seed(0))
    assert img.shape == (B, 3, 64, 64) and m.shape == (B, 1, 64, 64) and 0 <= img.min() and img.max() <= 1
    inside = w > 0
    assert inside.any()
    for b, k in inside.nonzero().tolist():
        u, v = uv_out[b, k].long().tolist()
        assert m[b, 0, max(v - 1, 0):v + 2, max(u - 1, 0):u + 2].max() > 0.3  # the blob went where the keypoint did


def test_train_keypoints_command_writes_a_loadable_model(tmp_path):
    from gen3d_ros.cli import main

    out = tmp_path / "kp"
    assert main(["train-robot", "--stage", "keypoints", "--preset", "tiny", "--set", "views=8", "--set", "steps=3",
                 "-o", str(out)]) == 0
    det = KeypointDetector.load(out / "keypoints.pt")
    assert det.metrics["steps"] == 3 and len(det.keypoints) > 10
    assert main(["train-robot", "--stage", "keypoints", "--preset", "nope", "-o", str(tmp_path / "x")]) == 2


def test_processor_calibrate_mode_averages_frames_then_fixes_the_camera(arm):
    from gen3d_ros.robot.gaussians import RobotGaussianModel
    from gen3d_ros.robot.pose import RobotPoseProcessor

    robot, fk, kps = arm
    oracle = _OracleDetector(kps, noise_px=0.5)
    kpe = KeypointPoseEstimator(oracle, None, KeypointPoseConfig(restarts=16), fk=fk)
    model = RobotGaussianModel.from_robot(robot, n_gaussians=200, skinning=False, appearance=False)
    processor = RobotPoseProcessor(model, keypoints=kpe)
    processor.start_calibration(4)
    _, T, _, _ = _view(robot, fk, kps, 5)
    image = np.zeros((256, 256, 3), np.uint8)
    results = []
    for seed in range(4):
        q = _view(robot, fk, kps, 40 + seed)[0]
        with torch.no_grad():
            oracle.uv = project(kps.points(fk, torch.as_tensor(q)), torch.as_tensor(T), CAMERA)[0].numpy()
        processor.set_known_joints(q)
        results.append(processor.process(image, CAMERA))
    assert results[2].calibration is None and results[3].calibration is not None
    cal = results[3].calibration
    assert cal.frames_used >= 3 and np.linalg.norm(cal.T_camera_base[:3, 3] - T[:3, 3]) < 0.01
    assert np.allclose(processor.known_camera, cal.T_camera_base)
    # joints unknown again, the calibrated camera fixed: tracking estimates the joints only
    processor.set_known_joints(None)
    q = _view(robot, fk, kps, 50)[0]
    with torch.no_grad():
        oracle.uv = project(kps.points(fk, torch.as_tensor(q)), torch.as_tensor(T), CAMERA)[0].numpy()
    est = processor.process(image, CAMERA).estimate
    assert np.allclose(est.T_camera_base, cal.T_camera_base) and _add(fk, est.q, T, q, T) < 0.01


def test_calibrate_camera_command_with_the_packaged_network(arm, tmp_path):
    """The packaged keypoint network on mesh renders: the camera within 1.5 cm from three frames (keypoints + PnP;
    0.3-1.1 cm per frame when this was written)."""
    import json

    from PIL import Image

    from gen3d_ros.cli import main
    from gen3d_ros.geometry.rigid import invert_rigid
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    robot, fk, kps = arm
    renderer = RobotMeshRenderer(robot)
    # a static camera framing the arm (in the training distribution: the arm fills a good part of the view)
    T = sphere_camera(0.8, math.radians(25.0), 1.3, target=[0, 0, 0.3])
    rng = np.random.default_rng(0)
    paths, joints = [], []
    for seed in range(3):
        q = robot.lower + (0.3 + 0.4 * rng.random(len(robot.lower))) * (robot.upper - robot.lower)
        out = renderer.render(q, T, CAMERA, background=(0.3, 0.5, 0.4))
        paths.append(tmp_path / f"frame{seed}.png")
        Image.fromarray((out.rgb * 255).round().astype(np.uint8)).save(paths[-1])
        joints.append(q.tolist())
    (tmp_path / "joints.json").write_text(json.dumps({"positions": joints}))
    result = tmp_path / "cal.json"
    assert main(["calibrate-camera", *map(str, paths), "--joints", str(tmp_path / "joints.json"), "--fov-deg", "40",
                 "-o", str(result)]) == 0
    cal = json.loads(result.read_text())
    assert np.linalg.norm(np.array(cal["T_camera_base"])[:3, 3] - T[:3, 3]) < 0.015
    assert np.allclose(cal["camera_in_base"][:3], invert_rigid(T)[:3, 3], atol=0.04)  # 1 deg at 1.3 m: 2.3 cm
    (tmp_path / "bad.json").write_text(json.dumps({"positions": [[0.0, 1.0]]}))
    assert main(["calibrate-camera", str(paths[0]), "--joints", str(tmp_path / "bad.json"), "--fov-deg", "40",
                 "-o", str(tmp_path / "x.json")]) == 2
