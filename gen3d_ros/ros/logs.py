"""Python ``logging`` of the stages inside a node: at most one record per second per call site. No rclpy here.

Stages log each rejected input (``pipeline/base.py``); at a sensor's rate that is a flood. The counts and the
last reason are in /diagnostics anyway, so the log only needs a sample.
"""

from __future__ import annotations

import logging
import time


class ThrottleFilter(logging.Filter):
    """Lets a record through if its call site (logger, level, file, line) has not logged for ``interval_s``."""

    def __init__(self, interval_s: float = 1.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.pathname, record.lineno)
        now = time.monotonic()
        if now - self._last.get(key, -1e18) < self.interval_s:
            return False
        self._last[key] = now
        return True


def setup_stage_process_logging() -> None:
    """Logging of a stage process: INFO and up to stderr (the node's terminal or log), throttled."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(levelname)s] [%(name)s] (stage process): %(message)s"))
    handler.addFilter(ThrottleFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
