"""What pose estimation costs: frames/s of tracking, seconds of a single-image estimate, and the op counts behind
them, for benchmarks (``bench/performance.py`` calls these on the GPU).

    timing = measure_tracking(estimator, frames, camera, initial)    # TrackingTiming: frames/s, ops per Adam step
    single = measure_estimate(estimator, image, camera)              # EstimateTiming: seconds, per phase, ops

Ops are counted with ``torch.profiler``: aten ops that do work (the leaves of the op tree, without views and
other metadata-only ops), which is what an eager GPU program pays a kernel launch (~5-10 us of host time) for; on
CUDA the launched kernels are counted too. Host syncs are counted on CUDA with ``torch.cuda.set_sync_debug_mode``
(those on the calling thread: the autograd engine's device threads report theirs elsewhere).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.pose.config import PoseEstimate
from gen3d_ros.robot.pose.tracking import track, track_step

METADATA_OPS = frozenset({
    "aten::as_strided", "aten::view", "aten::_reshape_alias", "aten::_unsafe_view", "aten::reshape", "aten::detach",
    "aten::detach_", "aten::resolve_conj", "aten::resolve_neg", "aten::t", "aten::transpose", "aten::expand",
    "aten::permute", "aten::select", "aten::slice", "aten::unsqueeze", "aten::squeeze", "aten::alias",
    "aten::lift_fresh", "aten::result_type", "aten::empty", "aten::empty_strided", "aten::empty_like",
    "aten::split", "aten::unbind", "aten::split_with_sizes", "aten::diagonal", "aten::unflatten", "aten::flatten",
    "aten::_has_compatible_shallow_copy_type", "aten::as_strided_", "aten::resize_", "aten::set_", "aten::is_nonzero",
    "aten::_local_scalar_dense", "aten::item", "aten::numpy_T", "aten::contiguous", "aten::expand_as",
    "aten::view_as", "aten::narrow", "aten::_unsafe_split", "aten::_to_copy", "aten::to", "aten::scalar_tensor",
    "aten::new_empty", "aten::new_empty_strided", "aten::mT", "aten::mH", "aten::adjoint", "aten::_neg_view",
    "aten::_conj", "aten::conj", "aten::chunk", "aten::movedim", "aten::numpy_T",
})
"""aten ops that launch no kernel of their own: views, allocation, ``to`` without a conversion (with one, its
``copy_`` is counted), Python scalars wrapped as tensors."""


@dataclass
class OpCount:
    """What one call did: aten ops doing work, CUDA kernels launched (0 off CUDA), host syncs (None off CUDA)."""

    ops: int
    kernels: int
    syncs: int | None

    def __sub__(self, other: "OpCount") -> "OpCount":
        syncs = None if self.syncs is None or other.syncs is None else self.syncs - other.syncs
        return OpCount(self.ops - other.ops, self.kernels - other.kernels, syncs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_ops(fn: Callable[[], Any], device: torch.device | str) -> OpCount:
    """The :class:`OpCount` of one call of ``fn`` on ``device`` (run twice on CUDA: once profiled, once for the
    syncs)."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    cuda = device.type == "cuda"
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=True) as prof:
        fn()
        _sync(device)
    events = prof.events()
    ops = sum(_does_work(e) for e in events)
    kernels = sum("LaunchKernel" in e.name for e in events)  # the host's launch calls (cudaLaunchKernel, ...)
    return OpCount(ops, kernels, count_syncs(fn, device) if cuda else None)


def _does_work(event) -> bool:
    """Whether a profiler event is an aten op that launches work: not metadata-only, not on 0-dim inputs only (on
    the CPU, Python scalars become 0-dim tensors that are converted and filled; on a GPU they travel as kernel
    arguments), and none of its aten descendants does work (``matmul`` -> ``bmm``: the ``bmm`` counts)."""
    if not event.name.startswith("aten::") or event.name in METADATA_OPS:
        return False
    if any(_does_work(c) or _has_work_below(c) for c in event.cpu_children):
        return False
    shapes = [s for s in (event.input_shapes or []) if isinstance(s, (list, tuple))]
    return not shapes or any(len(s) > 0 for s in shapes)


