"""Hyper-parameters of Dr. Robot training (:class:`RobotTrainConfig`), its presets and ``--set key=value`` overrides.

The model's architecture is the nested :class:`~gen3d_ros.robot.gaussians.GaussianModelConfig` (``model``), the
one stored in checkpoints; its ``seed`` and ``urdf`` follow the training's. Overrides reach it as ``model.<field>``
(``model.n_gaussians=3000``); the flat names ``n_gaussians``, ``sh_degree``, ``skinning``, ``appearance``,
``hidden`` and ``n_freqs`` still work and mean the same.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gen3d_ros.config import param, validate
from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.gaussians import GaussianModelConfig
from gen3d_ros.robot.splat_backends import BACKEND_CHOICES

MODEL_KEYS = ("n_gaussians", "sh_degree", "skinning", "appearance", "hidden", "n_freqs")
"""Model fields settable under their flat names (``n_gaussians=...`` = ``model.n_gaussians=...``)."""

_SHARED_KEYS = ("seed", "urdf")  # set on the training config; the model's copies follow


def _default_model() -> GaussianModelConfig:
    return GaussianModelConfig(n_gaussians=1500, urdf="test_arm")


@dataclass
class RobotTrainConfig:
    """Hyper-parameters of :func:`~gen3d_ros.robot.training.loop.train_robot`; presets in :data:`PRESETS`, any
    field settable by ``--set`` (validated on construction and again by :meth:`validate`).

    Learning rates are per Adam step in the parameter's units; ``sh_increase_every``: image iterations (canonical +
    joint, counted together) per SH band switched on, as in 3DGS: starting at degree 0 keeps view-dependent bands
    from overfitting the few canonical views. ``time_budget_s`` > 0 stops the training stages once that many
    seconds have passed since the first one began (the iterations done are reported).
    """

    urdf: str = param("test_arm", "robot: test_arm, an example-robot-data name (panda) or a URDF path")
    device: str = param("cpu", "torch device (cpu, cuda, cuda:1)")
    seed: int = param(0, "random seed (views, model initialisation, batches)", lo=0)
    backend: str = param("auto", "splatting backend: auto (gsplat on CUDA, else torch), torch, gsplat",
                         choices=BACKEND_CHOICES)
    image_size: int = param(96, "side of the square training and validation images", unit="px", lo=1)
    fov_deg: float = param(40.0, "vertical field of view of every view, in (0, 180)", unit="deg", lo=0.0, hi=180.0)
    background: tuple[float, float, float] = param((1.0, 1.0, 1.0), "RGB in [0, 1] behind the robot (use a "
                                                                    "non-white one for white robots like Panda)")
    canonical_views: int = param(24, "views of the neutral pose (stage canonical)", lo=1)
    train_views: int = param(64, "views of random poses (stage joint)", lo=1)
    val_views: int = param(8, "held-out views of random poses (validation)", lo=1)
    # a gen3d_ros.config.section (its fields are the model.<field> parameters) whose default is the training's
    model: GaussianModelConfig = field(default_factory=_default_model, metadata={
        "doc": "the model's architecture (stored in the checkpoint); its seed and urdf follow the training's",
        "section": GaussianModelConfig, "shared": _SHARED_KEYS})
    canonical_iters: int = param(120, "Adam steps of stage canonical (the Gaussians at the neutral pose)", lo=0)
    skinning_iters: int = param(20, "Adam steps of stage skinning (the skinning MLP, Chamfer to the mesh)", lo=0)
    joint_iters: int = param(200, "Adam steps of stage joint (everything, images of random poses)", lo=0)
    batch_views: int = param(2, "views per image step", lo=1)
    skinning_poses: int = param(4, "random poses per skinning step", lo=1)
    chamfer_points: int = param(2000, "mesh surface samples of the skinning stage's Chamfer target", lo=1)
    lr_means: float = param(5e-4, "Adam rate of the Gaussians' means", unit="m", lo=0.0)
    lr_quats: float = param(2e-3, "Adam rate of the Gaussians' orientations (quaternion units)", lo=0.0)
    lr_scales: float = param(5e-3, "Adam rate of the Gaussians' log scales", unit="log m", lo=0.0)
    lr_opacity: float = param(3e-2, "Adam rate of the opacity logits", lo=0.0)
    lr_color: float = param(1e-2, "Adam rate of the colours (RGB units; SH bands above 0 at 1/20)", lo=0.0)
    lr_mlp: float = param(1e-3, "Adam rate of the skinning and appearance MLPs", lo=0.0)
    lr_final_factor: float = param(0.1, "every rate decays exponentially to this fraction by a stage's end",
                                   lo=0.0)
    sh_increase_every: int = param(1000, "image iterations per SH band switched on", lo=0)
    ssim_weight: float = param(0.2, "w in the image loss (1 - w) L1 + w (1 - SSIM)", lo=0.0, hi=1.0)
    mask_weight: float = param(0.1, "weight of the L1 loss of the rendered alpha against the silhouette", lo=0.0)
    val_every: int = param(100, "joint-stage iterations between validations", lo=1)
    preview_views: int = param(4, "held-out views in preview.png", lo=0)
    time_budget_s: float = param(0.0, "stop the stages after this long (0: no limit)", unit="s", lo=0.0)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of its range (also run on construction; call it
        again after changing fields). ``model.seed`` / ``model.urdf`` take the values of ``seed`` / ``urdf``; a
        mapping ``model`` starts from the training's model defaults."""
        self.background = tuple(float(c) for c in self.background)  # type: ignore[assignment]
        if isinstance(self.model, Mapping):
            self.model = dataclasses.replace(_default_model(), **self.model)
        validate(self)  # also syncs the model's shared fields
        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"background must be 3 values in [0, 1], got {self.background}")
        if not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180), got {self.fov_deg}")

    @property
    def camera(self) -> PinholeCamera:
        """The intrinsics of every training and validation view."""
        return PinholeCamera.from_fov(self.image_size, self.image_size, self.fov_deg)


