"""Diagnostics of a stage node: :class:`StageStats` -> ``diagnostic_msgs/DiagnosticStatus`` once a period.

Levels (``diagnostic_msgs/DiagnosticStatus``), from the events of the last ``hold_s`` seconds:

- ERROR: a frame failed (the stage raised on it: a bug or a broken model), message has the last error;
- WARN: an input was rejected (malformed/empty message), or the stage has been busy on one frame for longer
  than ``stall_s`` while new inputs keep being dropped;
- OK: otherwise (also before the first input, "waiting for input on <topic>"). Dropped frames alone are not a
  problem: the latest-only queue drops whatever arrives while the stage is busy, by design; the counts and
  rates are in the values.

:class:`StageHealth` holds the level logic and has no rclpy in it; :func:`stage_status` builds the message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from gen3d_ros.pipeline.base import StageStats

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


@dataclass
class StageHealth:
    """Turns cumulative :class:`StageStats` into a level, a message and rates, one call per report."""

    input_topics: tuple[str, ...]
    hold_s: float = 5.0
    stall_s: float = 10.0
    _last: Snapshot | None = None
    _last_failure_t: float = -1e18
    _last_rejection_t: float = -1e18
    rates: dict[str, float] = field(default_factory=dict)

    def update(self, stats: StageStats, received: int, *, busy_for_s: float | None = None,
               now: float | None = None) -> tuple[int, str]:
        """Level and message for this report. ``received``: inputs the host got; ``busy_for_s``: how long the
        worker has been on its current frame (None when idle)."""
        now = time.monotonic() if now is None else now
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
        if now - self._last_failure_t <= self.hold_s:
            return ERROR, f"processing failed ({stats.failed} frame(s) in total): {stats.last_error}"
        if now - self._last_rejection_t <= self.hold_s:
            return WARN, f"input rejected ({stats.rejected} in total): {stats.last_error}"
        if busy_for_s is not None and busy_for_s > self.stall_s and snap.dropped > last.dropped:
            return WARN, f"stage busy on one frame for {busy_for_s:.1f} s; newer inputs are being dropped"
        if received == 0:
            return OK, "waiting for input on " + ", ".join(self.input_topics)
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
