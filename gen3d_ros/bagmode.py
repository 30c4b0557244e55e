"""Bag mode: run stages over a rosbag2 recording and write their outputs as a new rosbag2. No middleware.

    report = run_bag("drive/", "completed/", stages=[CompletionStage()])
    print(report.format())

Each message on a stage's input topic is fed to :meth:`Stage.process` in log-time order (all topics merged);
every output message is written on its configured topic with the input message's log time (or its header
stamp, ``output_time="header"``), so rviz2 / Foxglove replay inputs and results in step. The input bag is
only read (see :mod:`gen3d_ros.io.rosbag2`); the output is written atomically.

Topics: ``topic_map`` maps ``(stage name, logical name)`` to a topic, for inputs and outputs alike; missing
entries take the stage's defaults in :data:`gen3d_ros.pipeline.registry.STAGES`, the same as the live nodes'
(:func:`default_topic_map`). An input topic the bag lacks is auto-detected when the bag has exactly one topic of
the input's type (logged), so recordings of a driver's own topics (``/points``, ``/camera/image_raw``) work;
otherwise :class:`BagModeError` lists the candidates.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from gen3d_ros.geometry.tf_buffer import TransformBuffer, TransformMissing
from gen3d_ros.io.messages import rosbags_factory, stamp_to_nanoseconds
from gen3d_ros.io.transforms import add_tf_message
from gen3d_ros.io.rosbag2 import BagError, BagReader, BagWriter, TopicInfo
from gen3d_ros.outputs import overlaps
from gen3d_ros.io.typestore import get_gen3d_typestore
from gen3d_ros.pipeline.base import Stage
from gen3d_ros.pipeline.registry import (NODE_SETTINGS, STAGES, TF_SETTINGS, StageEntry, resolve_topic,
                                         stage_entry, topic_param_name)

log = logging.getLogger("gen3d_ros.bagmode")
#: ``observe(topic, msgtype, msg, time_ns)``: sees the messages of a bag run (see :func:`run_bag`)
Observer = Callable[[str, str, Any, int], None]

#: Bags with at least this many messages to read get a progress bar (when ``progress`` is on).
PROGRESS_MIN_MESSAGES = 20

TopicKey = tuple[str, str]  # (stage name, logical input or output name)


class BagModeError(RuntimeError):
    """The run cannot start as configured (topic missing or ambiguous, type mismatch, output = input…)."""


def default_topic_map(stages: Iterable[Stage]) -> dict[TopicKey, str]:
    """Default topic of every input and output of ``stages``: their entries' in the stage registry (the live
    nodes' defaults), resolved as for the node at the root namespace (``points`` -> ``/points``, ``~/mesh`` ->
    ``/completion_node/mesh``). A stage that is not in the registry has none: BagModeError unless ``topic_map``
    names them (see :func:`run_bag`)."""
    topics: dict[TopicKey, str] = {}
    for stage in stages:
        try:
            entry = stage_entry(stage.name)
        except KeyError:
            continue
        topics.update({(stage.name, name): resolve_topic(entry.topics[name], entry.node)
                       for name in [*stage.inputs, *stage.outputs] if name in entry.topics})
    return topics


def topics_from_params(stage: Stage, params: Mapping[str, Any]) -> dict[TopicKey, str]:
    """Topic overrides from a node's parameters: ``<logical>_topic`` keys (``cloud_topic: /velodyne_points``),
    relative and private names resolved as for the stage's node at the root namespace."""
    out = {}
    node = _registered(stage.name).node if stage.name in {e.name for e in STAGES} else stage.name
    for name in [*stage.inputs, *stage.outputs]:
        value = params.get(topic_param_name(name))
        if value:
            out[(stage.name, name)] = resolve_topic(str(value), node)
    return out


#: Parameters rclpy declares on every node; bag mode ignores them like the nodes' host settings.
RCLPY_PARAMS = frozenset({"use_sim_time", "start_type_description_service"})


