"""Step 3 of ``bench/performance.py``: the CPU side (this machine: open3d and the ROS serializers are here).

- the CPU fallback on the same OS1-128 sweep: the full region with the default steps, and the CPU default
  (``CPU_DEFAULT``: a smaller region and fewer steps), with the ratio to the GPU path of step 2;
- open3d Poisson (the classical baseline, depth 9) of the same sweep over the full region;
- real serialized sizes (CDR, as published) of ``gen3d_ros/CompletedMesh`` with and without vertex colours and of
  the rviz ``Marker`` (full, and decimated to the node's ``marker_max_triangles``), measured on the CPU path's mesh
  and scaled per triangle to the GPU mesh of step 2 (the message size is linear in vertices and triangles);
- the merged ``performance.json`` (flat keys; the issue's headline keys first) and ``performance.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.performance import (ROI_M, _flat, device_name, load_inputs, make_completer, quality, time_completion,
                               versions, write_json)
from gen3d_ros.outputs import write_text

def _cpu_default() -> dict:
    from gen3d_ros.completion.processor import hgca_defaults

    d = hgca_defaults("cpu")
    return {"half_extent": float(d["region_half_extent"]), "coarse_steps": int(d["coarse_steps"]),
            "fine_steps": int(d["fine_steps"])}


CPU_DEFAULT = _cpu_default()
"""The node's CPU fallback (processor.HGCA_DEFAULTS["cpu"]): ~4x fewer cells than the GPU's +-51.2 m, fewer steps."""


def message_sizes(mesh, voxels: np.ndarray) -> dict[str, float]:
    """Serialized bytes (CDR, header included) of what the completion node publishes for ``mesh``: built by the
    node's own :meth:`CompletionStage.mesh_outputs`, with the default parameters and with colours on."""
    from gen3d_ros.completion.decimate import decimate_to_budget
    from gen3d_ros.completion.processor import CompletionConfig, CompletionResult
    from gen3d_ros.io.messages import make_header
    from gen3d_ros.io.messages import rosbags_factory
    from gen3d_ros.io.serialization import serialized_size
    from gen3d_ros.pipeline.completion import CompletionStage

    factory = rosbags_factory()
    header = make_header(factory, frame_id="lidar", stamp=0)
    out: dict[str, float] = {"triangles": float(len(mesh.faces)), "vertices": float(len(mesh.vertices))}
    for label, colours in (("", False), ("colors.", True)):
        config = CompletionConfig(method="classical-poisson", mesh_colors=colours, marker_colors=True)
        t0 = time.perf_counter()
        display = decimate_to_budget(mesh, config.marker_max_triangles)
        decimate_ms = (time.perf_counter() - t0) * 1e3
        result = CompletionResult(mesh=mesh, voxels=voxels, voxel_size=0.2, steps=14, input_points=0,
                                  dropped_points=0, latency_ms=0.0, model_id="bench", display_mesh=display)
        t0 = time.perf_counter()
        msgs = {o.name: o.msg for o in CompletionStage(config).mesh_outputs(result, header, factory)}
        out[f"{label}build_ms"] = (time.perf_counter() - t0) * 1e3
        out[f"{label}decimate_ms"] = decimate_ms
        out.update({f"{label}{name}_bytes": float(serialized_size(m)) for name, m in msgs.items()})
    out["marker_triangles"] = float(len(display.faces))
    full = CompletionResult(mesh=mesh, voxels=voxels, voxel_size=0.2, steps=14, input_points=0, dropped_points=0,
                            latency_ms=0.0, model_id="bench", display_mesh=mesh)
    marker = CompletionStage(CompletionConfig(method="classical-poisson")).mesh_outputs(full, header, factory)[0]
    out["undecimated_marker_bytes"] = float(serialized_size(marker.msg))
    return out


