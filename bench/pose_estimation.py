"""Robot pose estimation from single images: multi-hypothesis vs single-hypothesis vs silhouette-only.

    .venv/bin/python bench/pose_estimation.py                      # test arm, 8 held-out views, CPU
    .venv/bin/python bench/pose_estimation.py --views 4 --out /tmp/bench

Images: held-out (q, camera) pairs, q in the middle 60 % of each joint range, cameras on a sphere (elevation
15-45 deg, 1.1 m from the arm's middle, 64x64, 45 deg FOV). With a trained Dr. Robot checkpoint
(gen3d_ros/models/drrobot_test_arm.pt, or --checkpoint) the model is that checkpoint and the images are real mesh
renders (RobotMeshRenderer; "image_source": "mesh_renderer"); without one the model is the untrained
(mesh-initialised, rigid) Gaussian model and the images are its own renders ("image_source": "init_model"), so
the errors are the search's and optimiser's alone. Metrics per method: medians of mean joint error (deg), camera rotation (deg) and
translation (cm); ADD = mean distance of link origins in the camera frame (m); AUC of the ADD accuracy curve over
0-10 cm (DREAM-style); success = ADD < 5 cm; seconds per image.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gen3d_ros.geometry.rotations import rotation_angle_between  # noqa: E402
from gen3d_ros.robot.camera import PinholeCamera, sphere_camera  # noqa: E402
from gen3d_ros.robot.gaussians import RobotGaussianModel  # noqa: E402
from gen3d_ros.robot.pose import PoseEstimator, PoseEstimatorConfig  # noqa: E402
from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf  # noqa: E402

METHODS = {
    # the default: silhouette search over 16 azimuths x 4 elevations x 128 joint samples + hill climbing, base-yaw
    # twins, render scoring, coarse-to-fine Adam on the best 3
    "multi_hypothesis": dict(),
    # one hypothesis: neutral joints, one upright camera at 30 deg elevation, translation fitted to the mask
    "single_hypothesis": dict(azimuths=1, elevations_deg=(30.0,), joint_restarts=1, keep=(1, 1), search_rounds=0,
                              yaw_offsets=1),
    # the default search, but no photometric term (masks only)
    "silhouette_only": dict(w_rgb=0.0),
}
CHECKPOINT = Path("gen3d_ros/models/drrobot_test_arm.pt")


def add_auc(add_m: np.ndarray, max_m: float = 0.1) -> float:
    """Area under the accuracy-vs-threshold curve of ADD over [0, max_m], normalised to [0, 1]."""
    thresholds = np.linspace(0.0, max_m, 101)
    acc = [(add_m < t).mean() for t in thresholds]
    return float(np.trapezoid(acc, thresholds) / max_m)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--gaussians", type=int, default=500)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT,
                        help="Dr. Robot checkpoint (default: %(default)s; the untrained model when absent)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from tqdm import tqdm

    robot = load_urdf(test_arm_urdf())
    renderer = None
    if args.checkpoint is not None and args.checkpoint.is_file():
        from gen3d_ros.sim.robot_render import RobotMeshRenderer

        model = RobotGaussianModel.load(args.checkpoint, robot)
        renderer = RobotMeshRenderer(robot)
        image_source = "mesh_renderer"
    else:
        model = RobotGaussianModel.from_robot(robot, n_gaussians=args.gaussians, skinning=False, appearance=False)
        image_source = "init_model"
    camera = PinholeCamera.from_fov(64, 64, 45.0)
    rng = np.random.default_rng(args.seed)
    lo, hi = model.fk.lower, model.fk.upper
    scenes = []
    for _ in range(args.views):
        q = lo + (0.2 + 0.6 * torch.as_tensor(rng.random(len(lo)), dtype=torch.float32)) * (hi - lo)
        T = sphere_camera(rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(15, 45)), 1.1, np.array([0, 0, 0.3]))
        scenes.append((q, torch.as_tensor(T, dtype=torch.float32)))
    results: dict = {
        "robot": robot.name, "image_source": image_source,
        "checkpoint": str(args.checkpoint) if renderer is not None else None, "views": args.views, "image_size": [64, 64],
        "device": f"cpu ({platform.processor() or platform.machine()}, 1 thread)",
        "torch": torch.__version__, "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    rows = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        cfg = PoseEstimatorConfig(**METHODS[name])
        estimator = PoseEstimator(model, cfg)
        joint, rot, trans, add, secs = [], [], [], [], []
        for q, T in tqdm(scenes, desc=name, disable=args.no_progress):
            if renderer is not None:
                image = torch.as_tensor(renderer.render(q.double().numpy(), T.double().numpy(), camera).rgb)
            else:
                image = estimator.render(q, T, camera).rgb.clamp(0, 1)
            est = estimator.estimate(image, camera)
            Te = torch.as_tensor(est.T_camera_base, dtype=torch.float32)
            joint.append(float(np.degrees(np.abs(est.q - q.numpy())).mean()))
            rot.append(math.degrees(float(rotation_angle_between(Te[:3, :3].double(), T[:3, :3].double()))))
            trans.append(100 * float((Te[:3, 3] - T[:3, 3]).norm()))
            # ADD (DREAM): link origins in the CAMERA frame, each by its own (q, T_camera_base): invariant to the
            # base-yaw / camera-azimuth trade-off, which leaves the camera-frame robot unchanged
            with torch.no_grad():
                kp_e = model.keypoints(torch.as_tensor(est.q, dtype=torch.float32)) @ Te[:3, :3].T + Te[:3, 3]
                kp_t = model.keypoints(q) @ T[:3, :3].T + T[:3, 3]
            add.append(float((kp_e - kp_t).norm(dim=-1).mean()))
            secs.append(est.seconds)
        add_a = np.array(add)
        metrics = {
            "joint_err_deg_median": float(np.median(joint)), "cam_rot_err_deg_median": float(np.median(rot)),
            "cam_trans_err_cm_median": float(np.median(trans)), "add_m_median": float(np.median(add_a)),
            "add_auc": add_auc(add_a), "success_rate": float((add_a < 0.05).mean()),
            "seconds_to_converge": float(np.median(secs)),
        }
        for k, v in metrics.items():
            results[f"{robot.name}.{name}.{k}"] = round(v, 4)
        rows.append((name, metrics))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pose_estimation.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| method | joint err (deg) | cam rot (deg) | cam trans (cm) | ADD median (cm) | ADD AUC 0-10 cm | success (ADD<5 cm) | s / image |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {m['joint_err_deg_median']:.1f} | {m['cam_rot_err_deg_median']:.1f} | "
                     f"{m['cam_trans_err_cm_median']:.1f} | {100 * m['add_m_median']:.1f} | {m['add_auc']:.3f} | "
                     f"{m['success_rate']:.2f} | {m['seconds_to_converge']:.1f} |")
    table = "\n".join(lines)
    source = ("real mesh renders (RobotMeshRenderer), model " + str(args.checkpoint) if renderer is not None
              else "the init_model's own renders (no trained checkpoint)")
    header = (f"# Pose estimation, {robot.name}, {args.views} held-out 64x64 views, images: {source}, "
              f"{results['device']}\n\n`{results['command']}`\n\n")
    (args.out / "pose_estimation.md").write_text(header + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
