"""Which robot and which Dr. Robot model a robot stage uses: URDF + checkpoint resolution, shared by the pose and
action stages. No rclpy.

``urdf``: ``""`` or ``"test_arm"`` (the packaged procedural arm), an ``example-robot-data`` name (``"panda"``) or a
URDF path. ``checkpoint``: a ``RobotGaussianModel.save`` file; empty: the packaged model of that robot
(``gen3d_ros/models/drrobot_<robot name>.pt``) when one exists, else an untrained
``RobotGaussianModel.from_robot`` (a rigid renderer of the URDF's visual meshes: usable for pose estimation from
clean renders, much weaker on real images), with a logged warning.

:func:`check_robot_resources` is the cheap check of the same files (and the device) that a robot stage's config
runs in ``check_resources()`` before a host accepts it, without building the model.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("gen3d_ros.pipeline.robot_model")

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def packaged_checkpoint(robot_name: str) -> Path | None:
    """``gen3d_ros/models/drrobot_<robot_name>.pt`` if it exists (e.g. ``drrobot_gen3d_test_arm.pt``), else None."""
    path = MODELS_DIR / f"drrobot_{robot_name}.pt"
    return path if path.is_file() else None


def file_sha12(path: Path) -> str:
    """First 12 hex digits of the file's SHA-256 (model ids in messages)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


@dataclass
class LoadedRobotModel:
    """A robot description and its renderer. ``model``: a ``RobotGaussianModel`` (on ``device``); ``model_id``:
    ``"drrobot:<sha256[:12]>"`` of the checkpoint, or ``"untrained:<robot name>"``."""

    robot: Any
    model: Any
    model_id: str


def load_robot_model(urdf: str, checkpoint: str, *, device: str = "cpu", n_gaussians: int = 2000,
                     seed: int = 0) -> LoadedRobotModel:
    """Load the robot of ``urdf`` and its Dr. Robot model (see the module docstring for the fallbacks).

    Raises:
        FileNotFoundError: the URDF or the checkpoint does not exist (the text names the path).
        ValueError: the URDF is malformed, or the checkpoint was trained on another URDF.
    """
    from gen3d_ros.robot.description import load_robot
    from gen3d_ros.robot.gaussians import RobotGaussianModel

    if urdf and urdf != "test_arm" and (urdf.endswith(".urdf") or "/" in urdf) and not Path(urdf).is_file():
        raise FileNotFoundError(f"URDF file {urdf!r} does not exist; set the 'urdf' parameter to a URDF path, "
                                "'test_arm' or an example-robot-data name")
    robot = load_robot(urdf)
    path = Path(checkpoint).expanduser() if checkpoint else packaged_checkpoint(robot.name)
    if checkpoint and not path.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist (empty: the packaged model, or an "
                                "untrained model of the URDF)")
    if path is None:
        log.warning("no Dr. Robot checkpoint for robot %r (parameter 'checkpoint' empty, no packaged "
                    "models/drrobot_%s.pt): using an UNTRAINED model built from the URDF's visual meshes; train "
                    "one with `gen3d train-robot` for real images", robot.name, robot.name)
        model = RobotGaussianModel.from_robot(robot, n_gaussians=n_gaussians, seed=seed, skinning=False,
                                              appearance=False)
        return LoadedRobotModel(robot, model.to(device), f"untrained:{robot.name}")
    model = RobotGaussianModel.load(path, robot, device=device)
    return LoadedRobotModel(robot, model, f"drrobot:{file_sha12(path)}")


def load_stage_robot_model(config: Any) -> LoadedRobotModel:
    """The robot and model of a robot stage's config (fields ``urdf``, ``checkpoint``, ``device``, ``n_gaussians``,
    ``seed``, ``threads``): sets torch's CPU threads first when ``threads > 0``, then :func:`load_robot_model`."""
    import torch

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    return load_robot_model(config.urdf, config.checkpoint, device=config.device, n_gaussians=config.n_gaussians,
                            seed=config.seed)


def resolve_urdf(spec: str, owner: str) -> Path:
    """The URDF file of a robot stage's ``urdf`` value, resolved as the stages do
    (:func:`gen3d_ros.robot.description.resolve_robot_urdf`: ``""``/``"test_arm"``, a path, or an
    ``example-robot-data`` name). ValueError naming ``<owner>.urdf`` when there is no such file."""
    from gen3d_ros.robot.description import resolve_robot_urdf

    try:
        return resolve_robot_urdf(spec)
    except FileNotFoundError as exc:
        raise ValueError(f"{owner}.urdf={spec!r}: {exc}") from None


def check_robot_resources(config: Any, owner: str) -> None:
    """The ``check_resources()`` of the robot stage configs (``owner``: the class name the messages name).
    ValueError (naming the field and path) unless ``config.urdf`` parses, ``config.checkpoint`` (when given)
    is a Dr. Robot checkpoint trained on that URDF, and ``config.device`` exists. Reads the URDF (~0.1 s) and the
    checkpoint (``weights_only=True``; imports torch); builds no model."""
    from gen3d_ros.robot.urdf import load_urdf

    path = resolve_urdf(config.urdf, owner)
    try:
        robot = load_urdf(path)
    except (ValueError, OSError) as exc:  # malformed URDF, unreadable or missing meshes
        raise ValueError(f"{owner}.urdf={config.urdf!r}: {exc}") from None
    if config.device != "cpu":
        from gen3d_ros.devices import check_device

        check_device(config.device)
    if not config.checkpoint:
        return  # the packaged model of the robot, or an untrained one built from the URDF
    from gen3d_ros.checkpoints import read_checkpoint
    from gen3d_ros.robot.gaussians import CHECKPOINT_FORMAT

    checkpoint = Path(config.checkpoint).expanduser()
    try:
        ckpt, _ = read_checkpoint(checkpoint, "Dr. Robot", (CHECKPOINT_FORMAT,))
    except FileNotFoundError as exc:
        raise ValueError(f"{owner}.checkpoint={config.checkpoint!r}: {exc}; give an existing Dr. Robot model "
                         "(gen3d train-robot) or leave it empty for the packaged one") from None
    except ValueError as exc:  # CheckpointError: not a torch archive, truncated, another format
        raise ValueError(f"{owner}.checkpoint={config.checkpoint!r}: {exc}") from None
    sha = str(ckpt.get("urdf_sha256", ""))
    if sha != robot.urdf_sha256:
        raise ValueError(f"{owner}.checkpoint={config.checkpoint!r} was trained on URDF {ckpt.get('robot_name')!r} "
                         f"(sha256 {sha[:12]}…), not on {config.urdf or 'test_arm'!r} (sha256 "
                         f"{robot.urdf_sha256[:12]}…); use the same URDF or retrain (gen3d train-robot --urdf …)")
