#!/usr/bin/env python3
"""What a completion node's stage process loads: import time, peak memory and modules of the runtime path.

Each measurement runs in a fresh interpreter (``python -c``), several times, and reports the median:

* ``import``: ``import gen3d_ros.pipeline.completion`` (what the stage process imports);
* ``hgca``: that import + ``CompletionProcessor(CompletionConfig(method="hgca"))`` (the packaged models loaded);
* ``gca``: the same with ``method="gca"``.

For each: wall seconds, peak RSS (MiB), number of ``gen3d_ros`` modules loaded and which training / simulator
modules among them (the runtime should load none).

    .venv/bin/python bench/runtime_footprint.py --label after --repeat 5

Results merge into ``bench/results/runtime_footprint.json`` under ``<label>.<case>.<metric>`` keys, so the
numbers of two code versions (``before`` / ``after`` a change) sit side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gen3d_ros.outputs import write_json  # noqa: E402

CASES = {
    "import": "import gen3d_ros.pipeline.completion",
    "gca": ("import gen3d_ros.pipeline.completion\n"
            "from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor\n"
            "CompletionProcessor(CompletionConfig(method='gca'))"),
    "hgca": ("import gen3d_ros.pipeline.completion\n"
             "from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor\n"
             "CompletionProcessor(CompletionConfig(method='hgca'))"),
}
PROBE = """
import os, resource, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
t0 = time.perf_counter()
exec(compile({code!r}, "<case>", "exec"))
dt = time.perf_counter() - t0
mods = sorted(m for m in sys.modules if m.startswith("gen3d_ros"))
heavy = [m for m in mods if "training" in m or m.startswith("gen3d_ros.sim")]
print(repr((dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, len(mods), heavy)))
"""


def measure(code: str, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True,
                             cwd=REPO, check=True)
        runs.append(eval(out.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own probe's repr
    return {"seconds": statistics.median(r[0] for r in runs), "peak_rss_mb": statistics.median(r[1] for r in runs),
            "gen3d_modules": runs[-1][2], "training_or_sim_modules": len(runs[-1][3]),
            "training_or_sim_loaded": ",".join(runs[-1][3])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", default="current", help="key prefix, e.g. before / after")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    path = args.out / "runtime_footprint.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for case, code in CASES.items():
        m = measure(code, args.repeat)
        print(f"{args.label:>8} {case:<6} {m['seconds']:.2f} s  {m['peak_rss_mb']:.0f} MiB  "
              f"{m['gen3d_modules']} gen3d modules, training/sim: {m['training_or_sim_loaded'] or 'none'}")
        results.update({f"{args.label}.{case}.{k}": v for k, v in m.items()})
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    results.update({f"{args.label}.commit": git.strip(), "device": f"cpu: {platform.processor() or platform.machine()}",
                    "python": platform.python_version(),
                    f"{args.label}.command": "bench/runtime_footprint.py " + shlex.join(sys.argv[1:])})
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(path, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
