#!/usr/bin/env python3
"""Reliability of the live completion node (real rclpy, Fast DDS, ``worker: process``), not run in CI.

    .venv/bin/python bench/reliability.py live                     # the malformed set, ~2 min
    .venv/bin/python bench/reliability.py soak --minutes 10        # 2.7 MB HDL-64 sweeps at 10 Hz for 10 min
    .venv/bin/python bench/reliability.py soak --minutes 1 --method classical-ballpivot --out /tmp/r
    .venv/bin/python bench/reliability.py fuzz --scale 20          # tests/fuzz with 20x the examples

- ``live``: starts ``completion_node`` (its params file, defaults) and sends each malformed PointCloud2 of
  ``tests/ros/malformed_clouds.py`` (45 messages, 28 kinds: wrong sizes, bad fields, NaN/inf/far points, huge
  width with tiny data, big-endian flag, random point bytes, raw CDR garbage), each followed by a valid cloud.
  ``live_malformed_survived``: malformed messages after which the node still meshed the next valid cloud;
  ``node_restarts``: restarts of its stage process; per kind, what the node made of it (``live.<kind>``:
  rejected / failed / processed / dropped).
- ``soak``: the node fed real-size sweeps: the simulator's ``--preset`` LiDAR (default ``hdl64``, 64 beams,
  ~125k points) driving through a generated street, in a Velodyne driver's point layout (x, y, z, intensity
  float32, ring uint16, time float32: 22 bytes a point, ~2.7 MB a sweep), published reliable (``rclcpp::QoS(10)``,
  the default of most drivers) at ``--rate`` Hz for ``--minutes``. Counts frames published, received by the node,
  processed, dropped by its latest-only queue, outputs received back (``--listen``: the completed voxels by
  default, cheap to receive; or the CompletedMesh), also per minute; latency from the sweep's stamp (wall clock
  at publish) to the output's arrival (p50/p99); RSS of the node process and of its stage process at the first
  output, at the end and the largest seen; the node's CPU share.
- ``fuzz``: ``GEN3D_FUZZ_SCALE=<scale> pytest tests/fuzz`` in this process, then the fuzz harness's counts
  (``fuzz_cases``, ``fuzz_crashes``), and ``checkpoint_loads_weights_only`` (no ``weights_only=False`` and no
  ``pickle.load`` under ``gen3d_ros/`` and ``bench/``).

Every subcommand merges its flat keys (plus ``device``, versions and ``command`` under a prefix of its own) into
``<out>/reliability.json`` (default ``bench/results``): other benches write other keys of the same file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ROS_TESTS = REPO / "tests" / "ros"
for _path in (REPO, ROS_TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

NODE_NAME = "completion_node"
CLOUD_TOPIC = "/points"
MESH_TOPIC = "/completion_node/mesh"
VOXELS_TOPIC = "/completion_node/voxels"


# --- results ---------------------------------------------------------------------------------------------------


def merge_results(path: Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Read ``path`` (if any), update it with ``updates``, write it back atomically; the merged dict."""
    from gen3d_ros.outputs import write_json

    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path} is not valid JSON ({exc}); move it away or fix it before merging into it")
    data.update(updates)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)
    return data


