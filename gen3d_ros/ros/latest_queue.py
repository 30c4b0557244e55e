"""Latest-only hand-off from subscription callbacks to one worker thread. No rclpy here.

A callback :meth:`LatestOnlyQueue.put` s a message and returns at once; the worker :meth:`get` s it. Each key
(a stage input) has one slot: a message that arrives while the previous one of the same key is still pending
replaces it, and the replaced one is counted as dropped. So a slow stage always works on the newest data and
the callbacks never block, whatever the input rate.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Pending:
    """A message waiting for the worker: its key (input name), the message, its arrival (monotonic s)."""

    key: str
    msg: Any
    arrival: float


class LatestOnlyQueue:
    """One slot per key; :meth:`get` returns the oldest pending slot (arrival order across keys)."""

    def __init__(self) -> None:
        self._slots: OrderedDict[str, Pending] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, key: str, msg: Any) -> bool:
        """Queue ``msg`` under ``key``; True if it replaced a pending message (which counts as dropped)."""
        with self._cond:
            replaced = key in self._slots
            if replaced:
                del self._slots[key]  # the newer message goes to the back of the arrival order
                self.dropped += 1
            self._slots[key] = Pending(key, msg, time.monotonic())
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> Pending | None:
        """The oldest pending message, waiting up to ``timeout`` s; None on timeout or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._slots or self._closed, timeout):
                return None
            if self._closed:
                return None
            _, pending = self._slots.popitem(last=False)
            return pending

    def close(self) -> None:
        """Wake the worker and make every later :meth:`get` return None; pending messages are discarded."""
        with self._cond:
            self._closed = True
            self._slots.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._slots)


class Worker:
    """A daemon thread that feeds every message of a :class:`LatestOnlyQueue` to ``handler(pending)``.

    ``handler`` must not raise; if it does, the exception goes to ``on_error`` and the worker carries on.
    """

    def __init__(self, queue: LatestOnlyQueue, handler: Callable[[Pending], None], *, name: str,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.queue = queue
        self.handler = handler
        self.on_error = on_error
        self.busy_since: float | None = None  # monotonic start of the message being handled, if any
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            pending = self.queue.get()
            if pending is None:
                return
            self.busy_since = time.monotonic()
            try:
                self.handler(pending)
            except BaseException as exc:  # noqa: BLE001 - the worker outlives any one message
                if self.on_error is not None:
                    self.on_error(exc)
            finally:
                self.busy_since = None

    def stop(self, timeout: float = 5.0) -> bool:
        """Close the queue and join; False if the message being handled did not finish within ``timeout`` s."""
        self.queue.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()