def coarse_cloud_size() -> dict[str, float]:
    """Bytes of the ``coarse_voxels`` PointCloud2 (what the node publishes first): fixed part and per point."""
    from gen3d_ros.io.messages import make_header, rosbags_factory
    from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2
    from gen3d_ros.io.serialization import serialized_size

    factory = rosbags_factory()
    header = make_header(factory, frame_id="lidar", stamp=0)
    size = [serialized_size(arrays_to_pointcloud2(np.zeros((n, 3), np.float32), factory, header=header))
            for n in (0, 1000)]
    return {"messages.coarse_voxels_fixed_bytes": float(size[0]),
            "messages.coarse_voxels_bytes_per_point": (size[1] - size[0]) / 1000.0}


def poisson(points: np.ndarray, reps: int) -> dict[str, float]:
    from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor

    proc = CompletionProcessor(CompletionConfig(method="classical-poisson", roi_radius=ROI_M * 2 ** 0.5,
                                                max_points=10_000_000))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        res = proc.process(points)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"poisson_ms": float(np.median(times)), "poisson_triangles": float(len(res.mesh.faces))}


def run_cpu(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(1)
    inputs = load_inputs(args.inputs)
    points = inputs["points_os128"]
    res: dict[str, Any] = {"cpu.device": device_name("cpu"), **{f"cpu.{k}": v for k, v in versions().items()},
                           "cpu.command": "bench/performance.py " + shlex.join(sys.argv[1:])}
    cpu_default = make_completer("cpu", CPU_DEFAULT["half_extent"], mesher="torch", algorithm="auto",
                                 coarse_steps=CPU_DEFAULT["coarse_steps"], fine_steps=CPU_DEFAULT["fine_steps"],
                                 mesh_resolution=1)
    med, out = time_completion(cpu_default, points, "cpu", args.reps)
    res.update(_flat("cpu_default.os128", med))
    res.update(_flat("cpu_default.os128.quality", quality(out, cpu_default, inputs)))
    print("cpu default:", med, flush=True)
    full = make_completer("cpu", ROI_M, mesher="torch", algorithm="auto", mesh_resolution=1, coarse_steps=6)
    med, out = time_completion(full, points, "cpu", 1)
    res.update(_flat("cpu_full.os128", med))
    print("cpu full region:", med, flush=True)
    res.update(poisson(points, args.reps))
    from gen3d_ros.completion.processor import CompletionConfig

    budget = CompletionConfig().marker_max_triangles
    res.update(_flat("messages.cpu_full", message_sizes(out.mesh, out.fine_centres)))
    res.update(coarse_cloud_size())
    gpu: dict = {}
    commands = []
    for path in args.gpu:  # e.g. a full run, then a re-run of the fast path (its keys win)
        run = json.loads(Path(path).read_text())
        commands.append(run.get("gpu.command", str(path)))
        gpu.update(run)
    if commands:
        gpu["gpu.command"] = " ; ".join(commands)
    merged = headline(res, gpu, budget)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "performance.json", merged)
    write_text(args.out / "performance.md", markdown(merged))
    return merged


