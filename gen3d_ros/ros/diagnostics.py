"""Diagnostics of a stage node: :class:`StageStats` -> ``diagnostic_msgs/DiagnosticStatus`` once a period.

Levels (``diagnostic_msgs/DiagnosticStatus``), from the events of the last ``hold_s`` seconds and the state of
the input links, first match wins:

- ERROR: the stage cannot be built at all (``stage_error``: e.g. a model that loads but does not fit), or a
  runtime reconfiguration that was accepted failed to build in the stage process (the parameters are
  reverted, the previous configuration keeps running; the message says both), or a frame failed (the stage
  raised on it: a bug or a broken model), message has the last error;
- WARN: an input topic has publishers but nothing arrived for ``input_timeout_s`` (the message says the likely
  cause: an incompatible QoS, or messages too large for a best-effort subscription), an input was rejected
  (malformed/empty message), or the stage has been busy on one frame for longer than ``stall_s`` while new
  inputs keep being dropped;
- OK: otherwise (also before the first input, "waiting for input on <topic>"). Dropped frames alone are not a
  problem: the latest-only queue drops whatever arrives while the stage is busy, by design; the counts and
  rates are in the values.

:class:`StageHealth` holds the level logic and has no rclpy in it; :func:`stage_status` builds the message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from gen3d_ros.pipeline.base import StageStats
from gen3d_ros.ros.params import BEST_EFFORT, RELIABLE

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels (bytes on the wire)


@dataclass
class Snapshot:
    """The counters at one report, and when (monotonic s)."""

    t: float
    received: int
    processed: int
    rejected: int
    failed: int
    dropped: int


#: Over Fast DDS (the wheels' middleware), best-effort messages larger than its 512 KiB shared-memory segment
#: are mostly lost: measured in bench/results/qos_transport.json.
BEST_EFFORT_LIMIT_TEXT = "~512 KiB (about 44k xyz points)"


@dataclass(frozen=True)
class InputLink:
    """What a host knows about one input subscription at a report.

    ``publishers``: publishers of the topic now; ``silent_s``: seconds since the last message, counted from
    when publishers appeared or the subscription was (re)created if later, None without publishers;
    ``reliability``: the subscription's (:data:`RELIABLE` / :data:`BEST_EFFORT`); ``best_effort_publishers``:
    publishers offering best effort; ``incompatible_qos``: the policy the middleware last reported as
    incompatible between a publisher and this subscription ("" if none); ``input_qos``: the parameter.
    """

    topic: str
    publishers: int = 0
    silent_s: float | None = None
    reliability: str = RELIABLE
    best_effort_publishers: int = 0
    incompatible_qos: str = ""
    input_qos: str = "auto"


def silence_reason(link: InputLink) -> str:
    """Why ``link`` probably gets nothing from its publishers, and what to do (one sentence or two)."""
    n, be = link.publishers, link.best_effort_publishers
    if link.reliability == RELIABLE and (be or link.incompatible_qos):
        policy = link.incompatible_qos or "RELIABILITY"
        return (f"QoS incompatible ({policy}): {be or 'a'} publisher(s) offer best effort, this subscription is "
                f"reliable, so they do not match; set input_qos: auto (or sensor_data), or publish reliable")
    if link.reliability == BEST_EFFORT:
        fix = ("set input_qos: reliable (or auto), the publishers are reliable" if be == 0 else
               "publish reliable (input_qos: auto then subscribes reliable) or smaller messages")
        return (f"the subscription is best effort, and best-effort messages above {BEST_EFFORT_LIMIT_TEXT} are "
                f"mostly lost over Fast DDS (the default middleware); {fix}")
    return (f"{n} reliable publisher(s) matched but sent nothing: the publisher is idle, or a message stuck in "
            "the transport")


@dataclass
class StageHealth:
    """Turns cumulative :class:`StageStats` into a level, a message and rates, one call per report."""

    input_topics: tuple[str, ...]
    hold_s: float = 5.0
    stall_s: float = 10.0
    input_timeout_s: float = 3.0  # 0: no silence warning
    _last: Snapshot | None = None
    _last_failure_t: float = -1e18
    _last_rejection_t: float = -1e18
    _last_config_failure_t: float = -1e18
    _config_failures: int = 0
    rates: dict[str, float] = field(default_factory=dict)

    def update(self, stats: StageStats, received: int, *, busy_for_s: float | None = None,
               links: Sequence[InputLink] = (), stage_error: str = "", config_error: str = "",
               config_failures: int = 0, now: float | None = None) -> tuple[int, str]:
        """Level and message for this report. ``received``: inputs the host got; ``busy_for_s``: how long the
        worker has been on its current frame (None when idle); ``links``: the input subscriptions (silence
        check); ``stage_error``: why the stage cannot be built now ("" when it can); ``config_error`` /
        ``config_failures``: the last failed reconfiguration and how many failed so far (an increase is an
        event held for ``hold_s``); ``now``: monotonic seconds."""
        now = time.monotonic() if now is None else now
        if config_failures > self._config_failures:
            self._last_config_failure_t = now
        self._config_failures = config_failures
        snap = Snapshot(now, received, stats.processed, stats.rejected, stats.failed, stats.dropped)
        last = self._last or Snapshot(now, 0, 0, 0, 0, 0)
        if snap.failed > last.failed:
            self._last_failure_t = now
        if snap.rejected > last.rejected:
            self._last_rejection_t = now
        dt = max(now - last.t, 1e-9) if self._last is not None else 0.0
        self.rates = {
            "input_hz": (snap.received - last.received) / dt if dt else 0.0,
            "processed_hz": (snap.processed - last.processed) / dt if dt else 0.0,
        }
        self._last = snap
        if stage_error:
            return ERROR, f"the stage cannot be built, every frame fails: {stage_error}"
        if config_error and now - self._last_config_failure_t <= self.hold_s:
            return ERROR, config_error
        if now - self._last_failure_t <= self.hold_s:
            return ERROR, f"processing failed ({stats.failed} frame(s) in total): {stats.last_error}"
        silent = [link for link in links if self.input_timeout_s > 0 and link.publishers > 0
                  and link.silent_s is not None and link.silent_s > self.input_timeout_s]
        if silent:
            return WARN, "; ".join(
                f"nothing received on {link.topic} for {link.silent_s:.1f} s although {link.publishers} "
                f"publisher(s) exist: {silence_reason(link)}" for link in silent)
        if now - self._last_rejection_t <= self.hold_s:
            return WARN, f"input rejected ({stats.rejected} in total): {stats.last_error}"
        if busy_for_s is not None and busy_for_s > self.stall_s and snap.dropped > last.dropped:
            return WARN, f"stage busy on one frame for {busy_for_s:.1f} s; newer inputs are being dropped"
        if received == 0:
            idle = [link.topic for link in links if link.publishers == 0]
            return OK, "waiting for input on " + ", ".join(self.input_topics) + (
                f" (no publisher on {', '.join(idle)})" if idle else "")
        if stats.processed == 0:
            return OK, "no frame processed yet"
        return OK, (f"ok: {self.rates['processed_hz']:.1f} Hz processed, last {stats.last_latency_ms:.0f} ms "
                    f"(mean {stats.mean_latency_ms:.0f} ms)")


def stage_status(name: str, hardware_id: str, level: int, message: str, stats: StageStats,
                 values: Mapping[str, Any]) -> Any:
    """``diagnostic_msgs/DiagnosticStatus`` with the stage counters, ``values`` and the given level."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    pairs = dict(stats.as_dict())
    pairs.update({k: str(v) for k, v in values.items()})
    return DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in pairs.items()])
