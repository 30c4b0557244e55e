#!/usr/bin/env python3
"""Do real-size PointCloud2 messages arrive? Delivery ratio and latency per publisher/subscription QoS and size.

    .venv/bin/python bench/qos_transport.py                                   # 0.5/1/2/4/8 MB, 10 Hz, 40 each
    .venv/bin/python bench/qos_transport.py --sizes-mb 1 4 --count 20 --out /tmp/q

For every message size, publisher QoS (``best_effort``: what ``sensor_data`` drivers publish with; ``reliable``:
``rclcpp::QoS(10)``, the default of many drivers) and subscription setting (the completion node's candidates:
``sensor_data`` = best effort depth 5; ``reliable_d1`` / ``reliable_d5`` = reliable depth 1 / 5; with ``--xml``
also ``sensor_data+udp`` / ``sensor_data+shm16`` = best effort with a Fast DDS XML profile on the subscriber only,
see ``XML_PROFILES``), a publisher process sends
``--count`` clouds at ``--rate`` Hz to a subscriber process on the same host (Fast DDS, the middleware of the
wheels: shared memory + UDP loopback). The subscriber counts distinct messages and the latency from the header
stamp (wall clock, set just before ``publish``) to its callback. A reliable subscription does not match a best
effort publisher (``matched: false``: nothing can arrive). Writes ``qos_transport.json`` (flat keys
``<pub>/<sub>/<size>MB.delivery``, ``….latency_ms_p50``, ``….latency_ms_p99``, ``….matched``; device, versions,
``net.core.rmem_max``, command) and ``qos_transport.md`` into ``--out`` (default ``bench/results``).

``--long-count N`` adds long runs (``long/reliable/<sub>/<size>MB.*`` keys): N reliable clouds of
``--long-size-mb`` at ``--long-rate`` Hz per subscription depth, with the delivery before and after the first
1000 messages: over Fast DDS 2.14, a reliable subscription whose history depth is below the publisher's (10 for
``rclcpp::QoS(10)``) gets every cloud for about 1000 clouds and then only a fraction, while depth 10 keeps
getting them all. ``--skip-matrix`` runs only those and merges them into an existing ``qos_transport.json``.

Children are this script itself (``pub`` / ``sub`` subcommands), each in its own ROS domain per pair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TOPIC = "/qos_bench/cloud"
PUB_KINDS = ("best_effort", "reliable")
SUB_KINDS = ("sensor_data", "reliable_d1", "reliable_d5")
POINT_STEP = 16  # x, y, z, intensity float32
LONG_WINDOW = 1000  # messages: the long runs report delivery before and after this many

#: Subscriber-side Fast DDS profiles tried by ``--xml`` (only the receiving participant gets them: a LiDAR
#: driver's participant is not ours to configure). ``udp``: no shared memory, UDP with a 4 MiB receive buffer
#: (capped by net.core.rmem_max); ``shm16``: shared memory with a 16 MiB segment, plus the UDP one.
_UDP = """<transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type>
      <receiveBufferSize>4194304</receiveBufferSize><sendBufferSize>4194304</sendBufferSize>
    </transport_descriptor>"""
_SHM = """<transport_descriptor><transport_id>shm</transport_id><type>SHM</type>
      <segment_size>16777216</segment_size></transport_descriptor>"""


def fastdds_xml(transports: dict[str, str]) -> str:
    """A default Fast DDS participant profile using only ``transports`` (id -> descriptor XML)."""
    ids = "".join(f"<transport_id>{t}</transport_id>" for t in transports)
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>{"".join(transports.values())}</transport_descriptors>
  <participant profile_name="gen3d_large_messages" is_default_profile="true">
    <rtps><userTransports>{ids}</userTransports><useBuiltinTransports>false</useBuiltinTransports></rtps>
  </participant>
</profiles>
"""


XML_PROFILES = {"udp": fastdds_xml({"udp": _UDP}), "shm16": fastdds_xml({"shm": _SHM, "udp": _UDP})}


