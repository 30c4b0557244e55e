#!/usr/bin/env python3
"""Scene-completion quality of a GCA checkpoint against classical baselines, on held-out procedural scenes.

    .venv/bin/python bench/completion_quality.py                       # the packaged demo model, 12 scenes
    .venv/bin/python bench/completion_quality.py --checkpoint runs/gca_demo/model.pt --scenes 4 --out /tmp/b

Scenes: the checkpoint's own data config (``ckpt["train_config"]["data"]``), no augmentation, scene seeds
``base_seed + VALIDATION_SEED_OFFSET + 1000 + i`` -- disjoint from the training seeds (``base_seed + i``) and
from the validation seeds used while training (``base_seed + VALIDATION_SEED_OFFSET + i``, i < val_samples).

Methods, each a set of voxel indices on the sample's grid, scored against ``sample.complete``:

* ``input``: the partial scan's voxels (what the sensor saw, nothing added);
* ``dilation``: the input dilated once with the 6-neighbourhood (the cheapest "completion");
* ``poisson``: :func:`gen3d_ros.completion.classical.poisson_mesh` of the raw scan points, the mesh sampled
  on a barycentric lattice (spacing voxel/4) and voxelised on the grid;
* ``gca``: ``--samples`` GCA chains per scene (metrics averaged over the chains; TMD across them).
* ``cgca``: a single-level cGCA kernel (``--cgca``, no coarse condition) on the fine grid (voxel / 2), from the
  autoencoder's codes of the sweep;
* ``hgca``: the hierarchy (``--hgca`` bundle): planned coarse GCA, fine cGCA inside it;
* ``hgca_no_planner``: the same fine stage over the plain GCA model (``--checkpoint``) as the coarse stage:
  trained on the same data, seed and iterations as the bundle's planned coarse stage, without the planner.

The fine methods (cGCA, hGCA) output cells on the fine grid; they are scored on the benchmark's grid through
their coarse parents (``floor(cell / 2)``), like every other row, and additionally against the fine ground
truth (``<method>.fine_iou``, ``<method>.fine_chamfer_l1``).

Region and world (issue 13): every method runs and is scored over the whole ``--region-m`` box (default ±51.2 m
around the sensor; the models' kernels are local and the planner fully convolutional, so they run on the wider
grid with their own voxels and z range, ``half_extent_m``). ``--world rich`` (default) draws the scenes from
the richer world with randomised sensors (``gen3d_ros/completion/training/data_presets.py``, scene square
``2 R + 10`` m with object counts scaled by area), on the model's grid (voxel, z range); ``--world checkpoint``
uses the checkpoint's own data config. Two scene sets are scored: the *standard* set (the held-out classes
absent, as in training) and the *held-out-class* set (``heldout.`` keys: the same world with many objects of
``heldout_classes`` -- the classes excluded from the hGCA bundle's training data, else
``data_presets.HELDOUT_CLASSES``).

Metrics are computed per scene and averaged over scenes (each scene weighs the same). Ratios are taken
between those averages, against ``input`` and ``poisson`` of this same run. Outputs in ``--out``:
``completion_quality.json`` (flat keys), ``.md`` (the table printed to stdout) and ``.png`` (views).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from gen3d_ros.outputs import write_text, save_figure  # noqa: E402

DEFAULT_CHECKPOINT = REPO / "gen3d_ros" / "models" / "gca_demo.pt"
DEFAULT_HGCA = REPO / "gen3d_ros" / "models" / "hgca_demo.pt"
DEFAULT_CGCA = REPO / "gen3d_ros" / "models" / "cgca_demo.pt"
FINE_METHODS = ("cgca", "hgca", "hgca_no_planner")
HELD_OUT_SEED_OFFSET = 1000
"""Added to ``base_seed + VALIDATION_SEED_OFFSET``: past any validation set used during training."""
METHODS = ("input", "dilation", "poisson", "gca")
METRICS = ("iou", "precision", "recall", "fscore_1vox", "fscore_2vox", "chamfer_l1", "chamfer_l2")


# --------------------------------------------------------------------------------------------------
# methods


def dilate6(cells: np.ndarray, grid_shape: Sequence[int]) -> np.ndarray:
    """(N, 3) int voxel indices dilated by one voxel through the 6 faces, cropped to ``[0, grid_shape)``.

    Returns (M, 3) int32 unique indices, sorted lexicographically.
    """
    from scipy.ndimage import binary_dilation, generate_binary_structure

    shape = tuple(int(v) for v in grid_shape)
    grid = np.zeros(shape, bool)
    if len(cells):
        grid[tuple(np.asarray(cells, np.int64).T)] = True
    grid = binary_dilation(grid, structure=generate_binary_structure(3, 1))
    return np.argwhere(grid).astype(np.int32)


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, spacing: float) -> np.ndarray:
    """Points on every triangle of a mesh on a barycentric lattice whose step along an edge is <= ``spacing``.

    ``vertices`` (V, 3) metres, ``faces`` (F, 3) int; returns (P, 3) float64 metres (vertices included).
    Deterministic, and no triangle is skipped however small (unlike area-weighted random sampling).
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if len(f) == 0:
        return v.copy()
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    longest = np.max(np.stack([np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1),
                               np.linalg.norm(a - c, axis=1)]), axis=0)
    subdiv = np.maximum(1, np.ceil(longest / spacing)).astype(np.int64)
    out = [v]
    for n in np.unique(subdiv):
        sel = subdiv == n
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = i + j <= n
        u, w = (i[keep] / n)[None, :, None], (j[keep] / n)[None, :, None]  # (1, L, 1) barycentric weights
        pa, pb, pc = a[sel][:, None], b[sel][:, None], c[sel][:, None]
        out.append((pa + u * (pb - pa) + w * (pc - pa)).reshape(-1, 3))
    return np.concatenate(out)


