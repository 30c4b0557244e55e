"""Rigid transforms as 4x4 numpy arrays (no torch, no messages): inverse and rotation -> ROS quaternion.

``T_target_source`` maps points from ``source`` to ``target`` (DESIGN.md). Quaternions are (x, y, z, w) as in
``geometry_msgs/Quaternion``, unit norm, ``w >= 0``. The differentiable torch conversions live in
:mod:`gen3d_ros.geometry.rotations`.
"""

from __future__ import annotations

import numpy as np


def matrix_to_quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (4,) unit quaternion (x, y, z, w) with ``w >= 0`` (Shepperd's method: stable for
    every rotation, including 180 degree turns where ``w ~ 0``)."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"rotation must be 3x3, got shape {R.shape}")
    trace = np.trace(R)
    diag = np.diag(R)
    k = int(np.argmax([trace, *diag]))
    if k == 0:
        s = 2.0 * np.sqrt(max(1.0 + trace, 1e-300))
        q = np.array([(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s])
    else:
        i = k - 1
        j, m = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + R[i, i] - R[j, j] - R[m, m], 1e-300))
        q = np.empty(4)
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[m] = (R[m, i] + R[i, m]) / s
        q[3] = (R[m, j] - R[j, m]) / s
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid (4, 4) transform: ``T_b_a`` from ``T_a_b`` (exact, no general matrix inverse)."""
    T = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out
