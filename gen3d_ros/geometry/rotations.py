"""Rotation conversions, batched and differentiable (pytorch3d's ``transforms`` conventions).

Conventions (the same as pytorch3d, so results agree across backends):

* A rotation matrix ``R`` (..., 3, 3) acts on column vectors: ``p' = R @ p``.
* Axis-angle ``r`` (..., 3): ``|r|`` is the angle in radians, anticlockwise about ``r / |r|``.
  :func:`matrix_to_axis_angle` returns angles in [0, pi]; at exactly pi the sign of the axis is arbitrary.
* Quaternions are (w, x, y, z), real part first; :func:`matrix_to_quaternion` returns ``w >= 0``.
  ROS ``geometry_msgs/Quaternion`` is (x, y, z, w): use :func:`matrix_to_ros_quaternion`,
  :func:`ros_quaternion_to_matrix` and the ``quaternion_*_to_*`` reorderings.
* The 6D representation (Zhou et al., CVPR 2019) is the first two ROWS of ``R``, flattened; decoding uses
  Gram-Schmidt on those rows (pytorch3d's convention, not the columns of the paper's figure).

Backend: the six conversions between matrix, axis-angle, quaternion and 6D call ``pytorch3d.transforms``
when pytorch3d imports (or ``backend="pytorch3d"``), else the torch code here, which follows the same
algorithms: axis-angle <-> matrix via quaternions (robust near 0 and near pi), matrix -> quaternion via the
best-conditioned of four candidates (Shepperd's method). Everything works in float32 and float64 on any
device, and gradients are finite at the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gen3d_ros.geometry.knn import resolve_backend


# --------------------------------------------------------------------------------------------------
# helpers


def _check(t: Tensor, tail: tuple[int, ...], name: str) -> None:
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__} (wrap numpy with torch.from_numpy)")
    if t.ndim < len(tail) or tuple(t.shape[t.ndim - len(tail):]) != tail:
        raise ValueError(f"{name} must have shape (..., {', '.join(map(str, tail))}), got {tuple(t.shape)}")
    if not t.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point, got {t.dtype}")


def _safe_norm(v: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """Euclidean norm with a zero (not NaN) gradient at the zero vector."""
    sq = v.square().sum(dim=dim, keepdim=keepdim)
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def _sqrt_positive_part(x: Tensor) -> Tensor:
    """sqrt(max(0, x)) with a zero subgradient where x <= 0."""
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x))


def _standardize_quaternion(q: Tensor) -> Tensor:
    """The one of q, -q with a non-negative real part."""
    return torch.where(q[..., :1] < 0, -q, q)


def _p3d(name: str):
    from pytorch3d import transforms

    return getattr(transforms, name)


# --------------------------------------------------------------------------------------------------
# torch implementations (the reference on machines without pytorch3d)


def _quaternion_to_matrix_torch(q: Tensor) -> Tensor:
    w, x, y, z = torch.unbind(q, -1)
    two_s = 2.0 / q.square().sum(-1)  # non-unit quaternions are normalised implicitly
    o = torch.stack(
        (
            1 - two_s * (y * y + z * z),
            two_s * (x * y - z * w),
            two_s * (x * z + y * w),
            two_s * (x * y + z * w),
            1 - two_s * (x * x + z * z),
            two_s * (y * z - x * w),
            two_s * (x * z - y * w),
            two_s * (y * z + x * w),
            1 - two_s * (x * x + y * y),
        ),
        -1,
    )
    return o.reshape(q.shape[:-1] + (3, 3))


def _matrix_to_quaternion_torch(m: Tensor) -> Tensor:
    batch = m.shape[:-2]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = torch.unbind(m.reshape(batch + (9,)), -1)
    # |2w|, |2x|, |2y|, |2z| from the diagonal; each row below is the quaternion times 4w, 4x, 4y, 4z
    q_abs = _sqrt_positive_part(
        torch.stack(
            (1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22), -1
        )
    )
    by_wxyz = torch.stack(
        (
            torch.stack((q_abs[..., 0].square(), m21 - m12, m02 - m20, m10 - m01), -1),
            torch.stack((m21 - m12, q_abs[..., 1].square(), m10 + m01, m02 + m20), -1),
            torch.stack((m02 - m20, m10 + m01, q_abs[..., 2].square(), m12 + m21), -1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3].square()), -1),
        ),
        -2,
    )
    floor = torch.tensor(0.1, dtype=q_abs.dtype, device=q_abs.device)  # unpicked candidates only
    candidates = by_wxyz / (2.0 * q_abs[..., None].maximum(floor))
    best = q_abs.argmax(dim=-1, keepdim=True)  # best-conditioned candidate (largest denominator)
    out = torch.gather(candidates, -2, best[..., None].expand(batch + (1, 4))).squeeze(-2)
    return _standardize_quaternion(out)


def _axis_angle_to_quaternion_torch(r: Tensor) -> Tensor:
    angle = _safe_norm(r, keepdim=True)
    # sin(angle/2)/angle = 0.5 * sinc(angle / (2 pi)): exact and smooth at angle = 0
    return torch.cat((torch.cos(0.5 * angle), r * (0.5 * torch.sinc(angle / (2.0 * math.pi)))), -1)


def _quaternion_to_axis_angle_torch(q: Tensor) -> Tensor:
    q = _standardize_quaternion(q)  # half angle in [0, pi/2] -> angle in [0, pi]
    half = torch.atan2(_safe_norm(q[..., 1:], keepdim=True), q[..., :1])
    return q[..., 1:] / (0.5 * torch.sinc(half / math.pi))  # sinc(half/pi) >= 2/pi > 0 here


def _axis_angle_to_matrix_torch(r: Tensor) -> Tensor:
    return _quaternion_to_matrix_torch(_axis_angle_to_quaternion_torch(r))


def _matrix_to_axis_angle_torch(m: Tensor) -> Tensor:
    return _quaternion_to_axis_angle_torch(_matrix_to_quaternion_torch(m))


def _rotation_6d_to_matrix_torch(d6: Tensor) -> Tensor:
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def _matrix_to_rotation_6d_torch(m: Tensor) -> Tensor:
    return m[..., :2, :].clone().reshape(m.shape[:-2] + (6,))


# --------------------------------------------------------------------------------------------------
# public API


def quaternion_to_matrix(quaternions: Tensor, *, backend: str | None = None) -> Tensor:
    """(..., 4) quaternions (w, x, y, z), any non-zero norm -> (..., 3, 3) rotation matrices."""
    _check(quaternions, (4,), "quaternions")
    if resolve_backend(backend) == "pytorch3d":
        return _p3d("quaternion_to_matrix")(quaternions)
    return _quaternion_to_matrix_torch(quaternions)


def matrix_to_quaternion(matrix: Tensor, *, backend: str | None = None) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z) with w >= 0."""
    _check(matrix, (3, 3), "matrix")
    if resolve_backend(backend) == "pytorch3d":
        return _p3d("matrix_to_quaternion")(matrix)
    return _matrix_to_quaternion_torch(matrix)