def cells_on_grid(points: np.ndarray, voxel_size: float, origin: np.ndarray, grid_shape: Sequence[int]) -> np.ndarray:
    """Unique voxel indices (M, 3) int32 of ``points`` (N, 3) metres that fall inside ``[0, grid_shape)``."""
    from gen3d_ros.completion.voxelize import crop_voxels, point_indices, unique_voxels

    if len(points) == 0:
        return np.zeros((0, 3), np.int32)
    idx = point_indices(points, voxel_size, origin)
    return unique_voxels(idx[crop_voxels(idx, grid_shape)])


def poisson_cells(sample, *, depth: int = 9) -> np.ndarray:
    """Poisson surface of ``sample.partial_points`` voxelised on the sample's grid: (M, 3) int32."""
    from gen3d_ros.completion.classical import poisson_mesh

    sensor = np.asarray(sample.T_sample_lidar, np.float64)[:3, 3]  # the LiDAR's position in the sample frame
    mesh = poisson_mesh(sample.partial_points, voxel_size=sample.voxel_size, depth=depth, sensor_origin=sensor)
    pts = sample_mesh(mesh.vertices, mesh.faces, sample.voxel_size / 4.0)
    return cells_on_grid(pts, sample.voxel_size, sample.origin, sample.grid_shape)


# --------------------------------------------------------------------------------------------------
# evaluation


def scene_metrics(pred: np.ndarray, gt: np.ndarray, voxel_size: float) -> dict[str, float]:
    """The benchmark's metrics of one prediction (N, 3) int against the ground truth (M, 3) int."""
    from gen3d_ros.completion.metrics import completion_metrics

    one = completion_metrics(pred, gt, voxel_size)
    two = completion_metrics(pred, gt, voxel_size, fscore_threshold_m=2.0 * voxel_size)
    return {"iou": one["iou"], "precision": one["precision"], "recall": one["recall"],
            "fscore_1vox": one["fscore"], "fscore_2vox": two["fscore"], "chamfer_l1": one["chamfer_l1"],
            "chamfer_l2": one["chamfer_l2"], "n_voxels": float(one["n_pred"])}


def bench_data(model_data: dict, *, world: str = "checkpoint", region_m: float = 0.0,
               heldout: Sequence[str] = (), include_heldout: bool = False) -> dict:
    """The benchmark's data config for a model trained on ``model_data``: its grid (voxel size, z range) over
    ``region_m`` (0: its own box), scenes and sensors of ``world`` (``checkpoint``: the model's; ``rich``: the
    richer world with randomised sensors), the ``heldout`` classes excluded, or (``include_heldout``) placed in
    numbers."""
    from gen3d_ros.completion.training.data_presets import RICH_DATA
    from gen3d_ros.sim.dataset import CompletionDatasetConfig
    from gen3d_ros.sim.scene import SceneConfig

    data = CompletionDatasetConfig.from_dict(model_data).to_dict()
    if world == "rich":
        rich = CompletionDatasetConfig.from_dict(RICH_DATA).to_dict()
        data.update({k: rich[k] for k in ("scene", "sensor", "sensor_randomization", "sensor_height_m",
                                          "tilt_max_deg", "alignment_residual_deg", "warehouse_fraction")})
    elif world != "checkpoint":
        raise ValueError(f"unknown --world {world!r}; choose 'rich' or 'checkpoint'")
    scene = SceneConfig.from_dict(data["scene"]).to_dict()
    if region_m > 0:
        v = float(data["voxel_size_m"])
        r = math.ceil(region_m / v - 1e-9) * v
        data["half_extent_m"] = [r, r]
        size = max(float(scene["size_m"]), 2.0 * r + 10.0)
        area = (size / float(scene["size_m"])) ** 2
        for k in scene:
            if k.startswith("n_"):
                scene[k] = int(round(scene[k] * area))
        scene["size_m"] = size
    scene["exclude_classes"] = [] if include_heldout else sorted(set(scene["exclude_classes"]) | set(heldout))
    if include_heldout:  # a dense set of the held-out classes' objects (counts of the 50 m square, x4, x area)
        area = (float(scene["size_m"]) / 50.0) ** 2
        counts = {"cyclist": "n_cyclists", "hedge": "n_hedges", "bush": "n_bushes", "pedestrian": "n_pedestrians"}
        for cls in heldout:
            if cls in counts:
                scene[counts[cls]] = max(int(scene[counts[cls]]), int(round(4 * area)))
    data["scene"] = scene
    return data


def held_out_dataset(data: dict, n_scenes: int):
    """The data config ``data`` on held-out scene seeds, one scan per scene, no augmentation."""
    from gen3d_ros.completion.training.loop import VALIDATION_SEED_OFFSET
    from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig

    base = int(data.get("base_seed", 0)) + VALIDATION_SEED_OFFSET + HELD_OUT_SEED_OFFSET
    config = CompletionDatasetConfig.from_dict({**data, "augment": False, "base_seed": base,
                                                "scans_per_scene": 1, "length": n_scenes})
    return CompletionDataset(config)