def headline(cpu: dict, gpu: dict, budget: int) -> dict:
    """The issue's keys first, then every measurement of both steps."""
    g = lambda k: gpu.get(k, float("nan"))  # noqa: E731
    per_tri = {k: cpu[f"messages.cpu_full.{k}"] / max(1.0, cpu["messages.cpu_full.triangles"])
               for k in ("completed_mesh_bytes", "colors.completed_mesh_bytes", "undecimated_marker_bytes")}
    gpu_tris = g("fast.os128.triangles")
    head = {
        "device": gpu.get("device", "not run"),
        "completion_points": g("fast.os128.points"),
        "completion_roi_m": ROI_M,
        "completion_coarse_ms": g("fast.os128.coarse_total_ms"),
        "completion_fine_ms": g("fast.os128.fine_total_ms"),
        "completion_mesh_ms": g("fast.os128.mesh_ms"),
        "completion_total_ms": g("fast.os128.total_ms"),
        "completion_coarse_hz": 1e3 / g("fast.os128.coarse_total_ms"),
        "completion_mesh_hz": 1e3 / g("fast.os128.total_ms"),
        "completion_peak_gpu_mb": g("fast.os128.peak_mb"),
        "completion_coarse_ms_quiet_host": g("fast.steps6_4.coarse_total_ms"),
        "completion_total_ms_quiet_host": g("fast.steps6_4.total_ms"),
        "completion_120m_total_ms": g("fast.roi60.total_ms"),
        "completion_120m_peak_gpu_mb": g("fast.roi60.peak_mb"),
        "mesh_message_bytes": per_tri["completed_mesh_bytes"] * gpu_tris,
        "marker_message_bytes": cpu["messages.cpu_full.mesh_marker_bytes"],
        "coarse_message_bytes": cpu.get("messages.coarse_voxels_fixed_bytes", float("nan"))
        + cpu.get("messages.coarse_voxels_bytes_per_point", float("nan")) * g("fast.os128.coarse_cells"),
        "marker_max_triangles": float(budget),
        "poisson_ms": cpu["poisson_ms"],
        "cpu_total_ms": cpu["cpu_default.os128.total_ms"],
        "cpu_over_gpu_ratio": cpu["cpu_default.os128.total_ms"] / g("fast.os128.total_ms"),
        "cpu_full_region_over_gpu_ratio": cpu["cpu_full.os128.total_ms"] / g("fast.os128.total_ms"),
        "cpu_default_roi_m": CPU_DEFAULT["half_extent"],
        "cpu_default_steps": f"{CPU_DEFAULT['coarse_steps']}+{CPU_DEFAULT['fine_steps']}",
        "pose_tracking_fps": g("pose_tracking_fps"),
        "pose_single_image_s": g("pose_single_image_s"),
        "train_iters_per_s_gpu": g("train.transition.iters_per_s"),
        "train_iters_per_s_gpu_bf16": g("train.transition.amp.iters_per_s"),
        "train_autoencoder_iters_per_s_gpu": g("train.autoencoder.iters_per_s"),
        "train_fine_iters_per_s_gpu": g("train.fine.iters_per_s"),
        "fast_iou": g("fast.os128.quality.iou"),
        "reference_iou": g("reference.os128.quality.iou"),
        "fast_mesh_fscore": g("fast.os128.quality.mesh_fscore"),
        "reference_mesh_fscore": g("reference.os128.quality.mesh_fscore"),
        "fast_steps": f"{gpu.get('fast.coarse_steps', 0):g}+{gpu.get('fast.fine_steps', 0):g} (0: the model's)",
        "fast_precision": g("fast.os128.quality.precision"),
        "fast_recall": g("fast.os128.quality.recall"),
        "reference_precision": g("reference.os128.quality.precision"),
        "reference_recall": g("reference.os128.quality.recall"),
        "model_steps_coarse_ms": g("fast.steps10_4.coarse_total_ms"),
        "model_steps_total_ms": g("fast.steps10_4.total_ms"),
        "model_steps_iou": g("fast.steps10_4.quality.iou"),
        "model_steps_mesh_fscore": g("fast.steps10_4.quality.mesh_fscore"),
        "reference_total_ms": g("reference.os128.total_ms"),
        "reference_mesh_ms": g("reference.os128.mesh_ms"),
    }
    head.update({f"mesh_message.{k}_per_triangle": v for k, v in per_tri.items()})
    head.update({k: v for k, v in gpu.items() if k not in head})
    head.update({k: v for k, v in cpu.items() if k not in head})
    return head


def _fmt(v: Any, digits: int = 0) -> str:
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if np.isfinite(v) else "—"
    return str(v)