def axis_angle_to_matrix(axis_angle: Tensor, *, backend: str | None = None) -> Tensor:
    """(..., 3) axis-angle vectors (radians) -> (..., 3, 3) rotation matrices (the SO(3) exponential)."""
    _check(axis_angle, (3,), "axis_angle")
    if resolve_backend(backend) == "pytorch3d":
        return _p3d("axis_angle_to_matrix")(axis_angle)
    return _axis_angle_to_matrix_torch(axis_angle)


def matrix_to_axis_angle(matrix: Tensor, *, backend: str | None = None) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle vectors with angle in [0, pi] (SO(3) log).

    Goes through the best-conditioned quaternion, so it is accurate near 0 (no 0/0) and near pi
    (no ``acos`` of a value near -1); at exactly pi, ``r`` and ``-r`` are the same rotation and either
    may be returned.
    """
    _check(matrix, (3, 3), "matrix")
    if resolve_backend(backend) == "pytorch3d":
        return _p3d("matrix_to_axis_angle")(matrix)
    return _matrix_to_axis_angle_torch(matrix)


def rotation_6d_to_matrix(d6: Tensor, *, backend: str | None = None) -> Tensor:
    """(..., 6) 6D representation (two rows, Gram-Schmidt) -> (..., 3, 3) rotation matrices."""
    _check(d6, (6,), "d6")
    if resolve_backend(backend) == "pytorch3d":
        return _p3d("rotation_6d_to_matrix")(d6)
    return _rotation_6d_to_matrix_torch(d6)


def matrix_to_rotation_6d(matrix: Tensor, *, backend: str | None = None) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 6): the first two rows, flattened (not unique)."""
    _check(matrix, (3, 3), "matrix")
    if resolve_backend(backend) == "pytorch3d":
        return _p3d("matrix_to_rotation_6d")(matrix)
    return _matrix_to_rotation_6d_torch(matrix)


