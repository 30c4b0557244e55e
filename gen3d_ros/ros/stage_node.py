"""``StageNode``: the one generic rclpy host of a :class:`gen3d_ros.pipeline.base.Stage`.

Every node is a ``StageNode`` of an entry of :data:`gen3d_ros.pipeline.registry.STAGES` (stage and config class,
default topics, latched outputs, default worker; :func:`create_stage_node` by node name). The host does the rest,
the same way for every stage:

- parameters: one per config field, nested configs as ``section.field`` (descriptor with description/unit/range
  from the dataclass, changeable at runtime) + read-only host parameters ``<in>_topic``, ``<out>_topic``,
  ``input_qos``, ``input_depth``, ``input_timeout``, ``worker`` (see :mod:`gen3d_ros.ros.params`);
- one subscription per stage input, depth ``input_depth`` (10: at least a reliable publisher's, see
  :mod:`gen3d_ros.ros.params`); its reliability follows ``input_qos``: ``auto`` (the
  default) subscribes reliable while every publisher of the topic is reliable and best effort once one is
  best effort (re-chosen once a second as publishers come and go), so real-size sweeps (2-4 MB, which best
  effort loses over Fast DDS) arrive from reliable publishers and best-effort publishers still match;
  callbacks only put the message in a latest-only queue (:mod:`gen3d_ros.ros.latest_queue`) and return;
- a worker thread takes the latest message and runs the stage — in this process (``worker: thread``), or in a
  child process (``worker: process``, :mod:`gen3d_ros.ros.stage_process`: raw subscriptions, serialized
  messages over a pipe, outputs published raw) so that native code holding the GIL cannot stall the
  executor — and publishes the outputs (reliable, depth 1; the entry's ``latched`` outputs also
  transient-local, so an rviz started later still gets the last one); a stage's early outputs (e.g. hGCA's
  coarse voxels) are published the moment they exist, always before the final outputs of the same message;
- ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` at 1 Hz (:mod:`gen3d_ros.ros.diagnostics`), WARN
  when an input topic has publishers but nothing arrived for ``input_timeout`` s (with the likely cause: QoS
  incompatibility reported by the middleware, or messages too large for best effort);
- a runtime change of config parameters rebuilds the stage. It is rejected with the reason in
  ``SetParametersResult`` when the dataclass does not validate it or the files it names do not exist or are
  not of the right kind (:meth:`StageNode.check_config`; with the thread worker, also when the stage does not
  build). With the process worker the child builds the stage after the change was accepted; if that fails,
  the previous stage keeps running, /diagnostics goes ERROR with the reason, and the parameters are set back.
  The counters carry over.

:mod:`gen3d_ros.ros.node_main` starts nodes in a process and shuts them down cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import SetParametersResult

from gen3d_ros.config import flat_values
from gen3d_ros.io.messages import rclpy_factory
from gen3d_ros.pipeline.base import Stage, StageStats
from gen3d_ros.ros.diagnostics import OK, WARN, InputLink, StageHealth, stage_status
from gen3d_ros.pipeline.registry import StageEntry, node_entry, topic_param_name
from gen3d_ros.ros.latest_queue import LatestOnlyQueue, Pending, Worker
from gen3d_ros.ros.params import (BEST_EFFORT, RELIABLE, NodeParam, coerce_value, config_from_values, declared_params,
                                  descriptor_for, subscription_reliability)
from gen3d_ros.ros.stage_process import StageProcess, StageProcessError
from gen3d_ros.ros.tf_buffer import NodeTransforms, TransformMissing, message_header

DIAGNOSTICS_TOPIC = "/diagnostics"
DIAGNOSTICS_PERIOD_S = 1.0
#: queue key of "build the stage (and a pending config) now" for the worker (not a stage input name)
_BUILD_KEY = "<build>"


def input_qos_profile(reliability: str, depth: int) -> QoSProfile:
    """QoS of an input subscription: ``reliability`` :data:`RELIABLE` or :data:`BEST_EFFORT` (the parameter
    values ``reliable`` / ``sensor_data`` are taken too), keep-last ``depth``, volatile.

    A best-effort subscription matches every publisher; a reliable one does not match best-effort publishers,
    but gets every message of a reliable one, whatever its size (see ``bench/results/qos_transport.json``)."""
    reliability = {"sensor_data": BEST_EFFORT, "reliable": RELIABLE}.get(reliability, reliability)
    policy = {BEST_EFFORT: ReliabilityPolicy.BEST_EFFORT, RELIABLE: ReliabilityPolicy.RELIABLE}[reliability]
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy,
                      durability=DurabilityPolicy.VOLATILE)


def output_qos_profile(latched: bool) -> QoSProfile:
    """QoS of an output publisher: reliable, depth 1; ``latched``: transient-local (late joiners get the last)."""
    durability = DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=durability)


@dataclass
class _Input:
    """One stage input's subscription and what the host knows about its link (monotonic seconds)."""

    name: str
    topic: str  # resolved (absolute, remapped)
    msgtype: str
    requested: str = ""  # the parameter's name, as given to create_subscription
    reliability: str = RELIABLE
    subscription: Any = None
    created_t: float = 0.0
    last_msg_t: float | None = None
    publishers_since_t: float | None = None
    publishers: int = 0
    best_effort_publishers: int = 0
    incompatible_qos: str = ""


