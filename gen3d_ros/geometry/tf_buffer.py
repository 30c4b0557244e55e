"""A TF buffer without tf2: a tree of timed rigid transforms, looked up through chains with interpolation.

Used by the nodes where ``tf2_ros`` is not importable (pip wheels; :mod:`gen3d_ros.ros.tf_buffer` prefers the real
tf2 buffer when it is there), and by tests. Same conventions as tf2:

- an edge ``parent -> child`` holds ``T_parent_child`` (4x4, metres): it maps child-frame points into the parent
  frame; a frame has one parent (a new parent for a known child replaces the edge, as tf2 does);
- ``lookup(target, source, stamp_ns)`` returns ``T_target_source`` at that time, composed along the tree through the
  frames' common ancestor;
- dynamic edges (``/tf``) are interpolated between the two samples around ``stamp_ns``: translation linearly,
  rotation by slerp; static edges (``/tf_static``) hold at every time;
- **tolerance**: a stamp before the first or after the last sample of an edge is served by that end sample when it
  is at most ``tolerance_ns`` away (50 ms by default: a LiDAR sweep stamped at its end, a TF at 20 Hz), else
  the lookup fails (``TransformMissing``, saying which edge and by how much); tf2 itself never extrapolates;
- samples older than ``cache_ns`` (10 s, tf2's default) behind an edge's newest one are forgotten.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

DEFAULT_TOLERANCE_NS = 50_000_000
DEFAULT_CACHE_NS = 10_000_000_000


class TransformMissing(LookupError):
    """No transform between two frames at a time: unknown frame, frames in two trees, or the stamp is outside
    an edge's samples by more than the tolerance."""


@dataclass
class _Edge:
    """The samples of one ``parent -> child`` edge, sorted by stamp (ns)."""

    parent: str
    static: bool = False
    stamps: list[int] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)


def _interpolate(T0: np.ndarray, T1: np.ndarray, alpha: float) -> np.ndarray:
    """``T0`` -> ``T1`` at ``alpha`` in [0, 1]: translation linear, rotation slerp."""
    rotations = Rotation.from_matrix(np.stack([T0[:3, :3], T1[:3, :3]]))
    out = np.eye(4)
    out[:3, :3] = Slerp([0.0, 1.0], rotations)([alpha]).as_matrix()[0]
    out[:3, 3] = (1.0 - alpha) * T0[:3, 3] + alpha * T1[:3, 3]
    return out


class TransformBuffer:
    """Timed transforms between frames; thread-safe (subscription callbacks feed it while a worker looks up)."""

    def __init__(self, *, tolerance_ns: int = DEFAULT_TOLERANCE_NS, cache_ns: int = DEFAULT_CACHE_NS) -> None:
        """``tolerance_ns``: how far outside an edge's samples a stamp may be (served by the end sample);
        ``cache_ns``: how long samples are kept behind an edge's newest one."""
        self.tolerance_ns, self.cache_ns = int(tolerance_ns), int(cache_ns)
        self._edges: dict[str, _Edge] = {}  # by child frame
        self._lock = threading.Lock()

    def set_transform(self, parent: str, child: str, stamp_ns: int, T_parent_child: np.ndarray, *,
                      static: bool = False) -> None:
        """Add a sample of ``parent -> child`` (``T_parent_child``: 4x4, maps child-frame points into the parent
        frame, metres). A static one replaces the edge's samples and holds at every time."""
        if not parent or not child or parent == child:
            raise ValueError(f"a transform needs two different, non-empty frames, got {parent!r} -> {child!r}")
        T = np.asarray(T_parent_child, np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError(f"transform {parent!r} -> {child!r} must be a finite 4x4 matrix, got shape {T.shape}")
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or static or edge.static:
                edge = self._edges[child] = _Edge(parent, static)
            if static:
                edge.stamps, edge.transforms = [0], [T]
                return
            i = bisect.bisect_left(edge.stamps, stamp_ns)
            if i < len(edge.stamps) and edge.stamps[i] == stamp_ns:
                edge.transforms[i] = T
            else:
                edge.stamps.insert(i, stamp_ns)
                edge.transforms.insert(i, T)
            cut = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
            del edge.stamps[:cut], edge.transforms[:cut]

    def frames(self) -> set[str]:
        """Every frame the buffer knows."""
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def _edge_at(self, child: str, stamp_ns: int) -> np.ndarray:
        """``T_parent_child`` of ``child``'s edge at ``stamp_ns`` (lock held)."""
        edge = self._edges[child]
        if edge.static:
            return edge.transforms[0]
        stamps = edge.stamps
        if stamp_ns <= stamps[0] or stamp_ns >= stamps[-1]:
            end = 0 if stamp_ns <= stamps[0] else -1
            gap = abs(stamp_ns - stamps[end])
            if gap > self.tolerance_ns:
                side = "before the first" if end == 0 else "after the last"
                raise TransformMissing(
                    f"{edge.parent} -> {child} at {stamp_ns} ns: {gap / 1e6:.1f} ms {side} sample (tolerance "
                    f"{self.tolerance_ns / 1e6:.0f} ms; samples {stamps[0]}..{stamps[-1]} ns)")
            return edge.transforms[end]
        i = bisect.bisect_right(stamps, stamp_ns)
        alpha = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        return _interpolate(edge.transforms[i - 1], edge.transforms[i], alpha)

    def _path_to_root(self, frame: str) -> list[str]:
        path = [frame]
        while path[-1] in self._edges:
            path.append(self._edges[path[-1]].parent)
            if len(path) > len(self._edges) + 1:
                raise TransformMissing(f"TF has a cycle through {frame!r}: {path}")
        return path

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """``T_target_source`` (4x4 float64, metres) at ``stamp_ns``: maps ``source``-frame points into ``target``.

        Raises TransformMissing naming the unknown frame, the two trees, or the edge without data at that time.
        """
        if target == source:
            return np.eye(4)
        with self._lock:
            known = set(self._edges) | {e.parent for e in self._edges.values()}
            for frame in (target, source):
                if frame not in known:
                    raise TransformMissing(f"frame {frame!r} is not in TF (known: {sorted(known)})")
            up_source, up_target = self._path_to_root(source), self._path_to_root(target)
            common = next((f for f in up_source if f in set(up_target)), None)
            if common is None:
                raise TransformMissing(f"{source!r} and {target!r} are in two unconnected TF trees (roots "
                                       f"{up_source[-1]!r}, {up_target[-1]!r})")
            T_common_source = np.eye(4)
            for child in up_source[:up_source.index(common)]:
                T_common_source = self._edge_at(child, stamp_ns) @ T_common_source
            T_common_target = np.eye(4)
            for child in up_target[:up_target.index(common)]:
                T_common_target = self._edge_at(child, stamp_ns) @ T_common_target
        return np.linalg.inv(T_common_target) @ T_common_source

    def can_transform(self, target: str, source: str, stamp_ns: int) -> bool:
        try:
            self.lookup(target, source, stamp_ns)
        except TransformMissing:
            return False
        return True
