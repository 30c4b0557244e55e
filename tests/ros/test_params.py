"""Parameters of the nodes: the params files list exactly what the nodes declare, descriptors carry unit and
range, runtime changes are validated by the config dataclass, invalid params files stop a node with the reason."""

from __future__ import annotations

import math

import pytest
import yaml

from conftest import require_rclpy
from gen3d_ros.config import load_node_params
from ros_harness import REPO

pytestmark = [pytest.mark.ros]

CONFIG = REPO / "config"
BUILTIN = {"use_sim_time", "start_type_description_service"}  # declared by rclpy itself


def make_node(ros, name: str = "completion_node", params_file=None, extra_args: list[str] | None = None):
    """The node in this process; its stage in a thread (``worker:=thread``: no child process per test)."""
    _, context = ros
    from gen3d_ros.ros.stage_node import create_stage_node

    cli = ["--ros-args"] + (["--params-file", str(params_file)] if params_file else [])
    cli += ["-p", "worker:=thread"] + (extra_args or [])
    return create_stage_node(name, context=context, cli_args=cli)


def params_file_sections() -> list[tuple[str, str]]:
    from gen3d_ros.pipeline.registry import node_names

    cases = [(f"{name}.yaml", name) for name in node_names()]
    cases += [("gen3d.yaml", key.rsplit("/", 1)[-1]) for key in yaml.safe_load((CONFIG / "gen3d.yaml").read_text())]
    return cases


@pytest.mark.parametrize("filename,node_name", params_file_sections())
def test_params_file_keys_equal_the_declared_parameters(ros, filename, node_name):
    path = CONFIG / filename
    in_file = load_node_params(path, node_name)
    node = make_node(ros, node_name, params_file=path)
    try:
        declared = set(node._parameters) - BUILTIN
        assert set(node.list_parameters([], 0).names) - BUILTIN == declared
        assert set(in_file) == declared, (f"{filename} lacks {sorted(declared - set(in_file))}, "
                                          f"has undeclared {sorted(set(in_file) - declared)}")
        for name, value in in_file.items():  # and the node took the file's values
            if name == "worker":
                continue  # overridden by make_node
            assert node.get_parameter(name).value == pytest.approx(value) if isinstance(value, float) \
                else node.get_parameter(name).value == value
    finally:
        node.destroy_node()


def test_all_in_one_params_file_has_a_section_per_registered_node():
    from gen3d_ros.pipeline.registry import node_names

    sections = yaml.safe_load((CONFIG / "gen3d.yaml").read_text())
    assert set(sections) == {f"/**/{name}" for name in node_names()}  # any namespace
    for name in node_names():
        assert (CONFIG / f"{name}.yaml").is_file()


def test_node_topics_and_host_settings_come_from_the_registry():
    """The nodes' topic defaults are the registry's (bag mode reads the same), their other host parameters are the
    registry's NODE_SETTINGS (which bag mode ignores)."""
    from gen3d_ros.pipeline.registry import NODE_SETTINGS, STAGES, TF_SETTINGS, topic_param_name
    from gen3d_ros.ros.params import declared_params

    for entry in STAGES:
        host = {p.name: p.spec.default for p in declared_params(entry) if p.group == "host"}
        topics = {topic_param_name(name): topic for name, topic in entry.topics.items()}
        settings = NODE_SETTINGS + (TF_SETTINGS if entry.tf_input else ())  # bag mode ignores both
        assert host == {**topics, **{k: host[k] for k in settings}}, entry.node
        assert host["worker"] == entry.worker


def test_descriptors_carry_description_with_unit_range_and_read_only(ros):
    from rcl_interfaces.msg import ParameterType

    node = make_node(ros)
    try:
        voxel, depth, method, topic, qos = node.describe_parameters(
            ["voxel_size", "poisson_depth", "method", "cloud_topic", "input_qos"])
        assert voxel.type == ParameterType.PARAMETER_DOUBLE and "[m]" in voxel.description
        assert (voxel.floating_point_range[0].from_value, voxel.floating_point_range[0].to_value) == (0.02, 2.0)
        assert not voxel.read_only
        assert depth.type == ParameterType.PARAMETER_INTEGER
        assert (depth.integer_range[0].from_value, depth.integer_range[0].to_value) == (5, 12)
        assert "classical-poisson" in method.additional_constraints
        assert topic.read_only and topic.type == ParameterType.PARAMETER_STRING
        assert qos.read_only and "sensor_data" in qos.additional_constraints
    finally:
        node.destroy_node()


@pytest.mark.parametrize("name,value,reason", [
    ("voxel_size", 5.0, "out of range"),            # descriptor range, checked by rclpy
    ("poisson_depth", 2, "out of range"),
    ("z_min", 30.0, "z_min=30.0 must be below z_max"),  # cross-field check of CompletionConfig
    ("method", "marching-nowhere", "choose one of"),   # choices of CompletionConfig
    ("voxel_size", "big", "Wrong parameter type"),
    ("cloud_topic", "/elsewhere", "read-only"),
    ("input_qos", "reliable", "read-only"),
])
def test_invalid_runtime_parameter_change_is_rejected_with_a_reason(ros, name, value, reason):
    from rclpy.parameter import Parameter

    node = make_node(ros)
    try:
        config, stage = node.config, node.stage
        before = node.get_parameter(name).value
        (result,) = node.set_parameters([Parameter(name, value=value)])
        assert not result.successful
        assert reason in result.reason, result.reason
        assert node.get_parameter(name).value == before
        assert node.config is config and node.stage is stage
    finally:
        node.destroy_node()


