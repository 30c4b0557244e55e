"""The robot configs own their parameter metadata (gen3d_ros.config.param): every field has a description, the
defaults are the dataclass defaults, ranges and choices are enforced on construction with the field named."""

from __future__ import annotations

import dataclasses

import pytest

from gen3d_ros.config import flat_param_specs, flat_values, from_mapping, param_specs
from gen3d_ros.robot.actions import VisualMPCConfig
from gen3d_ros.robot.gaussians import GaussianModelConfig
from gen3d_ros.robot.pose import PoseEstimatorConfig
from gen3d_ros.robot.training import RobotTrainConfig

CONFIGS = [PoseEstimatorConfig, GaussianModelConfig, VisualMPCConfig, RobotTrainConfig]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_has_metadata_and_the_defaults_construct(cls):
    specs = param_specs(cls)
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(cls)]
    assert all(s.doc for s in specs), [s.name for s in specs if not s.doc]
    default = cls()
    for spec in specs:
        assert getattr(default, spec.name) == spec.default, spec.name
        if spec.lo is not None and spec.type in (int, float):
            assert spec.default >= spec.lo, spec.name
        if spec.hi is not None and spec.type in (int, float):
            assert spec.default <= spec.hi, spec.name


def test_pose_estimator_config_keeps_its_field_names_and_defaults():
    # what the robot pose stage and its YAML files rely on
    cfg = PoseEstimatorConfig()
    assert (cfg.azimuths, cfg.elevations_deg, cfg.joint_restarts, cfg.pyramid_scales, cfg.iterations, cfg.keep) == \
        (16, (0.0, 20.0, 40.0, 60.0), 128, (0.5, 1.0), (30, 40), (3, 1))
    assert cfg.relocalize_loss == float("inf") and cfg.background == (1.0, 1.0, 1.0) and cfg.backend == "auto"
    assert {s.name: s.unit for s in param_specs(PoseEstimatorConfig)}["lr_rotation"] == "rad"
    # sequences from a parameter server arrive as lists: stored as the tuples of the defaults
    listed = PoseEstimatorConfig(elevations_deg=[10, 30], pyramid_scales=[1], iterations=[5], keep=[1])
    assert listed.elevations_deg == (10.0, 30.0) and listed.iterations == (5,) and listed.pyramid_scales == (1.0,)


@pytest.mark.parametrize("cls, values, message", [
    (PoseEstimatorConfig, {"azimuths": 0}, r"PoseEstimatorConfig.azimuths=0 is outside"),
    (PoseEstimatorConfig, {"search_size": 2}, r"PoseEstimatorConfig.search_size=2 is outside"),
    (PoseEstimatorConfig, {"backend": "vulkan"}, r"PoseEstimatorConfig.backend='vulkan'; choose one of"),
    (PoseEstimatorConfig, {"w_rgb": -1.0}, r"PoseEstimatorConfig.w_rgb=-1.0 is outside"),
    (PoseEstimatorConfig, {"lr_joints": 0.0}, "learning rates must be positive"),
    (PoseEstimatorConfig, {"azimuths": "16"}, r"PoseEstimatorConfig.azimuths must be int"),
    (GaussianModelConfig, {"n_gaussians": 0}, r"GaussianModelConfig.n_gaussians=0 is outside"),
    (GaussianModelConfig, {"sh_degree": 4}, r"GaussianModelConfig.sh_degree=4 is outside"),
    (GaussianModelConfig, {"init_opacity": 1.0}, r"init_opacity must be in \(0, 1\)"),
    (VisualMPCConfig, {"waypoints": 0}, r"VisualMPCConfig.waypoints=0 is outside"),
    (VisualMPCConfig, {"render_scale": 0.0}, r"render_scale must be in \(0, 1\]"),
    (VisualMPCConfig, {"background": (2.0, 0.0, 0.0)}, r"background must be 3 values in \[0, 1\]"),
])
def test_out_of_range_values_name_the_field(cls, values, message):
    with pytest.raises(ValueError, match=message):
        cls(**values)


def test_the_training_config_nests_the_model_as_a_section_with_shared_seed_and_urdf():
    names = [s.name for s in flat_param_specs(RobotTrainConfig)]
    assert "model.n_gaussians" in names and "model.hidden" in names and "n_gaussians" not in names
    assert "model.seed" not in names and "model.urdf" not in names  # they follow seed / urdf
    cfg = from_mapping(RobotTrainConfig, {"model.hidden": 8, "seed": 4, "urdf": "panda"})
    assert (cfg.model.hidden, cfg.model.seed, cfg.model.urdf) == (8, 4, "panda")
    assert RobotTrainConfig(model={"hidden": 8}).model.n_gaussians == 1500  # a mapping: the training's defaults
    assert flat_values(RobotTrainConfig())["model.n_gaussians"] == 1500
    with pytest.raises(ValueError, match="model.seed"):
        from_mapping(RobotTrainConfig, {"model.seed": 1})


def test_pose_estimator_config_refuses_absurd_search_budgets_and_elevations() -> None:
    from gen3d_ros.robot.pose import PoseEstimatorConfig

    for bad in ({"elevations_deg": (0.0, 95.0)}, {"elevations_deg": ()}, {"azimuths": 100_000},
                {"search_size": 100_000}, {"patience": 0}):
        with pytest.raises(ValueError):
            PoseEstimatorConfig(**bad)
    assert PoseEstimatorConfig(elevations_deg=(-10.0, 90.0)).elevations_deg == (-10.0, 90.0)
