"""Free-space carving of a completed mesh with the sweep's own rays.

A return at range ``r`` proves the beam's path from the sensor to ``r`` empty. A completion (or a Poisson surface)
that puts a face on that path contradicts the sweep: on real sweeps under trees, 36-40 % of the dropped rings'
rays hit the hGCA and Poisson meshes more than 0.5 m before their real return (foliage the beams pass through,
closed into walls; bench/results/real_lidar.md). :func:`carve_free_space` removes the faces the input's rays pass
through. A face hit close to its ray's return, or nearly along the ray (ground at grazing angles), stays: what
counts is how far the return lies off the face's plane.
"""

from __future__ import annotations

import numpy as np

from gen3d_ros.completion.mesh import TriangleMesh

#: A face is carved when the return of a ray that hits it lies more than this off the face's plane, metres
#: (above the fine voxel's 0.2 m and the range noise; on the OS-2 sweep 0.2 m and 0.4 m differed by 0.02 within 0.2 m)
CARVE_TOLERANCE_M = 0.3


def carve_free_space(mesh: TriangleMesh, points: np.ndarray, *, tolerance_m: float = CARVE_TOLERANCE_M,
                     passes: int = 4) -> np.ndarray:
    """(F,) bool: the faces of ``mesh`` to keep after carving with the rays from the sensor (the origin) to
    ``points`` (N, 3) metres, both in the sensor frame.

    A ray hits its first face at ``t``; the face is removed when ``t`` lies before the return and the return lies
    more than ``tolerance_m`` off the face's plane. A ray that removed a face is cast again on what is left (a
    completion can be several faces thick), up to ``passes`` times; open3d ``RaycastingScene``.
    """
    import open3d as o3d

    faces = np.asarray(mesh.faces)
    keep = np.ones(len(faces), bool)
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    r = np.linalg.norm(pts, axis=1)
    ok = np.isfinite(r) & (r > 1e-6)
    pts, r = pts[ok], r[ok]
    if len(faces) == 0 or len(pts) == 0:
        return keep
    dirs = pts / r[:, None]
    rays = np.concatenate([np.zeros_like(dirs), dirs], 1).astype(np.float32)
    active = np.arange(len(pts))
    vertices = o3d.core.Tensor(np.asarray(mesh.vertices, np.float32))
    for _ in range(passes):
        ids = np.nonzero(keep)[0]
        if len(ids) == 0 or len(active) == 0:
            break
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(vertices, o3d.core.Tensor(faces[ids].astype(np.uint32)))
        ans = scene.cast_rays(o3d.core.Tensor(rays[active]))
        t = ans["t_hit"].numpy().astype(np.float64)
        hit = np.isfinite(t) & (t < r[active])
        t = np.where(hit, t, 0.0)
        off = np.abs(((pts[active] - dirs[active] * t[:, None]) * ans["primitive_normals"].numpy()).sum(1))
        bad = hit & (off > tolerance_m)
        if not bad.any():
            break
        keep[ids[ans["primitive_ids"].numpy()[bad].astype(np.int64)]] = False
        active = active[bad]
    return keep