def _has_work_below(event) -> bool:
    return any(_does_work(c) or _has_work_below(c) for c in event.cpu_children)


def count_syncs(fn: Callable[[], Any], device: torch.device | str) -> int:
    """Host syncs of one call of ``fn`` on a CUDA ``device`` (``torch.cuda.set_sync_debug_mode`` warnings)."""
    device = torch.device(device)
    _sync(device)
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(w.message) for w in caught)


@dataclass
class TrackingTiming:
    """Warm-started tracking of ``frames`` frames (camera unknown unless given): wall ``seconds`` (device
    synchronised), ``frames_per_s``, mean Adam ``steps_per_frame``; ``ops_per_step`` (:class:`OpCount`) of one Adam
    step, ``splat_per_step`` of the bare splatting in it (``render_gaussians`` forward + backward), ``per_frame`` of
    one whole tracked frame (``track_step``: target, setup, steps, result) and ``setup_per_frame`` of that frame
    without its ``frame_steps`` Adam steps; ``estimates``: the tracked frames."""

    frames: int
    seconds: float
    frames_per_s: float
    steps_per_frame: float
    ops_per_step: OpCount | None
    splat_per_step: OpCount | None
    per_frame: OpCount | None
    setup_per_frame: OpCount | None
    frame_steps: int
    estimates: list[PoseEstimate]

    def as_dict(self) -> dict[str, float | None]:
        """Flat numbers for a JSON report (op counts as ``<name>_ops``, ``_kernels``, ``_syncs``)."""
        out: dict[str, float | None] = {"frames": self.frames, "seconds": self.seconds,
                                        "frames_per_s": self.frames_per_s, "steps_per_frame": self.steps_per_frame}
        for name in ("ops_per_step", "splat_per_step", "per_frame", "setup_per_frame"):
            count = getattr(self, name)
            for field in ("ops", "kernels", "syncs"):
                out[f"{name}_{field}"] = None if count is None else getattr(count, field)
        return out


def measure_tracking(
    estimator,
    frames: Sequence[np.ndarray | Tensor],
    camera: PinholeCamera,
    initial: PoseEstimate,
    *,
    warmup: int = 2,
    count: bool = True,
    T_camera_base: np.ndarray | Tensor | None = None,
) -> TrackingTiming:
    """Time :func:`~gen3d_ros.robot.pose.tracking.track` of ``frames`` (each ``[H, W, 3]``) from ``initial`` (the
    estimate of the frame before the first) with ``estimator`` (a
    :class:`~gen3d_ros.robot.pose.estimator.PoseEstimator`), after ``warmup`` tracked frames (kernels loaded,
    caches filled); with ``count``, also the op counts of one step, of its splatting and of one frame.
    ``T_camera_base``: a known camera (joints only)."""
    device = estimator.device
    if warmup > 0:
        track(estimator, list(frames[:warmup]), camera, initial=initial, T_camera_base=T_camera_base)
    _sync(device)
    t0 = time.perf_counter()
    estimates = track(estimator, frames, camera, initial=initial, T_camera_base=T_camera_base)
    _sync(device)
    seconds = time.perf_counter() - t0
    steps = float(np.mean([e.iterations for e in estimates]))
    step = splat = frame = setup = None
    frame_steps = 0
    if count and len(estimates) >= 2:
        step, splat = _step_counts(estimator, frames[1], camera, estimates[0], T_camera_base)
        tracked: list[PoseEstimate] = []
        frame = count_ops(lambda: tracked.append(track_step(estimator, frames[1], camera, [initial, estimates[0]],
                                                            T_camera_base=T_camera_base)), device)
        frame_steps = tracked[-1].iterations
        setup = frame - OpCount(step.ops * frame_steps, step.kernels * frame_steps,
                                None if step.syncs is None else step.syncs * frame_steps)
    return TrackingTiming(len(frames), seconds, len(frames) / seconds, steps, step, splat, frame, setup, frame_steps,
                          estimates)