@dataclass
class SceneResult:
    """Everything about one scene that the figure needs: voxel sets (N, 3) int32 and per-method metrics."""

    seed: int
    voxel_size: float
    origin: np.ndarray
    grid_shape: np.ndarray
    sensor: np.ndarray
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def run_benchmark(checkpoint: str | Path, *, n_scenes: int = 12, samples: int = 3, device: str = "cpu",
                  backend: str | None = None, steps: int | None = None, poisson_depth: int = 9,
                  threads: int | None = 1, keep_scenes: int = 2, progress: bool = True,
                  hgca: str | Path | None = None, cgca: str | Path | None = None, region_m: float = 0.0,
                  world: str = "checkpoint", heldout: Sequence[str] = (),
                  include_heldout: bool = False) -> tuple[dict, list[SceneResult]]:
    """Score every method on ``n_scenes`` held-out scenes; returns (flat results, the first ``keep_scenes``).

    The flat dict has ``<method>.<metric>`` means over scenes, ``gca.tmd``, ``ratio.<m>_over_<base>.<metric>``
    and the run's provenance (see the module docstring and bench/README.md); floats that are not finite
    (a Chamfer distance of an empty prediction) are ``None``. ``threads``: torch intra-op threads (``None``
    leaves torch's default); 1 by default because a chain of small sparse convolutions gains nothing from
    more, and on a shared CPU two spinning OpenMP threads made chains 5-300x slower in our runs.
    ``region_m``, ``world``, ``heldout``, ``include_heldout``: the scenes and the scored box (:func:`bench_data`).
    """
    import torch

    if n_scenes < 1 or samples < 1:
        raise ValueError(f"need --scenes >= 1 and --samples >= 1, got {n_scenes} and {samples}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        results, kept = _run(Path(checkpoint), n_scenes=n_scenes, samples=samples, device=device, backend=backend,
                             steps=steps, poisson_depth=poisson_depth, keep_scenes=keep_scenes, progress=progress,
                             hgca=hgca, cgca=cgca, scenes=dict(world=world, region_m=region_m, heldout=tuple(heldout),
                                                               include_heldout=include_heldout))
        results["torch_threads"] = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    return results, kept


def fine_methods(checkpoint: Path, hgca: str | Path | None, cgca: str | Path | None, device: str,
                 backend: str | None, region_m: float = 0.0) -> dict:
    """name -> (complete(points, seed) -> fine cells (K, 3) int32, fine voxel size m, fine data config)."""
    import torch

    from gen3d_ros.completion.cgca import cgca_complete
    from gen3d_ros.completion.checkpoint import load_cgca
    from gen3d_ros.completion.inference import SceneCompleter, SceneCompleterConfig, _with_batch, encode_cells
    from gen3d_ros.sim.dataset import CompletionDatasetConfig

    out = {}
    if cgca and region_m > 0:
        raise ValueError("the single-level cgca row runs on its training grid only; leave --cgca out with --region-m")
    if cgca:
        model, ae, ckpt = load_cgca(cgca, device=device, backend=backend)
        data = CompletionDatasetConfig.from_dict(ckpt["train_config"]["data"])
        bounds = ((0, 0, 0), tuple(int(v) for v in data.grid_shape))

        def run_cgca(points: np.ndarray, seed: int, model=model, ae=ae, data=data) -> np.ndarray:
            idx = np.floor((points - data.origin) / data.voxel_size_m).astype(np.int64)
            inside = ((idx >= 0) & (idx < data.grid_shape)).all(1)
            cells, z = encode_cells(ae, points[inside], data.voxel_size_m, data.origin)
            res = cgca_complete(model, _with_batch(cells), z, bounds=bounds,
                                generator=torch.Generator().manual_seed(seed))
            return res.cells[:, 1:].numpy().astype(np.int32)

        out["cgca"] = (run_cgca, data)
    if hgca:
        for name, coarse in (("hgca", ""), ("hgca_no_planner", str(checkpoint))):
            sc = SceneCompleter(hgca, SceneCompleterConfig(mesh=False, device=device, coarse_checkpoint=coarse,
                                                           half_extent_m=region_m), backend=backend)
            out[name] = ((lambda points, seed, sc=sc: sc.complete(points, seed=seed).fine_cells),
                         CompletionDatasetConfig.from_dict(sc.fine_data))
    return out


