"""Helpers of the ROS graph tests: isolated domains, child processes that are always stopped, synthetic clouds.

Clouds are packed by hand here (not with ``gen3d_ros.io``) so the node's conversions are checked against an
independent writer. Importable without rclpy (message classes are imported inside the functions).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PUBLISHER = HERE / "publisher_process.py"
FRAME_PERIOD_NS = 100_000_000  # 10 Hz
TEST_FRAME = "lidar_test"


def domain_id_for(name: str) -> int:
    """A ROS_DOMAIN_ID in [1, 100] from a test's name and this process id (distinct per test and run)."""
    return 1 + zlib.crc32(f"{name}:{os.getpid()}".encode()) % 100


def child_env(domain_id: int) -> dict[str, str]:
    """Environment of a child ROS process: its own domain, discovery on this host only, unbuffered output.

    ``_ROS_WHEELS_BOOTSTRAP_COMPLETE`` is removed so the ros-wheels bootstrapper sets the child up itself.
    """
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    env.pop("RMW_IMPLEMENTATION", None)
    env.update({
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "PYTHONUNBUFFERED": "1",
        "RCUTILS_COLORIZED_OUTPUT": "0",
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    return env


class Child:
    """A child process with its output in files; :meth:`stop` always ends it (signal, then SIGKILL)."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        self._out = self.out_path.open("wb")
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=self._out, stderr=self._err,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0, *, group: bool = False) -> int:
        """Send ``sig`` (to the whole process group if ``group``, like Ctrl-C in a terminal), wait up to
        ``timeout`` s, then SIGKILL the process group; the exit code."""
        if self.proc.poll() is None:
            try:
                if group:
                    os.killpg(self.proc.pid, sig)
                else:
                    self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        for f in (self._out, self._err):
            f.close()
        return self.proc.returncode

    def _flush(self) -> None:
        for f in (self._out, self._err):
            if not f.closed:
                f.flush()

    def output(self) -> str:
        self._flush()
        return (f"--- {self.name} stdout\n{self.out_path.read_text(errors='replace')}"
                f"--- {self.name} stderr\n{self.err_path.read_text(errors='replace')}")

    def stderr(self) -> str:
        self._flush()
        return self.err_path.read_text(errors="replace")


def python_child(name: str, args: Sequence[str], domain_id: int, log_dir: Path) -> Child:
    """``python <args>`` (this interpreter) as a :class:`Child` in ``domain_id``."""
    return Child(name, [sys.executable, *args], child_env(domain_id), log_dir)


# --- synthetic clouds ----------------------------------------------------------------------------------------


def plane_and_box(seed: int = 0, n_plane: int = 2500, n_box: int = 1500) -> np.ndarray:
    """(N,3) float32 metres: a 10 m x 10 m ground plane 1.5 m below the sensor and the surface of a
    2 x 2 x 1.5 m box standing on it 3 m ahead (x forward, REP-103)."""
    rng = np.random.default_rng(seed)
    plane = np.c_[rng.uniform(-5.0, 5.0, (n_plane, 2)), np.full(n_plane, -1.5)]
    u = rng.uniform(-1.0, 1.0, (n_box, 3))
    face_axis = rng.integers(0, 3, n_box)
    u[np.arange(n_box), face_axis] = np.sign(u[np.arange(n_box), face_axis])
    box = u * [1.0, 1.0, 0.75] + [3.0, 0.0, -0.75]
    points = np.r_[plane, box] + rng.normal(0.0, 0.005, (n_plane + n_box, 3))
    return points.astype(np.float32)


def make_cloud(points: np.ndarray, *, stamp_ns: int, frame_id: str = TEST_FRAME, point_step: int = 16,
               field_step: int | None = None) -> Any:
    """An unorganized ``sensor_msgs/PointCloud2`` (rclpy) with float32 x, y, z and an ``intensity`` at offset
    12, padded to ``point_step`` bytes. ``field_step`` overrides the declared ``point_step`` (malformed clouds)."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import PointCloud2, PointField
    from std_msgs.msg import Header

    points = np.asarray(points, np.float32).reshape(-1, 3)
    n = len(points)
    rec = np.zeros(n, dtype=np.dtype({"names": ["x", "y", "z", "intensity"], "formats": ["<f4"] * 4,
                                      "offsets": [0, 4, 8, 12], "itemsize": max(point_step, 16)}))
    rec["x"], rec["y"], rec["z"] = points[:, 0], points[:, 1], points[:, 2]
    rec["intensity"] = np.linspace(0.0, 100.0, n, dtype=np.float32)
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, name in enumerate(["x", "y", "z", "intensity"])]
    step = point_step if field_step is None else field_step
    data = rec.tobytes()
    return PointCloud2(header=Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id),
                       height=1, width=n, fields=fields, is_bigendian=False, point_step=step, row_step=step * n,
                       data=data, is_dense=bool(np.isfinite(points).all()))


def completed_mesh_fields() -> dict:
    """Field values of the CompletedMesh that ``publisher_process.py completed_mesh`` publishes."""
    return {
        "frame_id": "lidar_mesh_test",
        "vertices": [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.5), (1.5, 1.25, -0.25)],
        "triangles": [(0, 1, 2), (1, 3, 2)],
        "colors": [(1.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 1.0), (0.0, 0.0, 1.0, 0.5), (0.25, 0.5, 0.75, 1.0)],
        "voxel_size": 0.125, "steps": 7, "input_points": 12345, "dropped_points": 67, "latency_ms": 12.5,
        "model_id": "hgca:0123456789ab",
    }


def stamp_ns_of(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


# --- spinning ----------------------------------------------------------------------------------------------------


def spin_until(executor: Any, predicate: Callable[[], bool], timeout: float, *,
               alive: Sequence[Child] = ()) -> bool:
    """Spin ``executor`` until ``predicate()`` holds (True) or ``timeout`` s pass (False).

    Raises AssertionError at once if a child in ``alive`` exits meanwhile (with its output).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
        for child in alive:
            if not child.alive():
                raise AssertionError(f"{child.name} exited with {child.proc.returncode}\n{child.output()}")
    return predicate()


def node_diagnostics(node: Any, prefix: str, qos: Any) -> list:
    """Subscribe ``node`` to /diagnostics; the list that collects the statuses whose name starts with ``prefix``."""
    from diagnostic_msgs.msg import DiagnosticArray

    statuses: list = []
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda a: statuses.extend(s for s in a.status if s.name.startswith(prefix)), qos)
    return statuses


def diagnostic_values(status: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def pid_exists(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie, dead but not yet reaped by its parent, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_pid_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_exists(pid)