def _step_counts(estimator, image, camera: PinholeCamera, prev: PoseEstimate,
                 T_camera_base: np.ndarray | Tensor | None) -> tuple[OpCount, OpCount | None]:
    """(one Adam step of ``estimator.refine`` from ``prev``, its bare splatting): the step from the difference of
    refinements of 2 and 6 steps with the convergence test switched off (a whole step: pose, render, losses,
    backward, Adam, best-state and history bookkeeping)."""
    device = estimator.device
    T_init = prev.T_camera_base if T_camera_base is None else T_camera_base
    refiner = estimator.refiner
    config = refiner.config
    refiner.config = dataclasses.replace(config, patience=10_000)  # no early stop: exactly n steps
    try:
        def refine(n: int) -> Callable[[], Any]:
            return lambda: estimator.refine(image, camera, prev.q, T_init, prior=(prev.q, T_init), iterations=n,
                                            optimise_T=T_camera_base is None)
        two, six = count_ops(refine(2), device), count_ops(refine(6), device)
    finally:
        refiner.config = config
    diff = six - two
    step = OpCount(round(diff.ops / 4), round(diff.kernels / 4), None if diff.syncs is None else diff.syncs / 4)
    return step, _splat_counts(estimator, prev, T_init, camera)


def _splat_counts(estimator, prev: PoseEstimate, T_init, camera: PinholeCamera) -> OpCount | None:
    """Ops of ``render_gaussians`` forward + backward alone at ``prev``'s pose (None for a model without
    ``posed_gaussians``)."""
    from gen3d_ros.robot.splatting import render_gaussians

    renderer = getattr(estimator, "renderer", estimator.model)
    if not hasattr(renderer, "posed_gaussians"):
        return None
    device = estimator.device
    cfg = estimator.config
    scale = cfg.track_scale
    cam = camera.scaled(scale) if scale != 1.0 else camera
    with torch.no_grad():
        g = renderer.posed_gaussians(torch.as_tensor(prev.q, dtype=torch.float32, device=device))
    g = {k: v[None].detach().requires_grad_(True) for k, v in g.items()}
    T = torch.as_tensor(np.asarray(T_init), dtype=torch.float32, device=device)[None].requires_grad_(True)

    def splat() -> None:
        out = render_gaussians(**g, T_camera_base=T, camera=cam, background=estimator.background,
                               backend=cfg.backend)
        (out.rgb.mean() + out.alpha.mean()).backward()

    splat()  # warm (gsplat's first call loads its kernels)
    return count_ops(splat, device)


@dataclass
class EstimateTiming:
    """One single-image estimate after a warm-up estimate: wall ``seconds`` (device synchronised), the estimate's
    ``phase_seconds``, the Adam ``steps`` summed over hypotheses, its :class:`OpCount` ``ops`` (None without
    ``count``) and the ``estimate`` itself."""

    seconds: float
    phase_seconds: dict[str, float]
    steps: int
    ops: OpCount | None
    estimate: PoseEstimate


def measure_estimate(estimator, image: np.ndarray | Tensor, camera: PinholeCamera, *, warmup: bool = True,
                     count: bool = False, **options: Any) -> EstimateTiming:
    """Time ``estimator.estimate(image, camera, **options)`` (``options``: mask, q, T_camera_base, q_init) after
    one untimed warm-up estimate (CUDA context, gsplat's kernels, allocator: seconds on a first call that a
    running node does not pay again); ``count``: also its op count (one more estimate, profiled)."""
    device = estimator.device
    if warmup:
        estimator.estimate(image, camera, **options)
    _sync(device)
    t0 = time.perf_counter()
    est = estimator.estimate(image, camera, **options)
    _sync(device)
    seconds = time.perf_counter() - t0
    ops = count_ops(lambda: estimator.estimate(image, camera, **options), device) if count else None
    return EstimateTiming(seconds, dict(est.phase_seconds), est.iterations, ops, est)


__all__ = ["EstimateTiming", "METADATA_OPS", "OpCount", "TrackingTiming", "count_ops", "count_syncs",
           "measure_estimate", "measure_tracking"]
