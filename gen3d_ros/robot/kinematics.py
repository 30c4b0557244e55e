"""Batched, differentiable forward kinematics of a :class:`~gen3d_ros.robot.urdf.RobotModel` in torch.

    fk = ForwardKinematics(load_urdf(test_arm_urdf()))
    q = fk.sample(8)                 # [8, J] uniform within the joint limits
    T = fk(q)                        # [8, L, 4, 4]: T_base_link for every link of fk.link_names
    p = T[:, fk.link_index("tool_tip"), :3, 3]

``q`` holds the actuated joints (``fk.joint_names`` == ``robot.actuated_joints``) in radians (revolute,
continuous) or metres (prismatic); mimic joints follow their leader (``q = multiplier * q_leader + offset``).
``T_base_link`` maps points in the link frame to the base (root link) frame, in metres.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gen3d_ros.robot.urdf import RobotModel

_FIXED, _REVOLUTE, _PRISMATIC = 0, 1, 2


class ForwardKinematics(torch.nn.Module):
    """``q [..., J] -> T_base_link [..., L, 4, 4]`` for all links of a robot; differentiable w.r.t. ``q``.

    Revolute and continuous joints rotate about their unit axis by Rodrigues' formula
    ``R = I + sin(q) K + (1 - cos(q)) K^2`` (smooth everywhere, so gradients exist at ``q = 0``); prismatic joints
    translate along their axis; each link's transform is ``T_base_parent @ origin @ motion(q)``.

    Buffers (move with ``.to(device)``): ``lower``, ``upper`` [J] limits of the actuated joints (the only ones in
    ``state_dict``).
    """

    lower: Tensor
    upper: Tensor

    def __init__(self, robot: RobotModel, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.robot_name = robot.name
        self.joint_names: list[str] = list(robot.actuated_joints)
        self.link_names: list[str] = list(robot.links)
        self._link_to_index = {name: i for i, name in enumerate(self.link_names)}
        actuated = {name: i for i, name in enumerate(self.joint_names)}
        joints = robot.joint_map()

        # One row per non-root link (links[1:]), describing the joint that moves it.
        parents, kinds, sources, multipliers, offsets, origins, axes = [], [], [], [], [], [], []
        for link in self.link_names[1:]:
            joint = robot.parent_joint(link)
            assert joint is not None, f"link {link!r} has no parent joint"  # load_urdf guarantees a tree
            parents.append(self._link_to_index[joint.parent])
            kind = {"fixed": _FIXED, "prismatic": _PRISMATIC}.get(joint.type, _REVOLUTE)
            # Fixed joints read q[0] times 0: a constant gather keeps forward() free of branches.
            if kind == _FIXED:
                source, multiplier, offset = 0, 0.0, 0.0
            else:
                source, multiplier, offset = _joint_source(joint.name, joints, actuated)
            kinds.append(kind)
            sources.append(source)
            multipliers.append(multiplier)
            offsets.append(offset)
            origins.append(torch.as_tensor(joint.origin, dtype=torch.float64))
            axes.append(torch.as_tensor(joint.axis, dtype=torch.float64))
        self._parents = parents
        n = len(parents)
        axis = torch.stack(axes) if n else torch.zeros(0, 3, dtype=torch.float64)
        K = _skew(axis)
        kind_t = torch.tensor(kinds, dtype=torch.long)
        # Only the limits go into state_dicts: the joint geometry comes from the URDF (see RobotModel.urdf_sha256),
        # so checkpoints don't depend on how this class lays out its internals.
        self.register_buffer("lower", torch.as_tensor(robot.lower, dtype=dtype))
        self.register_buffer("upper", torch.as_tensor(robot.upper, dtype=dtype))
        continuous = [joints[j].type == "continuous" for j in self.joint_names]
        self.register_buffer("_continuous", torch.tensor(continuous, dtype=torch.bool), persistent=False)
        origin = torch.stack(origins) if n else torch.zeros(0, 4, 4)
        self.register_buffer("_origin", origin.to(dtype), persistent=False)
        # origin @ motion(v) = origin + sin(v) origin K4 + (1 - cos v) origin K4^2 + v origin P4, with K4 the axis'
        # cross-product matrix (revolute) and P4 the axis as a translation (prismatic), 4x4: the local transforms
        # as a weighted sum of constant [L - 1, 4, 4] terms, no per-call matrix assembly (fewer ops per call)
        rev = (kind_t == _REVOLUTE).to(torch.float64)[:, None, None]
        K4 = torch.zeros(n, 4, 4, dtype=torch.float64)
        K4[:, :3, :3] = K * rev
        K2_4 = K4 @ K4
        P4 = torch.zeros(n, 4, 4, dtype=torch.float64)
        P4[:, :3, 3] = axis * (kind_t == _PRISMATIC).to(torch.float64)[:, None]
        terms = torch.stack([origin.double() @ M for M in (K4, K2_4, P4)]) if n else torch.zeros(3, 0, 4, 4)
        self.register_buffer("_local_terms", terms.to(dtype), persistent=False)  # [3, L - 1, 4, 4]
        self.register_buffer("_source", torch.tensor(sources, dtype=torch.long), persistent=False)
        self.register_buffer("_multiplier", torch.tensor(multipliers, dtype=dtype), persistent=False)
        self.register_buffer("_offset", torch.tensor(offsets, dtype=dtype), persistent=False)

    @property
    def num_joints(self) -> int:
        """J, the number of actuated joints."""
        return len(self.joint_names)

    def link_index(self, name: str) -> int:
        """Index of link ``name`` in :attr:`link_names` (and in the ``L`` axis of :meth:`forward`)."""
        try:
            return self._link_to_index[name]
        except KeyError:
            raise KeyError(f"robot {self.robot_name!r} has no link {name!r}; links: {self.link_names}") from None

    def joint_index(self, name: str) -> int:
        """Index of actuated joint ``name`` in :attr:`joint_names` (and in the last axis of ``q``)."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not an actuated joint of {self.robot_name!r}: {self.joint_names}") from None

    def joint_values(self, q: Tensor) -> Tensor:
        """Values of the joints above each non-root link ``[..., L - 1]`` (0 for fixed joints; mimics resolved)."""
        q = self._check_q(q)
        if self._source.numel() == 0:
            return q.new_zeros(*q.shape[:-1], 0)
        if q.shape[-1] == 0:  # only fixed joints: nothing to gather from
            return q.new_zeros(*q.shape[:-1], self._source.numel())
        return q[..., self._source] * self._multiplier + self._offset

    def local_transforms(self, q: Tensor) -> Tensor:
        """``T_parent_link`` of every non-root link ``[..., L - 1, 4, 4]`` (joint origin, then joint motion)."""
        v = self.joint_values(q)[..., None, None]
        # revolute: Rodrigues' R = I + sin(v) K + (1 - cos v) K^2; prismatic: a translation by v along the axis
        sin_term, cos_term, prismatic_term = self._local_terms
        return self._origin + torch.sin(v) * sin_term + (1.0 - torch.cos(v)) * cos_term + v * prismatic_term

    def forward(self, q: Tensor) -> Tensor:
        """``T_base_link`` of every link, ``[..., L, 4, 4]`` for ``q [..., J]`` (metres; link order = link_names)."""
        q = self._check_q(q)
        local = self.local_transforms(q)
        root = torch.eye(4, dtype=q.dtype, device=q.device).expand(*q.shape[:-1], 4, 4)
        world = [root]
        # Links are ordered parents-first, so each parent's transform exists when its child needs it. One unbind
        # (not a slice per link): its backward is one stack instead of a zero-filled copy per link. The root's
        # children need no product (the root is the identity).
        for parent, T_local in zip(self._parents, local.unbind(-3)):
            world.append(T_local if parent == 0 else world[parent] @ T_local)
        return torch.stack(world, dim=-3)

    def clamp(self, q: Tensor) -> Tensor:
        """``q`` within the limits: bounded joints clamped to [lower, upper], continuous joints wrapped to [-pi, pi)."""
        q = self._check_q(q)
        clamped = torch.maximum(torch.minimum(q, self.upper), self.lower)
        wrapped = torch.remainder(q + math.pi, 2.0 * math.pi) - math.pi
        return torch.where(self._continuous, wrapped, clamped)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` configurations ``[n, J]``, each joint uniform within its limits (on the buffers' device).

        Draws on the generator's device (CPU by default), so a seeded CPU generator gives the same ``q`` wherever
        the module lives.
        """
        device = generator.device if generator is not None else self.lower.device
        u = torch.rand(n, self.num_joints, generator=generator, dtype=self.lower.dtype, device=device)
        u = u.to(self.lower.device)
        return self.lower + u * (self.upper - self.lower)

    def neutral(self) -> Tensor:
        """The zero configuration ``[J]``, clamped into the limits (some robots exclude q = 0)."""
        return self.clamp(torch.zeros_like(self.lower))

    def _check_q(self, q: Tensor) -> Tensor:
        if not torch.is_tensor(q):
            q = torch.as_tensor(q, dtype=self.lower.dtype, device=self.lower.device)
        if q.shape[-1:] != (self.num_joints,):
            raise ValueError(
                f"q has shape {tuple(q.shape)}, expected [..., {self.num_joints}] for joints {self.joint_names}"
            )
        if not q.is_floating_point():
            q = q.to(self.lower.dtype)
        return q


def _joint_source(
    name: str, joints: dict, actuated: dict[str, int]
) -> tuple[int, float, float]:
    """(index into q, multiplier, offset) of a non-fixed joint; a chain of mimics is folded into one affine map."""
    multiplier, offset = 1.0, 0.0
    current = joints[name]
    while current.mimic is not None:
        leader, m, o = current.mimic
        # q_current = m * q_leader + o, and the outer map so far applies to q_current.
        multiplier, offset = multiplier * m, multiplier * o + offset
        current = joints[leader]
    return actuated[current.name], multiplier, offset


def _skew(axis: Tensor) -> Tensor:
    """Cross-product matrices ``[N, 3, 3]`` of vectors ``[N, 3]``."""
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack(
        [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], dim=-2
    )