def environment(prefix: str) -> dict[str, Any]:
    """``device``, library versions and ``command`` of this run, also under ``<prefix>.`` (the file collects
    several subcommands' runs; the unprefixed keys are the last run's)."""
    from importlib import metadata

    out: dict[str, Any] = {
        "device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} core(s)",
        "python": platform.python_version(),
    }
    for dist in ("ros-jazzy-rclpy", "ros-fastrtps", "numpy", "torch", "open3d-cpu", "open3d", "hypothesis",
                 "rosbags"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    out["command"] = "bench/reliability.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return out | {f"{prefix}.{k}": v for k, v in out.items()}


# --- a node under test and a probe node in this process ------------------------------------------------------


def domain_id() -> int:
    """A ROS_DOMAIN_ID in [101, 200] for this run (away from the tests' 1..100)."""
    return 101 + zlib.crc32(f"reliability:{os.getpid()}".encode()) % 100


class NodeProcess:
    """``python -m gen3d_ros.ros.completion_node`` with its params file and ``params`` overrides, in ``domain``;
    output in ``log_dir``."""

    def __init__(self, domain: int, params: dict[str, str], log_dir: Path) -> None:
        from ros_harness import child_env

        argv = [sys.executable, "-m", "gen3d_ros.ros.completion_node", "--ros-args", "--params-file",
                str(REPO / "config" / "completion_node.yaml")]
        for key, value in params.items():
            argv += ["-p", f"{key}:={value}"]
        self.log = log_dir / "completion_node.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(argv, cwd=REPO, env=child_env(domain), stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._out.close()
        return self.proc.returncode


class Probe:
    """An rclpy node in this process: publishes clouds, collects the node's outputs (stamp, arrival, size) and its
    diagnostics. ``listen``: ``mesh`` (CompletedMesh: rclpy builds a Python object per vertex and triangle, ~1 s
    of this process's CPU for a 100k-point sweep's mesh) or ``voxels`` (the completed voxels, a PointCloud2 with
    the same stamp, published in the same step: cheap to receive, so this process does not compete with the
    node for the CPU). :meth:`spin_until` runs its executor in the calling thread."""

    def __init__(self, domain: int, pub_qos: str = "reliable", listen: str = "mesh") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import PointCloud2

        from gen3d_ros.msg import CompletedMesh

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("reliability_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        reliability = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
        self.pub = self.node.create_publisher(PointCloud2, CLOUD_TOPIC,
                                              QoSProfile(depth=10, reliability=reliability[pub_qos]))
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.meshes: list[tuple[int, float, int]] = []  # (stamp ns, arrival wall ns, triangles)
        self._lock = threading.Lock()
        if listen == "mesh":
            self.node.create_subscription(CompletedMesh, MESH_TOPIC, self._on_mesh, reliable)
        else:
            self.node.create_subscription(PointCloud2, VOXELS_TOPIC, self._on_voxels, reliable)
        self.diag: list[Any] = []
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics",
            lambda a: self.diag.extend(s for s in a.status if s.name.startswith(NODE_NAME)), reliable)

    def _on_voxels(self, msg: Any) -> None:
        arrival = time.time_ns()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self._lock:
            self.meshes.append((stamp, arrival, int(msg.width)))

    def _on_mesh(self, msg: Any) -> None:
        arrival = time.time_ns()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self._lock:
            self.meshes.append((stamp, arrival, len(msg.mesh.triangles)))

    def values(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.diag[-1].values} if self.diag else {}

    def spin_until(self, predicate: Any, timeout: float, node: NodeProcess | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
            if node is not None and not node.alive():
                raise RuntimeError(f"the completion node exited with {node.proc.returncode}:\n{node.tail()}")
        return bool(predicate())

    def has_mesh(self, stamp: int) -> bool:
        with self._lock:
            return any(s == stamp for s, _, _ in self.meshes)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.executor.shutdown(timeout_sec=1.0)
        self.rclpy.try_shutdown(context=self.context)


def wait_ready(probe: Probe, node: NodeProcess, timeout: float = 60.0) -> None:
    if not probe.spin_until(lambda: probe.diag and probe.pub.get_subscription_count() > 0, timeout, node):
        raise RuntimeError(f"the completion node did not come up in {timeout:.0f} s:\n{node.tail()}")


def rss_mb(pid: int | None) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20 if pid else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 when it is gone)."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return 0.0


def node_pids(probe: Probe, node: NodeProcess) -> tuple[int | None, int | None]:
    """(node process pid, stage process pid): the stage's parent is the node (the wheels' bootstrapper may
    re-execute the interpreter, so the Popen pid is not trusted)."""
    import psutil

    stage = probe.values().get("stage_pid")
    stage_pid = int(stage) if stage and stage != "None" else None
    node_pid = node.proc.pid
    if stage_pid:
        try:
            node_pid = psutil.Process(stage_pid).ppid()
        except psutil.NoSuchProcess:
            pass
    return node_pid, stage_pid


# --- live: the malformed set -----------------------------------------------------------------------------------


def run_live(args: argparse.Namespace) -> dict[str, Any]:
    from malformed_clouds import malformed_clouds
    from ros_harness import make_cloud, plane_and_box

    from tqdm import tqdm

    domain = domain_id()
    log_dir = Path(tempfile.mkdtemp(prefix="reliability_live_"))
    node = NodeProcess(domain, dict(args.param), log_dir)
    probe = Probe(domain)
    cases = malformed_clouds(seed=args.seed)
    good = plane_and_box(seed=11)
    outcome: dict[str, str] = {}
    survived = 0
    counters = ("processed", "rejected", "failed", "dropped")
    try:
        wait_ready(probe, node)
        for i, case in enumerate(tqdm(cases, desc="malformed", unit="msg")):
            before = {k: int(probe.values()[k]) for k in counters}
            probe.pub.publish(case.payload)
            probe.spin_until(lambda: False, args.gap_s, node)
            stamp = 1_900_000_000_000_000_000 + i
            probe.pub.publish(make_cloud(good, stamp_ns=stamp))
            meshed = probe.spin_until(lambda: probe.has_mesh(stamp), args.timeout_s, node)
            reports = len(probe.diag)
            probe.spin_until(lambda: len(probe.diag) > reports, 5.0, node)  # counters after both messages
            delta = {k: int(probe.values()[k]) - before[k] for k in counters}
            delta["processed"] -= 1 if meshed else 0  # the valid cloud
            outcome[case.name] = "+".join(k for k in counters for _ in range(delta[k])) or "unaccounted"
            survived += int(meshed and node.alive())
        values = probe.values()
    finally:
        probe.close()
        code = node.stop()
    result = {
        "live_malformed_sent": len(cases),
        "live_malformed_survived": survived,
        "live_malformed_must_reject": sum(c.must_reject for c in cases),
        "live_malformed_rejected": sum(v.count("rejected") for v in outcome.values()),
        "live_malformed_failed": sum(v.count("failed") for v in outcome.values()),
        "live_malformed_processed": sum(v.count("processed") for v in outcome.values()),
        "live_malformed_dropped": sum(v.count("dropped") for v in outcome.values()),
        "live_must_reject_not_rejected": [c.name for c in cases if c.must_reject
                                          and outcome.get(c.name) not in ("rejected", "dropped")],
        "node_restarts": int(float(values.get("stage_process_restarts", "0"))),
        "live_node_exit_code": code,
        "live_node_params": dict(args.param),
    }
    result.update({f"live.{name}": what for name, what in outcome.items()})
    return result


# --- soak: real-size sweeps at 10 Hz -----------------------------------------------------------------------------


def velodyne_clouds(preset: str, n: int, seed: int) -> list[Any]:
    """``n`` simulated sweeps of LiDAR ``preset`` through a generated street, as rclpy PointCloud2 in a Velodyne
    driver's layout (x y z intensity float32, ring uint16, time float32; 22 bytes a point, unorganized)."""
    from sensor_msgs.msg import PointCloud2, PointField

    from gen3d_ros.demo import clear_drive_start
    from gen3d_ros.sim import LidarConfig, SceneConfig, generate_scene, simulate_drive

    scene = generate_scene(SceneConfig(), seed=seed)
    sweeps = simulate_drive(scene, LidarConfig.preset(preset), n_sweeps=n, seed=seed,
                            start_s_m=clear_drive_start(scene, n, seed=seed))
    layout = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "time"],
                       "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f4"],
                       "offsets": [0, 4, 8, 12, 16, 18], "itemsize": 22})
    fields = [PointField(name=name, offset=layout.fields[name][1], datatype=dt, count=1)
              for name, dt in (("x", 7), ("y", 7), ("z", 7), ("intensity", 7), ("ring", 4), ("time", 7))]
    clouds = []
    for sweep in sweeps:
        scan = sweep.scan
        rec = np.zeros(len(scan), layout)
        rec["x"], rec["y"], rec["z"] = scan.points[:, 0], scan.points[:, 1], scan.points[:, 2]
        rec["intensity"], rec["ring"], rec["time"] = scan.intensity * 255.0, scan.ring, scan.time
        msg = PointCloud2(height=1, width=len(scan), fields=fields, is_bigendian=False, point_step=22,
                          row_step=22 * len(scan), data=rec.tobytes(), is_dense=True)
        msg.header.frame_id = "velodyne"
        clouds.append(msg)
    return clouds


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    params = dict(args.param)
    if args.method:
        params["method"] = args.method
    domain = domain_id()
    log_dir = Path(tempfile.mkdtemp(prefix="reliability_soak_"))
    print(f"simulating {args.sweeps} {args.preset} sweeps ...", flush=True)
    probe = Probe(domain, args.pub_qos, listen=args.listen)
    clouds = velodyne_clouds(args.preset, args.sweeps, args.seed)
    cloud_bytes = int(np.mean([len(c.data) for c in clouds]))
    node = NodeProcess(domain, params, log_dir)
    published = {"n": 0}
    stop = threading.Event()

    def publish_loop() -> None:  # its own thread: the executor (mesh arrivals) keeps the main thread
        period, start, i = 1.0 / args.rate, time.monotonic(), 0
        while not stop.is_set():
            delay = start + i * period - time.monotonic()
            if delay > 0:
                stop.wait(delay)
                continue
            if delay < -period:  # this process was starved: resume the 10 Hz beat, no catch-up burst
                start = time.monotonic() - i * period
            msg = clouds[i % len(clouds)]
            now = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = now // 10**9, now % 10**9
            probe.pub.publish(msg)
            published["n"] += 1
            i += 1

    result: dict[str, Any] = {}
    try:
        wait_ready(probe, node)
        publisher = threading.Thread(target=publish_loop, name="soak_publisher", daemon=True)
        publisher.start()
        if not probe.spin_until(lambda: probe.meshes, 600.0, node):
            raise RuntimeError(f"no output within 600 s of the first sweep:\n{node.tail()}")
        probe.spin_until(lambda: probe.values().get("stage_pid") not in (None, "None"), 5.0, node)
        node_pid, stage_pid = node_pids(probe, node)
        rss_start = (rss_mb(node_pid), rss_mb(stage_pid))
        cpu_start = (cpu_seconds(node_pid), time.monotonic())
        t0, first_meshes, first_published = time.monotonic(), len(probe.meshes), published["n"]
        start_values = probe.values()
        load_start = os.getloadavg()[0]
        rss_max = list(rss_start)
        per_minute: list[dict[str, int]] = []
        total = int(args.minutes * 60)
        with tqdm(total=total, desc="soak", unit="s") as bar:
            done = 0
            while done < total:
                probe.spin_until(lambda: False, 1.0, node)
                now_done = min(total, int(time.monotonic() - t0))
                bar.update(now_done - done)
                done = now_done
                v = probe.values()
                node_pid, stage_pid = node_pids(probe, node)  # a restarted stage process has a new pid
                for k, pid in enumerate((node_pid, stage_pid)):
                    rss_max[k] = max(x for x in (rss_max[k], rss_mb(pid), 0.0) if x is not None)
                if done >= 60 * (len(per_minute) + 1):
                    per_minute.append({"published": published["n"] - first_published, **{
                        k: int(v[k]) - int(start_values[k]) for k in ("received", "processed", "dropped")},
                        "node_rss_mb": round(rss_mb(node_pid) or 0.0, 1),
                        "worker_rss_mb": round(rss_mb(stage_pid) or 0.0, 1)})
                bar.set_postfix(pub=published["n"], recv=v.get("received"), proc=v.get("processed"),
                                drop=v.get("dropped"), fail=v.get("failed"))
        soak_s = time.monotonic() - t0
        node_pid, stage_pid = node_pids(probe, node)
        rss_end = (rss_mb(node_pid), rss_mb(stage_pid))
        node_cpu = (cpu_seconds(node_pid) - cpu_start[0]) / (time.monotonic() - cpu_start[1])
        load_end = os.getloadavg()[0]
        stop.set()
        last_published = published["n"]
        publisher.join(5.0)
        reports = len(probe.diag)
        probe.spin_until(lambda: len(probe.diag) > reports + 1, 5.0, node)
        values = probe.values()
        with probe._lock:
            meshes = list(probe.meshes[first_meshes:])
        latencies = np.array([(arrival - stamp) / 1e6 for stamp, arrival, _ in meshes])

        def delta(key: str) -> int:
            return int(values[key]) - int(start_values[key])

        result = {
            "soak_seconds": round(soak_s, 1),
            "soak_method": params.get("method", "default (params file: classical-poisson)"),
            "soak_preset": args.preset,
            "soak_rate_hz": args.rate,
            "soak_cloud_bytes": cloud_bytes,
            "soak_cloud_points": int(np.mean([c.width for c in clouds])),
            "soak_published": last_published - first_published,
            "soak_received": delta("received"),
            "soak_processed": delta("processed"),
            "soak_dropped_frames": delta("dropped"),
            "soak_rejected": delta("rejected"),
            "soak_failed": delta("failed"),
            "soak_outputs": len(meshes),
            "soak_latency_ms_p50": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "soak_latency_ms_p99": float(np.percentile(latencies, 99)) if len(latencies) else None,
            "soak_rss_mb_start": None if None in rss_start else sum(rss_start),
            "soak_rss_mb_end": None if None in rss_end else sum(rss_end),
            "soak_node_rss_mb_start": rss_start[0],
            "soak_node_rss_mb_end": rss_end[0],
            "soak_worker_rss_mb_start": rss_start[1],
            "soak_worker_rss_mb_end": rss_end[1],
            "soak_node_rss_mb_max": rss_max[0],
            "soak_worker_rss_mb_max": rss_max[1],
            "soak_node_cpu_percent": round(100 * node_cpu, 1),
            "soak_loadavg_1min_start": load_start,
            "soak_loadavg_1min_end": load_end,
            **{f"soak_{k}_by_minute": [m[k] for m in per_minute]
               for k in ("published", "received", "processed", "dropped", "node_rss_mb", "worker_rss_mb")},
            "soak_stage_restarts": int(float(values.get("stage_process_restarts", "0"))),
            "soak_pub_qos": args.pub_qos,
            "soak_listen": args.listen,
            "soak_input_qos": values.get("input.cloud.qos", ""),
            "soak_note": ("counts are from the first output (after start-up) to the end (*_by_minute: "
                          "cumulative counts and RSS, once a minute); received counts the "
                          "node's subscription callbacks, published - received is what the transport lost (up "
                          "to one diagnostics report, 1 s, of skew between the two counts); latency: sweep stamp "
                          "(wall clock at publish) to the output (soak_listen) arriving here; RSS: at the first "
                          "output, "
                          "at the end (the stage process of then: it may have been restarted) and the largest "
                          "sampled once a second; node CPU: % of one core over the soak"),
        }
    finally:
        stop.set()
        probe.close()
        result["soak_node_exit_code"] = node.stop()
    return result


