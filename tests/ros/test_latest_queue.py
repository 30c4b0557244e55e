"""The latest-only hand-off and the diagnostic levels (no rclpy needed)."""

from __future__ import annotations

import threading
import time

from gen3d_ros.pipeline.base import StageStats
from gen3d_ros.ros.diagnostics import ERROR, OK, WARN, StageHealth
from gen3d_ros.ros.latest_queue import LatestOnlyQueue, Worker


def test_a_newer_message_replaces_the_pending_one_and_counts_as_dropped():
    queue = LatestOnlyQueue()
    assert not queue.put("cloud", 1)
    assert not queue.put("image", "a")
    assert queue.put("cloud", 2)
    assert queue.dropped == 1 and len(queue) == 2
    assert queue.get(0).msg == "a"  # oldest slot first: the replaced cloud moved to the back
    assert queue.get(0).msg == 2
    assert queue.get(0.01) is None


def test_put_never_blocks_while_the_worker_is_busy_and_the_worker_gets_the_latest():
    queue = LatestOnlyQueue()
    release, seen = threading.Event(), []

    def handler(pending):
        seen.append(pending.msg)
        release.wait(5)

    worker = Worker(queue, handler, name="test_worker")
    worker.start()
    queue.put("cloud", 0)
    while not seen:
        time.sleep(0.001)
    start = time.perf_counter()
    for i in range(1, 101):
        queue.put("cloud", i)
    assert time.perf_counter() - start < 0.5  # callbacks never wait for the stage
    assert worker.busy_since is not None
    release.set()
    while len(seen) < 2:
        time.sleep(0.001)
    assert seen == [0, 100] and queue.dropped == 99
    assert worker.stop(timeout=2.0)


def test_worker_survives_a_handler_that_raises():
    queue, errors, done = LatestOnlyQueue(), [], threading.Event()

    def handler(pending):
        if pending.msg == "bad":
            raise RuntimeError("boom")
        done.set()

    worker = Worker(queue, handler, name="test_worker", on_error=errors.append)
    worker.start()
    queue.put("x", "bad")
    time.sleep(0.05)
    queue.put("x", "good")
    assert done.wait(2.0)
    assert [str(e) for e in errors] == ["boom"]
    assert worker.stop(timeout=2.0)


def test_health_levels_follow_failures_rejections_and_stalls():
    health = StageHealth(("/in",), hold_s=5.0, stall_s=10.0)
    stats = StageStats()
    assert health.update(stats, 0, now=0.0) == (OK, "waiting for input on /in")
    stats.processed = 10
    level, message = health.update(stats, 12, now=1.0)
    assert level == OK and "10.0 Hz" in message
    stats.rejected, stats.last_error = 1, "rejected: empty"
    assert health.update(stats, 13, now=2.0)[0] == WARN
    stats.failed, stats.last_error = 1, "RuntimeError: x"
    level, message = health.update(stats, 14, now=3.0)
    assert level == ERROR and "RuntimeError: x" in message
    assert health.update(stats, 14, now=7.5)[0] == ERROR  # held for hold_s
    assert health.update(stats, 14, now=8.5)[0] == OK
    stats.dropped = 5
    assert health.update(stats, 20, busy_for_s=12.0, now=9.5)[0] == WARN  # stuck on one frame
    stats.dropped = 6
    assert health.update(stats, 21, busy_for_s=0.5, now=10.5)[0] == OK  # drops alone are by design