class StageNode(Node):
    """Generic host of one stage of the registry: the stage and config classes, default topics, latched outputs,
    quiet inputs and default worker come from its :class:`~gen3d_ros.pipeline.registry.StageEntry`. A stage that
    needs special node behaviour subclasses this (:meth:`make_stage`, used by the ``thread`` worker, and
    :meth:`check_config` are the hooks)."""

    def __init__(self, entry: StageEntry, node_name: str | None = None, **node_kwargs: Any) -> None:
        """``node_name``: default ``entry.node`` (the section of the params YAML); ``node_kwargs``: rclpy's
        (``context``, ``cli_args`` …)."""
        self.entry = entry
        self.stage_cls: type[Stage] = entry.stage_class()
        self.config_cls: type = entry.config_class()
        super().__init__(node_name or entry.node, **node_kwargs)
        self._shutting_down = False
        try:
            self._setup()
        except BaseException:
            self.destroy_node()  # a node that cannot start leaves nothing behind (endpoints, stage process)
            raise

    def _setup(self) -> None:
        self.factory = rclpy_factory()
        self._params = declared_params(self.entry)
        self._config_names = {p.name for p in self._params if p.group == "config"}
        values = self._declare(self._params)
        self.config = config_from_values(self.config_cls, values)  # ValueError: the node cannot start
        self.check_config(self.config)  # ValueError: a file it names is missing or of the wrong kind
        self.stats = StageStats()
        self.worker_kind = values["worker"]
        # TF (entries with a tf_input): frames by role, looked up at each message's stamp in the worker
        self.frames = {role: values.get(f"{role}_frame", "") for role in ("base", "target")}
        self.transform_timeout = float(values.get("transform_timeout", 0.0))
        self.tf = (NodeTransforms(self) if self.entry.tf_input and any(self.frames.values()) else None)
        self.tf_dropped = 0
        self._tf_drop_t = -1e18  # monotonic time of the last drop: /diagnostics warns for 5 s after one
        self.input_qos = values["input_qos"]
        self.input_depth = values["input_depth"]
        self.received = 0
        self._last_input_t: float | None = None
        self._stage_lock = threading.Lock()
        self.stage: Stage | None = None
        self._stage_process: StageProcess | None = None
        # Builds in the stage process: why the running config cannot be built (stage_error), the last failed
        # reconfiguration (config_error, counted), and a pending revert of the parameters (failed, running).
        self._stage_error = ""
        self._config_error = ""
        self._config_failures = 0
        self._revert: tuple[Any, Any] | None = None
        self._revert_lock = threading.Lock()
        self._reverting_to: Any = None
        if self.worker_kind == "thread":
            self.stage = self.make_stage(self.config)
            self.stage.stats = self.stats
        else:
            self._stage_process = StageProcess(self.stage_cls, self.config, self.stats,
                                               name=f"{self.get_name()}_stage", on_build=self._on_stage_built)
            self._stage_process.start()  # imports and builds in the background while the node comes up
        self._raw = self.worker_kind == "process"  # the node's process only moves bytes

        # Endpoints are created with the parameters' names (rclpy expands relative / private names and applies
        # remapping); logs and diagnostics show the resolved names.
        requested = {name: values[topic_param_name(name)] for name in [*self.stage_cls.inputs,
                                                                        *self.stage_cls.outputs]}
        self.input_topics = {name: self.resolve_topic_name(requested[name]) for name in self.stage_cls.inputs}
        self.output_topics = {name: self.resolve_topic_name(requested[name]) for name in self.stage_cls.outputs}
        self._publishers_by_output = {
            name: self.create_publisher(self.factory.cls(msgtype), requested[name],
                                        output_qos_profile(name in self.entry.latched))
            for name, msgtype in self.stage_cls.outputs.items()}
        self._queue = LatestOnlyQueue()
        self._worker = Worker(self._queue, self._handle, name=f"{self.get_name()}_worker",
                              on_error=self._on_worker_error)
        self._inputs = {name: _Input(name, self.input_topics[name], msgtype, requested[name])
                        for name, msgtype in self.stage_cls.inputs.items()}
        for inp in self._inputs.values():
            self._count_publishers(inp)
            self._subscribe(inp, subscription_reliability(self.input_qos, inp.best_effort_publishers))
        self._health = StageHealth(tuple(self.input_topics.values()), input_timeout_s=values["input_timeout"])
        self._diagnostics_pub = self.create_publisher(self.factory.cls("diagnostic_msgs/msg/DiagnosticArray"),
                                                      DIAGNOSTICS_TOPIC, 10)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._tick)
        self._revert_guard = self.create_guard_condition(self._apply_revert)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker.start()
        if self._stage_process is not None:
            self._queue.put(_BUILD_KEY, None)  # the worker waits for the build: a failure shows at once
        self.get_logger().info(
            f"{self.stage_cls.name}: inputs {self.input_topics} (input_qos {self.input_qos}: "
            f"{ {n: i.reliability for n, i in self._inputs.items()} }, depth {self.input_depth}) -> outputs "
            f"{self.output_topics}; {self.worker_kind} worker; {self.config}")

    # --- construction --------------------------------------------------------------------------------------

    def make_stage(self, config: Any) -> Stage:
        """A stage for ``config`` (``thread`` worker); may raise for a config it cannot use (the change is then
        rejected). The ``process`` worker builds ``stage_cls(config)`` in its child."""
        return self.stage_cls(config)  # type: ignore[call-arg]

    def check_config(self, config: Any) -> None:
        """Cheap check, in this process, that ``config`` can build the stage: ``stage_cls.check_config`` (files
        exist and are of the right kind, the device exists: the config's ``check_resources()``). ValueError with
        the reason otherwise; runs before a config is accepted, at start and on every runtime change."""
        try:
            self.stage_cls.check_config(config)
        except (OSError, RuntimeError, ImportError) as exc:  # a check that failed in an unexpected way
            raise ValueError(f"{type(exc).__name__}: {exc}") from None

    def _declare(self, params: Sequence[NodeParam]) -> dict[str, Any]:
        """Declare ``params`` with descriptors; their values (defaults, or the overrides of a params file)."""
        overrides = getattr(self, "_parameter_overrides", None)
        values = {}
        for param in params:
            spec = param.spec
            # An integer literal for a double parameter ("voxel_size: 1") would make rclpy refuse to start.
            if isinstance(overrides, dict) and isinstance(spec.default, float) and spec.name in overrides:
                given = overrides[spec.name]
                if given.type_ == Parameter.Type.INTEGER:
                    overrides[spec.name] = Parameter(spec.name, Parameter.Type.DOUBLE, float(given.value))
            value = self.declare_parameter(spec.name, spec.default, descriptor_for(param)).value
            values[spec.name] = coerce_value(spec, value)
        return values

    # --- input subscriptions -------------------------------------------------------------------------------

    def _subscribe(self, inp: _Input, reliability: str) -> None:
        """(Re)create ``inp``'s subscription with ``reliability``."""
        if inp.subscription is not None:
            self.destroy_subscription(inp.subscription)
        callbacks = SubscriptionEventCallbacks(
            incompatible_qos=lambda event, inp=inp: self._on_incompatible_qos(inp, event))
        inp.subscription = self.create_subscription(
            self.factory.cls(inp.msgtype), inp.requested or inp.topic,
            lambda msg, name=inp.name: self._on_input(name, msg),
            input_qos_profile(reliability, self.input_depth), event_callbacks=callbacks, raw=self._raw)
        inp.reliability, inp.created_t, inp.incompatible_qos = reliability, time.monotonic(), ""

    def _on_incompatible_qos(self, inp: _Input, event: Any) -> None:
        kind = getattr(event.last_policy_kind, "name", str(event.last_policy_kind))
        inp.incompatible_qos = kind.removeprefix("QOS_POLICY_KIND_") if isinstance(kind, str) else str(kind)
        self.get_logger().warning(
            f"a publisher of {inp.topic} offers a QoS incompatible with this {inp.reliability} subscription "
            f"({inp.incompatible_qos}; input_qos {self.input_qos}): it does not match, nothing of it arrives",
            throttle_duration_sec=10.0)

    def _count_publishers(self, inp: _Input) -> None:
        infos = self.get_publishers_info_by_topic(inp.topic)
        inp.publishers = len(infos)
        inp.best_effort_publishers = sum(info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                                         for info in infos)
        if inp.publishers and inp.publishers_since_t is None:
            inp.publishers_since_t = time.monotonic()
        elif not inp.publishers:
            inp.publishers_since_t = None

    def _refresh_inputs(self) -> None:
        """Count each input's publishers; with ``input_qos: auto``, re-choose the subscription's reliability."""
        for inp in self._inputs.values():
            self._count_publishers(inp)
            if not inp.publishers:
                continue
            wanted = subscription_reliability(self.input_qos, inp.best_effort_publishers)
            if wanted != inp.reliability:
                self.get_logger().info(
                    f"{inp.topic}: {inp.best_effort_publishers} of {inp.publishers} publisher(s) offer best "
                    f"effort; subscribing {wanted} (input_qos auto)")
                self._subscribe(inp, wanted)

    def input_links(self) -> list[InputLink]:
        """The state of every input link now (for :class:`StageHealth`)."""
        now = time.monotonic()
        links = []
        for inp in self._inputs.values():
            silent = None
            if inp.publishers and inp.name not in self.entry.quiet_inputs:
                since = [t for t in (inp.last_msg_t, inp.publishers_since_t, inp.created_t) if t is not None]
                silent = now - max(since)
            links.append(InputLink(inp.topic, inp.publishers, silent, inp.reliability, inp.best_effort_publishers,
                                   inp.incompatible_qos, self.input_qos))
        return links

    # --- runtime parameters --------------------------------------------------------------------------------

    def _on_set_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        """Validate a change of config parameters with the dataclass, :meth:`check_config` and, with the thread
        worker, by building the stage; apply it. rclpy has already checked types, ranges and read-only."""
        changed = {p.name: p.value for p in changes if p.name in self._config_names}
        if not changed:
            return SetParametersResult(successful=True)
        if self._reverting_to is not None:  # undoing a change the stage process could not build
            self.config = self._reverting_to
            return SetParametersResult(successful=True)
        specs = {p.name: p.spec for p in self._params}
        values = flat_values(self.config)
        values.update({name: coerce_value(specs[name], value) for name, value in changed.items()})
        try:
            config = config_from_values(self.config_cls, values)
            self.check_config(config)
            stage = self.make_stage(config) if self.stage is not None else None
        except Exception as exc:  # noqa: BLE001 - whatever stops the stage from building rejects the change
            reason = f"rejected {changed}: {exc}"
            self.get_logger().warning(reason)
            return SetParametersResult(successful=False, reason=reason)
        with self._stage_lock:
            if stage is not None:
                stage.stats = self.stats  # counters carry over a reconfiguration
                self.stage = stage
            self.config = config
        if self._stage_process is not None:
            self._stage_process.reconfigure(config)  # the child builds it now, or before the next frame
            self._queue.put(_BUILD_KEY, None)
        self.get_logger().info(f"reconfigured {self.stage_cls.name}: {changed}")
        return SetParametersResult(successful=True)

    def _on_stage_built(self, config: Any, reason: str) -> None:
        """``StageProcess.on_build`` (worker thread): record the outcome of a build in the child; a failed
        reconfiguration is reported and its parameters are set back (in the executor, :meth:`_apply_revert`)."""
        if not reason:
            self._stage_error = ""
            return
        if self._shutting_down:  # the child was stopped under a build: nothing to report or revert
            return
        running = self._stage_process.config if self._stage_process is not None else None
        if config is running:  # the configuration that should run cannot be built: nothing runs
            self._stage_error = reason
            self.get_logger().error(f"the stage cannot be built: {reason}")
            return
        new, old = flat_values(config), flat_values(running)
        diff = {name: new[name] for name in sorted(self._config_names) if new[name] != old[name]}
        self._config_error = (f"reconfiguration {diff} was accepted but failed to build in the stage process: "
                              f"{reason}; the previous configuration keeps running and the parameters were set "
                              "back")
        self._config_failures += 1
        self.stats.last_error = self._config_error
        self.get_logger().error(self._config_error)
        with self._revert_lock:
            self._revert = (config, running)
        self._revert_guard.trigger()

    def _apply_revert(self) -> None:
        """Set the parameters of a configuration the stage process could not build back to the running one's
        (executor thread; skipped when a newer change was accepted meanwhile: its own build decides)."""
        with self._revert_lock:
            item, self._revert = self._revert, None
        if item is None:
            return
        failed, running = item
        if self.config is not failed:
            return
        back, failed_values = flat_values(running), flat_values(failed)
        params = [Parameter(name, value=back[name]) for name in sorted(self._config_names)
                  if failed_values[name] != back[name]]
        self._reverting_to = running
        try:
            results = self.set_parameters(params)
        finally:
            self._reverting_to = None
        self.config = running
        bad = [r.reason for r in results if not r.successful]
        if bad:
            self.get_logger().error(f"could not set the parameters back to the running configuration: {bad}")

    # --- data path -----------------------------------------------------------------------------------------

    def _on_input(self, name: str, msg: Any) -> None:
        self.received += 1
        self._last_input_t = self._inputs[name].last_msg_t = time.monotonic()
        if self._queue.put(name, msg):
            self.stats.dropped += 1

    def _handle(self, pending: Pending) -> None:
        if pending.key == _BUILD_KEY:  # build the stage / a new config now; failures are reported by on_build
            try:
                self._stage_process.ensure_ready()
            except StageProcessError:
                pass
            return
        transforms: dict[str, tuple[str, Any]] = {}
        if self.tf is not None and pending.key == self.entry.tf_input:
            found = self._lookup_transforms(pending.msg)
            if found is None:
                return  # dropped, counted
            transforms = found
        wait_ms = (time.monotonic() - pending.arrival) * 1e3
        # Early outputs (Stage.emit: hGCA's coarse voxels) are published from this thread as they come, so they
        # always precede the final outputs of the same message.
        if self._stage_process is not None:
            outputs = self._stage_process.process(pending.key, pending.msg, on_output=self._publish,
                                                  transforms=transforms)
        else:
            with self._stage_lock:
                stage = self.stage
            outputs = [(o.name, o.msg) for o in stage.process(pending.key, pending.msg, self.factory,
                                                              emit=lambda o: self._publish(o.name, o.msg),
                                                              transforms=transforms)]
        self.stats.extra["queue_wait_ms"] = wait_ms
        for name, msg in outputs:
            self._publish(name, msg)

    def _lookup_transforms(self, msg: Any) -> dict[str, tuple[str, Any]] | None:
        """``{role: (frame, T_frame_input)}`` for the configured ``base_frame`` / ``target_frame`` at the message's
        stamp, waiting up to ``transform_timeout`` s for TF; None (message dropped, counted in ``tf_dropped``)
        when one is missing."""
        try:
            stamp, source = message_header(msg)
        except (ValueError, AttributeError) as exc:
            return self._drop_for_tf(f"no header to look up in TF: {exc}")
        if not source:
            return self._drop_for_tf("the message has no header.frame_id to look up in TF")
        found = {}
        for role, frame in self.frames.items():
            if not frame:
                continue
            try:
                found[role] = (frame, self.tf.lookup(frame, source, stamp, self.transform_timeout))
            except TransformMissing as exc:
                return self._drop_for_tf(f"no transform {source} -> {frame} ({role}_frame) at {stamp} ns after "
                                         f"waiting {self.transform_timeout:.2f} s: {exc}")
        return found

    def _drop_for_tf(self, reason: str) -> None:
        self.tf_dropped += 1
        self._tf_drop_t = time.monotonic()
        self.stats.last_error = f"dropped: {reason}"
        self.get_logger().warning(f"dropped a {self.entry.tf_input} message: {reason}", throttle_duration_sec=5.0)
        return None

    def _publish(self, name: str, msg: Any) -> None:
        """Publish output ``name``: a message, or its serialized bytes (process worker)."""
        publisher = self._publishers_by_output.get(name)
        if publisher is None:
            self.get_logger().error(f"stage {self.stage_cls.name!r} produced unknown output {name!r}")
            return
        publisher.publish(msg)

    def _on_worker_error(self, exc: BaseException) -> None:
        if self._shutting_down or not self.context.ok():
            return  # publishing, or waiting for a stage process that was stopped, during shutdown
        self.stats.failed += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"worker: {type(exc).__name__}: {exc}")

    # --- diagnostics ---------------------------------------------------------------------------------------

    def _tick(self) -> None:
        self._refresh_inputs()
        self.publish_diagnostics()

    def diagnostic_status(self) -> Any:
        """The node's ``DiagnosticStatus`` now (advances the rate window)."""
        stats = self.stats
        busy_since = self._worker.busy_since
        busy_for = time.monotonic() - busy_since if busy_since is not None else None
        links = self.input_links()
        level, message = self._health.update(stats, self.received, busy_for_s=busy_for, links=links,
                                             stage_error=self._stage_error, config_error=self._config_error,
                                             config_failures=self._config_failures)
        values: dict[str, Any] = {"received": self.received, "pending": len(self._queue),
                                  "worker": self.worker_kind}
        if self._stage_process is not None:
            values["stage_pid"] = self._stage_process.pid
            values["stage_process_restarts"] = self._stage_process.restarts
        values.update({k: f"{v:.2f}" for k, v in self._health.rates.items()})
        if self._last_input_t is not None:
            values["since_last_input_s"] = f"{time.monotonic() - self._last_input_t:.1f}"
        values["config_failures"] = self._config_failures
        if self.tf is not None:
            if level == OK and time.monotonic() - self._tf_drop_t <= self._health.hold_s:
                level, message = WARN, f"dropped {self.tf_dropped} sweep(s) without TF: {stats.last_error}"
            values["tf_dropped"] = self.tf_dropped
            values["tf"] = f"{self.tf.backend}; " + ", ".join(f"{r}_frame {f}" for r, f in self.frames.items() if f)
        if self._config_error:
            values["last_config_error"] = self._config_error
        for inp in self._inputs.values():
            values[f"input.{inp.name}.qos"] = f"{inp.reliability} (input_qos {self.input_qos})"
            values[f"input.{inp.name}.publishers"] = f"{inp.publishers} ({inp.best_effort_publishers} best effort)"
        values.update({f"topic.{k}": v for k, v in {**self.input_topics, **self.output_topics}.items()})
        # the fully qualified name: two nodes of one stage in two namespaces stay apart on /diagnostics
        return stage_status(f"{self.get_fully_qualified_name()}: {self.stage_cls.name}",
                            self.get_fully_qualified_name(), level,
                            message, stats, values)

    def publish_diagnostics(self) -> None:
        array = self.factory.new("diagnostic_msgs/msg/DiagnosticArray")
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self.diagnostic_status()]
        self._diagnostics_pub.publish(array)

    # --- shutdown ------------------------------------------------------------------------------------------

    def _stop_processing(self) -> None:
        """Close the input queue, stop the stage process and the worker (a frame in progress is abandoned)."""
        self._shutting_down = True
        queue = getattr(self, "_queue", None)
        if queue is not None:
            queue.close()
        if getattr(self, "_stage_process", None) is not None:
            self._stage_process.stop()
        worker = getattr(self, "_worker", None)
        if worker is not None and not worker.stop(timeout=5.0):
            self.get_logger().warning("worker still busy after 5 s; leaving it (daemon thread)")

    def destroy_node(self) -> None:
        """Stop the processing (:meth:`_stop_processing`), then destroy the node."""
        self._stop_processing()
        super().destroy_node()


def create_stage_node(node: str, **node_kwargs: Any) -> StageNode:
    """The :class:`StageNode` of the registry's node ``node`` (KeyError listing the known nodes); ``node_kwargs``:
    :class:`StageNode`'s (``node_name``, ``context``, ``cli_args`` …)."""
    return StageNode(node_entry(node), **node_kwargs)