# --- fuzz: the hypothesis tests at a larger scale -----------------------------------------------------------------


def weights_only_everywhere() -> tuple[bool, list[str]]:
    """True when no ``weights_only=False`` and no ``pickle.load``/``pickle.loads`` call is left in the ``.py``
    files under ``gen3d_ros/`` and ``bench/``; the offending lines otherwise."""
    patterns = [re.compile(r"weights_only\s*=\s*False"), re.compile(r"\bpickle\s*\.\s*loads?\s*\(")]
    me = Path(__file__).resolve()
    hits = []
    for root in (REPO / "gen3d_ros", REPO / "bench"):
        for path in sorted(root.rglob("*.py")):
            if path.resolve() == me:  # this file names the patterns
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if any(p.search(line) for p in patterns):
                    hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    return not hits, hits


def run_fuzz(args: argparse.Namespace) -> dict[str, Any]:
    import pytest

    os.environ["GEN3D_FUZZ_SCALE"] = str(args.scale)
    import tests.fuzz.harness  # noqa: F401 - registered before pytest imports the test modules

    started = time.monotonic()
    code = pytest.main(["tests/fuzz", "-q", "-p", "no:cacheprovider", *args.pytest_args])
    # pytest may import the harness under another name (rootdir-relative); count every copy once
    harnesses = {id(m): m for name, m in list(sys.modules.items())
                 if m is not None and name.endswith("fuzz.harness") and hasattr(m, "totals")}
    cases = sum(m.totals()["fuzz_cases"] for m in harnesses.values())
    crashes = sum(m.totals()["fuzz_crashes"] for m in harnesses.values())
    safe, hits = weights_only_everywhere()
    if hits:
        print("weights_only=False / pickle.load found:\n  " + "\n  ".join(hits))
    return {"fuzz_cases": cases, "fuzz_crashes": crashes, "fuzz_scale": args.scale,
            "fuzz_pytest_exit_code": int(code), "fuzz_seconds": round(time.monotonic() - started, 1),
            "checkpoint_loads_weights_only": safe, "checkpoint_unsafe_loads": hits}


