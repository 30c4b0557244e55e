"""ROS parameters of the stage nodes, generated from the config dataclasses
(:func:`gen3d_ros.config.flat_param_specs`).

A node has two kinds of parameters:

- **config parameters**: one per field of the stage's config dataclass (``CompletionConfig.voxel_size`` ->
  ``voxel_size``), and one per field of a nested config (a :func:`gen3d_ros.config.section`:
  ``RobotPoseStageConfig.estimator.search_size`` -> ``estimator.search_size``; in a params YAML nested or dotted),
  with a descriptor carrying the description and unit, and a ``FloatingPointRange`` / ``IntegerRange`` from the
  field's ``lo``/``hi``. They may change at runtime: the node rebuilds its stage
  from them and rejects a change that the dataclass does not validate, or that names a file (checkpoint,
  URDF) that does not exist or is not of the right kind (``Stage.check_config``).
- **host parameters** (:func:`host_param_specs`): topics, input QoS, input timeout, worker kind. They are
  read-only (the endpoints are created once), so a runtime change is rejected by rclpy with "Trying to set a
  read-only parameter".

Topics: for every logical input and output ``<name>`` of the stage, a parameter ``<name>_topic`` whose default is
the stage's entry in :data:`gen3d_ros.pipeline.registry.STAGES` (the defaults bag mode uses too). Defaults are
relative (``points``) or private (``~/mesh``) ROS names, resolved by rclpy, so a namespace (``__ns:=/car1``) and
remapping (``points:=/velodyne_points``) move them like any ROS node's topics; a parameter value may be absolute.

:func:`render_params_yaml` writes the ``config/*.yaml`` params files from the same specs, so the files, the
declared parameters and the dataclass cannot drift apart (``tests/ros/test_params.py`` checks it).
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from gen3d_ros.config import ParamSpec, flat_param_specs, from_mapping
from gen3d_ros.pipeline.registry import WORKERS, StageEntry, topic_param_name

INPUT_QOS_CHOICES = ("auto", "reliable", "sensor_data")
RELIABLE, BEST_EFFORT = "reliable", "best_effort"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class NodeParam:
    """A parameter a node declares: its :class:`ParamSpec` and whether it may change at runtime."""

    spec: ParamSpec
    read_only: bool = False
    group: str = "config"  # "config" (a field of the stage config) or "host" (topics, QoS)

    @property
    def name(self) -> str:
        return self.spec.name


def host_param_specs(inputs: Iterable[str], outputs: Iterable[str], topics: Mapping[str, str],
                     worker: str = "thread") -> list[ParamSpec]:
    """Host parameters of a stage node: ``<in>_topic``…, ``<out>_topic``…, ``input_qos``, ``input_depth``,
    ``input_timeout``, ``worker``.

    ``topics``: default topic of every logical input and output name; ``worker``: default of ``worker``.
    """
    specs = []
    for name in inputs:
        specs.append(ParamSpec(topic_param_name(name), topics[name], str, f"topic of input '{name}'", "",
                               None, None, None))
    for name in outputs:
        specs.append(ParamSpec(topic_param_name(name), topics[name], str,
                               f"topic of output '{name}' (reliable, depth 1)", "", None, None, None))
    specs.append(ParamSpec("input_qos", "auto", str,
                           "QoS of the input subscriptions: 'auto' (reliable while every publisher of the topic is "
                           "reliable, best effort as soon as one is best effort; re-chosen when publishers come "
                           "and go), 'reliable', or 'sensor_data' (best effort). Over Fast DDS, best-effort "
                           "messages above ~512 KiB are mostly lost (bench/results/qos_transport.json)",
                           "", None, None, INPUT_QOS_CHOICES))
    specs.append(ParamSpec("input_depth", 10, int, "history depth of the input subscriptions; the worker keeps "
                           "only the latest message anyway, but a reliable subscription needs at least the "
                           "publisher's depth (10 for rclcpp::QoS(10)): over Fast DDS a smaller one gets every "
                           "large message for ~1000 messages, then only a fraction (bench/results/"
                           "qos_transport.json)", "messages", 1, 1000, None))
    specs.append(ParamSpec("input_timeout", 3.0, float, "/diagnostics warns when a topic has publishers but no "
                           "message arrived for this long (QoS mismatch, messages too large for best effort); "
                           "0: never", "s", 0.0, 3600.0, None))
    specs.append(ParamSpec("worker", worker, str,
                           "where the stage runs: 'process' (a child process; callbacks, diagnostics and parameter "
                           "services never wait for native code holding the GIL, and a crash of the stage is "
                           "survived) or 'thread' (a thread of the node's process)", "", None, None, WORKERS))
    return specs


def tf_param_specs(tf_input: str) -> list[ParamSpec]:
    """TF parameters of a node whose stage input ``tf_input`` is placed by TF (:data:`registry.TF_SETTINGS`)."""
    return [
        ParamSpec("base_frame", "", str, f"robot base frame (z up): the '{tf_input}' frame's transform into it at "
                  "the message's stamp tells the stage how the sensor is mounted (gravity alignment); empty: "
                  "not looked up", "", None, None, None),
        ParamSpec("target_frame", "", str, "frame of the outputs (e.g. map, odom): they are transformed into it at "
                  f"the '{tf_input}' message's stamp; empty: the input's own frame", "", None, None, None),
        ParamSpec("transform_timeout", 0.2, float, f"how long to wait for a transform of a '{tf_input}' message "
                  "that is not in TF yet; then the message is dropped (counted as tf_dropped in /diagnostics)",
                  "s", 0.0, 60.0, None),
    ]


def subscription_reliability(input_qos: str, best_effort_publishers: int) -> str:
    """Reliability of an input subscription (:data:`RELIABLE` or :data:`BEST_EFFORT`) for the ``input_qos``
    parameter, given how many publishers of the topic offer best effort.

    ``auto`` is reliable unless a best-effort publisher exists: a reliable subscription gets every message of
    a reliable publisher, whatever its size (a best-effort one loses most messages above ~512 KiB over Fast
    DDS), but it does not match a best-effort publisher at all, so then best effort is the only way to get
    anything.
    """
    if input_qos == "reliable":
        return RELIABLE
    if input_qos == "sensor_data":
        return BEST_EFFORT
    if input_qos == "auto":
        return BEST_EFFORT if best_effort_publishers > 0 else RELIABLE
    raise ValueError(f"input_qos {input_qos!r} is not one of {', '.join(INPUT_QOS_CHOICES)}")


def node_params(config_cls: type, inputs: Iterable[str], outputs: Iterable[str],
                topics: Mapping[str, str], worker: str = "thread", tf_input: str = "") -> list[NodeParam]:
    """Every parameter of a stage node, config fields first (sections flattened into ``section.field``), in
    declaration order.

    Raises ValueError if a config field has the name of a host parameter.
    """
    config = [NodeParam(spec, read_only=False, group="config") for spec in flat_param_specs(config_cls)]
    host = [NodeParam(spec, read_only=True, group="host")
            for spec in host_param_specs(list(inputs), list(outputs), topics, worker)
            + (tf_param_specs(tf_input) if tf_input else [])]
    clash = {p.name for p in config} & {p.name for p in host}
    if clash:
        raise ValueError(f"{config_cls.__name__} field(s) {sorted(clash)} clash with host parameters of the node; "
                         "rename the field(s)")
    return config + host


def declared_params(entry: StageEntry) -> list[NodeParam]:
    """Every parameter (without rclpy's own) the node of a registry entry declares, in declaration order (imports
    the stage's config class)."""
    return node_params(entry.config_class(), entry.inputs, entry.outputs, entry.topics, entry.worker,
                       entry.tf_input)


def config_from_values(config_cls: type, values: Mapping[str, Any]) -> Any:
    """Build and validate ``config_cls`` from parameter values (``section.field`` names for nested configs); keys
    that are not parameters of the config are ignored.

    Raises ValueError (range, choices, cross-field checks such as ``z_min < z_max``) naming the field.
    """
    names = {spec.name for spec in flat_param_specs(config_cls)}
    try:
        return from_mapping(config_cls, {k: v for k, v in values.items() if k in names})
    except TypeError as exc:  # e.g. a dataclass __init__ complaining about a value it cannot use
        raise ValueError(str(exc)) from exc


# --- rclpy descriptors ---------------------------------------------------------------------------------------


def parameter_type(spec: ParamSpec) -> Any:
    """The ``rcl_interfaces/ParameterType`` value of a spec (bool before int: bool is an int in Python)."""
    from rcl_interfaces.msg import ParameterType

    default = spec.default
    if isinstance(default, bool):
        return ParameterType.PARAMETER_BOOL
    if isinstance(default, int):
        return ParameterType.PARAMETER_INTEGER
    if isinstance(default, float):
        return ParameterType.PARAMETER_DOUBLE
    if isinstance(default, str):
        return ParameterType.PARAMETER_STRING
    if isinstance(default, (list, tuple)):
        kinds = {type(v) for v in default}
        if kinds <= {bool} and kinds:
            return ParameterType.PARAMETER_BOOL_ARRAY
        if kinds <= {int} and kinds:
            return ParameterType.PARAMETER_INTEGER_ARRAY
        if kinds <= {float, int} and kinds:
            return ParameterType.PARAMETER_DOUBLE_ARRAY
        if kinds <= {str} and kinds:
            return ParameterType.PARAMETER_STRING_ARRAY
        raise TypeError(f"parameter {spec.name!r}: cannot infer a ROS array type from the default {default!r} "
                        "(an empty or mixed list); give the config field a non-empty default")
    raise TypeError(f"parameter {spec.name!r} has default {default!r} of type {type(default).__name__}, which is "
                    "not a ROS parameter type (bool, int, float, str or a list of one of them)")


def descriptor_for(param: NodeParam) -> Any:
    """``rcl_interfaces/ParameterDescriptor`` of a parameter: type, description with unit, range, read-only."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    spec = param.spec
    kind = parameter_type(spec)
    descriptor = ParameterDescriptor(name=spec.name, type=kind, description=spec.description,
                                     read_only=param.read_only)
    constraints = []
    if spec.lo is not None or spec.hi is not None:
        if kind == ParameterType.PARAMETER_INTEGER:
            lo = int(spec.lo) if spec.lo is not None else INT64_MIN
            hi = int(spec.hi) if spec.hi is not None else INT64_MAX
            descriptor.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=0)]
        elif kind == ParameterType.PARAMETER_DOUBLE:
            lo = float(spec.lo) if spec.lo is not None else -math.inf
            hi = float(spec.hi) if spec.hi is not None else math.inf
            descriptor.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
        else:
            constraints.append(range_text(spec))
    if spec.choices:
        constraints.append("one of: " + ", ".join(spec.choices))
    if param.group == "config":
        constraints.append("may change at runtime (the stage is rebuilt; an invalid value is rejected)")
    descriptor.additional_constraints = "; ".join(constraints)
    return descriptor


def coerce_value(spec: ParamSpec, value: Any) -> Any:
    """A parameter value as the config field wants it (rclpy gives lists as array.array, ints for doubles)."""
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(spec.default, (list, tuple)) and value is not None and not isinstance(value, (list, tuple)):
        return list(value)
    return value


# --- params files ----------------------------------------------------------------------------------------------


def yaml_scalar(value: Any) -> str:
    """A YAML literal that PyYAML and rcl's params parser both read back with the same type.

    Doubles always carry a dot (``1.0``, ``1.0e-05``): an integer literal for a double parameter makes rclpy
    refuse the whole params file, and PyYAML reads ``1e-05`` (no dot) as a string. Infinities are ``.inf`` /
    ``-.inf`` (YAML 1.1, read by both); NaN is refused.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        if math.isnan(value):
            raise ValueError(f"cannot write non-finite double {value!r} to a params file")
        text = repr(value)
        if "e" in text or "E" in text:
            mantissa, exponent = text.lower().split("e")
            if "." not in mantissa:
                mantissa += ".0"
            text = f"{mantissa}e{exponent}"
        elif "." not in text:
            text += ".0"
        return text
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to a params file")


def range_text(spec: ParamSpec) -> str:
    """``range [lo, hi]``, ``>= lo`` or ``<= hi`` of a spec with a bound."""
    if spec.lo is not None and spec.hi is not None:
        return f"range [{spec.lo}, {spec.hi}]"
    return f">= {spec.lo}" if spec.lo is not None else f"<= {spec.hi}"


def param_comment(param: NodeParam) -> str:
    """One-line comment for a params file: description with unit, range or choices, read-only."""
    spec = param.spec
    parts = [spec.description]
    if spec.lo is not None or spec.hi is not None:
        parts.append(range_text(spec))
    if spec.choices:
        parts.append("one of " + ", ".join(spec.choices))
    if param.read_only:
        parts.append("read-only")
    return "; ".join(parts)


def render_params_yaml(sections: Mapping[str, list[NodeParam]], *, header: str = "",
                       values: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A ROS 2 params file (``/**/node: ros__parameters: …``: any namespace) for each node of ``sections``, with
    comments; the
    parameters of a nested config (``estimator.search_size``) are written nested (``estimator: search_size:``).

    ``values``: per node, values (by parameter name) replacing the defaults (e.g. a tuned YAML); defaults
    otherwise.
    """
    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()] if header else []
    for node_name, params in sections.items():
        if lines:
            lines.append("")
        # /**/: the section applies in any namespace (__ns:=/car1), as a bare name would only at the root
        lines += [f"/**/{node_name}:", "  ros__parameters:"]
        lines += _param_lines(params, (values or {}).get(node_name, {}))
    return "\n".join(lines) + "\n"


def _param_lines(params: list[NodeParam], overrides: Mapping[str, Any]) -> list[str]:
    """The lines of one node's ``ros__parameters``: group titles, then per parameter its comment and value,
    dotted names under nested keys (sections are contiguous in ``params``)."""
    lines: list[str] = []
    group, open_path = None, []
    for param in params:
        if param.group != group:
            group, open_path = param.group, []
            title = ("stage configuration (may change at runtime)" if group == "config"
                     else "topics and QoS (read-only)")
            lines.append(f"    # --- {title}")
        *path, leaf = param.name.split(".")
        common = 0
        while common < min(len(path), len(open_path)) and path[common] == open_path[common]:
            common += 1
        lines += [f"    {'  ' * depth}{path[depth]}:" for depth in range(common, len(path))]
        open_path = path
        indent = "    " + "  " * len(path)
        lines += [f"{indent}# {line}" for line in textwrap.wrap(param_comment(param), 112 - len(indent))]
        lines.append(f"{indent}{leaf}: {yaml_scalar(overrides.get(param.name, param.spec.default))}")
    return lines


# --- where the params files are ------------------------------------------------------------------------------


def source_config_dir() -> Path:
    """``config/`` of the source checkout this package was imported from (may not exist in an install)."""
    return Path(__file__).resolve().parents[2] / "config"


def share_config_dir() -> Path | None:
    """``share/gen3d_ros/config`` of an installed package (ament index), or None (not installed, no index)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("gen3d_ros")) / "config"
    except (ImportError, LookupError, OSError, ValueError):  # PackageNotFoundError is a KeyError; OSError: no
        return None  # AMENT_PREFIX_PATH


def default_params_file(filename: str) -> Path:
    """Path of ``config/<filename>``: the source checkout first (pip/editable), else the package's share dir.

    Raises FileNotFoundError listing the places searched.
    """
    looked = []
    for directory in (source_config_dir(), share_config_dir()):
        if directory is None:
            continue
        path = directory / filename
        if path.is_file():
            return path
        looked.append(str(path))
    raise FileNotFoundError(f"params file {filename!r} not found; looked in {looked}; pass one with --params-file")
