"""The contract between processors and their two hosts (rclpy nodes in ``ros/``, bag mode in ``bagmode.py``).

A :class:`Stage` owns one processor. It declares the messages it consumes and produces by *logical* name
(``"cloud"``, ``"mesh_marker"``); the host maps logical names to topics. ``process`` takes a message of
either world (rclpy or rosbags) and returns output messages of the world of ``factory``. It never raises for
bad input data: it returns no outputs and records the reason in :attr:`StageStats`, so a node never dies and
a bag run carries on.

Early outputs: a stage whose result comes in steps (hGCA's coarse completion, seconds before its mesh) hands a
finished part to :meth:`Stage.emit` from inside :meth:`Stage.handle`. A host that streams passes an ``emit``
callback to :meth:`Stage.process` and publishes each early output at once; otherwise they are returned before the
final outputs. Either way the early outputs of a message come before its final ones, and are kept when the
message then fails (the failure is counted as before).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gen3d_ros.io.messages import MessageFactory

log = logging.getLogger("gen3d_ros.pipeline")


@dataclass
class Output:
    """One produced message: logical output ``name`` (a key of ``Stage.outputs``) and the message."""

    name: str
    msg: Any


#: a host's sink of early outputs (:meth:`Stage.emit`)
Emit = Callable[[Output], None]


@dataclass
class StageStats:
    """Counters a host reports as diagnostics."""

    processed: int = 0
    rejected: int = 0
    failed: int = 0
    dropped: int = 0  # frames the host skipped because the stage was busy (latest-only queue)
    last_latency_ms: float = 0.0
    total_latency_ms: float = 0.0
    last_error: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def mean_latency_ms(self) -> float:
        return self.total_latency_ms / self.processed if self.processed else 0.0

    def as_dict(self) -> dict[str, str]:
        values = {
            "processed": self.processed, "rejected": self.rejected, "failed": self.failed,
            "dropped": self.dropped, "last_latency_ms": f"{self.last_latency_ms:.1f}",
            "mean_latency_ms": f"{self.mean_latency_ms:.1f}", "last_error": self.last_error,
        }
        values.update({k: f"{v:.3f}" for k, v in self.extra.items()})
        return {k: str(v) for k, v in values.items()}


class InputRejected(ValueError):
    """The input message is malformed or unusable (empty cloud, wrong encoding…); say why in the text."""


class Stage:
    """Base class: subclasses set ``name``, ``inputs``, ``outputs`` and implement :meth:`handle`."""

    name: str = "stage"
    #: logical input name -> ROS type, e.g. {"cloud": "sensor_msgs/msg/PointCloud2"}
    inputs: dict[str, str] = {}
    #: logical output name -> ROS type
    outputs: dict[str, str] = {}
    #: inputs a stage works without (e.g. one of two alternative goal inputs): bag mode skips them when the bag
    #: lacks their topic instead of failing; nodes subscribe to them anyway
    optional_inputs: frozenset[str] = frozenset()
    #: the host's sink of early outputs while process() runs handle(); None otherwise
    _emit: Emit | None = None
    #: transforms the host looked up for the message in work (TF), by role: ``{"base": (frame, T_base_input),
    #: "target": (frame, T_target_input)}`` (4x4 float64, map the input's header frame into ``frame``, metres);
    #: empty outside process() and when the host has no TF (bag mode without transforms)
    transforms: Mapping[str, tuple[str, Any]] = {}

    def __init__(self) -> None:
        self.stats = StageStats()

    @classmethod
    def check_config(cls, config: Any) -> None:
        """Cheap check that ``config`` can build this stage, before a host accepts it (a node's parameter change,
        its start): the files it names exist and are of the right kind, the device exists. Raises ValueError
        naming the value and what to do. Much cheaper than building the stage (no model is built), so a node
        can run it in its own process while the stage lives in a child.

        Default: ``config.check_resources()`` when the config class has one (``CompletionConfig`` does), else
        nothing. A config that passes may still fail to build (e.g. a checkpoint whose weights do not fit its
        model); hosts report that separately.
        """
        check = getattr(config, "check_resources", None)
        if callable(check):
            check()

    def handle(self, input_name: str, msg: Any, factory: MessageFactory) -> list[Output]:
        raise NotImplementedError

    def emit(self, output: Output) -> None:
        """Hand ``output`` to the host now, from inside :meth:`handle` (a part of the result that is ready before
        the rest); it precedes every output :meth:`handle` returns. RuntimeError outside :meth:`process`."""
        if output.name not in self.outputs:
            raise KeyError(f"stage {self.name!r} has no output {output.name!r}; outputs: {sorted(self.outputs)}")
        if self._emit is None:
            raise RuntimeError(f"stage {self.name!r}: emit() is for use inside handle(), during process()")
        self._emit(output)

    def process(self, input_name: str, msg: Any, factory: MessageFactory, emit: Emit | None = None, *,
                transforms: Mapping[str, tuple[str, Any]] | None = None) -> list[Output]:
        """Run :meth:`handle`, timing it and turning exceptions into counted, logged rejections/failures.

        ``emit``: the host's sink of early outputs (:meth:`emit`), called from this thread during the call; without
        it, early outputs are returned first. ``transforms``: see :attr:`transforms`. Returns the final outputs
        ([] on rejection or failure), after the
        early ones when there is no ``emit``: those are returned even when :meth:`handle` then fails.
        """
        if input_name not in self.inputs:
            raise KeyError(f"stage {self.name!r} has no input {input_name!r}; inputs: {sorted(self.inputs)}")
        early: list[Output] = []
        self._emit = emit if emit is not None else early.append
        self.transforms = dict(transforms or {})
        start = time.perf_counter()
        try:
            outputs = self.handle(input_name, msg, factory)
        except InputRejected as exc:
            self.stats.rejected += 1
            self.stats.last_error = f"rejected: {exc}"
            log.warning("%s rejected a %s message: %s", self.name, input_name, exc)
            return early
        except Exception as exc:  # noqa: BLE001 - a host must survive any one bad frame
            self.stats.failed += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("%s failed on a %s message", self.name, input_name)
            return early
        finally:
            self._emit = None
            self.transforms = {}
        elapsed = (time.perf_counter() - start) * 1e3
        self.stats.processed += 1
        self.stats.last_latency_ms = elapsed
        self.stats.total_latency_ms += elapsed
        return early + outputs