def test_valid_runtime_change_rebuilds_the_stage_and_keeps_the_counters(ros):
    from rclpy.parameter import Parameter

    node = make_node(ros)
    try:
        node.stage.stats.processed = 7
        results = node.set_parameters([Parameter("voxel_size", value=0.35), Parameter("method",
                                                                                    value="classical-ballpivot")])
        assert all(r.successful for r in results), results
        assert node.stage.processor.config.voxel_size == 0.35
        assert node.stage.processor.config.method == "classical-ballpivot"
        assert node.stage.stats.processed == 7
        # an atomic change is validated as a whole: z_min above the *new* z_max is rejected
        result = node.set_parameters_atomically([Parameter("z_max", value=1.0), Parameter("z_min", value=2.0)])
        assert not result.successful and "z_min" in result.reason
        assert node.config.z_max == 20.0
    finally:
        node.destroy_node()


def test_integer_literal_for_a_double_parameter_is_taken_as_a_double(ros, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("completion_node:\n  ros__parameters:\n    voxel_size: 1\n    roi_radius: 30\n")
    node = make_node(ros, params_file=path)
    try:
        assert node.config.voxel_size == 1.0 and isinstance(node.config.voxel_size, float)
        assert node.get_parameter("roi_radius").value == 30.0
    finally:
        node.destroy_node()


def test_inconsistent_params_file_stops_the_node_naming_the_field(ros, tmp_path):
    from rclpy.exceptions import InvalidParameterValueException

    path = tmp_path / "p.yaml"
    path.write_text("completion_node:\n  ros__parameters:\n    z_min: 26.0\n")
    with pytest.raises(ValueError, match="z_min=26.0 must be below z_max"):
        make_node(ros, params_file=path)
    with pytest.raises(InvalidParameterValueException):
        make_node(ros, extra_args=["-p", "voxel_size:=9.0"])


def test_nested_config_fields_are_section_parameters_with_their_metadata(ros, tmp_path):
    """RobotPoseStageConfig.estimator (a PoseEstimatorConfig): estimator.<field> parameters, given nested or dotted
    in a params file or on the command line, with the field's unit and range; a runtime change rebuilds the stage
    and the estimator's own checks reject a bad one; device/backend/seed are the stage's, shared."""
    from rcl_interfaces.msg import ParameterType
    from rclpy.parameter import Parameter

    path = tmp_path / "p.yaml"
    path.write_text("robot_pose_node:\n  ros__parameters:\n    estimator:\n      search_size: 8\n"
                    "    estimator.iterations: [5, 6]\n    seed: 3\n")
    node = make_node(ros, "robot_pose_node", params_file=path, extra_args=["-p", "estimator.keep:=[2, 1]"])
    try:
        estimator = node.config.estimator
        assert (estimator.search_size, estimator.iterations, estimator.keep, estimator.seed) == \
            (8, (5, 6), (2, 1), 3)
        assert not {"estimator.device", "estimator.backend", "estimator.seed"} & set(node._parameters)
        (size,) = node.describe_parameters(["estimator.search_size"])
        assert size.type == ParameterType.PARAMETER_INTEGER and "[px]" in size.description
        assert size.integer_range[0].from_value == 4
        (result,) = node.set_parameters([Parameter("estimator.search_size", value=16)])
        assert result.successful, result.reason
        assert node.stage.config.estimator.search_size == 16 and node.config.estimator.iterations == (5, 6)
        (result,) = node.set_parameters([Parameter("estimator.keep", value=[1, 2])])
        assert not result.successful and "keep must be" in result.reason
        assert list(node.get_parameter("estimator.keep").value) == [2, 1]
    finally:
        node.destroy_node()


@pytest.mark.parametrize("entry_point", [["gen3d_ros.ros.completion_node"],
                                         ["gen3d_ros.ros.node_main", "completion_node"]], ids=["named", "stage_node"])
def test_node_process_exits_with_code_2_and_the_reason_on_invalid_parameters(children, entry_point):
    require_rclpy()
    child = children("completion_node", ["-m", *entry_point, "--ros-args", "-p", "z_min:=29.0"])
    child.proc.wait(30)
    assert child.proc.returncode == 2, child.output()
    assert "z_min=29.0 must be below z_max" in child.stderr() and "Traceback" not in child.stderr()


def test_stage_node_entry_point_names_the_known_nodes_for_an_unknown_one(capsys):
    require_rclpy()
    from gen3d_ros.ros.node_main import main

    assert main(["stage_node", "teleport_node", "--ros-args"]) == 2
    assert "unknown node 'teleport_node'; known nodes: ['completion_node'" in capsys.readouterr().err
    assert main(["stage_node", "--ros-args"]) == 2
    assert "usage: stage_node NODE" in capsys.readouterr().err


def test_params_yaml_scalars_read_back_with_their_types():
    from gen3d_ros.ros.params import yaml_scalar

    for value in [0.2, 1.0, 1e-5, 2.5e10, -3.0, 7, True, "classical-poisson", "with \"quotes\"", [1.0, 2.0]]:
        text = yaml_scalar(value)
        back = yaml.safe_load(text)
        assert back == value and type(back) is type(value), (value, text)
    with pytest.raises(ValueError):
        yaml_scalar(math.nan)
