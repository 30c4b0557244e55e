"""Cheap checks of the files a robot stage's config names (``urdf``, ``checkpoint``) and its ``device``, run by the
robot nodes before they accept a config (:meth:`gen3d_ros.ros.stage_node.StageNode.check_config`). No rclpy.

The robot stages load their URDF and Dr. Robot model when they are built; with ``worker: process`` that happens
in the stage's child process, after the parameter change was accepted. These checks catch what can be caught
without building the model: a URDF that does not exist or does not parse, a checkpoint that does not exist, is
not a Dr. Robot checkpoint (read with ``weights_only=True``) or was trained on another URDF, a device this
machine does not have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
    """ValueError (naming the field and path) unless ``config.urdf`` parses, ``config.checkpoint`` (when given)
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