def _run(checkpoint: Path, *, n_scenes: int, samples: int, device: str, backend: str | None, steps: int | None,
         poisson_depth: int, keep_scenes: int, progress: bool, hgca: str | Path | None = None,
         cgca: str | Path | None = None, scenes: dict | None = None) -> tuple[dict, list[SceneResult]]:
    from tqdm import tqdm

    from gen3d_ros.completion.metrics import total_mutual_difference
    from gen3d_ros.completion.inference import GCACompleter
    from gen3d_ros.completion.voxelize import voxel_centers

    scenes = dict(scenes or {})
    region_m = float(scenes.get("region_m", 0.0))
    completer = GCACompleter(checkpoint, device=device, steps=steps, backend=backend, half_extent_m=region_m)
    dataset = held_out_dataset(bench_data(completer.checkpoint["train_config"]["data"], **scenes), n_scenes)
    fine = fine_methods(checkpoint, hgca, cgca, device, backend, region_m)
    methods = (*METHODS, *(m for m in FINE_METHODS if m in fine))
    fine_sets = {m: held_out_dataset({**bench_data(data.to_dict(), **scenes), "base_seed": dataset.config.base_seed
                                      - _validation_offset() - HELD_OUT_SEED_OFFSET}, n_scenes)
                 for m, (_, data) in fine.items()}

    rows: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    fine_rows: dict[str, list[dict[str, float]]] = {m: [] for m in fine}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    tmds: list[float] = []
    gt_voxels: list[int] = []
    scene_seeds: list[int] = []
    kept: list[SceneResult] = []
    sim_seconds = 0.0
    bar = tqdm(range(n_scenes), desc="completion bench", unit="scene", disable=not progress, dynamic_ncols=True)
    for i in bar:
        t0 = time.perf_counter()
        s = dataset[i]
        sim_seconds += time.perf_counter() - t0
        if not np.allclose(s.origin, completer.origin) or not np.array_equal(s.grid_shape, completer.grid_shape):
            raise RuntimeError(f"scene grid (origin {s.origin}, shape {s.grid_shape}) differs from the model's "
                               f"(origin {completer.origin}, shape {completer.grid_shape})")
        cells: dict[str, np.ndarray] = {}

        # input: the dataset's voxels of the scan (GCA starts from them too). Its cost is voxelising the scan,
        # timed here on the float32 points (which may differ from s.partial by a voxel at a face: not used).
        t0 = time.perf_counter()
        cells_on_grid(s.partial_points, s.voxel_size, s.origin, s.grid_shape)
        seconds["input"].append(time.perf_counter() - t0)
        cells["input"] = s.partial

        t0 = time.perf_counter()
        cells["dilation"] = dilate6(s.partial, s.grid_shape)
        seconds["dilation"].append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        cells["poisson"] = poisson_cells(s, depth=poisson_depth)
        seconds["poisson"].append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        chains = [completer.complete_cells(s.partial, seed=s.scene_seed * 100 + k) for k in range(samples)]
        seconds["gca"].append((time.perf_counter() - t0) / samples)  # per chain: what one completion costs

        gt = s.complete
        gt_voxels.append(len(gt))
        scene_seeds.append(int(s.scene_seed))
        for m in ("input", "dilation", "poisson"):
            rows[m].append(scene_metrics(cells[m], gt, s.voxel_size))
        per_chain = [scene_metrics(c, gt, s.voxel_size) for c in chains]
        rows["gca"].append({k: float(np.mean([r[k] for r in per_chain])) for k in per_chain[0]})
        fine_first = _score_fine_methods(s, i, fine, fine_sets, samples, rows, fine_rows, seconds)
        if samples >= 2:
            tmds.append(total_mutual_difference([voxel_centers(c, s.voxel_size, s.origin) for c in chains]))
        bar.set_postfix(gca_iou=f"{rows['gca'][-1]['iou']:.3f}", input_iou=f"{rows['input'][-1]['iou']:.3f}")

        if len(kept) < keep_scenes:
            cells["gca"] = chains[0]
            cells.update(fine_first)
            cells["ground truth"] = gt
            kept.append(SceneResult(seed=int(s.scene_seed), voxel_size=float(s.voxel_size),
                                    origin=np.asarray(s.origin, np.float64), grid_shape=np.asarray(s.grid_shape),
                                    sensor=np.asarray(s.T_sample_lidar, np.float64)[:3, 3], cells=cells,
                                    metrics={"input": rows["input"][-1], "poisson": rows["poisson"][-1],
                                             "gca": per_chain[0], "dilation": rows["dilation"][-1],
                                             **{m: rows[m][-1] for m in fine}}))

    results = _summarise(dataset, completer, steps, poisson_depth, methods, fine, fine_sets,
                         {"rows": rows, "fine_rows": fine_rows, "seconds": seconds, "tmds": tmds,
                          "gt_voxels": gt_voxels, "scene_seeds": scene_seeds}, n_scenes, samples)
    results["sim_seconds_per_scene"] = sim_seconds / n_scenes
    return results, kept