def node_host_params(entry: StageEntry) -> set[str]:
    """Names of the parameters of a stage's node that are not its config: ``<logical>_topic`` of every input and
    output, the host settings (QoS, timeout, worker; :data:`~gen3d_ros.pipeline.registry.NODE_SETTINGS`) and
    rclpy's own, so that a node's params file works in bag mode as it is."""
    return {topic_param_name(name) for name in entry.topics} | set(NODE_SETTINGS) | set(TF_SETTINGS) | RCLPY_PARAMS


def _registered(stage_name: str) -> StageEntry:
    try:
        return stage_entry(stage_name)
    except KeyError:
        raise BagModeError(f"unknown stage {stage_name!r}; bag mode runs {[e.name for e in STAGES]}") from None


def stage_from_params(stage_name: str, params: Mapping[str, Any] | None = None) -> tuple[Stage, dict[TopicKey, str]]:
    """A stage of the registry and its topic overrides from its node's parameters (a params YAML section plus
    ``--set`` overrides; nested configs as ``section.field`` keys). Config keys are validated by the stage's
    config dataclass and its files checked by ``Stage.check_config`` (the config's ``check_resources()``); host
    parameters of the node (QoS, worker) are ignored; any other key is an error. The stage loads its model here
    (errors say why)."""
    from gen3d_ros.config import from_mapping

    entry = _registered(stage_name)
    stage_cls, config_cls = entry.stage_class(), entry.config_class()
    host = node_host_params(entry)
    config = from_mapping(config_cls, {k: v for k, v in (params or {}).items() if k not in host})
    stage_cls.check_config(config)
    stage = stage_cls(config)
    return stage, topics_from_params(stage, dict(params or {}))


def stages_for_topics(topic_types: Mapping[str, str]) -> list[str]:
    """The stages a bag with ``{topic: type}`` can feed, in registry order: those with a topic of each of their
    entry's ``auto_types`` and, when the entry names ``auto_any_input`` inputs, one of them on its default topic
    (``completion``: a PointCloud2; ``robot_pose``: an Image and a CameraInfo; ``action``: a JointState and a
    goal on ``/goal_image`` or ``/goal_keypoints``)."""
    types = set(topic_types.values())
    chosen = []
    for entry in STAGES:
        if not entry.auto_types or not set(entry.auto_types) <= types:
            continue
        if entry.auto_any_input and not any(resolve_topic(entry.inputs[name], entry.node) in topic_types
                                            for name in entry.auto_any_input):
            continue
        chosen.append(entry.name)
    return chosen


@dataclass
class StageReport:
    """What one stage did in a run. Latencies: wall time of :meth:`Stage.process` on messages it processed."""

    name: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    processed: int = 0
    rejected: int = 0  # includes messages on its input topics that could not be deserialised
    failed: int = 0
    undecodable: int = 0
    mean_latency_ms: float = 0.0
    max_latency_ms: float = 0.0
    last_error: str = ""
    tf_dropped: int = 0  # tf_input messages without the transforms of ``frames`` at their stamp