def so3_exp(log_rotation: Tensor, *, backend: str | None = None) -> Tensor:
    """SO(3) exponential map: (..., 3) rotation vectors -> (..., 3, 3); same as :func:`axis_angle_to_matrix`."""
    return axis_angle_to_matrix(log_rotation, backend=backend)


def so3_log(matrix: Tensor, *, backend: str | None = None) -> Tensor:
    """SO(3) logarithm: (..., 3, 3) -> (..., 3) rotation vectors; same as :func:`matrix_to_axis_angle`.

    (pytorch3d's ``so3_log_map`` uses ``acos`` of the trace and loses accuracy near pi; this does not.)
    """
    return matrix_to_axis_angle(matrix, backend=backend)


def quaternion_xyzw_to_wxyz(q_xyzw: Tensor) -> Tensor:
    """(..., 4) quaternions (x, y, z, w) as in ROS -> (w, x, y, z) as here."""
    _check(q_xyzw, (4,), "q_xyzw")
    return torch.cat((q_xyzw[..., 3:], q_xyzw[..., :3]), -1)


def quaternion_wxyz_to_xyzw(q_wxyz: Tensor) -> Tensor:
    """(..., 4) quaternions (w, x, y, z) as here -> (x, y, z, w) as in ROS."""
    _check(q_wxyz, (4,), "q_wxyz")
    return torch.cat((q_wxyz[..., 1:], q_wxyz[..., :1]), -1)


def matrix_to_ros_quaternion(matrix: Tensor, *, backend: str | None = None) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (x, y, z, w) with w >= 0, the order of
    ``geometry_msgs/Quaternion``."""
    return quaternion_wxyz_to_xyzw(matrix_to_quaternion(matrix, backend=backend))


def ros_quaternion_to_matrix(q_xyzw: Tensor, *, backend: str | None = None) -> Tensor:
    """(..., 4) quaternions (x, y, z, w) from ``geometry_msgs/Quaternion`` (normalised here) -> (..., 3, 3)."""
    return quaternion_to_matrix(quaternion_xyzw_to_wxyz(q_xyzw), backend=backend)


def rotation_angle_between(R1: Tensor, R2: Tensor) -> Tensor:
    """Geodesic angle in radians, in [0, pi], of the relative rotation ``R1^T R2`` (batched, broadcasts).

    Computed as ``atan2(|vee(R - R^T)|, trace(R) - 1)`` (= atan2(2 sin t, 2 cos t)), which stays accurate near
    0 and near pi where ``acos((trace - 1) / 2)`` does not; the gradient is 0 (not NaN) at exactly 0.
    """
    _check(R1, (3, 3), "R1")
    _check(R2, (3, 3), "R2")
    r = R1.transpose(-1, -2) @ R2
    omega = torch.stack((r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]), -1)
    trace = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    return torch.atan2(_safe_norm(omega), trace - 1.0)


__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_ros_quaternion",
    "matrix_to_rotation_6d",
    "quaternion_to_matrix",
    "quaternion_wxyz_to_xyzw",
    "quaternion_xyzw_to_wxyz",
    "ros_quaternion_to_matrix",
    "rotation_6d_to_matrix",
    "rotation_angle_between",
    "so3_exp",
    "so3_log",
]
