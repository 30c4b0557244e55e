"""Training a Dr. Robot model (:class:`~gen3d_ros.robot.gaussians.RobotGaussianModel`) from rendered views.

    cfg = robot_train_config("tiny", overrides={"joint_iters": 300, "model.n_gaussians": 2000})
    metrics = train_robot(cfg, Path("runs/drrobot_tiny"))          # or: gen3d train-robot --preset tiny -o ...

Training code only: no runtime module (the model, renderer, pose estimation, actions) imports this package; it may
import :mod:`gen3d_ros.sim` (the ground-truth renderer).

- :mod:`~.config`: :class:`RobotTrainConfig` (nesting the model's ``GaussianModelConfig``), presets, ``--set``.
- :mod:`~.views`: ground-truth views (open3d, via ``sim``) and their ``.npz`` caches (:class:`ViewSet`).
- :mod:`~.losses`: image loss ``(1 - w) L1 + w (1 - SSIM) + mask_weight L1(alpha, mask)``; Chamfer distance.
- :mod:`~.stages`: the three stages (canonical, skinning, joint) as Adam loops.
- :mod:`~.report`: held-out PSNR/SSIM, preview image, loss curves.
- :mod:`~.run_folder`: the run folder's creation, checks and clean-up.
- :mod:`~.loop`: :func:`train_robot`, tying them together.
"""

from gen3d_ros.robot.training.config import MODEL_KEYS, PRESETS, RobotTrainConfig, robot_train_config
from gen3d_ros.robot.training.loop import train_robot
from gen3d_ros.robot.training.losses import chamfer_l2, image_loss
from gen3d_ros.robot.training.report import evaluate, write_curves, write_preview
from gen3d_ros.robot.training.run_folder import RUN_FILES
from gen3d_ros.robot.training.views import ViewSet, load_or_render_views, render_views, views_to_device

__all__ = ["MODEL_KEYS", "PRESETS", "RUN_FILES", "RobotTrainConfig", "ViewSet", "chamfer_l2", "evaluate",
           "image_loss", "load_or_render_views", "render_views", "robot_train_config", "train_robot",
           "views_to_device", "write_curves", "write_preview"]
