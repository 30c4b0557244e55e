"""``CompletionProcessor``: LiDAR points in, completed mesh + voxels out. No ROS, no messages.

Methods (``CompletionConfig.method``):
- ``classical-poisson`` / ``classical-ballpivot``: surface reconstruction of what was seen (no completion);
  always available, the baseline.
- ``gca``: a trained Generative Cellular Automata kernel (``checkpoint``) grows the scan into a complete
  scene on its training grid around the sensor; the completed voxels are meshed by marching cubes.
- ``cgca``: a single-level cGCA (:class:`~gen3d_ros.completion.inference.CGCACompleter`, the packaged
  ``cgca_demo.pt``): the sweep encoded on its 0.2 m grid, grown, its decoder's distance field meshed.
- ``hgca``: the hierarchy (:class:`~gen3d_ros.completion.inference.SceneCompleter`): coarse GCA with the BEV planner,
  fine cGCA inside it, the decoder's distance field meshed (continuous geometry, not voxel steps). The coarse
  completion goes to ``process``'s ``on_coarse`` as soon as it exists, seconds before the mesh.

Every method's mesh is also decimated to ``marker_max_triangles`` for display (``CompletionResult.display_mesh``,
:mod:`gen3d_ros.completion.decimate`).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gen3d_ros.completion.alignment import GroundAlignment, estimate_alignment, model_sensor_height
from gen3d_ros.completion.carving import carve_free_space
from gen3d_ros.completion.classical import ball_pivot_mesh, poisson_mesh
from gen3d_ros.completion.decimate import decimate_to_budget
from gen3d_ros.completion.grid import prepare_sweep
from gen3d_ros.completion.mesh import TriangleMesh
from gen3d_ros.completion.outside_surface import OutsideSurfaceWorker, append_surface, band_points
from gen3d_ros.completion.voxelize import voxel_centers, voxelize
from gen3d_ros.config import param, validate

CLASSICAL_METHODS = ("classical-poisson", "classical-ballpivot")
METHODS = (*CLASSICAL_METHODS, "gca", "cgca", "hgca")


HGCA_DEFAULTS = {
    # region (m, half side) and steps (0: the model's) where the parameters are 0; measured in
    # bench/results/performance.json (README: Real-time completion). GPU: 6 coarse steps instead of the model's 10
    # keep the coarse stage under 100 ms on an H200 (10 Hz); the cost in quality is measured there, next to it.
    "cuda": {"region_half_extent": 51.2, "coarse_steps": 6, "fine_steps": 0},
    "cpu": {"region_half_extent": 25.6, "coarse_steps": 6, "fine_steps": 2},
}


def hgca_defaults(device: str) -> dict[str, float]:
    """The hgca region and steps used for parameters left at 0 on ``device`` (``cuda``, ``cuda:N``, ``cpu``)."""
    return HGCA_DEFAULTS["cuda" if str(device).startswith("cuda") else "cpu"]


class EmptyInputError(ValueError):
    """No usable points after filtering and cropping."""


@dataclass
class CompletionConfig:
    """Knobs of the completion processor; every field is also a ROS parameter of ``completion_node``."""

    method: str = param("classical-poisson", "completion method", choices=METHODS)
    checkpoint: str = param("", "gca: model.pt of gen3d train-completion; cgca: model.pt of --stage fine without a "
                                "coarse condition; hgca: hgca.pt of --stage hierarchy; empty: the packaged demo "
                                "model")
    steps: int = param(0, "GCA transitions (hgca: of the coarse stage); 0: the model's default (hgca: see "
                          "HGCA_DEFAULTS)", lo=0, hi=200)
    fine_steps: int = param(0, "hgca: fine cGCA transitions; 0: the model's default (see HGCA_DEFAULTS)",
                            lo=0, hi=200)
    region_half_extent: float = param(0.0, "hgca, cgca: half side of the square region (x, y) completed around "
                                           "the sensor; 0: hgca 51.2 m on a GPU, 25.6 m on the CPU; cgca its "
                                           "training box", unit="m", lo=0.0,
                                      hi=200.0)
    # One lattice step per 0.2 m voxel: the same F-score as two (0.476 vs 0.476 on the +-51.2 m OS1-128 sweep of
    # bench/performance.py) with 4.4x fewer triangles and 3x less meshing time.
    mesh_resolution: int = param(1, "hgca: marching-cubes lattice steps per fine voxel edge", lo=1, hi=8)
    coarse_checkpoint: str = param("", "hgca: replace the coarse stage (e.g. a plain GCA model.pt); empty: the "
                                       "bundle's")
    device: str = param("cpu", "torch device of learned methods (cpu, cuda, cuda:1)")
    # One thread by default: chains of ~10k voxels gain little from intra-op threads, and OpenMP spin-waits
    # collapse throughput when cores are shared (measured on 2 busy cores: 0.65 s per VLP-32 sweep with 1
    # thread, 3.5-7 s with 2).
    threads: int = param(1, "torch CPU threads of learned methods; 0: torch's default", lo=0, hi=256)
    voxel_size: float = param(0.2, "voxel side of the classical methods' grid (learned methods use the grid their "
                                   "model was trained on)", unit="m", lo=0.02, hi=2.0)
    roi_radius: float = param(75.0, "keep points within this horizontal range of the sensor (hgca: also cropped to "
                                    "its region)", unit="m", lo=1.0, hi=200.0)
    z_min: float = param(-3.0, "lowest kept point, sensor frame (learned methods with gravity_align: the level "
                               "model frame, sensor at the model's height)", unit="m", lo=-50.0, hi=50.0)
    # 20 m, not the old grid's 5 m: an OS-1 on a street sees 11-21 % of its returns above the demo grid's 4.4 m
    # ceiling (bench/results/real_lidar.json), the rich models' grid reaches 8.4 m, and the observed surface
    # outside the completion volume is kept (outside_surface).
    z_max: float = param(20.0, "highest kept point, sensor frame (learned methods with gravity_align: the model "
                               "frame)", unit="m", lo=-50.0, hi=50.0)
    max_points: int = param(200_000, "random subsample above this many points", lo=100, hi=10_000_000)
    min_points: int = param(50, "reject clouds with fewer usable points", lo=1, hi=1_000_000)
    poisson_depth: int = param(9, "Poisson octree depth (classical-poisson)", lo=5, hi=12)
    density_quantile: float = param(0.05, "trim this fraction of least-supported Poisson vertices",
                                    lo=0.0, hi=0.9)
    seed: int = param(0, "random seed (subsampling, sampling of generative methods)", lo=0, hi=2**31 - 1)
    # The rviz Marker repeats every triangle corner (24 B) and its colour (16 B): 44 MB for the ~370k triangles
    # of a ±12 m hGCA sweep; 100k triangles (11.6 MB, 7.0 MB single-coloured) still show the scene's detail.
    marker_max_triangles: int = param(100_000, "triangles of the mesh Marker for rviz: the mesh is decimated "
                                               "(vertex clustering) to at most this many; CompletedMesh keeps the "
                                               "full mesh; 0: no limit", lo=0, hi=100_000_000)
    marker_colors: bool = param(True, "per-corner height colours on the mesh Marker (+67 % bytes); off: one "
                                      "grey with rviz's shading")
    # The models only know their training frame (level sensor, ground at -sensor_height_m): measured on real
    # sweeps without it, hGCA put the unobserved ground 0.27-0.49 m off (issue 13).
    gravity_align: bool = param(True, "learned methods: complete in a gravity-aligned frame with the ground at the model's "
                                      "training height (from T_base_cloud when given, else a RANSAC ground fit "
                                      "with a sanity range), results transformed back to the cloud frame")
    # The models complete only inside their grid (z ceiling 4.4 m for the demo models): without this a ray to a
    # facade above it found no surface although the sweep saw one (real OS-1: no-hit 0.11 -> 0.007, issue 13).
    outside_surface: bool = param(True, "learned methods: the observed surface outside the model's completion "
                                        "volume (above its ceiling, below its floor, beyond its region) meshed as "
                                        "classical-poisson does (no completion) and appended to the mesh; "
                                        "CompletionResult.completed_faces counts the model's own faces, first. "
                                        "Meshed in a worker process while the model completes (0.5-3 s of "
                                        "Poisson on one core for a 128-beam sweep; more faces to publish)")
    # Off by default: measured on the real sweeps it helps hGCA and Poisson alike (bench/results/real_lidar.md,
    # *-carved), and it costs 0.1-1.4 s of CPU ray casting a sweep.
    carve_free_space: bool = param(False, "remove the mesh faces that the sweep's own rays pass through (a return "
                                          "more than 0.3 m off the face's plane beyond it: foliage the beams went "
                                          "through, closed by the mesh); every method")
    mesh_colors: bool = param(False, "per-vertex colours in CompletedMesh (+35 % bytes); off by default: they "
                                     "are the height ramp of the vertices, a subscriber can compute them")

    def __post_init__(self) -> None:
        validate(self)
        if self.z_min >= self.z_max:
            raise ValueError(f"CompletionConfig.z_min={self.z_min} must be below z_max={self.z_max}")

    def check_resources(self) -> None:
        """Check, without building a model, that what ``method`` loads exists and is of the right kind: its
        checkpoint file(s), loaded with ``weights_only=True`` and their ``format`` checked, and ``device``.
        Classical methods load nothing; fields the method does not read are not checked. Learned methods import
        torch (once per process, ~1-2 s).

        Raises ValueError naming the parameter, the path and the problem (missing, not a torch archive,
        another kind of checkpoint, no such device). A file that passes may still fail to build (weights that
        do not fit their model); a node reports that when its stage is rebuilt.
        """
        if self.method in CLASSICAL_METHODS:
            return
        from gen3d_ros.completion.checkpoint import (BUNDLE_FORMAT, CGCA_FORMAT, GCA_FORMAT, PLANNED_GCA_FORMAT,
                                                    default_cgca_checkpoint, default_gca_checkpoint,
                                                    default_hgca_checkpoint)
        from gen3d_ros.devices import check_device

        check_device(self.device)  # DeviceError is a ValueError
        gca_formats = (GCA_FORMAT, PLANNED_GCA_FORMAT)
        if self.method == "gca":
            _check_checkpoint("checkpoint", self.checkpoint, default_gca_checkpoint, "GCA", gca_formats)
        elif self.method == "cgca":
            _check_checkpoint("checkpoint", self.checkpoint, default_cgca_checkpoint, "cGCA", (CGCA_FORMAT,))
        elif self.method == "hgca":
            _check_checkpoint("checkpoint", self.checkpoint, default_hgca_checkpoint, "hGCA bundle",
                              (BUNDLE_FORMAT,))
            if self.coarse_checkpoint:
                _check_checkpoint("coarse_checkpoint", self.coarse_checkpoint, None, "GCA", gca_formats)


def _check_checkpoint(field_name: str, path: str, packaged: Any, what: str, formats: tuple[str, ...]) -> None:
    """Load checkpoint ``path`` (``packaged()`` when empty) and check its format; ValueError naming
    ``CompletionConfig.<field_name>`` and the path otherwise."""
    from gen3d_ros.checkpoints import read_checkpoint

    try:
        source = Path(path).expanduser() if path else packaged()
        read_checkpoint(source, what, formats)
    except FileNotFoundError as exc:
        raise ValueError(f"CompletionConfig.{field_name}={path!r}: {exc}; give the path of an existing {what} "
                         "checkpoint" + (" (empty: the packaged model)" if packaged is not None else "")) from None
    except ValueError as exc:  # CheckpointError: not a torch archive, truncated, another format...
        raise ValueError(f"CompletionConfig.{field_name}={path!r}: {exc}") from None


#: ``on_coarse(centres)``: (C, 3) float32 coarse voxel centres, metres, sensor frame, called once per sweep as soon
#: as the coarse completion exists (hgca), before the fine stage and the mesh
CoarseCallback = Callable[[np.ndarray], None]


@dataclass
class CompletionResult:
    """Output of one completion, in the input frame (metres).

    ``mesh``: the full welded mesh; ``display_mesh``: the same decimated to ``marker_max_triangles`` (``mesh``
    itself when within the budget)."""

    mesh: TriangleMesh
    voxels: np.ndarray  # (M,3) float32 centres of completed occupied voxels
    voxel_size: float
    steps: int
    input_points: int
    dropped_points: int
    latency_ms: float
    model_id: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    display_mesh: TriangleMesh | None = None
    alignment: GroundAlignment | None = None  # the frame the model completed in (None: classical, or not aligned)
    #: ``mesh.faces[:completed_faces]`` are the method's own surface (learned: inside its completion volume); the
    #: faces after them are observed surface outside that volume, meshed without completion (``outside_surface``)
    completed_faces: int | None = None

    def __post_init__(self) -> None:
        if self.completed_faces is None:
            self.completed_faces = len(self.mesh.faces)


class CompletionProcessor:
    """Completes one LiDAR sweep. ``points``: (N,3) float32, metres, sensor frame (sensor at the origin).

    ``completer``: an already built completer for ``method`` gca (a ``GCACompleter``) or hgca (a
    ``SceneCompleter``), or an object of the same interface, used instead of loading ``config.checkpoint``."""

    def __init__(self, config: CompletionConfig | None = None, *, completer: Any = None) -> None:
        self.config = config or CompletionConfig()
        self.rng = np.random.default_rng(self.config.seed)
        self.calls = 0
        self._outside_worker = OutsideSurfaceWorker()
        if completer is not None and self.config.method in CLASSICAL_METHODS:
            raise ValueError(f"a completer was given but method {self.config.method!r} uses none; "
                             "give method gca or hgca")
        self.completer = completer if completer is not None else self._build_completer()
        # SceneCompleter.complete calls on_coarse right after its coarse stage (issue 12); one without that
        # parameter has the coarse result handed out after the whole completion, before the mesh messages.
        self._streams_coarse = (self.config.method == "hgca"
                                and "on_coarse" in inspect.signature(self.completer.complete).parameters)

    def _build_completer(self) -> Any:
        """The completer of ``config.method`` (None for the classical methods), loaded from its checkpoint."""
        c = self.config
        if c.method in CLASSICAL_METHODS:
            return None
        import torch

        from gen3d_ros.completion.checkpoint import default_gca_checkpoint
        from gen3d_ros.completion.inference import CGCACompleter, GCACompleter, SceneCompleter, SceneCompleterConfig

        if c.threads > 0:
            torch.set_num_threads(c.threads)
        if c.method == "hgca":
            # The sweep is prepared (cropped, subsampled) here once: the completer adds no limit of its own.
            d = hgca_defaults(c.device)
            return SceneCompleter(c.checkpoint or None, SceneCompleterConfig(
                coarse_steps=c.steps or d["coarse_steps"], fine_steps=c.fine_steps or d["fine_steps"],
                half_extent_m=c.region_half_extent or d["region_half_extent"], mesh_resolution=c.mesh_resolution,
                max_points=0, device=c.device, coarse_checkpoint=c.coarse_checkpoint, seed=c.seed))
        if c.method == "cgca":  # its training grid unless a region is given (0.2 m cells: slow on wide boxes)
            return CGCACompleter(c.checkpoint or None, SceneCompleterConfig(
                fine_steps=c.steps, half_extent_m=c.region_half_extent,
                mesh_resolution=c.mesh_resolution, max_points=0, device=c.device, seed=c.seed))
        return GCACompleter(c.checkpoint or str(default_gca_checkpoint()), device=c.device, steps=c.steps or None)

    @property
    def model_id(self) -> str:
        return self.completer.model_id if self.completer is not None else self.config.method

    def process(self, points: np.ndarray, *, dropped: int = 0, on_coarse: CoarseCallback | None = None,
                T_base_cloud: np.ndarray | None = None) -> CompletionResult:
        """Complete ``points``; ``dropped``: points the caller already removed (NaNs), added to the count.

        ``T_base_cloud``: 4x4 float64 mapping cloud-frame points (metres) into the robot's base frame (z up), from
        TF; with ``gravity_align`` (learned methods) its rotation gives gravity. Without it the ground plane is
        estimated per sweep (:mod:`gen3d_ros.completion.alignment`). Every output (mesh, voxels, coarse voxels)
        is in the cloud frame; ``result.alignment`` says how the sweep was aligned.

        ``on_coarse``: called once with the coarse completion's voxel centres ((C, 3) float32, metres, sensor
        frame) as soon as they exist, before this returns (method hgca; the other methods have no coarse stage
        and never call it). What it raises fails the sweep. ``timings_ms["to_coarse"]``: from the call to it.
        """
        start = time.perf_counter()
        c = self.config
        aligning = self.completer is not None and c.gravity_align and self.model_height_m is not None
        # An aligned sweep is cropped in height in the model frame (level, the sensor at the model's height): the
        # ground of a sensor mounted 3.5 m up stays, which a -3 m crop in the sensor's own frame would cut.
        sweep = prepare_sweep(np.asarray(points, np.float32), roi_radius_m=c.roi_radius,
                              z_range_m=None if aligning else (c.z_min, c.z_max), max_points=c.max_points,
                              rng=self.rng, dropped=dropped)
        points, dropped = sweep.points, sweep.dropped
        self._check_count(points)
        if self.completer is None:
            result = self._process_classical(points, dropped)
        else:
            result = self._process_learned(points, dropped, start, on_coarse, T_base_cloud)
        if c.carve_free_space:
            t0 = time.perf_counter()
            keep = carve_free_space(result.mesh, points)
            result.completed_faces = int(keep[:result.completed_faces].sum())
            result.mesh = TriangleMesh(result.mesh.vertices, result.mesh.faces[keep], result.mesh.vertex_colors)
            result.timings_ms["carve"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        result.display_mesh = decimate_to_budget(result.mesh, c.marker_max_triangles)
        result.timings_ms["decimate"] = (time.perf_counter() - t0) * 1e3
        result.latency_ms = (time.perf_counter() - start) * 1e3
        return result

    def _check_count(self, points: np.ndarray) -> None:
        if len(points) < self.config.min_points:
            raise EmptyInputError(f"{len(points)} usable points after filtering and a {self.config.roi_radius} m "
                                  f"region of interest; need at least min_points={self.config.min_points}")

    def _process_learned(self, points: np.ndarray, dropped: int, start: float, on_coarse: CoarseCallback | None,
                         T_base_cloud: np.ndarray | None) -> CompletionResult:
        """gca / cgca / hgca in the model frame of the sweep (see ``process``); outputs in the cloud frame."""
        c = self.config
        t0 = time.perf_counter()
        alignment = self._alignment(points, T_base_cloud)
        align_ms = (time.perf_counter() - t0) * 1e3
        moved = alignment is not None and not alignment.identity
        if alignment is not None:
            if moved:
                points = alignment.to_model(points)
                if on_coarse is not None:
                    user_on_coarse = on_coarse
                    on_coarse = lambda centres: user_on_coarse(alignment.to_cloud(centres))  # noqa: E731
            keep = (points[:, 2] >= c.z_min) & (points[:, 2] <= c.z_max)
            points, dropped = points[keep], dropped + int((~keep).sum())
            self._check_count(points)
        # The outside surface needs only the sweep: meshed in a worker process while the model completes.
        volume = self.completion_volume if c.outside_surface else None
        band = band_points(points, *volume) if volume is not None else None
        poisson = dict(voxel_size=c.voxel_size, depth=c.poisson_depth, density_quantile=c.density_quantile)
        outside = self._outside_worker.submit(band, *volume, **poisson) if band is not None else None
        if c.method in ("hgca", "cgca"):
            result = self._process_hgca(points, dropped, start, on_coarse)
        else:
            result = self._process_gca(points, dropped)
        if outside is not None:
            t0 = time.perf_counter()
            surface, result.timings_ms["outside_surface"] = outside.result()
            result.mesh, result.completed_faces = append_surface(result.mesh, surface)
            result.timings_ms["outside_surface_wait"] = (time.perf_counter() - t0) * 1e3
        if moved:
            result.mesh = TriangleMesh(alignment.to_cloud(result.mesh.vertices), result.mesh.faces,
                                       result.mesh.vertex_colors)  # height colours of the level frame
            result.voxels = alignment.to_cloud(result.voxels)
        result.alignment = alignment
        result.timings_ms["align"] = align_ms
        return result

    @property
    def completion_volume(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lo, hi)`` (3,) float64 metres: the box the learned model completes in, model frame (the cloud frame
        when not aligned); None for the classical methods or a completer without a grid."""
        c = self.completer
        grid = getattr(getattr(c, "coarse", None), "grid", None) or getattr(c, "grid", None)
        if grid is None:
            return None
        return grid.origin.copy(), grid.origin + grid.extent

    def _alignment(self, points: np.ndarray, T_base_cloud: np.ndarray | None) -> GroundAlignment | None:
        """The model frame of this sweep (None when ``gravity_align`` is off or the model's frame is unknown)."""
        height = self.model_height_m
        if not self.config.gravity_align or height is None:
            return None
        return estimate_alignment(points, model_height_m=height, T_base_cloud=T_base_cloud, seed=self.config.seed)

    @property
    def model_height_m(self) -> float | None:
        """The sensor height above the ground (metres) the learned model was trained at; None for a completer
        that carries no training data config (neither a SceneCompleter's ``fine_data`` nor a GCACompleter's
        ``checkpoint``, e.g. a test double): it is run in the cloud frame."""
        c = self.completer
        data = getattr(c, "fine_data", None)  # SceneCompleter: the fine stage's data config
        if data is None:
            ckpt = getattr(c, "checkpoint", None)
            if not isinstance(ckpt, dict):
                return None
            data = ckpt.get("train_config", {}).get("data")
        return model_sensor_height(data)

    def _process_classical(self, points: np.ndarray, dropped: int) -> CompletionResult:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        voxel = self.config.voxel_size
        voxels = voxel_centers(voxelize(points, voxel), voxel)
        timings["voxelize"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        if self.config.method == "classical-poisson":
            mesh = poisson_mesh(points, voxel_size=voxel, depth=self.config.poisson_depth,
                                density_quantile=self.config.density_quantile)
        else:
            mesh = ball_pivot_mesh(points, voxel_size=voxel)
        timings["mesh"] = (time.perf_counter() - t0) * 1e3
        return CompletionResult(mesh=mesh, voxels=voxels, voxel_size=voxel, steps=0, input_points=len(points),
                                dropped_points=dropped, latency_ms=0.0, model_id=self.model_id, timings_ms=timings)

    def _process_gca(self, points: np.ndarray, dropped: int) -> CompletionResult:
        from gen3d_ros.completion.voxel_mesh import voxels_to_mesh

        completer = self.completer
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        cells = completer.voxelize(points)
        timings["voxelize"] = (time.perf_counter() - t0) * 1e3
        if len(cells) == 0:
            raise EmptyInputError(f"no point lies in the model's {completer.grid_shape.tolist()} voxel grid "
                                  f"of {completer.voxel_size} m around the sensor")
        t0 = time.perf_counter()
        out = completer.complete_cells(cells, seed=self.config.seed + self.calls)
        self.calls += 1
        timings["gca"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        mesh = voxels_to_mesh(out, completer.voxel_size, completer.origin)
        timings["mesh"] = (time.perf_counter() - t0) * 1e3
        steps = completer.steps or completer.model.config.steps
        return CompletionResult(mesh=mesh, voxels=completer.centers(out), voxel_size=completer.voxel_size,
                                steps=int(steps), input_points=len(points), dropped_points=dropped,
                                latency_ms=0.0, model_id=completer.model_id, timings_ms=timings)

    def _process_hgca(self, points: np.ndarray, dropped: int, start: float,
                      on_coarse: CoarseCallback | None) -> CompletionResult:
        coarse_at: list[float] = []

        def deliver(centres: np.ndarray) -> None:
            coarse_at.append((time.perf_counter() - start) * 1e3)
            if on_coarse is not None:
                on_coarse(np.asarray(centres, np.float32).reshape(-1, 3))

        kwargs = {"on_coarse": deliver} if self._streams_coarse else {}
        try:
            out = self.completer.complete(points, seed=self.config.seed + self.calls, **kwargs)
        except ValueError as exc:
            if coarse_at:  # raised after the coarse stage (or by on_coarse): a failure, not an empty input
                raise
            raise EmptyInputError(str(exc)) from exc  # nothing on the model's grid
        self.calls += 1
        if not coarse_at and self.config.method == "hgca":  # a completer that does not stream its coarse result
            deliver(voxel_centers(out.coarse_cells, out.coarse_voxel, out.origin))
        timings = {**out.timings_ms, **({"to_coarse": coarse_at[0]} if coarse_at else {})}
        return CompletionResult(mesh=out.mesh, voxels=out.fine_centres, voxel_size=out.fine_voxel,
                                steps=int(sum(out.steps)), input_points=len(points), dropped_points=dropped,
                                latency_ms=0.0, model_id=self.completer.model_id, timings_ms=timings)
