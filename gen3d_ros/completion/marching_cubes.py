"""Marching cubes in plain torch: vectorised over the cubes that cross the level, on any device.

One vertex per crossed lattice edge: a triangle names its vertices by the global id of the edge they lie on
(``3 * vertex_index + axis``), so triangles of neighbouring cubes share vertices by construction and the output
is welded. The case table is the classic one (:mod:`gen3d_ros.completion.marching_cubes_table`, scikit-image's
``method="lorensen"``): the same triangles as ``skimage.measure.marching_cubes(volume, level,
method="lorensen")``, watertight on closed surfaces, wound with the normals towards the values above the level.

Memory: the 8-bit case of every cube is computed in slabs along the first axis (``slab_cubes`` cubes at a time),
and only the crossed cubes are kept, so a 1024 x 1024 x 72 lattice needs a few hundred MB besides the volume.

    verts, faces = marching_cubes(field, level=0.06, mask=evaluated)   # lattice units, (V, 3) / (F, 3)
"""

from __future__ import annotations

import torch
from torch import Tensor

from gen3d_ros.completion.marching_cubes_table import EDGE_AXIS, EDGE_START, TRIANGLES

_CORNERS = tuple((k & 1, k >> 1 & 1, k >> 2 & 1) for k in range(8))


def _case_tables(device: torch.device) -> tuple[Tensor, Tensor]:
    """Per case: triangle count (256,) int64 and edge ids (256, 5, 3) int64 (-1 past the count)."""
    edges = torch.full((256, 15), -1, dtype=torch.int64)
    for case, tri in enumerate(TRIANGLES):
        edges[case, :len(tri)] = torch.tensor(tri, dtype=torch.int64)
    counts = torch.tensor([len(t) // 3 for t in TRIANGLES], dtype=torch.int64)
    return counts.to(device), edges.view(256, 5, 3).to(device)


def _check_inputs(volume: Tensor, mask: Tensor | None) -> None:
    if volume.dim() != 3 or min(volume.shape) < 2:
        raise ValueError(f"volume must be (X, Y, Z) with every side >= 2, got shape {tuple(volume.shape)}")
    if not volume.is_floating_point():
        raise TypeError(f"volume must hold floating-point values, got dtype {volume.dtype}")
    if mask is not None and (mask.shape != volume.shape or mask.dtype != torch.bool):
        raise ValueError(f"mask must be a bool tensor of the volume's shape {tuple(volume.shape)}, "
                         f"got {mask.dtype} {tuple(mask.shape)}")


def crossed_cubes(volume: Tensor, level: float, mask: Tensor | None = None,
                  slab_cubes: int = 1 << 24) -> tuple[Tensor, Tensor]:
    """The cubes whose corners lie on both sides of ``level`` (and all inside ``mask``).

    Args:
        volume: (X, Y, Z) float values at lattice vertices.
        level: iso-level; a corner is *above* when its value is ``> level``.
        mask: (X, Y, Z) bool, or None: cubes with a corner where it is False are left out.
        slab_cubes: cubes classified at a time (memory: ~3 bytes each).

    Returns:
        (C,) int64 linear index (into ``volume.reshape(-1)``) of each crossed cube's low corner, ascending, and
        (C,) int64 its case (bit ``k`` set when corner ``k`` is above the level).
    """
    _check_inputs(volume, mask)
    sx, sy, sz = volume.shape
    above = volume > level
    thick = max(1, int(slab_cubes) // ((sy - 1) * (sz - 1)))
    lin_out, case_out = [], []
    for x0 in range(0, sx - 1, thick):
        x1 = min(x0 + thick, sx - 1)
        case = torch.zeros((x1 - x0, sy - 1, sz - 1), dtype=torch.uint8, device=volume.device)
        valid = None
        for k, (dx, dy, dz) in enumerate(_CORNERS):
            corner = (slice(x0 + dx, x1 + dx), slice(dy, sy - 1 + dy), slice(dz, sz - 1 + dz))
            case |= above[corner].to(torch.uint8) << k
            if mask is not None:
                valid = mask[corner] if valid is None else valid & mask[corner]
        crossed = (case != 0) & (case != 255)
        if valid is not None:
            crossed &= valid
        x, y, z = crossed.nonzero(as_tuple=True)
        lin_out.append(((x + x0) * sy + y) * sz + z)
        case_out.append(case[x, y, z].long())
    return torch.cat(lin_out), torch.cat(case_out)


def marching_cubes(volume: Tensor, level: float, mask: Tensor | None = None,
                   slab_cubes: int = 1 << 24) -> tuple[Tensor, Tensor]:
    """Triangle mesh of the ``level`` set of a scalar field sampled on a regular lattice.

    Args:
        volume: (X, Y, Z) float32/float64 values at the lattice vertices, on any device.
        level: iso-level (a vertex is *above* when its value is ``> level``).
        mask: (X, Y, Z) bool or None: where the field is known; a cube with a corner outside makes no triangles.
        slab_cubes: cubes classified at a time (bounds the temporary memory).

    Returns:
        verts: (V, 3) float32 lattice units (index coordinates of ``volume``), one per crossed lattice edge, on
            the volume's device.
        faces: (F, 3) int64 vertex indices, normals (right-hand rule) towards the values above the level.
        Both empty when nothing crosses the level.
    """
    lin, case = crossed_cubes(volume, level, mask, slab_cubes)
    dev = volume.device
    counts, table = _case_tables(dev)
    sx, sy, sz = volume.shape
    stride = torch.tensor([sy * sz, sz, 1], dtype=torch.int64, device=dev)
    n_tri = counts[case]
    cube = torch.repeat_interleave(torch.arange(len(lin), device=dev), n_tri)
    first = torch.cumsum(n_tri, 0) - n_tri  # index of each cube's first triangle
    k = torch.arange(len(cube), device=dev) - first[cube]
    edge = table[case[cube], k]  # (F, 3) local edge ids 0..11
    start_offset = (torch.tensor(EDGE_START, dtype=torch.int64, device=dev) * stride).sum(1)  # (12,) linear offsets
    axis = torch.tensor(EDGE_AXIS, dtype=torch.int64, device=dev)
    edge_id = (lin[cube].unsqueeze(1) + start_offset[edge]) * 3 + axis[edge]
    del cube, first, k, edge
    uniq, faces = torch.unique(edge_id.reshape(-1), return_inverse=True)
    return _edge_vertices(volume, uniq, level, stride), faces.reshape(-1, 3)


def _edge_vertices(volume: Tensor, edge_id: Tensor, level: float, stride: Tensor) -> Tensor:
    """(E,) global edge ids -> (E, 3) float32 lattice points where the field crosses ``level`` (linear)."""
    flat = volume.reshape(-1)
    start, axis = edge_id // 3, edge_id % 3
    v0 = flat[start].float()
    v1 = flat[start + stride[axis]].float()
    t = (float(level) - v0) / (v1 - v0)
    sy, sz = volume.shape[1], volume.shape[2]
    verts = torch.stack([start // (sy * sz), (start // sz) % sy, start % sz], dim=1).float()
    verts[torch.arange(len(start), device=volume.device), axis] += t
    return verts