@dataclass
class BagReport:
    """Summary of :func:`run_bag`. ``messages_in``: messages read per stage-input topic; ``messages_out``:
    messages written per output topic (results only); ``copied``: input messages copied per topic."""

    input_path: str
    output_path: str
    storage: str
    messages_in: dict[str, int] = field(default_factory=dict)
    messages_out: dict[str, int] = field(default_factory=dict)
    copied: dict[str, int] = field(default_factory=dict)
    write_errors: int = 0
    stages: dict[str, StageReport] = field(default_factory=dict)
    wall_time_s: float = 0.0
    limit_reached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A few human-readable lines (the CLI prints them)."""
        lines = [f"{self.input_path} -> {self.output_path} ({self.storage}) in {self.wall_time_s:.2f} s"
                 + (" (stopped at --limit)" if self.limit_reached else "")]
        for topic, n in self.messages_in.items():
            lines.append(f"  in   {topic:<40} {n:6d}")
        for topic, n in self.messages_out.items():
            lines.append(f"  out  {topic:<40} {n:6d}")
        for topic, n in self.copied.items():
            lines.append(f"  copy {topic:<40} {n:6d}")
        for s in self.stages.values():
            lines.append(f"  stage {s.name}: processed {s.processed}, rejected {s.rejected}, failed {s.failed}, "
                         f"latency mean {s.mean_latency_ms:.1f} ms, max {s.max_latency_ms:.1f} ms")
            if s.tf_dropped:
                lines.append(f"    dropped {s.tf_dropped} message(s) without their transform in the bag's TF")
            if s.last_error:
                lines.append(f"    last error: {s.last_error}")
        if self.write_errors:
            lines.append(f"  {self.write_errors} output message(s) could not be written (see log)")
        return "\n".join(lines)


def _resolve_input_topic(bag: BagReader, stage: Stage, name: str, wanted: str, explicit: bool,
                         autodetect: bool) -> str:
    msgtype = stage.inputs[name]
    info = bag.topics.get(wanted)
    if info is not None:
        if info.msgtype != msgtype:
            raise BagModeError(f"topic {wanted} in {bag.path} carries {info.msgtype}, but stage {stage.name!r} input "
                               f"{name!r} needs {msgtype}")
        return wanted
    if name in stage.optional_inputs:
        # Optional inputs are never guessed: the bag's only topic of that type is usually another input's (a goal
        # image topic would grab the camera stream).
        log.info("bag %s has no %s: stage %r runs without its optional input %r", bag.path, wanted, stage.name, name)
        return ""
    candidates = bag.topics_of_type(msgtype)
    if not autodetect:
        raise BagModeError(f"bag {bag.path} has no topic {wanted} for stage {stage.name!r} input {name!r}; its "
                           f"{msgtype} topics: {candidates}")
    if len(candidates) == 1:
        log.info("bag %s has no %s; using %s, its only %s topic, as %s input %r", bag.path, wanted, candidates[0],
                 msgtype, stage.name, name)
        return candidates[0]
    hint = "" if explicit else " (the default)"
    if not candidates:
        raise BagModeError(f"bag {bag.path} has no {msgtype} topic for stage {stage.name!r} input {name!r} "
                           f"(looked for {wanted}{hint}); topics: {sorted(bag.topics)}")
    raise BagModeError(f"bag {bag.path} has no topic {wanted}{hint} and {len(candidates)} {msgtype} topics "
                       f"{candidates}; choose one (--input-topic)")


def _copy_definition(info: TopicInfo) -> tuple[str | None, str | None] | None:
    """``(msgdef, rihs01)`` to declare a copied topic with; ``(None, None)`` = from our typestore; ``None`` when
    the type is unknown and the bag stores no definition (the topic cannot be copied faithfully)."""
    store = get_gen3d_typestore()
    if info.msgtype in store.types and (not info.digest or info.digest == store.hash_rihs01(info.msgtype)):
        return None, None
    if info.msgdef:
        if info.digest.startswith("RIHS01_"):
            return info.msgdef, info.digest
        from rosbags.interfaces import MessageDefinitionFormat
        from rosbags.typesys import Stores, get_typestore

        from gen3d_ros.io.rosbag2 import types_from_definition

        fmt = MessageDefinitionFormat.IDL if info.msgdef_format == "ros2idl" else MessageDefinitionFormat.MSG
        try:
            own = get_typestore(Stores.EMPTY)
            own.register(types_from_definition(info.msgtype, fmt, info.msgdef))
            return info.msgdef, own.hash_rihs01(info.msgtype)
        except Exception:  # noqa: BLE001
            return None
    if info.msgtype in store.types:
        return None, None
    return None


def run_bag(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    stages: list[Stage],
    topic_map: Mapping[tuple[Any, str], str] | None = None,
    copy_inputs: bool = False,
    force: bool = False,
    progress: bool = True,
    limit: int | None = None,
    storage: str | None = None,
    output_time: str = "log",
    autodetect: bool = True,
    observe: Observer | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    remap: Mapping[str, str] | None = None,
    frames: Mapping[str, Mapping[str, str]] | None = None,
) -> BagReport:
    """Run ``stages`` over the bag at ``input_path``; write their outputs (and, with ``copy_inputs``, every
    topic of the input bag) to a new bag at ``output_path``.

    Args:
        stages: stages with distinct names; each input topic feeds every stage input mapped to it.
        topic_map: ``(stage or stage name, logical name) -> topic`` for inputs and outputs; the rest default.
        copy_inputs: also copy all input topics (raw bytes, same definitions, hashes and QoS) except those that
            an output is written to.
        force: replace an existing output (atomically); without it an existing output is an error.
        progress: show a tqdm bar on stderr for bags of :data:`PROGRESS_MIN_MESSAGES` messages or more.
        limit: stop after this many messages were fed to stages (copied topics are cut at the same time).
        storage: ``"mcap"`` (default) or ``"sqlite3"``; an output named ``*.mcap``/``*.db3`` implies it.
        output_time: ``"log"``: outputs get the input message's log time; ``"header"``: its ``header.stamp``
            (the log time when the input has no header or a zero stamp).
        autodetect: when an input topic is absent from the bag, use the bag's only topic of the input's type
            (logged); off: an absent input topic is an error.
        observe: ``observe(topic, msgtype, msg, time_ns)`` for every decoded input message a stage gets and every
            output written (``gen3d bag --serve``'s live view, ``--meshes``); it must not raise.
        start_s, end_s: only messages logged in ``[start_s, end_s]`` (both included): seconds from the bag's
            first message, or absolute Unix time when at least :data:`ABSOLUTE_TIME_S`; None: no bound.
        remap: ``{OLD: NEW}`` topic renames applied to the stages' inputs and outputs after the defaults and
            ``topic_map`` (like a node's ``--ros-args -r OLD:=NEW``; relative names are taken at the root
            namespace); a rule that matches no topic is a BagModeError.
        frames: per stage ``{"base": frame, "target": frame}`` (the node's ``base_frame`` / ``target_frame``):
            the stage's ``tf_input`` messages get the transforms at their stamp from the bag's ``/tf`` +
            ``/tf_static`` (:func:`bag_transforms`), as the live node's (:attr:`Stage.transforms`); one whose
            transform is missing is dropped and counted (``StageReport.tf_dropped``).

    Raises:
        FileNotFoundError: no input bag. OutputExistsError: output exists without ``force``.
        BagModeError / BagError: the run cannot be set up; nothing is written.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    _check_run(input_path, output_path, stages, limit, output_time)
    given, topics = _final_topics(stages, topic_map, remap)
    start = time.perf_counter()
    with BagReader(input_path) as bag:
        window = _time_window(bag, start_s, end_s)
        routes = _resolve_routes(bag, stages, topics, given, autodetect)
        copy_topics = _topics_to_copy(bag, routes.out_types) if copy_inputs else []
        run = _BagRun(stages, routes, copy_topics, limit, output_time, observe,
                      BagReport(str(input_path), str(output_path), "",
                                messages_in={t: 0 for t in routes.consumers},
                                messages_out={t: 0 for t in routes.out_types}, copied={t: 0 for t in copy_topics}))
        run.tf = _bag_tf(bag, frames)
        with BagWriter(output_path, storage=storage, force=force) as out:
            run.report.storage = out.storage
            _declare_output_topics(out, bag, copy_topics, routes.out_types, _latched_topics(stages, routes))
            # an observer (gen3d bag --serve) also sees the bag's TF, which no stage may consume
            run.view_only = {name for name, info in bag.topics.items() if observe is not None
                             and info.msgtype == "tf2_msgs/msg/TFMessage" and name not in routes.consumers}
            read_topics = sorted(set(routes.consumers) | set(copy_topics) | run.view_only)
            total = sum(bag.topics[t].count for t in read_topics)
            bar = _progress_bar(total, enabled=progress, desc=f"bag {input_path.name}")
            try:
                run.feed(bag, out, read_topics, bar, window)
            finally:
                bar.close()
    run.report_stages()
    run.report.wall_time_s = time.perf_counter() - start
    return run.report


#: ``start_s`` / ``end_s`` of :func:`run_bag` at least this large are absolute Unix times (2001-09-09 onwards),
#: smaller ones seconds from the bag's first message
ABSOLUTE_TIME_S = 1e9


def _time_window(bag: BagReader, start_s: float | None, end_s: float | None) -> tuple[int | None, int | None]:
    """``(start_ns, stop_ns)`` (stop exclusive) of the messages logged in ``[start_s, end_s]``; BagModeError for
    an empty or inverted range."""
    def absolute_ns(value: float) -> int:
        return int(round(value * 1e9)) if value >= ABSOLUTE_TIME_S else bag.start_ns + int(round(value * 1e9))

    lo = None if start_s is None else absolute_ns(start_s)
    hi = None if end_s is None else absolute_ns(end_s) + 1
    if lo is not None and hi is not None and hi <= lo:
        raise BagModeError(f"the time range start {start_s} .. end {end_s} s is empty")
    if (lo is not None and lo > bag.end_ns) or (hi is not None and hi <= bag.start_ns):
        raise BagModeError(f"the time range start {start_s} .. end {end_s} s holds no message of {bag.path} (it "
                           f"spans {bag.duration_s:.3f} s from {bag.start_ns * 1e-9:.3f})")
    return lo, hi


def remapped(topics: Mapping[TopicKey, str], remap: Mapping[str, str]) -> dict[TopicKey, str]:
    """``topics`` with every topic equal to a rule's OLD renamed to its NEW (relative names resolved at the
    root namespace); BagModeError naming a rule that matches none of them."""
    rules = {resolve_topic(old, "bag"): resolve_topic(new, "bag") for old, new in remap.items()}
    unused = [old for old in rules if old not in topics.values()]
    if unused:
        raise BagModeError(f"remap rule(s) for {unused} match no topic of the stages run: "
                           f"{sorted(set(topics.values()))}")
    return {key: rules.get(topic, topic) for key, topic in topics.items()}


def _final_topics(stages: list[Stage], topic_map: Mapping[tuple[Any, str], str] | None,
                  remap: Mapping[str, str] | None) -> tuple[dict[TopicKey, str], dict[TopicKey, str]]:
    """``(given, topics)``: the topics the user named (``topic_map``, and those a ``remap`` rule renamed) and the
    topic of every input and output (defaults, ``topic_map``, then ``remap``)."""
    given = _given_topics(stages, topic_map)
    topics = _topics_of(stages, given)
    if remap:
        renamed = remapped(topics, remap)
        given = {**given, **{key: t for key, t in renamed.items() if t != topics[key]}}
        topics = renamed
    return given, topics


def _bag_tf(bag: BagReader, frames: Mapping[str, Mapping[str, str]] | None
            ) -> tuple[TransformBuffer, dict[str, dict[str, str]]] | None:
    """The bag's TF and the non-empty ``frames`` of stages that have a ``tf_input``; None when none is asked."""
    wanted = {name: {role: frame for role, frame in roles.items() if frame} for name, roles in (frames or {}).items()}
    wanted = {name: roles for name, roles in wanted.items() if roles and stage_tf_input(name)}
    return (bag_transforms(bag), wanted) if wanted else None


def stage_tf_input(stage_name: str) -> str:
    """The registry's ``tf_input`` of a stage ("" for none or a stage not in the registry)."""
    return next((e.tf_input for e in STAGES if e.name == stage_name), "")


def bag_transforms(bag: BagReader) -> TransformBuffer:
    """Every transform of the bag's ``/tf`` and ``/tf_static`` in one buffer (kept for the whole recording;
    malformed ones skipped and logged)."""
    buffer = TransformBuffer(cache_ns=bag.end_ns - bag.start_ns + 1_000_000_000)
    topics = [t for t in ("/tf", "/tf_static") if t in bag.topics]
    for message in bag.messages(topics):
        for reason in add_tf_message(buffer, message.msg, static=message.topic == "/tf_static"):
            log.warning("bag %s: skipped a transform %s", bag.path, reason)
    return buffer


def _check_run(input_path: Path, output_path: Path, stages: list[Stage], limit: int | None,
               output_time: str) -> None:
    """The arguments of :func:`run_bag` that can be checked before opening anything."""
    if output_time not in ("log", "header"):
        raise ValueError(f"output_time must be 'log' or 'header', got {output_time!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of messages, got {limit}")
    names = [s.name for s in stages]
    if not stages or len(set(names)) != len(names):
        raise BagModeError(f"run_bag needs one or more stages with distinct names, got {names}")
    if not input_path.exists():
        raise FileNotFoundError(f"input bag {input_path} does not exist")
    if overlaps(input_path, output_path):
        raise BagModeError(f"output {output_path} is, contains or is inside the input bag {input_path}; "
                           "choose another output path (the input is never modified)")


def _given_topics(stages: list[Stage], topic_map: Mapping[tuple[Any, str], str] | None) -> dict[TopicKey, str]:
    """``topic_map`` keyed by stage name; BagModeError for a key that names no input or output of ``stages``."""
    names = [s.name for s in stages]
    given = {(k[0] if isinstance(k[0], str) else k[0].name, k[1]): v for k, v in (topic_map or {}).items()}
    unknown = [k for k in given if k[0] not in names or k[1] not in {**_stage(stages, k[0]).inputs,
                                                                     **_stage(stages, k[0]).outputs}]
    if unknown:
        raise BagModeError(f"topic_map keys {unknown} name no stage input or output; stages: "
                           + ", ".join(f"{s.name} {sorted([*s.inputs, *s.outputs])}" for s in stages))
    return given


def _topics_of(stages: list[Stage], given: Mapping[TopicKey, str]) -> dict[TopicKey, str]:
    """The topic of every input and output of ``stages``: ``given``, else the registry's default; BagModeError
    naming what has neither (a stage that is not in the registry)."""
    topics = {**default_topic_map(stages), **given}
    missing = [(s.name, name) for s in stages for name in [*s.inputs, *s.outputs] if (s.name, name) not in topics]
    if missing:
        raise BagModeError(f"no topic for {missing}: the stage is not in the stage registry "
                           "(gen3d_ros.pipeline.registry); give them in topic_map")
    return topics


@dataclass
class _Routes:
    """Where messages go: ``consumers`` input topic -> [(stage, logical input)]; ``inputs_of`` / ``outputs_of``
    stage name -> logical name -> topic; ``out_types`` output topic -> message type."""

    consumers: dict[str, list[tuple[Stage, str]]]
    inputs_of: dict[str, dict[str, str]]
    outputs_of: dict[str, dict[str, str]]
    out_types: dict[str, str]


def _resolve_routes(bag: BagReader, stages: list[Stage], topics: Mapping[TopicKey, str],
                    given: Mapping[TopicKey, str], autodetect: bool) -> _Routes:
    """Input topics resolved against the bag (:func:`_resolve_input_topic`), output topics checked: none is also
    an input topic, none carries two types."""
    consumers: dict[str, list[tuple[Stage, str]]] = {}
    inputs_of: dict[str, dict[str, str]] = {}
    for stage in stages:
        inputs_of[stage.name] = {}
        for name in stage.inputs:
            topic = _resolve_input_topic(bag, stage, name, topics[(stage.name, name)], (stage.name, name) in given,
                                         autodetect)
            if not topic:
                continue  # an optional input the bag lacks
            consumers.setdefault(topic, []).append((stage, name))
            inputs_of[stage.name][name] = topic
    outputs_of = {s.name: {name: topics[(s.name, name)] for name in s.outputs} for s in stages}
    out_types: dict[str, str] = {}
    for stage in stages:
        for name, topic in outputs_of[stage.name].items():
            if topic in consumers:
                raise BagModeError(f"output {stage.name}.{name} topic {topic} is also an input topic")
            if out_types.setdefault(topic, stage.outputs[name]) != stage.outputs[name]:
                raise BagModeError(f"topic {topic} is mapped to outputs of types {out_types[topic]} and "
                                   f"{stage.outputs[name]}")
    return _Routes(consumers, inputs_of, outputs_of, out_types)


def _topics_to_copy(bag: BagReader, out_types: Mapping[str, str]) -> list[str]:
    """The input topics ``copy_inputs`` copies: all but those an output is written to and those whose type is
    unknown without a stored definition (both logged)."""
    copy_topics = []
    for topic, info in bag.topics.items():
        if topic in out_types:
            log.warning("not copying input topic %s: bag mode writes its outputs there", topic)
        elif _copy_definition(info) is None:
            log.warning("not copying %s (%s): type unknown and the bag stores no definition", topic, info.msgtype)
        else:
            copy_topics.append(topic)
    return copy_topics


def output_qos(latched: bool) -> Any:
    """The QoS a live node offers on an output (``gen3d_ros.ros.stage_node.output_qos_profile``) as a rosbags
    ``Qos``: reliable, keep-last 1, transient-local when ``latched`` (the mesh Marker) else volatile, default
    deadline / lifespan / liveliness. Recorded with the output so that ``ros2 bag play`` offers the same: rviz's
    transient-local Marker subscription matches only a transient-local publisher."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    durability = QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, durability, QosTime(0, 0), QosTime(0, 0),
               QosLiveliness.AUTOMATIC, QosTime(0, 0), False)


def _latched_topics(stages: list[Stage], routes: _Routes) -> set[str]:
    """Output topics of ``stages`` that their nodes publish transient-local (the registry's ``latched``)."""
    latched = set()
    for stage in stages:
        names = stage_entry(stage.name).latched if stage.name in {e.name for e in STAGES} else frozenset()
        latched |= {topic for name, topic in routes.outputs_of[stage.name].items() if name in names}
    return latched


def _declare_output_topics(out: BagWriter, bag: BagReader, copy_topics: list[str],
                           out_types: Mapping[str, str], latched: set[str]) -> None:
    """Declare the copied topics first (the context the outputs refer to), with their definitions, hashes and
    QoS, then the output topics with the QoS the live nodes offer (:func:`output_qos`)."""
    for topic in copy_topics:
        info = bag.topics[topic]
        msgdef, rihs01 = _copy_definition(info)  # type: ignore[misc]
        out.add_topic(topic, info.msgtype, msgdef=msgdef, rihs01=rihs01, qos=info.qos)
    for topic, msgtype in out_types.items():
        out.add_topic(topic, msgtype, qos=[output_qos(topic in latched)])


class _BagRun:
    """The feed loop of :func:`run_bag` and what it counts: the report, per stage its largest latency and
    undecodable messages, and its counters when the run started (stages may have run before)."""

    def __init__(self, stages: list[Stage], routes: _Routes, copy_topics: list[str], limit: int | None,
                 output_time: str, observe: Observer | None, report: BagReport) -> None:
        self.stages, self.routes, self.copy_set, self.observe = stages, routes, set(copy_topics), observe
        self.limit, self.output_time, self.report = limit, output_time, report
        self.factory = rosbags_factory()
        self.before = {s.name: (s.stats.processed, s.stats.rejected, s.stats.failed, s.stats.total_latency_ms)
                       for s in stages}
        self.max_latency = {s.name: 0.0 for s in stages}
        self.undecodable = {s.name: 0 for s in stages}
        self.view_only: set[str] = set()  # topics read only for the observer
        self.tf: tuple[TransformBuffer, Mapping[str, Mapping[str, str]]] | None = None
        self.tf_dropped = {s.name: 0 for s in stages}

    def feed(self, bag: BagReader, out: BagWriter, read_topics: list[str], bar: Any,
             window: tuple[int | None, int | None] = (None, None)) -> None:
        """Copy and feed every message of ``read_topics`` logged in ``window`` (ns, ``[start, stop)``) in log-time
        order, up to ``limit`` fed messages."""
        fed = 0
        for message in bag.messages(read_topics, decode=False, start_ns=window[0], stop_ns=window[1]):
            bar.update(1)
            users = self.routes.consumers.get(message.topic)
            if users and self.limit is not None and fed >= self.limit:
                self.report.limit_reached = True
                break
            if message.topic in self.copy_set:
                out.write_raw(message.topic, message.raw, message.log_time_ns)
                self.report.copied[message.topic] += 1
            if not users:
                if message.topic in self.view_only:
                    self._observe_only(bag, message)
                continue
            fed += 1
            self.report.messages_in[message.topic] += 1
            try:
                msg = bag.decode(message)
            except BagError as exc:
                log.warning("%s; counted as rejected", exc)
                for stage, _ in users:
                    self.undecodable[stage.name] += 1
                continue
            stamp_ns = _output_time(message.log_time_ns, msg, self.output_time)
            if self.observe is not None:
                self.observe(message.topic, users[0][0].inputs[users[0][1]], msg, message.log_time_ns)
            for stage, name in users:
                self._process(stage, name, msg, stamp_ns, out)

    def _transforms(self, stage: Stage, name: str, msg: Any) -> dict[str, tuple[str, Any]] | None:
        """The TF transforms of ``msg`` for ``stage`` ({} when it uses none); None: missing (dropped, counted)."""
        if self.tf is None or stage.name not in self.tf[1] or name != stage_tf_input(stage.name):
            return {}
        buffer, frames = self.tf
        found = {}
        for role, frame in frames[stage.name].items():
            try:
                found[role] = (frame, buffer.lookup(frame, str(msg.header.frame_id),
                                                    stamp_to_nanoseconds(msg.header.stamp)))
            except TransformMissing as exc:
                self.tf_dropped[stage.name] += 1
                log.warning("%s: dropped a %s message: no transform into %s (%s_frame): %s", stage.name, name,
                            frame, role, exc)
                return None
        return found

    def _observe_only(self, bag: BagReader, message: Any) -> None:
        """Hand a message no stage consumes (the bag's TF) to the observer; an undecodable one is skipped."""
        try:
            msg = bag.decode(message)
        except BagError as exc:
            log.warning("%s; not shown", exc)
            return
        self.observe(message.topic, bag.topics[message.topic].msgtype, msg, message.log_time_ns)

    def _process(self, stage: Stage, name: str, msg: Any, stamp_ns: int, out: BagWriter) -> None:
        """One message through one stage input; its outputs written at ``stamp_ns``."""
        transforms = self._transforms(stage, name, msg)
        if transforms is None:
            return
        t0 = time.perf_counter()
        results = stage.process(name, msg, self.factory, transforms=transforms)
        self.max_latency[stage.name] = max(self.max_latency[stage.name], (time.perf_counter() - t0) * 1e3)
        for result in results:
            topic = self.routes.outputs_of[stage.name].get(result.name)
            if topic is None:
                log.error("stage %s produced unknown output %r; dropped", stage.name, result.name)
                self.report.write_errors += 1
                continue
            try:
                out.write(topic, result.msg, stamp_ns, msgtype=stage.outputs[result.name])
            except Exception as exc:  # noqa: BLE001 - one bad output must not end the run
                log.error("cannot write %s output %s on %s: %s: %s", stage.name, result.name, topic,
                          type(exc).__name__, exc)
                self.report.write_errors += 1
                continue
            self.report.messages_out[topic] += 1
            if self.observe is not None:
                self.observe(topic, stage.outputs[result.name], result.msg, stamp_ns)

    def report_stages(self) -> None:
        """Fill ``report.stages``: what each stage did in this run (its counters minus those at the start)."""
        for stage in self.stages:
            p0, r0, f0, l0 = self.before[stage.name]
            processed = stage.stats.processed - p0
            undecodable = self.undecodable[stage.name]
            self.report.stages[stage.name] = StageReport(
                name=stage.name, inputs=self.routes.inputs_of[stage.name],
                outputs=self.routes.outputs_of[stage.name], processed=processed,
                rejected=stage.stats.rejected - r0 + undecodable, failed=stage.stats.failed - f0,
                undecodable=undecodable,
                mean_latency_ms=(stage.stats.total_latency_ms - l0) / processed if processed else 0.0,
                max_latency_ms=self.max_latency[stage.name], last_error=stage.stats.last_error,
                tf_dropped=self.tf_dropped[stage.name])


def _stage(stages: list[Stage], name: str) -> Stage:
    return next(s for s in stages if s.name == name)


def _output_time(log_time_ns: int, msg: Any, mode: str) -> int:
    if mode == "header":
        header = getattr(msg, "header", None)
        if header is not None:
            stamp = stamp_to_nanoseconds(header.stamp)
            if stamp > 0:
                return stamp
    return log_time_ns


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, *, enabled: bool, desc: str) -> Any:
    if not enabled or total < PROGRESS_MIN_MESSAGES:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="msg", file=sys.stderr, dynamic_ncols=True, leave=False)
