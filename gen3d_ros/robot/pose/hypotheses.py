"""The starting hypotheses of a pose estimate: joint samples x camera rotations, searched by silhouette, plus the
twins the silhouette cannot tell apart (base yaw with the camera, a distal joint such as a wrist roll).

Frames and units: ``q [B, J]`` rad / m in ``fk.joint_names`` order; ``T [B, 4, 4]`` base -> OpenCV camera, metres.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.geometry.rotations import so3_exp
from gen3d_ros.robot.pose.config import PoseEstimatorConfig
from gen3d_ros.robot.pose.search import SilhouetteSearch, fit_translation
from gen3d_ros.robot.pose.surface import PIVOT_POINTS, PosedSurface


class HypothesisSampler:
    """Initial ``(q, T_camera_base)`` hypotheses of one robot for :meth:`PoseEstimator.estimate`.

    ``robot``: the URDF description (joint types and the root link); ``search``: the silhouette search that ranks
    the (joint, rotation) pairs; ``generator``: the estimator's random stream (shared with the search).
    """

    def __init__(self, config: PoseEstimatorConfig, robot, surface: PosedSurface, search: SilhouetteSearch,
                 generator: torch.Generator, device: torch.device) -> None:
        self.config = config
        self.robot = robot
        self.fk = surface.fk
        self.joint_names: list[str] = list(self.fk.joint_names)
        self.surface = surface
        self.search = search
        self.generator = generator
        self.device = device
        self.lower, self.upper = search.lower, search.upper
        self._distal: tuple[int | None] | None = None

    def initial(
        self, mask: Tensor, camera: PinholeCamera, known_q: Tensor | None, known_T: Tensor | None,
        q_init: Tensor | None,
    ) -> tuple[Tensor, Tensor, int, int]:
        """Initial ``(q [B, J], T_camera_base [B, 4, 4], hypotheses searched, n_given)`` for the estimate's mode
        (``known_q [J]``, ``known_T [4, 4]``, ``q_init [J]``: an extra joint hypothesis); the first ``n_given``
        hypotheses are given poses that the estimate must not prune."""
        qs = known_q[None] if known_q is not None else self._joint_hypotheses(known_T is not None, q_init)
        R = known_T[None, :3, :3] if known_T is not None else self.camera_rotations()
        if qs.shape[0] * R.shape[0] == 1:  # one hypothesis: nothing to search
            T = known_T[None] if known_T is not None else fit_translation(self.surface.posed(qs), R, camera, mask)
            return qs, T, 1, 0
        q_best, T_best = self.search.search(qs, R, known_T, camera, mask)
        if known_T is not None and known_q is None:
            q_best, T_best = self.distal_variants(q_best, T_best)
        n_given = 0
        if q_init is not None and known_T is not None and known_q is None:
            # a given guess (e.g. the last joint state) always competes, first, and is refined to the end
            # (estimate() never prunes it): the coarse scores may rank it below search results that it beats
            # once refined
            q_best = torch.cat([q_init.reshape(1, -1), q_best])
            T_best = torch.cat([known_T[None], T_best])
            n_given = 1
        if known_q is None and known_T is None:
            q_best, T_best = self.yaw_variants(q_best, T_best)
        return q_best, T_best, qs.shape[0] * R.shape[0], n_given

    def _joint_hypotheses(self, known_camera: bool, q_init: Tensor | None) -> Tensor:
        """``[Q, J]``: the neutral pose, ``q_init`` if given, then Sobol samples; with a known camera the full mode's
        budget (joints x rotations) is spent on joint samples alone."""
        cfg = self.config
        extra = [q_init.reshape(1, -1)] if q_init is not None else []
        n = cfg.joint_restarts * (1 if not known_camera else cfg.azimuths * len(cfg.elevations_deg))
        return torch.cat([self.fk.neutral()[None].to(self.device), *extra, self.joint_samples(n - 1)])

    def camera_rotations(self) -> Tensor:
        """``[V, 3, 3]`` rotations of upright cameras at ``azimuths`` x ``elevations_deg`` looking at the robot."""
        cfg = self.config
        rotations = [sphere_camera(2.0 * math.pi * a / cfg.azimuths, math.radians(e), 1.0)[:3, :3]
                     for e in cfg.elevations_deg for a in range(cfg.azimuths)]
        return torch.as_tensor(np.stack(rotations), dtype=torch.float32, device=self.device)

    def joint_samples(self, n: int) -> Tensor:
        """``n`` joint configurations ``[n, J]`` within the limits: scrambled Sobol points (seeded by ``config.seed``).

        Low-discrepancy rather than i.i.d. uniform: with ~100 samples in 4-6 dimensions, random draws leave large
        holes that the local optimiser then has to cross.
        """
        if n <= 0:
            return torch.empty(0, self.fk.num_joints, device=self.device)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        u = torch.quasirandom.SobolEngine(self.fk.num_joints, scramble=True, seed=seed).draw(n).to(self.device)
        return self.lower + u.float() * (self.upper - self.lower)

    def root_revolute(self) -> tuple[int, Tensor, Tensor] | None:
        """``(joint index, axis [3], point on the axis [3])`` (base frame) of a revolute joint on the root link, or
        None: the joint whose rotation a camera rotation about the same axis undoes for every moving link."""
        robot = self.robot
        for joint in robot.joints:
            if joint.parent == robot.root and joint.type in ("revolute", "continuous") and joint.mimic is None \
                    and joint.name in self.joint_names:
                origin = torch.as_tensor(joint.origin, dtype=torch.float32, device=self.device)
                axis = origin[:3, :3] @ torch.as_tensor(joint.axis, dtype=torch.float32, device=self.device)
                return self.joint_names.index(joint.name), axis / axis.norm(), origin[:3, 3]
        return None

    def distal_joint(self) -> int | None:
        """Index of the revolute joint that moves the fewest surface points (e.g. a wrist roll), or None."""
        if self._distal is None:
            types = {j.name: j.type for j in self.robot.joints}
            q0 = self.fk.neutral()[None].to(self.device)
            p0 = self.surface.posed(q0, PIVOT_POINTS)
            best, frac_best = None, 2.0
            for j, name in enumerate(self.joint_names):
                if types.get(name) not in ("revolute", "continuous"):
                    continue
                q1 = q0.clone()
                q1[0, j] = q1[0, j] + 0.5
                frac = float(((self.surface.posed(q1, PIVOT_POINTS) - p0).norm(dim=-1) > 1e-6).float().mean())
                if 0.0 < frac < frac_best:
                    best, frac_best = j, frac
            self._distal = (best,)
        return self._distal[0]

    def distal_variants(self, q: Tensor, T: Tensor) -> tuple[Tensor, Tensor]:
        """Known camera: each hypothesis plus ``yaw_offsets - 1`` twins whose distal joint (:meth:`distal_joint`,
        e.g. a wrist roll) is turned by multiples of 360 deg / ``yaw_offsets``.

        That joint moves only a small part (the hand), so the silhouette barely constrains it and the search leaves
        it anywhere; the renders that rank the candidates then mostly measure its error (a right arm with the hand
        turned ranked below a wrong arm), and refinement can't turn it far. The twins let appearance choose it.
        Twins outside the joint's limits are dropped."""
        n = self.config.yaw_offsets
        j = self.distal_joint()
        if n <= 1 or j is None:
            return q, T
        qs, Ts = [q], [T]
        for k in range(1, n):
            qj = q[:, j] + 2.0 * math.pi * k / n
            qj = torch.remainder(qj + math.pi, 2.0 * math.pi) - math.pi
            ok = (qj >= self.lower[j]) & (qj <= self.upper[j])
            if not ok.any():
                continue
            q_k = q.clone()
            q_k[:, j] = qj
            qs.append(q_k[ok])
            Ts.append(T[ok])
        return torch.cat(qs), torch.cat(Ts)

    def yaw_variants(self, q: Tensor, T: Tensor) -> tuple[Tensor, Tensor]:
        """Each hypothesis plus ``yaw_offsets - 1`` twins: root joint turned by ``d`` and the camera by ``-d``
        about the same axis (all non-root links then look identical from the camera; only the base moves).

        The silhouette search can't tell the twins apart (they differ only in the base), so appearance decides
        when they are rendered. Twins whose root joint would leave its limits are dropped.
        """
        n = self.config.yaw_offsets
        root = self.root_revolute()
        if n <= 1 or root is None:
            return q, T
        j, axis, point = root
        qs, Ts = [q], [T]
        for k in range(1, n):
            d = 2.0 * math.pi * k / n
            qj = q[:, j] + d
            qj = torch.remainder(qj + math.pi, 2.0 * math.pi) - math.pi  # the same rotation, nearest to 0
            ok = (qj >= self.lower[j]) & (qj <= self.upper[j])
            if not ok.any():
                continue
            Rm = so3_exp((-d * axis)[None]).to(T.dtype)[0]  # base-frame rotation by -d about the root axis
            M = torch.eye(4, dtype=T.dtype, device=T.device)
            M[:3, :3] = Rm
            M[:3, 3] = point - Rm @ point
            q_k = q.clone()
            q_k[:, j] = qj
            qs.append(q_k[ok])
            Ts.append((T @ M)[ok])
        return torch.cat(qs), torch.cat(Ts)


__all__ = ["HypothesisSampler"]