# --- command line --------------------------------------------------------------------------------------------------


def _param(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param wants NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                        help="folder of reliability.json (merged into, default bench/results)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    live = sub.add_parser("live", help="the malformed set against a live node")
    live.add_argument("--seed", type=int, default=0)
    live.add_argument("--gap-s", type=float, default=0.2, help="pause after each malformed message [s]")
    live.add_argument("--timeout-s", type=float, default=120.0, help="wait for the valid cloud's mesh [s]")
    live.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=VALUE",
                      help="node parameter override (repeatable)")
    soak = sub.add_parser("soak", help="real-size sweeps at 10 Hz for minutes")
    soak.add_argument("--minutes", type=float, default=10.0)
    soak.add_argument("--method", default="", help="completion method (default: the params file's)")
    soak.add_argument("--preset", default="hdl64", help="simulated LiDAR (hdl64, vlp32, vlp16)")
    soak.add_argument("--sweeps", type=int, default=50, help="distinct sweeps, published in a loop")
    soak.add_argument("--rate", type=float, default=10.0, help="publishing rate [Hz]")
    soak.add_argument("--pub-qos", choices=["reliable", "best_effort"], default="reliable")
    soak.add_argument("--seed", type=int, default=0)
    soak.add_argument("--listen", choices=["voxels", "mesh"], default="voxels",
                      help="output whose arrival ends a frame's latency (see Probe)")
    soak.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=VALUE",
                      help="node parameter override (repeatable)")
    fuzz = sub.add_parser("fuzz", help="tests/fuzz at a larger scale")
    fuzz.add_argument("--scale", type=float, default=10.0, help="GEN3D_FUZZ_SCALE: examples per test x this")
    fuzz.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    runner = {"live": run_live, "soak": run_soak, "fuzz": run_fuzz}[args.cmd]
    result = runner(args)
    result.update(environment(args.cmd))
    merged = merge_results(args.out / "reliability.json", result)
    width = max(len(k) for k in result)
    for key, value in result.items():
        if not key.startswith("live."):
            print(f"{key:<{width}}  {value}")
    print(f"merged into {args.out / 'reliability.json'} ({len(merged)} keys)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