def markdown(r: dict) -> str:
    rows = [("coarse (voxelise + coarse chain)", "completion_coarse_ms", "≤ 100"),
            ("fine (encode + fine chain)", "completion_fine_ms", ""),
            ("mesh (decode + marching cubes)", "completion_mesh_ms", ""),
            ("total, sweep to mesh", "completion_total_ms", "≤ 500 (+ coarse)"),
            ("120 m box (±60 m), total", "completion_120m_total_ms", ""),
            ("reference path (offset loops, numpy meshing), total", "reference_total_ms", ""),
            ("open3d Poisson (CPU)", "poisson_ms", ""),
            (f"CPU fallback (±{CPU_DEFAULT['half_extent']} m, steps {r['cpu_default_steps']})", "cpu_total_ms", "")]
    out = [f"# Completion performance ({r['device']}; CPU side: {r.get('cpu.device')})", "",
           f"OS1-128 sweep of {_fmt(r['completion_points'])} points, region ±{r['completion_roi_m']} m.", "",
           "| stage | ms | target |", "| --- | ---: | ---: |"]
    out += [f"| {name} | {_fmt(r[key], 1)} | {target} |" for name, key, target in rows]
    out += ["", "Same default configuration in an earlier run with the host's CPUs idle (no compiler beside it): coarse "
            f"{_fmt(r.get('completion_coarse_ms_quiet_host', float('nan')), 1)} ms, total "
            f"{_fmt(r.get('completion_total_ms_quiet_host', float('nan')), 1)} ms. The coarse chain is bound by the "
            "host's kernel launches, so its time moves with the host's load."]
    out += ["", f"Peak GPU memory {_fmt(r['completion_peak_gpu_mb'])} MB (±51.2 m), "
            f"{_fmt(r['completion_120m_peak_gpu_mb'])} MB (±60 m). CPU/GPU ratio {_fmt(r['cpu_over_gpu_ratio'], 1)} "
            f"(full region on the CPU: {_fmt(r['cpu_full_region_over_gpu_ratio'], 1)}).", "",
            "| quality (vs scene ground truth) | fast path | reference path |", "| --- | ---: | ---: |",
            f"| fine-cell IoU | {_fmt(r['fast_iou'], 3)} | {_fmt(r['reference_iou'], 3)} |",
            f"| precision / recall | {_fmt(r['fast_precision'], 3)} / {_fmt(r['fast_recall'], 3)} | "
            f"{_fmt(r['reference_precision'], 3)} / {_fmt(r['reference_recall'], 3)} |",
            f"| mesh F-score @ 0.4 m | {_fmt(r['fast_mesh_fscore'], 3)} | {_fmt(r['reference_mesh_fscore'], 3)} |",
            "", f"Fast path steps {r['fast_steps']}; with the models' 10 coarse steps: coarse "
            f"{_fmt(r['model_steps_coarse_ms'], 1)} ms, total {_fmt(r['model_steps_total_ms'], 1)} ms, IoU "
            f"{_fmt(r['model_steps_iou'], 3)}, mesh F-score {_fmt(r['model_steps_mesh_fscore'], 3)}.",
            "", f"Messages: CompletedMesh {_fmt(r['mesh_message_bytes'] / 2**20, 1)} MiB, rviz Marker "
            f"{_fmt(r['marker_message_bytes'] / 2**20, 1)} MiB ({_fmt(r['marker_max_triangles'])} triangles), "
            f"undecimated Marker {_fmt(r.get('messages.cpu_full.undecimated_marker_bytes', float('nan')) / 2**20, 1)} MiB.", "",
            f"Pose tracking {_fmt(r['pose_tracking_fps'], 1)} frames/s at {_fmt(r.get('pose_image_px'))} px, "
            f"single image {_fmt(r['pose_single_image_s'], 2)} s. Training {_fmt(r['train_iters_per_s_gpu'], 1)} it/s "
            "(GCA transition, float32; bf16 " + _fmt(r.get("train_iters_per_s_gpu_bf16", float("nan")), 1) + ").", ""]
    return "\n".join(out)