def qos_of(kind: str):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    best, rel = ReliabilityPolicy.BEST_EFFORT, ReliabilityPolicy.RELIABLE
    reliability, depth = {"best_effort": (best, 5), "reliable": (rel, 10), "sensor_data": (best, 5),
                          "reliable_d1": (rel, 1), "reliable_d5": (rel, 5),
                          "reliable_d10": (rel, 10)}[kind.split("+")[0]]
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def cloud_of(size_bytes: int):
    """A PointCloud2 of about ``size_bytes`` of data (random points, 16-byte records)."""
    from sensor_msgs.msg import PointCloud2, PointField

    n = max(1, size_bytes // POINT_STEP)
    data = np.random.default_rng(0).uniform(-50, 50, (n, 4)).astype(np.float32)
    fields = [PointField(name=c, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, c in enumerate("x y z intensity".split())]
    return PointCloud2(height=1, width=n, fields=fields, is_bigendian=False, point_step=POINT_STEP,
                       row_step=POINT_STEP * n, data=data.tobytes(), is_dense=True)


def run_pub(args: argparse.Namespace) -> int:
    """Child: wait up to ``--match-s`` for a subscriber, publish ``--count`` clouds at ``--rate`` Hz."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node("qos_bench_pub")
    from sensor_msgs.msg import PointCloud2

    pub = node.create_publisher(PointCloud2, TOPIC, qos_of(args.qos))
    msg = cloud_of(int(args.size_mb * 1e6))
    deadline = time.monotonic() + args.match_s
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # let the subscriber's side of the match settle too
    period = 1.0 / args.rate
    start = time.monotonic()
    for i in range(args.count):
        target = start + i * period
        time.sleep(max(0.0, target - time.monotonic()))
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = now // 10**9, now % 10**9
        msg.header.frame_id = str(i)
        pub.publish(msg)
    time.sleep(args.linger_s)  # a reliable writer keeps repairing while it exists
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def run_sub(args: argparse.Namespace) -> int:
    """Child: subscribe, record (index, latency) of every message until SIGUSR1 or ``--seconds``; JSON to
    stdout."""
    import signal

    import rclpy
    from rclpy.event_handler import SubscriptionEventCallbacks

    rclpy.init()
    node = rclpy.create_node("qos_bench_sub")
    from sensor_msgs.msg import PointCloud2

    got: dict[int, float] = {}
    incompatible = {"n": 0}

    def on_msg(msg) -> None:
        arrival = time.time_ns()
        sent = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        got.setdefault(int(msg.header.frame_id), (arrival - sent) / 1e6)

    def on_incompatible(event) -> None:
        incompatible["n"] = event.total_count

    node.create_subscription(PointCloud2, TOPIC, on_msg, qos_of(args.qos),
                             event_callbacks=SubscriptionEventCallbacks(incompatible_qos=on_incompatible))
    stop = {"now": False}
    signal.signal(signal.SIGUSR1, lambda *_: stop.update(now=True))
    deadline = time.monotonic() + args.seconds
    matched = False
    while time.monotonic() < deadline and not stop["now"]:
        rclpy.spin_once(node, timeout_sec=0.05)
        matched = matched or node.count_publishers(TOPIC) > 0
    print(json.dumps({"received": {str(k): v for k, v in got.items()}, "incompatible_qos": incompatible["n"],
                      "publisher_seen": matched}))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def child_env(domain: int, xml: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)  # the wheels' bootstrapper must set each child up itself
    env.update({"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1"})
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    if xml:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(xml)
    return env


def measure_pair(pub: str, sub: str, size_mb: float, args: argparse.Namespace, domain: int,
                 xml_dir: Path) -> dict[str, float | bool | None]:
    """One publisher/subscriber pair; delivery ratio, latency percentiles (ms), whether they matched."""
    me = [sys.executable, str(Path(__file__).resolve())]
    send_s = args.count / args.rate
    sub_seconds = args.match_s + 1.0 + send_s + args.linger_s
    profile = sub.split("+")[1] if "+" in sub else None
    sub_proc = subprocess.Popen(me + ["sub", "--qos", sub, "--seconds", f"{sub_seconds:.1f}"],
                                env=child_env(domain, xml_dir / f"{profile}.xml" if profile else None),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub_proc = subprocess.Popen(me + ["pub", "--qos", pub, "--size-mb", str(size_mb), "--count", str(args.count),
                                      "--rate", str(args.rate), "--match-s", str(args.match_s),
                                      "--linger-s", str(args.linger_s)],
                                env=child_env(domain, None), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    pub_proc.wait(timeout=sub_seconds + 60)  # it lingers --linger-s after its last message
    if sub_proc.poll() is None:
        sub_proc.send_signal(signal.SIGUSR1)
    out, err = sub_proc.communicate(timeout=60)
    if sub_proc.returncode != 0:
        raise RuntimeError(f"subscriber ({pub}/{sub}/{size_mb} MB) failed: {err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    latencies = np.array(list(result["received"].values()), float)
    indices = np.array([int(k) for k in result["received"]], int)
    delivered = int((indices < args.count).sum())
    matched = not (pub == "best_effort" and sub.startswith("reliable"))
    windows = {}
    if args.count >= 2 * LONG_WINDOW:  # long runs: does delivery hold up after the first LONG_WINDOW messages?
        windows = {f"delivery_first_{LONG_WINDOW}": float((indices < LONG_WINDOW).sum()) / LONG_WINDOW,
                   f"delivery_after_{LONG_WINDOW}": float(((indices >= LONG_WINDOW) & (indices < args.count)).sum())
                   / (args.count - LONG_WINDOW)}
    return {
        "delivery": delivered / args.count,
        **windows,
        "latency_ms_p50": float(np.percentile(latencies, 50)) if len(latencies) else None,
        "latency_ms_p99": float(np.percentile(latencies, 99)) if len(latencies) else None,
        "matched": matched and result["publisher_seen"],
        "incompatible_qos_events": int(result["incompatible_qos"]),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "kernel": platform.release()}
    for dist in ("ros-jazzy-rclpy", "ros-fastrtps", "ros-jazzy-rmw-fastrtps-cpp"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        out["net.core.rmem_max"] = Path("/proc/sys/net/core/rmem_max").read_text().strip()
        out["net.core.rmem_default"] = Path("/proc/sys/net/core/rmem_default").read_text().strip()
    except OSError:
        pass
    return out


def markdown(results: dict, sizes: list[float], subs: list[str]) -> str:
    lines = ["| publisher | subscription | " + " | ".join(f"{s:g} MB" for s in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for pub in PUB_KINDS:
        for sub in subs:
            cells = []
            for size in sizes:
                key = f"{pub}/{sub}/{size:g}MB"
                if not results[f"{key}.matched"]:
                    cells.append("no match")
                    continue
                p50 = results[f"{key}.latency_ms_p50"]
                cells.append(f"{100 * results[f'{key}.delivery']:.0f} %"
                             + (f", p50 {p50:.0f} ms" if p50 is not None else ""))
            lines.append(f"| {pub} | {sub} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def long_table(results: dict) -> str:
    """Markdown of the long runs in ``results`` ("" when there are none)."""
    keys = sorted({k.rsplit(".", 1)[0] for k in results if k.startswith("long/reliable/")})
    if not keys:
        return ""
    lines = [f"\n## Long runs: {results.get('long.clouds')} reliable clouds at {results.get('long.rate_hz')} Hz\n",
             f"| subscription | size | all | first {LONG_WINDOW} | after {LONG_WINDOW} | p50 latency |",
             "|---|---|---|---|---|---|"]
    for key in keys:
        _, _, sub_kind, size = key.split("/")
        r = {name: results.get(f"{key}.{name}") for name in ("delivery", f"delivery_first_{LONG_WINDOW}",
                                                            f"delivery_after_{LONG_WINDOW}", "latency_ms_p50")}
        cells = [f"{100 * v:.0f} %" if v is not None else "-" for v in list(r.values())[:3]]
        p50 = r["latency_ms_p50"]
        lines.append(f"| {sub_kind} | {size} | {' | '.join(cells)} | {f'{p50:.0f} ms' if p50 else '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("pub")
    p.add_argument("--qos", choices=PUB_KINDS, required=True)
    p.add_argument("--size-mb", type=float, required=True)
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--match-s", type=float, default=5.0)
    p.add_argument("--linger-s", type=float, default=2.0)
    s = sub.add_parser("sub")
    s.add_argument("--qos", required=True)
    s.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--count", type=int, default=40, help="clouds per pair (default 40: 4 s at 10 Hz)")
    parser.add_argument("--rate", type=float, default=10.0, help="publishing rate [Hz]")
    parser.add_argument("--match-s", type=float, default=5.0, help="longest wait for discovery [s]")
    parser.add_argument("--linger-s", type=float, default=2.0, help="time after the last message [s]")
    parser.add_argument("--xml", action="store_true", help="also try best effort with a subscriber-side Fast DDS "
                        "profile (bigger UDP receive buffer and SHM segment)")
    parser.add_argument("--long-count", type=int, default=0, help="also a long run per --long-subs setting: "
                        "this many reliable clouds (0: none); reports delivery before and after 1000 messages")
    parser.add_argument("--long-rate", type=float, default=20.0, help="rate of the long runs [Hz]")
    parser.add_argument("--long-size-mb", type=float, default=2.4, help="cloud size of the long runs [MB]")
    parser.add_argument("--long-subs", nargs="+", default=["reliable_d1", "reliable_d5", "reliable_d10"])
    parser.add_argument("--skip-matrix", action="store_true", help="only the long runs, merged into an existing "
                        "qos_transport.json")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if args.cmd == "pub":
        return run_pub(args)
    if args.cmd == "sub":
        return run_sub(args)

    from tqdm import tqdm

    from gen3d_ros.outputs import write_json, write_text

    subs = list(SUB_KINDS) + ([f"sensor_data+{name}" for name in XML_PROFILES] if args.xml else [])
    xml_dir = Path(tempfile.mkdtemp(prefix="qos_bench_"))
    for name, text in XML_PROFILES.items():
        write_text(xml_dir / f"{name}.xml", text)
    results: dict[str, object] = {}
    pairs = [] if args.skip_matrix else [(pub, sub_kind, size) for size in args.sizes_mb for pub in PUB_KINDS
                                         for sub_kind in subs]
    base = 100 + os.getpid() % 50  # one ROS domain per pair: no leftover endpoint of the last pair interferes
    command = "bench/qos_transport.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        for n, (pub, sub_kind, size) in enumerate(tqdm(pairs, desc="qos pairs")):
            r = measure_pair(pub, sub_kind, size, args, base + n % 60, xml_dir)
            for key, value in r.items():
                results[f"{pub}/{sub_kind}/{size:g}MB.{key}"] = value
        if args.long_count:
            long_args = argparse.Namespace(**{**vars(args), "count": args.long_count, "rate": args.long_rate})
            for n, sub_kind in enumerate(tqdm(args.long_subs, desc="long runs")):
                r = measure_pair("reliable", sub_kind, args.long_size_mb, long_args, base + 60 + n, xml_dir)
                for key, value in r.items():
                    results[f"long/reliable/{sub_kind}/{args.long_size_mb:g}MB.{key}"] = value
            results.update({"long.clouds": args.long_count, "long.rate_hz": args.long_rate,
                            "long.command": command})
    finally:
        shutil.rmtree(xml_dir, ignore_errors=True)
    cpu = platform.processor() or platform.machine()
    path = args.out / "qos_transport.json"
    if args.skip_matrix:  # keep the matrix of an earlier run
        results = {**json.loads(path.read_text()), **results}
    else:
        results.update({"clouds_per_pair": args.count, "rate_hz": args.rate,
                        "device": f"cpu: {cpu}, {os.cpu_count()} core(s), publisher and subscriber on one host",
                        **versions(), "command": command})
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(path, results)
    table = markdown(results, args.sizes_mb, subs if not args.skip_matrix else
                     sorted({k.split("/")[1] for k in results if "/" in k and not k.startswith("long/")},
                            key=lambda k: (k not in SUB_KINDS, k)))
    long_rows = long_table(results)
    write_text(args.out / "qos_transport.md", "# PointCloud2 delivery by QoS and size (10 Hz, Fast DDS)\n\n" + table
               + long_rows)
    print(table + long_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