#: ``tiny``: test arm on a CPU in about a minute. ``demo``: test arm on a CPU in a few minutes (the packaged
#: checkpoint). ``gpu``: Panda at 256 px with SH degree 3 on CUDA (pass ``--set urdf=test_arm`` for the arm).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "demo": dict(image_size=128, model=dict(n_gaussians=3000), canonical_views=48, train_views=200, val_views=16,
                 canonical_iters=400, skinning_iters=150, joint_iters=1200, batch_views=2, val_every=200),
    "gpu": dict(urdf="panda", device="cuda", image_size=256, background=(0.35, 0.4, 0.45),
                model=dict(n_gaussians=10000, sh_degree=3, hidden=128, n_freqs=6), canonical_views=100,
                train_views=300, val_views=40, canonical_iters=1500, skinning_iters=200, joint_iters=4000,
                batch_views=4, skinning_poses=4, chamfer_points=10000, val_every=500, lr_means=3e-4),
}


def _field_types() -> dict[str, str]:
    """``{key: type name}`` of every settable key: the training fields, ``model.<field>`` and the flat model names."""
    types = {f.name: str(f.type) for f in dataclasses.fields(RobotTrainConfig) if f.name != "model"}
    model = {f.name: str(f.type) for f in dataclasses.fields(GaussianModelConfig) if f.name not in _SHARED_KEYS}
    types.update({f"model.{name}": t for name, t in model.items()})
    types.update({name: model[name] for name in MODEL_KEYS})
    return types


def robot_train_config(preset: str = "tiny", overrides: dict[str, Any] | None = None) -> RobotTrainConfig:
    """The config of ``preset`` with ``overrides`` (key -> value; strings are parsed to the field's type). Keys are
    the training fields, ``model.<field>`` of :class:`GaussianModelConfig` (but ``seed``/``urdf``: set those on the
    training) and the flat model names of :data:`MODEL_KEYS`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    values: dict[str, Any] = copy.deepcopy(PRESETS[preset])
    model: dict[str, Any] = values.pop("model", {})
    types = _field_types()
    for key, value in (overrides or {}).items():
        if key not in types:
            raise ValueError(f"unknown setting {key!r}; settable: {', '.join(sorted(types))}")
        value = _parse_value(value, types[key], key) if isinstance(value, str) else value
        name = key.removeprefix("model.")
        if key.startswith("model.") or key in MODEL_KEYS:
            model[name] = value
        else:
            values[key] = value
    return RobotTrainConfig(**values, model=dataclasses.replace(_default_model(), **model))


def _parse_value(text: str, type_name: str, key: str) -> Any:
    """``--set key=value`` text as the field's type (``int``, ``float``, ``bool``, ``str`` or a float tuple)."""
    try:
        if type_name == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if type_name == "int":
            return int(text)
        if type_name == "float":
            return float(text)
        if type_name.startswith("tuple"):
            return tuple(float(v) for v in text.strip("()[] ").split(","))
    except ValueError:
        raise ValueError(f"setting {key}={text!r} is not a valid {type_name}") from None
    return text


__all__ = ["MODEL_KEYS", "PRESETS", "RobotTrainConfig", "robot_train_config"]