def _score_fine_methods(s, i: int, fine: dict, fine_sets: dict, samples: int, rows: dict, fine_rows: dict,
                        seconds: dict) -> dict[str, np.ndarray]:
    """Run every hierarchical method on scene ``s`` (index ``i``), append its scores on the coarse grid
    (``rows``) and on its own fine grid (``fine_rows``) and its seconds per chain; returns each method's first
    completion on the coarse grid (for the figures)."""
    first: dict[str, np.ndarray] = {}
    for m, (fn, data) in fine.items():
        fs = fine_sets[m][i]
        if fs.scene_seed != s.scene_seed:
            raise RuntimeError(f"fine data of {m} is not on the same scenes")
        t0 = time.perf_counter()
        outs = [fn(np.asarray(s.partial_points, np.float64), s.scene_seed * 100 + k) for k in range(samples)]
        seconds[m].append((time.perf_counter() - t0) / samples)
        ratio = int(round(s.voxel_size / data.voxel_size_m))
        coarse = [np.unique(o // ratio, axis=0) for o in outs]
        per = [scene_metrics(c, s.complete, s.voxel_size) for c in coarse]
        rows[m].append({k: float(np.mean([r[k] for r in per])) for k in per[0]})
        per_fine = [scene_metrics(o, fs.complete, data.voxel_size_m) for o in outs]
        fine_rows[m].append({k: float(np.mean([r[k] for r in per_fine])) for k in per_fine[0]})
        first[m] = coarse[0]
    return first


def _summarise(dataset, completer, steps: int | None, poisson_depth: int, methods: tuple, fine: dict,
               fine_sets: dict, acc: dict, n_scenes: int, samples: int) -> dict[str, object]:
    """The flat result keys of :func:`_run` from its per-scene accumulators ``acc`` (rows, fine_rows, seconds,
    tmds, gt_voxels, scene_seeds): set-up, per-method means, fine-grid scores, ratios to the input and Poisson."""
    rows, fine_rows, seconds = acc["rows"], acc["fine_rows"], acc["seconds"]
    tmds, gt_voxels, scene_seeds = acc["tmds"], acc["gt_voxels"], acc["scene_seeds"]
    cfg = dataset.config
    results: dict[str, object] = {
        "n_scenes": n_scenes, "samples": samples, "scene_seeds": scene_seeds,
        "voxel_size_m": float(cfg.voxel_size_m), "grid_shape": [int(v) for v in cfg.grid_shape],
        "grid_origin_m": [float(v) for v in cfg.origin],
        "lidar": "randomized" if cfg.sensor == "randomized" else cfg.lidar.to_dict().get("name", None),
        "region_m": float(cfg.half_extent_m[0]), "scene_size_m": float(cfg.scene.size_m),
        "gca_steps": int(steps if steps is not None else completer.model.config.steps),
        "poisson_depth": poisson_depth,
    }
    results["methods"] = list(methods)
    for m in methods:
        for k in (*METRICS, "n_voxels"):
            results[f"{m}.{k}"] = float(np.mean([r[k] for r in rows[m]]))
        results[f"{m}.seconds_per_scene"] = float(np.mean(seconds[m]))
    for m, (_, data) in fine.items():
        results[f"{m}.fine_voxel_size_m"] = float(data.voxel_size_m)
        for k in ("iou", "fscore_1vox", "chamfer_l1"):
            results[f"{m}.fine_{k}"] = float(np.mean([r[k] for r in fine_rows[m]]))
        results[f"{m}.fine_input_iou"] = float(np.mean([
            scene_metrics(fine_sets[m][j].partial, fine_sets[m][j].complete, data.voxel_size_m)["iou"]
            for j in range(n_scenes)]))
    results["gt.n_voxels"] = float(np.mean(gt_voxels))
    results["gca.tmd"] = float(np.mean(tmds)) if tmds else None
    results["gca.seconds_per_scene_all_samples"] = results["gca.seconds_per_scene"] * samples
    for base, ratio_metrics in (("input", METRICS), ("poisson", (*METRICS, "seconds_per_scene"))):
        for m in methods:
            if m == base:
                continue
            for k in ratio_metrics:
                num, den = results[f"{m}.{k}"], results[f"{base}.{k}"]
                ok = den not in (None, 0.0) and num is not None and math.isfinite(num) and math.isfinite(den)
                results[f"ratio.{m}_over_{base}.{k}"] = num / den if ok else None
    return results


# --------------------------------------------------------------------------------------------------
# provenance


def _validation_offset() -> int:
    from gen3d_ros.completion.training.loop import VALIDATION_SEED_OFFSET

    return VALIDATION_SEED_OFFSET


def device_description(device: str) -> str:
    """``cpu: <model name>, <n> cores`` or ``cuda: <GPU name>``."""
    if device.startswith("cuda"):
        import torch

        return f"{device}: {torch.cuda.get_device_name(torch.device(device))}"
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu: {model}, {cores} cores"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def provenance(checkpoint: Path, device: str, backend: str | None, command: str) -> dict[str, object]:
    import open3d
    import torch

    import gen3d_ros
    from gen3d_ros.sparse import get_backend

    path = checkpoint.resolve()
    shown = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
    return {"checkpoint": shown, "checkpoint_sha256": sha256(path), "device": device_description(device),
            "torch": torch.__version__, "open3d": open3d.__version__, "numpy": np.__version__,
            "gen3d_ros": gen3d_ros.__version__, "python": platform.python_version(),
            "sparse_backend": get_backend(backend).name,
            "command": command, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _finite_or_none(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------------
# report


def markdown_table(results: dict) -> str:
    """Methods as rows; means over scenes and the ratios to ``input``."""
    def fmt(v: object, digits: int = 3) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    def secs(v: object) -> str:
        return "n/a" if v is None else f"{v:.2g}" if v < 0.01 else f"{v:.2f}"

    head = ("| method | IoU | precision | recall | F@1vox | F@2vox | Chamfer-L1 [m] | Chamfer-L2 [m²] "
            "| voxels | s / scene | IoU ÷ input | CD-L1 ÷ input |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for m in results.get("methods", METHODS):
        r = lambda k: results.get(f"{m}.{k}")  # noqa: E731
        iou_ratio = 1.0 if m == "input" else results.get(f"ratio.{m}_over_input.iou")
        cd_ratio = 1.0 if m == "input" else results.get(f"ratio.{m}_over_input.chamfer_l1")
        name = f"{m} (×{results['samples']})" if m in ("gca", *FINE_METHODS) else m
        lines.append(f"| {name} | {fmt(r('iou'))} | {fmt(r('precision'))} | {fmt(r('recall'))} "
                     f"| {fmt(r('fscore_1vox'))} | {fmt(r('fscore_2vox'))} | {fmt(r('chamfer_l1'))} "
                     f"| {fmt(r('chamfer_l2'))} | {fmt(r('n_voxels'), 0)} | {secs(r('seconds_per_scene'))} "
                     f"| {fmt(iou_ratio, 2)} | {fmt(cd_ratio, 2)} |")
    tmd = results.get("gca.tmd")
    lines.append("")
    lines.append(f"Means over {results['n_scenes']} held-out scenes (seeds {results['scene_seeds'][0]}…"
                 f"{results['scene_seeds'][-1]}), voxel {results['voxel_size_m']} m, grid "
                 f"{'×'.join(str(v) for v in results['grid_shape'])}; ground truth {fmt(results['gt.n_voxels'], 0)} "
                 f"voxels per scene. GCA: metrics averaged over {results['samples']} chains per scene, "
                 f"s / scene per chain; TMD {fmt(tmd, 4)} m² (GCA convention). "
                 f"GCA vs Poisson: IoU ×{fmt(results.get('ratio.gca_over_poisson.iou'), 2)}, "
                 f"Chamfer-L1 ×{fmt(results.get('ratio.gca_over_poisson.chamfer_l1'), 2)}.")
    for m in FINE_METHODS:
        if f"{m}.fine_iou" in results:
            lines.append(f"{m} on its own {results[f'{m}.fine_voxel_size_m']} m grid: IoU "
                         f"{fmt(results[f'{m}.fine_iou'])} (input {fmt(results[f'{m}.fine_input_iou'])}), "
                         f"F@1vox {fmt(results[f'{m}.fine_fscore_1vox'])}, "
                         f"Chamfer-L1 {fmt(results[f'{m}.fine_chamfer_l1'])} m.")
    if "region_m" in results:
        lines.append(f"Scored over the whole ±{results['region_m']} m region (scene squares "
                     f"{results.get('scene_size_m')} m, world `{results.get('world')}`, sensors "
                     f"{results.get('lidar')}).")
    for m in ("hgca", "gca"):
        if f"ratio.{m}_over_poisson.iou" in results:
            ratio = lambda k, m=m: fmt(results.get(f"ratio.{m}_over_poisson.{k}"), 2)  # noqa: E731
            lines.append(f"{m} ÷ Poisson of the same input: IoU ×{ratio('iou')}, "
                         f"F@1vox ×{fmt(results.get(f'ratio.{m}_over_poisson.fscore_1vox'), 2)}, Chamfer-L1 "
                         f"×{fmt(results.get(f'ratio.{m}_over_poisson.chamfer_l1'), 2)} (lower is better).")
    if "heldout.n_scenes" in results:
        lines += ["", f"**Held-out classes** ({', '.join(results['heldout_classes'])}; excluded from training: "
                  f"{results.get('heldout_classes_excluded_from_training')}), {results['heldout.n_scenes']} scenes "
                  "with many of them:", "",
                  "| method | IoU | precision | recall | F@1vox | F@2vox | Chamfer-L1 [m] |",
                  "|---|---|---|---|---|---|---|"]
        for m in results.get("methods", METHODS):
            r = lambda k: results.get(f"heldout.{m}.{k}")  # noqa: E731
            lines.append(f"| {m} | {fmt(r('iou'))} | {fmt(r('precision'))} | {fmt(r('recall'))} "
                         f"| {fmt(r('fscore_1vox'))} | {fmt(r('fscore_2vox'))} | {fmt(r('chamfer_l1'))} |")
        lines.append("")
    lines.append(f"Checkpoint `{results['checkpoint']}` ({results['checkpoint_sha256'][:12]}), "
                 f"{results['device']}, sparse backend {results['sparse_backend']}.")
    lines.append(f"Command: `{results['command']}`")
    return "\n".join(lines) + "\n"


def _bev_image(cells: np.ndarray, grid_shape: np.ndarray) -> np.ndarray:
    """(X, Y) float: height index of the topmost occupied voxel of each column, NaN where empty."""
    img = np.full((int(grid_shape[0]), int(grid_shape[1])), np.nan)
    if len(cells):
        order = np.argsort(cells[:, 2])  # later (higher) writes win
        c = cells[order]
        img[c[:, 0], c[:, 1]] = c[:, 2]
    return img


DRIVER_CAMERA_BACK_M, DRIVER_CAMERA_UP_M, DRIVER_CAMERA_PITCH_DEG = 6.0, 5.0, 30.0


def _driver_view(points: np.ndarray, sensor: np.ndarray, *, width: int, height: int,
                 focal: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pinhole chase camera behind and above the sensor, looking along +x and down, at what lies ahead.

    Points more than 1 m behind the sensor are dropped (they would block the view on a large grid).
    Returns pixel u, v (right, down), depth along the optical axis (m) and a keep-mask over ``points`` (N, 3).
    """
    sensor = np.asarray(sensor, np.float64)
    eye = sensor + np.array([-DRIVER_CAMERA_BACK_M, 0.0, DRIVER_CAMERA_UP_M])
    pitch = math.radians(DRIVER_CAMERA_PITCH_DEG)
    forward = np.array([math.cos(pitch), 0.0, -math.sin(pitch)])
    right = np.array([0.0, -1.0, 0.0])
    up = np.cross(right, forward)
    rel = points - eye
    depth = rel @ forward
    keep = (depth > 1.0) & (points[:, 0] >= sensor[0] - 1.0)
    safe = np.where(keep, depth, 1.0)
    u = width / 2 + focal * (rel @ right) / safe
    v = height / 2 - focal * (rel @ up) / safe
    keep &= (u >= -40) & (u < width + 40) & (v >= -40) & (v < height + 40)
    return u, v, depth, keep


def plot_scenes(scenes: list[SceneResult], path: Path, *, title: str) -> None:
    """Per scene: a bird's-eye row and a driver's-view row of input | Poisson | GCA sample | ground truth.

    Voxels are coloured by height (one scale per scene); in the driver's view they are also darkened with
    depth and drawn far to near, each as a square of its projected size.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import Normalize

    from gen3d_ros.completion.voxelize import voxel_centers

    columns = [("input", "input (LiDAR voxels)"), ("poisson", "Poisson (classical)"), ("gca", "GCA (one sample)"),
               ("hgca", "hGCA (one sample, coarse parents)"), ("ground truth", "ground truth")]
    columns = [c for c in columns if c[0] in scenes[0].cells]
    width, height, focal = 640, 360, 360.0
    background = "#16161a"
    fig = plt.figure(figsize=(4 * len(columns), 6.6 * len(scenes) + 0.5), layout="constrained")
    subfigs = fig.subfigures(len(scenes), 1, squeeze=False)[:, 0]
    cmap = plt.get_cmap("turbo")
    for sc, sub in zip(scenes, subfigs):
        axes = sub.subplots(2, len(columns), gridspec_kw={"height_ratios": [1.0, 0.56]})
        vs = sc.voxel_size
        x0, y0, z0 = sc.origin
        gx, gy, gz = (int(v) for v in sc.grid_shape)
        znorm = Normalize(z0, z0 + gz * vs)
        far = float(np.hypot(DRIVER_CAMERA_BACK_M + x0 + gx * vs - sc.sensor[0], DRIVER_CAMERA_UP_M))
        for ci, (key, label) in enumerate(columns):
            cells = sc.cells[key]
            m = sc.metrics.get(key)
            score = (f"IoU {m['iou']:.2f} · F@1vox {m['fscore_1vox']:.2f} · CD-L1 {m['chamfer_l1']:.2f} m"
                     if m else f"{len(cells)} voxels")
            ax = axes[0, ci]
            img = _bev_image(cells, sc.grid_shape)
            # image rows = y (up), columns = x (right): the sensor looks to the right
            ax.imshow(z0 + (img.T + 0.5) * vs, origin="lower", cmap=cmap, norm=znorm,
                      extent=(x0, x0 + gx * vs, y0, y0 + gy * vs), interpolation="nearest")
            ax.set_facecolor(background)
            ax.plot(*sc.sensor[:2], marker=">", color="white", ms=9, mec="black", ls="none")
            ax.set_aspect("equal")
            ax.tick_params(labelsize=8)
            ax.set_xlabel("x [m]", fontsize=8)
            ax.set_title(f"{label}\n{score}", fontsize=10)
            if ci == 0:
                ax.set_ylabel("bird's-eye (top voxel)\ny [m]", fontsize=9)

            ax = axes[1, ci]
            pts = voxel_centers(cells, vs, sc.origin).astype(np.float64)
            u, v, depth, keep = _driver_view(pts, sc.sensor, width=width, height=height, focal=focal)
            order = np.argsort(-depth[keep])  # painter's algorithm: far first
            uu, vv, dd, zz = u[keep][order], v[keep][order], depth[keep][order], pts[keep][order, 2]
            fog = 1.0 - 0.55 * np.clip(dd / far, 0.0, 1.0)  # the same depth shading in every column
            colours = cmap(znorm(zz))[:, :3] * fog[:, None]
            half = 0.54 * focal * vs / dd  # half the projected voxel side, image pixels (a little overlap)
            squares = np.stack([np.stack([uu - half, vv - half], 1), np.stack([uu + half, vv - half], 1),
                                np.stack([uu + half, vv + half], 1), np.stack([uu - half, vv + half], 1)], 1)
            ax.add_collection(PolyCollection(squares, facecolors=colours, edgecolors="none", rasterized=True))
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            ax.set_aspect("equal")
            ax.set_facecolor(background)
            ax.set_xticks([])
            ax.set_yticks([])
            if ci == 0:
                ax.set_ylabel(f"driver's view, ahead\n(camera {DRIVER_CAMERA_BACK_M:g} m behind, "
                              f"{DRIVER_CAMERA_UP_M:g} m up)", fontsize=9)
        sub.colorbar(plt.cm.ScalarMappable(znorm, cmap), ax=axes, shrink=0.7, aspect=30, pad=0.01,
                     label="height above sensor [m]")
        sub.suptitle(f"scene seed {sc.seed}", fontsize=11, x=0.02, ha="left")
    fig.suptitle(title, fontsize=13)
    save_figure(fig, path, dpi=100, facecolor="white")
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                   help="GCA checkpoint (gen3d train-completion's model.pt)")
    p.add_argument("--hgca", type=Path, default=None,
                   help="hGCA bundle (--stage hierarchy's hgca.pt) for the hgca / hgca_no_planner rows (default: "
                        "the packaged one when --checkpoint is the packaged GCA model, whose grid it shares)")
    p.add_argument("--cgca", type=Path, default=None,
                   help="single-level cGCA model.pt (--stage fine, coarse_scale 0) for the cgca row (default: the "
                        "packaged one with the packaged GCA model)")
    p.add_argument("--scenes", type=int, default=12, help="held-out scenes")
    p.add_argument("--samples", type=int, default=3, help="GCA chains per scene (>= 2 for TMD)")
    p.add_argument("--steps", type=int, default=None, help="GCA transitions (default: the checkpoint's)")
    p.add_argument("--poisson-depth", type=int, default=9, help="Poisson octree depth (the node's default)")
    p.add_argument("--device", default="cpu", help="torch device of the GCA model")
    p.add_argument("--backend", default=None, help="sparse-conv backend (default: the best available)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output folder")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--region-m", type=float, default=51.2,
                   help="score the box [-R, R)^2 around the sensor (0: the model's training box)")
    p.add_argument("--world", choices=("rich", "checkpoint"), default="rich",
                   help="scenes and sensors: the richer world with randomised sensors, or the checkpoint's data")
    p.add_argument("--heldout-classes", default=None,
                   help="comma-separated classes of the held-out set (default: those the hGCA bundle's training "
                        "data excluded, else data_presets.HELDOUT_CLASSES)")
    p.add_argument("--heldout-scenes", type=int, default=None,
                   help="held-out-class scenes (default: --scenes; 0: none)")
    args = p.parse_args(argv)
    if args.checkpoint.resolve() == DEFAULT_CHECKPOINT.resolve():
        if args.hgca is None and DEFAULT_HGCA.is_file():
            args.hgca = DEFAULT_HGCA
        if args.cgca is None and DEFAULT_CGCA.is_file() and args.region_m <= 0:
            args.cgca = DEFAULT_CGCA
    if args.heldout_scenes is None:
        args.heldout_scenes = args.scenes
    return args


def heldout_classes(args: argparse.Namespace) -> tuple[list[str], bool]:
    """The held-out classes and whether the models' training data excluded them."""
    from gen3d_ros.completion.checkpoint import load_bundle, load_gca
    from gen3d_ros.completion.training.data_presets import HELDOUT_CLASSES

    if args.hgca is not None:
        fine = load_bundle(args.hgca)["fine"]
        data = fine["train_config"].get("data") or fine["autoencoder"]["train_config"]["data"]
    else:
        data = load_gca(args.checkpoint)[1]["train_config"]["data"]
    excluded = list((data.get("scene") or {}).get("exclude_classes") or [])
    if args.heldout_classes:
        chosen = [c.strip() for c in args.heldout_classes.split(",") if c.strip()]
    else:
        chosen = excluded or list(HELDOUT_CLASSES)
    return chosen, bool(excluded) and set(chosen) <= set(excluded)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and write ``completion_quality.{json,md,png}``; returns the JSON dict."""
    if argv is None:
        command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    else:
        command = shlex.join(["bench/completion_quality.py", *argv])
    args = parse_args(argv)
    if not args.checkpoint.is_file():
        raise SystemExit(f"checkpoint {args.checkpoint} does not exist; train one with `gen3d train-completion "
                         f"--preset demo -o runs/gca_demo` and pass --checkpoint runs/gca_demo/model.pt")
    start = time.perf_counter()
    heldout, excluded_in_training = heldout_classes(args)
    common = dict(samples=args.samples, device=args.device, backend=args.backend, steps=args.steps,
                  poisson_depth=args.poisson_depth, threads=args.threads or None, progress=not args.no_progress,
                  hgca=args.hgca, cgca=args.cgca, region_m=args.region_m, world=args.world, heldout=heldout)
    results, kept = run_benchmark(args.checkpoint, n_scenes=args.scenes, keep_scenes=0 if args.no_plot else 2,
                                  **common)
    out: dict[str, object] = dict(results)
    out["world"], out["heldout_classes"] = args.world, heldout
    out["heldout_classes_excluded_from_training"] = excluded_in_training
    if args.heldout_scenes > 0:
        held, _ = run_benchmark(args.checkpoint, n_scenes=args.heldout_scenes, keep_scenes=0, include_heldout=True,
                                **common)
        for k, v in held.items():
            if k.split(".")[0] in (*held["methods"], "ratio", "gt") or k in ("n_scenes", "scene_seeds", "gca.tmd"):
                out[f"heldout.{k}"] = v
    out.update(provenance(args.checkpoint, args.device, args.backend, command))
    for name, path in (("hgca", args.hgca), ("cgca", args.cgca)):
        if path is not None:
            resolved = Path(path).resolve()
            shown = resolved.relative_to(REPO).as_posix() if resolved.is_relative_to(REPO) else str(resolved)
            out[f"{name}_checkpoint"], out[f"{name}_checkpoint_sha256"] = shown, sha256(resolved)
    out = {k: _finite_or_none(v) for k, v in out.items()}

    args.out.mkdir(parents=True, exist_ok=True)
    if kept:
        name = Path(str(out["checkpoint"])).name
        plot_scenes(kept, args.out / "completion_quality.png",
                    title=f"Held-out scene completion — {name}, voxel {out['voxel_size_m']} m")
    out["total_seconds"] = time.perf_counter() - start  # everything but writing the text files
    table = markdown_table(out)
    print(table)
    write_text(args.out / "completion_quality.md", f"# Scene completion quality\n\n{table}")
    write_text(args.out / "completion_quality.json", json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
