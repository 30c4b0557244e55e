"""The Dr. Robot model: canonical 3D Gaussians + implicit linear blend skinning + pose-conditioned appearance.

    robot = load_urdf(test_arm_urdf())
    model = RobotGaussianModel.from_robot(robot, n_gaussians=4000)      # already a rigid-link renderer
    out = model.render(q, T_camera_base, camera)                         # RenderOutput, differentiable in q and T
    g = model.posed_gaussians(q)                                         # means/quats/scales/opacities/colors
    model.save("drrobot.pt"); RobotGaussianModel.load("drrobot.pt", robot)

Pipeline for joint values ``q [J]`` (radians / metres, order ``robot.actuated_joints``):

1. **Canonical Gaussians.** ``N`` Gaussians in the ``base`` frame with the robot at its neutral pose
   ``q0 = fk.neutral()``: means ``x [N, 3]`` (m), orientations ``r [N, 4]`` (w, x, y, z), log std-devs
   ``[N, 3]`` (log m), opacity logits ``[N]`` and colours as SH coefficients ``[N, (d+1)^2, 3]`` (3DGS/gsplat
   convention, ``rgb = max(0, SH + 0.5)``). Initialised from points sampled uniformly on the URDF's visual
   meshes: coloured by the mesh, flat discs tangent to the surface (thin along the face normal), tangential
   size from the distance to the nearest neighbours.
2. **Implicit LBS.** Skinning weights ``w [N, L]`` over ALL links (``fk.link_names``) are
   ``softmax(prior * onehot(sampled link) + MLP(features))``, where the features are a Fourier encoding of
   the (normalised) canonical position plus, for every link, the point's offset from and distance to that
   link's canonical origin. The MLP's last layer starts at zero, so the untrained model is rigid: each
   Gaussian follows the link it was sampled on (leakage ``~ (L - 1) exp(-prior)``, 6e-6 per link at
   ``prior = 12``). The weights depend only on the canonical positions, never on ``q``.
   Link motion: ``A_l(q) = T_base_l(q) T_base_l(q0)^-1``; posed mean ``= sum_l w_l A_l(q) x``; posed
   rotation = the normalised weighted sum of the links' motion quaternions (linear quaternion blending, the
   standard cheap approximation of the nearest rotation to the blended matrix; each link's quaternion is
   put in the hemisphere of the Gaussian's own sampled link first so that ``q`` and ``-q`` cannot cancel),
   applied to the canonical orientation: ``r_posed = q_blend * r``.
3. **Appearance deformation** (optional): an MLP of the encoded canonical position and ``sin q, cos q``
   predicts ``(d log-scale [3], d rotation [4] (added to the identity quaternion, right-multiplied),
   d opacity logit, d colour [3] (added to the DC term))`` per Gaussian and pose; its last layer starts at zero,
   so it changes nothing until trained. This lets shading and small non-rigid effects follow the pose.
4. **Splatting**: :func:`gen3d_ros.robot.splatting.render_gaussians` (gsplat on CUDA, pure torch elsewhere).

Everything is plain autograd: gradients reach ``q``, ``T_camera_base`` and every parameter. ``model.double()``
gives a float64 model (the torch splatting backend supports it; used for finite-difference checks).

Checkpoints (:meth:`RobotGaussianModel.save`) are ``torch.save`` dicts with ``format = "gen3d_ros.drrobot/1"``,
the URDF's SHA-256 (a checkpoint refuses to load onto another URDF), the model config, the ``state_dict``
and free-form ``metrics``/``extra`` dicts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gen3d_ros.config import param, validate
from gen3d_ros.geometry.rotations import matrix_to_quaternion
from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.meshes import sample_surface
from gen3d_ros.robot.splatting import SH_C0, RenderOutput, render_gaussians
from gen3d_ros.robot.description import load_robot
from gen3d_ros.robot.urdf import RobotModel

CHECKPOINT_FORMAT = "gen3d_ros.drrobot/1"
# Number of appearance-deformation outputs: d log-scale (3), d quaternion (4), d opacity logit (1), d colour (3).
_APPEARANCE_OUTPUTS = 11


@dataclass
class GaussianModelConfig:
    """Everything needed to rebuild a :class:`RobotGaussianModel`'s architecture (stored in checkpoints; validated on
    construction; every field carries its parameter metadata).

    ``init_color_gain``: the ground-truth renderer shades faces by ``0.35 + 0.65 |cos|``, so the seen colour is
    darker than the mesh albedo. ``urdf`` is informative only: the URDF's hash is what a checkpoint checks.
    """

    n_gaussians: int = param(4000, "N, the number of Gaussians", lo=1)
    sh_degree: int = param(0, "degree of the SH colours: 0 (plain colour, CPU) to 3 (view-dependent, GPU)", lo=0,
                           hi=3)
    seed: int = param(0, "random seed of the surface sampling")
    skinning: bool = param(True, "learn skinning weights (off: rigid, each Gaussian on its sampled link forever)")
    appearance: bool = param(True, "the pose-conditioned appearance deformation MLP")
    n_freqs: int = param(4, "Fourier octaves of the position encoding", lo=0)
    hidden: int = param(64, "MLP width", lo=1)
    skin_prior_logit: float = param(12.0, "logit bonus of the sampled link: how rigid the start is")
    init_opacity: float = param(0.9, "initial opacity, in (0, 1)", lo=0.0, hi=1.0)
    init_color_gain: float = param(0.8, "mesh albedo multiplier at initialisation")
    init_scale_factor: float = param(0.7, "initial tangential std-dev as a multiple of the mean distance to the 3 "
                                          "nearest neighbours")
    urdf: str = param("", "how to reload the robot: test_arm, an example-robot-data name or a URDF path")

    def __post_init__(self) -> None:
        validate(self)
        if not 0.0 < self.init_opacity < 1.0:
            raise ValueError(f"init_opacity must be in (0, 1), got {self.init_opacity}")


def _mlp(n_in: int, hidden: int, n_out: int, layers: int = 2) -> torch.nn.Sequential:
    """``layers`` hidden ReLU layers, then a linear output layer initialised to exactly zero (identity start)."""
    mods: list[torch.nn.Module] = []
    width = n_in
    for _ in range(layers):
        mods += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    last = torch.nn.Linear(width, n_out)
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    mods.append(last)
    return torch.nn.Sequential(*mods)


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of (w, x, y, z) quaternions ``[..., 4]`` (rotation b first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def fourier_encode(x: Tensor, n_freqs: int) -> Tensor:
    """``[x, sin(2^k pi x), cos(2^k pi x)]`` for k < n_freqs: ``[..., D] -> [..., D (1 + 2 n_freqs)]``."""
    if n_freqs == 0:
        return x
    freqs = math.pi * 2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)
    angles = (x[..., None] * freqs).flatten(-2)
    return torch.cat((x, torch.sin(angles), torch.cos(angles)), dim=-1)


# Hamilton product as a bilinear form: (a * b)_i = sum_jk _HAMILTON[i, j, k] a_j b_k (one einsum instead of 28 ops).
_HAMILTON = quaternion_multiply(torch.eye(4)[:, None], torch.eye(4)[None, :]).permute(2, 0, 1).contiguous()


def _shepperd_table() -> Tensor:
    """``[10, 16]``: the affine map from ``(1, m00, m01, ..., m22)`` of a rotation matrix to Shepperd's four candidate
    rows ``4 q_c (w, x, y, z)``, ``c`` = w, x, y, z (row ``c``'s entry ``c`` is ``4 q_c^2``)."""
    t = torch.zeros(4, 4, 10, dtype=torch.float64)
    m = {f"{i}{j}": 1 + 3 * i + j for i in range(3) for j in range(3)}
    diag = [(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)]  # 4 q_c^2 = 1 +- m00 +- m11 +- m22
    for c, signs in enumerate(diag):
        t[c, c, 0] = 1.0
        for s, key in zip(signs, ("00", "11", "22")):
            t[c, c, m[key]] = s
    # off-diagonal entries: 4 w x = m21 - m12, 4 w y = m02 - m20, 4 w z = m10 - m01, 4 x y = m10 + m01,
    # 4 x z = m02 + m20, 4 y z = m12 + m21 (symmetric in the candidate and the component)
    pairs = {(0, 1): ("21", "12", -1), (0, 2): ("02", "20", -1), (0, 3): ("10", "01", -1),
             (1, 2): ("10", "01", 1), (1, 3): ("02", "20", 1), (2, 3): ("12", "21", 1)}
    for (a, b), (p, n, s) in pairs.items():
        for r, k in ((a, b), (b, a)):
            t[r, k, m[p]] = 1.0
            t[r, k, m[n]] = float(s)
    return t.reshape(16, 10).T.contiguous().float()


_SHEPPERD = _shepperd_table()


def _rotation_quaternions(R: Tensor, table: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` (w, x, y, z; sign arbitrary) of rotation matrices ``R [..., 3, 3]``.

    Shepperd's method like :func:`~gen3d_ros.geometry.rotations.matrix_to_quaternion` (the best-conditioned of
    four candidates), in ~10 ops instead of ~60: the candidates are one affine map of the matrix entries
    (``table``: :func:`_shepperd_table`), the best is the one with the largest ``4 q_c^2 >= 1``. The skinning
    blend fixes each link's sign itself, so no ``w >= 0`` standardisation.
    """
    rows = (R.flatten(-2) @ table[1:] + table[0]).unflatten(-1, (4, 4))  # [..., 4, 4]: 4 q_c (w, x, y, z)
    with torch.no_grad():
        best = rows.diagonal(dim1=-2, dim2=-1).argmax(-1, keepdim=True)  # [..., 1]
    row = rows.gather(-2, best[..., None].expand(*best.shape, 4)).squeeze(-2)  # 4 q_c q
    return row * (0.5 * torch.rsqrt(row.gather(-1, best).clamp_min(0.1)))  # 4 q_c q / (2 |q_c|) = sign(q_c) q


@dataclass
class PoseConstants:
    """The parts of :meth:`RobotGaussianModel.posed_gaussians` that do not depend on ``q`` (``N`` Gaussians,
    ``L`` links, ``H`` appearance-MLP width), from :meth:`RobotGaussianModel.pose_constants`."""

    weights: Tensor  # [N, L] skinning weights
    blend: Tensor  # [N, L * 4]: w_l [x; 1] per link, canonical means x in the base frame (m)
    T0_inv: Tensor  # [L, 4, 4] inverse link poses at the neutral pose (base frame, m)
    quat_left: Tensor  # [N, 4, 4] left-multiplication matrices of the unit canonical quaternions (w, x, y, z)
    log_scales: Tensor  # [N, 3] log m
    opacity_logits: Tensor  # [N]
    colors: Tensor  # [N, 3] RGB before the clamp at 0 (sh_degree 0), else SH coefficients [N, K, 3]
    appearance_pos: Tensor | None  # [N, H]: the appearance MLP's first layer on the position encoding (+ bias)
    sh_degree: int  # the active SH degree these colours are for


class FrozenGaussianRenderer:
    """:meth:`RobotGaussianModel.render` with the model's parameters fixed: the ``q``-independent parts (skinning
    weights, neutral link poses, the position part of the appearance MLP) are computed once, not per render.

    Same call as the model (``render(q, T_camera_base, camera, background, backend)``), and its ``fk``,
    ``robot`` and ``num_gaussians``; from :meth:`RobotGaussianModel.frozen`.
    """

    def __init__(self, model: "RobotGaussianModel", constants: PoseConstants) -> None:
        self.model = model
        self.constants = constants
        self.fk = model.fk
        self.robot = model.robot
        self.num_gaussians = model.num_gaussians

    def posed_gaussians(self, q: Tensor) -> dict[str, Tensor]:
        """:meth:`RobotGaussianModel.posed_gaussians` with the frozen constants."""
        return self.model.posed_gaussians(q, self.constants)

    def render(self, q: Tensor, T_camera_base: Tensor, camera: PinholeCamera, background: Tensor | None = None,
               backend: str = "auto") -> RenderOutput:
        """:meth:`RobotGaussianModel.render` with the frozen constants."""
        return self.model.render(q, T_camera_base, camera, background, backend, constants=self.constants)

    def render_posed(self, gaussians: dict[str, Tensor], T_camera_base: Tensor, camera: PinholeCamera,
                     background: Tensor | None = None, backend: str = "auto") -> RenderOutput:
        """The render of Gaussians already posed by :meth:`posed_gaussians` (``[B, N, ...]``) from
        ``T_camera_base [B, 4, 4]``: the splatting half of :meth:`render`."""
        sh_degree = None if self.constants.sh_degree == 0 else self.constants.sh_degree
        return render_gaussians(**gaussians, T_camera_base=T_camera_base, camera=camera, background=background,
                                sh_degree=sh_degree, backend=backend)


class RobotGaussianModel(torch.nn.Module):
    """Canonical Gaussians skinned to a robot's links; see the module docstring for the maths and frames.

    Parameters (``N`` Gaussians, ``L = len(fk.link_names)`` links, ``K = (sh_degree + 1)^2``):
    ``means [N, 3]`` (m, base frame at ``q0``), ``quats [N, 4]`` (w, x, y, z, unnormalised), ``log_scales [N, 3]``,
    ``opacity_logits [N]``, ``sh [N, K, 3]``, the skinning MLP (``skinning=True``) and the appearance MLP
    (``appearance=True``). Buffers: ``link_index [N]`` (the link each Gaussian was sampled on, index into
    ``fk.link_names``), ``centre [3]`` and ``radius`` (m, normalise positions for the encodings).
    """

    link_index: Tensor
    centre: Tensor
    radius: Tensor

    def __init__(self, robot: RobotModel, config: GaussianModelConfig) -> None:
        """An UNINITIALISED model of the right shapes (for :meth:`load`); use :meth:`from_robot` to build one."""
        super().__init__()
        self.robot = robot
        self.config = config
        self.fk = ForwardKinematics(robot)
        n, L, K = config.n_gaussians, len(self.fk.link_names), (config.sh_degree + 1) ** 2
        self.means = torch.nn.Parameter(torch.zeros(n, 3))
        self.quats = torch.nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1))
        self.log_scales = torch.nn.Parameter(torch.full((n, 3), math.log(0.01)))
        self.opacity_logits = torch.nn.Parameter(torch.zeros(n))
        self.sh = torch.nn.Parameter(torch.zeros(n, K, 3))
        self.register_buffer("link_index", torch.zeros(n, dtype=torch.long))
        self.register_buffer("centre", torch.zeros(3))
        self.register_buffer("radius", torch.ones(()))
        self.register_buffer("_hamilton", _HAMILTON.clone(), persistent=False)  # moves with the model, not saved
        self.register_buffer("_shepperd", _SHEPPERD.clone(), persistent=False)
        pos_dim = 3 * (1 + 2 * config.n_freqs)
        self.skin_mlp = _mlp(pos_dim + 4 * L, config.hidden, L) if config.skinning else None
        #: SH bands in use (<= config.sh_degree): training switches them on one by one; not saved.
        self.active_sh_degree = config.sh_degree
        J = self.fk.num_joints
        self.appearance_mlp = _mlp(pos_dim + 2 * J, config.hidden, _APPEARANCE_OUTPUTS) if config.appearance else None

    # ------------------------------------------------------------------------------------------ construction

    @classmethod
    def from_robot(
        cls,
        robot: RobotModel,
        n_gaussians: int = 4000,
        sh_degree: int = 0,
        seed: int = 0,
        skinning: bool = True,
        appearance: bool = True,
        **options: Any,
    ) -> "RobotGaussianModel":
        """Gaussians sampled on ``robot``'s visual surface at the neutral pose; a usable rigid renderer as is.

        ``options``: any other :class:`GaussianModelConfig` field (``hidden``, ``skin_prior_logit``, ``urdf``, ...).
        """
        config = GaussianModelConfig(
            n_gaussians=n_gaussians, sh_degree=sh_degree, seed=seed, skinning=skinning, appearance=appearance,
            **options,
        )
        model = cls(robot, config)
        model._init_from_surface()
        return model

    @torch.no_grad()
    def _init_from_surface(self) -> None:
        from scipy.spatial import cKDTree

        cfg = self.config
        samples = sample_surface(self.robot, cfg.n_gaussians, np.random.default_rng(cfg.seed))
        # sample_surface indexes robot.links; ForwardKinematics uses the same order (asserted for safety).
        assert list(self.robot.links) == self.fk.link_names
        T0 = self.fk(self.fk.neutral()).double().numpy()  # [L, 4, 4] T_base_link at q0
        T = T0[samples.link_index]
        means = np.einsum("nij,nj->ni", T[:, :3, :3], samples.points) + T[:, :3, 3]
        normals = np.einsum("nij,nj->ni", T[:, :3, :3], samples.normals)

        # Tangential size from the local sampling density (the 3DGS recipe: mean distance to 3 neighbours),
        # clamped so isolated or duplicated samples get a sane size.
        dist, _ = cKDTree(means).query(means, k=4)
        spacing = dist[:, 1:].mean(axis=1)
        median = float(np.median(spacing))
        sigma_t = cfg.init_scale_factor * np.clip(spacing, 0.3 * median, 3.0 * median)
        sigma_n = 0.1 * sigma_t  # flat discs: thin along the normal so they hug the surface

        lo, hi = means.min(axis=0), means.max(axis=0)
        self.centre.copy_(torch.as_tensor(0.5 * (lo + hi)))
        self.radius.fill_(float(np.linalg.norm(hi - lo) / 2.0))
        self.means.copy_(torch.as_tensor(means))
        self.quats.copy_(_frame_quaternions(torch.as_tensor(normals)))
        self.log_scales.copy_(torch.as_tensor(np.log(np.stack([sigma_t, sigma_t, sigma_n], axis=1))))
        self.opacity_logits.fill_(math.log(cfg.init_opacity / (1.0 - cfg.init_opacity)))
        rgb = torch.as_tensor(np.clip(samples.colors * cfg.init_color_gain, 0.0, 1.0))
        self.sh.zero_()
        self.sh[:, 0] = (rgb - 0.5) / SH_C0  # DC term: rgb = SH_C0 * c0 + 0.5
        self.link_index.copy_(torch.as_tensor(samples.link_index))

    # ------------------------------------------------------------------------------------------ the model

    @property
    def sh_degree(self) -> int:
        """Degree of the SH colours (0: one RGB per Gaussian)."""
        return self.config.sh_degree

    @property
    def num_gaussians(self) -> int:
        """N."""
        return self.means.shape[0]

    def _position_encoding(self) -> Tensor:
        """``[N, 3 (1 + 2 n_freqs)]`` Fourier features of the canonical means, normalised to about [-1, 1].

        Detached: the encodings only feed the MLPs; the means learn from the image/Chamfer losses directly,
        not through whatever the MLPs would like the positions to be.
        """
        x = (self.means.detach() - self.centre) / self.radius
        return fourier_encode(x, self.config.n_freqs)

    def canonical_link_origins(self) -> Tensor:
        """``[L, 3]`` link origins in the base frame at the neutral pose, metres."""
        return self.fk(self.fk.neutral())[:, :3, 3]

    def skinning_weights(self) -> Tensor:
        """``[N, L]`` skinning weights (rows sum to 1) over ``fk.link_names``; independent of ``q``."""
        L = len(self.fk.link_names)
        prior = F.one_hot(self.link_index, L).to(self.means.dtype) * self.config.skin_prior_logit
        if self.skin_mlp is None:
            return F.one_hot(self.link_index, L).to(self.means.dtype)
        offsets = (self.means.detach()[:, None, :] - self.canonical_link_origins()[None]) / self.radius  # [N, L, 3]
        dist = torch.linalg.vector_norm(offsets, dim=-1, keepdim=True)
        feats = torch.cat((self._position_encoding(), torch.cat((offsets, dist), -1).flatten(1)), dim=-1)
        return torch.softmax(prior + self.skin_mlp(feats), dim=-1)

    def link_motions(self, q: Tensor, T0_inv: Tensor | None = None) -> Tensor:
        """``A_l(q) = T_base_l(q) T_base_l(q0)^-1`` ``[..., L, 4, 4]``: how each link moved from the neutral pose.

        ``T0_inv [L, 4, 4]``: ``T_base_l(q0)^-1`` when already known (:class:`PoseConstants`)."""
        T = self.fk(q)
        if T0_inv is None:
            T0_inv = torch.linalg.inv(self.fk(self.fk.neutral()))
        return T @ T0_inv

    def _check_q(self, q: Tensor) -> Tensor:
        if not torch.is_tensor(q):
            q = torch.as_tensor(q)
        q = q.to(dtype=self.means.dtype, device=self.means.device)
        if q.ndim not in (1, 2) or q.shape[-1] != self.fk.num_joints:
            raise ValueError(
                f"q must be [J] or [B, J] with J={self.fk.num_joints} ({self.fk.joint_names}), got {tuple(q.shape)}"
            )
        return q

    def pose_constants(self) -> PoseConstants:
        """The parts of :meth:`posed_gaussians` that do not depend on ``q``, from the current parameters.

        Differentiable (training calls it inside every :meth:`posed_gaussians`); pose estimation, which never
        changes the parameters, computes it once through :meth:`frozen`.
        """
        w = self.skinning_weights()  # [N, L]
        ones = torch.ones_like(self.means[:, :1])
        blend = (w[:, :, None] * torch.cat((self.means, ones), -1)[:, None, :]).flatten(1)  # [N, L * 4]
        unit = F.normalize(self.quats, dim=-1)
        app = None
        if self.appearance_mlp is not None:
            first = self.appearance_mlp[0]
            pos = self._position_encoding()
            # the first layer's position part: the same for every pose (only the joint part depends on q)
            app = F.linear(pos, first.weight[:, : pos.shape[-1]], first.bias)
        deg = self.active_sh_degree
        return PoseConstants(
            weights=w, blend=blend, T0_inv=torch.linalg.inv(self.fk(self.fk.neutral())),
            quat_left=torch.einsum("ijk,nj->nik", self._hamilton, unit), log_scales=self.log_scales,
            opacity_logits=self.opacity_logits, colors=SH_C0 * self.sh[:, 0] + 0.5 if deg == 0 else self.sh,
            appearance_pos=app, sh_degree=deg,
        )

    @torch.no_grad()
    def frozen(self) -> "FrozenGaussianRenderer":
        """This model's :meth:`render` for fixed parameters: :meth:`pose_constants` computed once (detached).

        For pose estimation and control, which optimise ``q`` and the camera but never the model; a change to the
        parameters afterwards is not seen (call ``frozen()`` again)."""
        return FrozenGaussianRenderer(self, self.pose_constants())

    def _skin(self, qb: Tensor, c: PoseConstants, rotations: bool) -> tuple[Tensor, Tensor | None]:
        """LBS of the canonical means (``[B, N, 3]``) and, if asked, the blended link rotations ``[B, N, 4]`` (not
        normalised: only their direction matters) for ``qb [B, J]``."""
        A = self.link_motions(qb, c.T0_inv)  # [B, L, 4, 4]
        B, L = A.shape[:2]
        # sum_l w_l A_l [x; 1] as one matrix product of the constant (w_l [x; 1]) rows with the links' 3x4 blocks
        means = c.blend @ A[..., :3, :].transpose(-1, -2).reshape(B, L * 4, 3)
        if not rotations:
            return means, None
        link_q = _rotation_quaternions(A[..., :3, :3], self._shepperd)  # [B, L, 4]
        # Put every link's quaternion in the hemisphere of the Gaussian's own link, then blend linearly: the sign
        # of each link pair is one [L, L] table, gathered per Gaussian by its link (no gradient: piecewise constant,
        # and leaving it out of the graph saves its backward's zero-filled ops).
        with torch.no_grad():
            sign = torch.sign(link_q @ link_q.transpose(-1, -2))  # [B, L, L]
            sign = torch.where(sign == 0, torch.ones_like(sign), sign)[:, self.link_index]  # [B, N, L]
        return means, (c.weights * sign) @ link_q

    def posed_means(self, q: Tensor) -> Tensor:
        """Only the posed means ``[..., N, 3]`` (base frame, m) for ``q [J]`` or ``[B, J]`` (Chamfer fitting)."""
        q = self._check_q(q)
        means, _ = self._skin(q[None] if q.ndim == 1 else q, self.pose_constants(), rotations=False)
        return means[0] if q.ndim == 1 else means

    def posed_gaussians(self, q: Tensor, constants: PoseConstants | None = None) -> dict[str, Tensor]:
        """The Gaussians at joint values ``q`` ``[J]`` (or ``[B, J]``), in the base frame; differentiable in ``q``.

        Returns ``means [..., N, 3]`` (m), ``quats [..., N, 4]`` (w, x, y, z, unit), ``scales [..., N, 3]`` (m),
        ``opacities [..., N]`` in (0, 1), ``colors``: ``[..., N, 3]`` RGB when ``active_sh_degree == 0``, else SH
        coefficients ``[..., N, (active_sh_degree + 1)^2, 3]`` (the renderer infers the degree from K). ``...`` is ``B``
        for batched ``q``, nothing for ``q [J]``. ``constants``: :meth:`pose_constants` when already computed
        (:meth:`frozen`); None computes them from the parameters.
        """
        q = self._check_q(q)
        single = q.ndim == 1
        qb = q[None] if single else q  # [B, J]
        c = self.pose_constants() if constants is None else constants
        B, N = qb.shape[0], self.num_gaussians
        means, blend = self._skin(qb, c, rotations=True)
        local, log_scales, opacity_logits, colors = c.quat_left[:, :, 0], c.log_scales, c.opacity_logits, c.colors
        if self.appearance_mlp is not None:
            joint_feats = torch.cat((torch.sin(qb), torch.cos(qb)), dim=-1)  # bounded, fine for continuous joints
            first = self.appearance_mlp[0]
            hidden = c.appearance_pos + F.linear(joint_feats, first.weight[:, -joint_feats.shape[-1]:])[:, None]
            # one split (its backward is one cat; four slices would each zero-fill a full-size gradient)
            d_scale, d_quat, d_opacity, d_rgb = self.appearance_mlp[1:](hidden).split((3, 4, 1, 3), dim=-1)
            log_scales = log_scales + d_scale
            # a local correction of the Gaussian's frame: canonical * (identity + d), the product as a matrix
            local = local + (c.quat_left @ d_quat[..., None])[..., 0]
            opacity_logits = opacity_logits + d_opacity[..., 0]
            colors = self._shift_colors(colors, d_rgb, c.sh_degree)
        quats = torch.einsum("ijk,bnj,bnk->bni", self._hamilton, blend, local.expand(B, N, 4))
        colors = torch.clamp_min(colors, 0.0) if c.sh_degree == 0 else colors[..., : (c.sh_degree + 1) ** 2, :]
        out = {
            "means": means,
            "quats": F.normalize(quats, dim=-1),
            "scales": torch.exp(log_scales).expand(B, N, 3),
            "opacities": torch.sigmoid(opacity_logits).expand(B, N),
            "colors": colors.expand(B, *colors.shape[-(2 if c.sh_degree == 0 else 3):]),
        }
        return {k: v[0] for k, v in out.items()} if single else out

    @staticmethod
    def _shift_colors(colors: Tensor, d_rgb: Tensor, sh_degree: int) -> Tensor:
        """The appearance MLP's colour change ``d_rgb [B, N, 3]`` on ``colors`` (RGB ``[N, 3]`` before the clamp,
        or SH ``[N, K, 3]``: added to the DC term)."""
        if sh_degree == 0:
            return colors + d_rgb
        sh = colors[None].expand(d_rgb.shape[0], *colors.shape)
        return torch.cat(((sh[..., 0, :] + d_rgb / SH_C0)[..., None, :], sh[..., 1:, :]), dim=-2)

    def render(
        self,
        q: Tensor,
        T_camera_base: Tensor,
        camera: PinholeCamera,
        background: Tensor | None = None,
        backend: str = "auto",
        constants: PoseConstants | None = None,
    ) -> RenderOutput:
        """Render the robot at ``q`` seen from ``T_camera_base`` (base -> OpenCV camera, metres).

        Shapes: ``q [J]`` with ``T [4, 4]`` -> ``[H, W, ...]`` images; ``q [J]`` with ``T [C, 4, 4]`` -> ``C`` views
        of one pose ``[C, H, W, ...]``; ``q [B, J]`` with ``T [B, 4, 4]`` -> view ``b`` of pose ``b``
        ``[B, H, W, ...]``; ``q [B, J]`` with ``T [B, C, 4, 4]`` -> ``C`` views of each pose ``[B, C, H, W, ...]``.
        The ``B`` posed Gaussian sets go to :func:`~gen3d_ros.robot.splatting.render_gaussians` as its leading
        batch dimension (one call, one rasterisation pass on the torch backend). ``background``: ``[3]`` RGB (None
        = black). Differentiable w.r.t. ``q``, ``T_camera_base`` and the parameters. See
        :class:`~gen3d_ros.robot.splatting.RenderOutput` for the depth convention (raw alpha-weighted z).
        ``constants``: see :meth:`posed_gaussians`.
        """
        q = self._check_q(q)
        T = T_camera_base.to(dtype=self.means.dtype, device=self.means.device)
        if q.ndim == 2 and (T.ndim not in (3, 4) or T.shape[0] != q.shape[0]):
            raise ValueError(f"batched q {tuple(q.shape)} needs T_camera_base [B, 4, 4] or [B, C, 4, 4] with the same "
                             f"B, got {tuple(T.shape)}")
        sh_degree = None if self.active_sh_degree == 0 else self.active_sh_degree
        return render_gaussians(**self.posed_gaussians(q, constants), T_camera_base=T, camera=camera,
                                background=background, sh_degree=sh_degree, backend=backend)

    def keypoints(self, q: Tensor) -> Tensor:
        """Link origins ``[..., L, 3]`` in the base frame (metres) for ``q [..., J]`` (order ``fk.link_names``)."""
        q = torch.as_tensor(q, dtype=self.means.dtype, device=self.means.device)
        return self.fk(q)[..., :3, 3]

    # ------------------------------------------------------------------------------------------ checkpoints

    def save(self, path: str | Path, extra: dict | None = None, metrics: dict | None = None) -> None:
        """Write a checkpoint (format :data:`CHECKPOINT_FORMAT`) with the URDF hash, config and weights.

        ``metrics`` (JSON-like: PSNR, SSIM, ...) and ``extra`` (anything torch.save handles) are stored as given.
        """
        from gen3d_ros.outputs import save_torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch(
            {
                "format": CHECKPOINT_FORMAT,
                "robot_name": self.robot.name,
                "urdf_sha256": self.robot.urdf_sha256,
                "joint_names": list(self.fk.joint_names),
                "link_names": list(self.fk.link_names),
                "config": dataclasses.asdict(self.config),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "metrics": dict(metrics or {}),
                "extra": dict(extra or {}),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path, robot: RobotModel | None = None, device: str | torch.device = "cpu") -> "RobotGaussianModel":
        """Read a checkpoint written by :meth:`save`.

        ``robot``: the URDF to attach it to; None reloads ``config.urdf`` (``test_arm``, ``panda`` or a path).
        Raises ``ValueError`` when the file is not a Dr. Robot checkpoint or the robot's URDF hash differs from
        the one the model was trained on (a model cannot be moved to another robot description).
        """
        from gen3d_ros.checkpoints import CheckpointError, checkpoint_contents, read_checkpoint

        ckpt, name = read_checkpoint(Path(path), "Dr. Robot", (CHECKPOINT_FORMAT,))
        with checkpoint_contents(name, "Dr. Robot"):
            config = GaussianModelConfig(**ckpt["config"])
            sha, robot_name = str(ckpt["urdf_sha256"]), str(ckpt["robot_name"])
            stored = ckpt["state_dict"]["means"]
        # the model samples config.n_gaussians surface points when built: never more than the file holds
        if not isinstance(stored, torch.Tensor) or tuple(stored.shape) != (config.n_gaussians, 3):
            raise CheckpointError(f"{name}: config says {config.n_gaussians} Gaussians but the stored means are "
                                  f"{list(getattr(stored, 'shape', []))}")
        if robot is None:
            robot = load_robot(config.urdf)
        if robot.urdf_sha256 != sha:
            raise CheckpointError(
                f"checkpoint {path} was trained on URDF {robot_name!r} (sha256 {sha[:12]}…) "
                f"but robot {robot.name!r} has sha256 {robot.urdf_sha256[:12]}…; load it with the same URDF "
                "or retrain (gen3d train-robot --urdf ...)"
            )
        with checkpoint_contents(name, "Dr. Robot"):
            model = cls(robot, config)
            model.load_state_dict(ckpt["state_dict"])
        model.metrics = ckpt.get("metrics", {})
        model.extra = ckpt.get("extra", {})
        return model.to(device)


def _frame_quaternions(normals: Tensor) -> Tensor:
    """Quaternions ``[N, 4]`` (w, x, y, z) of frames whose z axis is ``normals [N, 3]`` (x, y: any tangent pair)."""
    n = F.normalize(normals, dim=-1)
    # Any vector not parallel to n: the world axis least aligned with it.
    helper = torch.zeros_like(n)
    helper[torch.arange(len(n)), n.abs().argmin(dim=-1)] = 1.0
    t1 = F.normalize(torch.cross(helper, n, dim=-1), dim=-1)
    t2 = torch.cross(n, t1, dim=-1)
    R = torch.stack((t1, t2, n), dim=-1)  # columns: the Gaussian's axes in the base frame
    return matrix_to_quaternion(R)


__all__ = ["CHECKPOINT_FORMAT", "FrozenGaussianRenderer", "GaussianModelConfig", "PoseConstants", "RobotGaussianModel",
           "fourier_encode", "quaternion_multiply"]
