"""Rotation conversions: against scipy.spatial.transform.Rotation, round trips, the awkward angles (0 and
pi), gradients (gradcheck in float64), float32, ROS quaternion order, and pytorch3d where it imports.

Tolerances: float64 1e-10 (scipy and we use different but exact formulas), float32 1e-5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gen3d_ros.geometry import (
    ENV_VAR,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_ros_quaternion,
    matrix_to_rotation_6d,
    pytorch3d_unavailable_reason,
    quaternion_to_matrix,
    quaternion_wxyz_to_xyzw,
    quaternion_xyzw_to_wxyz,
    ros_quaternion_to_matrix,
    rotation_6d_to_matrix,
    rotation_angle_between,
    so3_exp,
    so3_log,
)

T = "torch"
TOL64 = 1e-10


@pytest.fixture(autouse=True)
def _default_backend_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def rots() -> Rotation:
    return Rotation.random(200, random_state=0)


def _t(a: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------------
# against scipy


def test_axis_angle_to_matrix_matches_scipy(rots):
    got = axis_angle_to_matrix(_t(rots.as_rotvec()), backend=T)
    np.testing.assert_allclose(got.numpy(), rots.as_matrix(), atol=TOL64)


def test_matrix_to_axis_angle_matches_scipy(rots):
    got = matrix_to_axis_angle(_t(rots.as_matrix()), backend=T)
    np.testing.assert_allclose(got.numpy(), rots.as_rotvec(), atol=TOL64)  # both give angles in [0, pi]


def test_quaternions_match_scipy_in_both_orders(rots):
    xyzw = rots.as_quat()
    xyzw = np.where(xyzw[:, 3:] < 0, -xyzw, xyzw)  # our convention: w >= 0
    np.testing.assert_allclose(matrix_to_ros_quaternion(_t(rots.as_matrix()), backend=T).numpy(), xyzw, atol=TOL64)
    wxyz = matrix_to_quaternion(_t(rots.as_matrix()), backend=T).numpy()
    np.testing.assert_allclose(wxyz, xyzw[:, [3, 0, 1, 2]], atol=TOL64)
    np.testing.assert_allclose(ros_quaternion_to_matrix(_t(xyzw), backend=T).numpy(), rots.as_matrix(), atol=TOL64)
    np.testing.assert_allclose(quaternion_to_matrix(_t(wxyz), backend=T).numpy(), rots.as_matrix(), atol=TOL64)


def test_quaternion_to_matrix_normalises_non_unit_quaternions(rots):
    wxyz = matrix_to_quaternion(_t(rots.as_matrix()), backend=T)
    scaled = wxyz * torch.linspace(0.1, 10.0, wxyz.shape[0], dtype=torch.float64)[:, None]
    np.testing.assert_allclose(quaternion_to_matrix(scaled, backend=T).numpy(), rots.as_matrix(), atol=TOL64)


def test_rotation_angle_between_matches_scipy(rots):
    other = Rotation.random(200, random_state=1)
    got = rotation_angle_between(_t(rots.as_matrix()), _t(other.as_matrix()))
    np.testing.assert_allclose(got.numpy(), (rots.inv() * other).magnitude(), atol=TOL64)


# --------------------------------------------------------------------------------------------------
# round trips and conventions


def test_round_trips_recover_the_rotation(rots):
    m = _t(rots.as_matrix())
    for back in (
        axis_angle_to_matrix(matrix_to_axis_angle(m, backend=T), backend=T),
        quaternion_to_matrix(matrix_to_quaternion(m, backend=T), backend=T),
        rotation_6d_to_matrix(matrix_to_rotation_6d(m, backend=T), backend=T),
        ros_quaternion_to_matrix(matrix_to_ros_quaternion(m, backend=T), backend=T),
        so3_exp(so3_log(m, backend=T), backend=T),
    ):
        np.testing.assert_allclose(back.numpy(), m.numpy(), atol=TOL64)
    r = _t(rots.as_rotvec())
    np.testing.assert_allclose(matrix_to_axis_angle(axis_angle_to_matrix(r, backend=T), backend=T).numpy(), r.numpy(),
                               atol=TOL64)


def test_6d_representation_is_the_first_two_rows_pytorch3d_convention(rots):
    m = _t(rots.as_matrix())
    d6 = matrix_to_rotation_6d(m, backend=T)
    np.testing.assert_array_equal(d6.numpy(), m.numpy()[:, :2, :].reshape(-1, 6))
    # any two non-parallel rows decode to a proper rotation whose first row is the first vector, normalised
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(50, 6, generator=g, dtype=torch.float64)
    r = rotation_6d_to_matrix(raw, backend=T)
    eye = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(r[:, 0], raw[:, :3] / raw[:, :3].norm(dim=-1, keepdim=True))


def test_quaternion_reordering_helpers_are_inverse_and_ros_ordered():
    q_xyzw = torch.tensor([0.1, 0.2, 0.3, 0.9])
    q_wxyz = quaternion_xyzw_to_wxyz(q_xyzw)
    assert q_wxyz.tolist() == pytest.approx([0.9, 0.1, 0.2, 0.3])
    assert torch.equal(quaternion_wxyz_to_xyzw(q_wxyz), q_xyzw)
    # a quarter turn about z: ROS (x, y, z, w) = (0, 0, sin 45, cos 45)
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    s = math.sqrt(0.5)
    torch.testing.assert_close(matrix_to_ros_quaternion(rz, backend=T), torch.tensor([0.0, 0.0, s, s]))


def test_batch_shapes_are_preserved():
    r = torch.randn(2, 5, 3, dtype=torch.float64)
    m = axis_angle_to_matrix(r, backend=T)
    assert m.shape == (2, 5, 3, 3)
    assert matrix_to_quaternion(m, backend=T).shape == (2, 5, 4)
    assert matrix_to_rotation_6d(m, backend=T).shape == (2, 5, 6)
    assert rotation_angle_between(m, m[:1]).shape == (2, 5)  # broadcasts


# --------------------------------------------------------------------------------------------------
# awkward angles


@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-9, 1e-6, 1e-3])
def test_axis_angle_near_pi_is_recovered(eps):
    axes = _unit(np.random.default_rng(3).normal(size=(64, 3)))
    r = axes * (math.pi - eps)
    m = _t(Rotation.from_rotvec(r).as_matrix())
    got = matrix_to_axis_angle(m, backend=T).numpy()
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), math.pi - eps, atol=1e-9)
    if eps == 0.0:  # r and -r are the same rotation at exactly pi
        got = np.where((got * r).sum(-1, keepdims=True) < 0, -got, got)
    np.testing.assert_allclose(got, r, atol=1e-7)  # the axis is conditioned ~ 1/sin near pi
    np.testing.assert_allclose(axis_angle_to_matrix(_t(got), backend=T).numpy(), m.numpy(), atol=1e-12)
    other = _t(Rotation.from_rotvec(r * 0.0).as_matrix())
    np.testing.assert_allclose(rotation_angle_between(other, m).numpy(), math.pi - eps, atol=1e-9)


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-8, 1e-4])
def test_axis_angle_near_zero_is_recovered(angle):
    axes = _unit(np.random.default_rng(4).normal(size=(16, 3)))
    r = axes * angle
    m = axis_angle_to_matrix(_t(r), backend=T)
    np.testing.assert_allclose(m.numpy(), Rotation.from_rotvec(r).as_matrix(), atol=1e-15)
    np.testing.assert_allclose(matrix_to_axis_angle(m, backend=T).numpy(), r, rtol=1e-6, atol=1e-15)


def test_gradients_are_finite_at_the_identity():
    r = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_matrix(r, backend=T).sum().backward()
    assert torch.isfinite(r.grad).all()
    m = torch.eye(3, dtype=torch.float64, requires_grad=True)
    matrix_to_axis_angle(m, backend=T).sum().backward()
    assert torch.isfinite(m.grad).all()
    r2 = torch.eye(3, dtype=torch.float64, requires_grad=True)
    rotation_angle_between(torch.eye(3, dtype=torch.float64), r2).backward()
    assert torch.isfinite(r2.grad).all()


# --------------------------------------------------------------------------------------------------
# gradcheck in float64


def _generic_rotvecs() -> torch.Tensor:
    return _t(Rotation.random(4, random_state=5).as_rotvec())


@pytest.mark.parametrize("scale", [1.0, 1e-6], ids=["generic", "near_identity"])
def test_gradcheck_axis_angle_to_matrix(scale):
    r = (_generic_rotvecs() * scale).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: axis_angle_to_matrix(x, backend=T), (r,))


@pytest.mark.parametrize("angle", [None, 1e-6, math.pi - 1e-2], ids=["generic", "near_identity", "near_pi"])
def test_gradcheck_matrix_to_axis_angle(angle):
    r = _generic_rotvecs()
    if angle is not None:
        r = r / r.norm(dim=-1, keepdim=True) * angle
    m = axis_angle_to_matrix(r, backend=T).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: matrix_to_axis_angle(x, backend=T), (m,))


def test_gradcheck_quaternion_and_6d_conversions():
    m = axis_angle_to_matrix(_generic_rotvecs(), backend=T).detach()
    q = matrix_to_quaternion(m, backend=T).detach().requires_grad_(True)
    d6 = (matrix_to_rotation_6d(m, backend=T) + 0.1).detach().requires_grad_(True)
    mg = m.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: quaternion_to_matrix(x, backend=T), (q,))
    assert torch.autograd.gradcheck(lambda x: matrix_to_quaternion(x, backend=T), (mg,))
    assert torch.autograd.gradcheck(lambda x: rotation_6d_to_matrix(x, backend=T), (d6,))


def test_gradcheck_rotation_angle_between():
    a = axis_angle_to_matrix(_generic_rotvecs(), backend=T).detach().requires_grad_(True)
    b = axis_angle_to_matrix(_generic_rotvecs().flip(0), backend=T).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(rotation_angle_between, (a, b))


# --------------------------------------------------------------------------------------------------
# dtypes, errors, pytorch3d


def test_float32_inputs_give_float32_rotations(rots):
    r = _t(rots.as_rotvec(), torch.float32)
    m = axis_angle_to_matrix(r, backend=T)
    assert m.dtype == torch.float32
    np.testing.assert_allclose(m.numpy(), rots.as_matrix(), atol=1e-5)
    np.testing.assert_allclose(matrix_to_axis_angle(m, backend=T).numpy(), rots.as_rotvec(), atol=1e-4)
    assert rotation_angle_between(m, m).abs().max().item() < 1e-3


def test_bad_inputs_raise_with_the_shape_or_type():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\), got \(3, 4\)"):
        matrix_to_quaternion(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="torch.from_numpy"):
        axis_angle_to_matrix(np.zeros(3))
    with pytest.raises(ValueError, match="floating point"):
        quaternion_to_matrix(torch.zeros(4, dtype=torch.int64))


def test_rotations_torch_match_pytorch3d(rots):
    reason = pytorch3d_unavailable_reason()
    if reason is not None:
        pytest.skip(f"pytorch3d not importable here ({reason}); the torch implementation is checked against scipy")
    m = _t(rots.as_matrix(), torch.float32)
    r = _t(rots.as_rotvec(), torch.float32)
    d6 = matrix_to_rotation_6d(m, backend=T) + 0.05
    for fn, x in (
        (axis_angle_to_matrix, r),
        (matrix_to_axis_angle, m),
        (matrix_to_quaternion, m),
        (quaternion_to_matrix, matrix_to_quaternion(m, backend=T)),
        (rotation_6d_to_matrix, d6),
        (matrix_to_rotation_6d, m),
    ):
        torch.testing.assert_close(fn(x, backend="torch"), fn(x, backend="pytorch3d"), rtol=1e-5, atol=1e-5)
