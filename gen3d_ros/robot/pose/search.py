"""The silhouette search: (joint, camera) hypotheses scored without rendering.

Every pair of a joint hypothesis and a camera rotation gets its camera translation in closed form from the mask's
bounding box (:func:`fit_translation`) and a score from projected surface points (:func:`point_score`: ``1 - IoU``
of their 3x3 splats with the mask plus their mean distance outside it) at ``config.search_size`` pixels: coarse,
which widens the basins, and ~1000x cheaper than a render. The best (diverse) hill-climb that score
(:meth:`SilhouetteSearch.local_search`), and the best few, near-duplicates suppressed, are kept.

Frames and units: ``q [B, J]`` rad / m; ``T [B, 4, 4]`` base -> OpenCV camera, metres; masks ``[H, W]`` robot = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.geometry.rotations import so3_exp
from gen3d_ros.robot.pose.config import PoseEstimatorConfig
from gen3d_ros.robot.pose.images import dilate3, downsample, outside_distance
from gen3d_ros.robot.pose.surface import PosedSurface


@dataclass
class SearchTarget:
    """The mask at the search resolution: ``camera``, ``mask [h*w]`` (for the IoU) and ``outside [h*w]`` (distance
    to the silhouette in image widths), flattened row-major."""

    camera: PinholeCamera
    mask: Tensor
    outside: Tensor


def search_target(camera: PinholeCamera, mask: Tensor, search_size: int, known_camera: bool = False) -> SearchTarget:
    """The :class:`SearchTarget` of ``mask [H, W]`` (seen by ``camera``) at ``search_size`` px (longer side).

    ``known_camera``: the IoU mask is dilated by one pixel (3x3), like the points' 3x3 splats. With the camera
    fixed the scale can't adapt, so the undilated mask scores the true pose's ~1 px fatter splat silhouette
    poorly (IoU ~0.56 on the thin test arm at 64 px) and favours poses that fold or foreshorten links to
    shrink the splats: measured, the truth scored worse than ~10-200 wrong grid samples. Dilating both makes
    the truth the best (~0.13-0.19). (The full mode keeps the undilated mask: there the distance is fitted
    from the box, and a fatter mask favoured too-large hypotheses.)"""
    factor = min(1.0, search_size / max(camera.width, camera.height))
    cam = camera.scaled(factor) if factor < 1.0 else camera
    # Threshold 0.5 of the area-averaged mask: the renders' soft edges make masks ~1 px fatter than the surface
    # the points sample; a lower threshold (or dilating the mask) measurably favoured too-large hypotheses.
    m_bin = (downsample(mask, cam.height, cam.width) > 0.5).to(mask.dtype)
    if m_bin.sum() < 1:
        raise ValueError("the robot mask is empty: nothing to fit (check the image, mask or background colour)")
    m_iou = dilate3(m_bin[None])[0] if known_camera else m_bin
    return SearchTarget(cam, m_iou.flatten(), outside_distance(m_bin).flatten())


def point_score(pts: Tensor, T: Tensor, target: SearchTarget) -> Tensor:
    """Silhouette score ``[B]`` (lower is better) of posed points ``pts [B, P, 3]`` (base frame) seen from
    ``T [B, 4, 4]``: ``1 - IoU`` of the points splatted to 3x3 pixel blocks with the mask, plus the points'
    mean distance outside the mask (image widths; off-image or behind the camera counts as 1)."""
    cam, m_flat, dist = target.camera, target.mask, target.outside
    p_cam = torch.baddbmm(T[:, None, :3, 3], pts, T[:, :3, :3].transpose(1, 2))  # one bmm, not B*P tiny matmuls
    z = p_cam[..., 2]
    zc = z.clamp_min(1e-3)
    u = torch.floor(cam.fx * p_cam[..., 0] / zc + cam.cx).long()
    v = torch.floor(cam.fy * p_cam[..., 1] / zc + cam.cy).long()
    valid = (z > 1e-3) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
    flat = v.clamp(0, cam.height - 1) * cam.width + u.clamp(0, cam.width - 1)
    outside = torch.where(valid, dist[flat], torch.ones_like(zc)).mean(-1)
    occ = torch.zeros(pts.shape[0], cam.height * cam.width, dtype=pts.dtype, device=pts.device)
    occ.scatter_(1, flat, valid.to(occ.dtype))  # a point per pixel is enough (value 1 either way)
    # 3x3 splats: 1000 points leave holes in a 32 px silhouette, and a Gaussian covers more than its centre
    occ = dilate3(occ.view(-1, cam.height, cam.width)).flatten(1)
    inter = occ @ m_flat
    union = occ.sum(-1) + m_flat.sum() - inter
    return 1.0 - inter / union.clamp_min(1.0) + outside


def hull_points(pts: Tensor) -> Tensor:
    """``[Q, K, 3]``: the convex-hull vertices of each point set ``pts [Q, P, 3]`` (padded by repeating one).

    Every bounding box :func:`fit_translation` measures (orthographic extents, depth, perspective pixel extremes of
    points in front of the camera) is attained at a hull vertex, so the fit is the same on the ~10x fewer hull
    points. A degenerate (flat) set keeps all its points.
    """
    from scipy.spatial import ConvexHull, QhullError

    arr = pts.detach().cpu().double().numpy()
    index = []
    for p in arr:
        try:
            index.append(ConvexHull(p).vertices)
        except (QhullError, ValueError):
            index.append(np.arange(len(p)))
    k = max(len(i) for i in index)
    padded = np.stack([np.concatenate([i, np.full(k - len(i), i[0])]) for i in index])
    idx = torch.as_tensor(padded, dtype=torch.long, device=pts.device)
    return torch.gather(pts, 1, idx[..., None].expand(-1, -1, 3))


def _mask_box(mask: Tensor) -> tuple[float, float, float]:
    """``(centre u, centre v, diagonal)`` in pixels of the box through the centres of the extreme mask pixels."""
    m = mask > 0.5
    if not m.any():
        raise ValueError("the robot mask is empty: nothing to fit (check the image, mask or background colour)")
    rows, cols = m.any(dim=1).nonzero()[:, 0], m.any(dim=0).nonzero()[:, 0]
    # pixel centres (+ 0.5) of the extreme mask pixels: where the silhouette's outermost surface projects
    u0, u1 = float(cols.min()) + 0.5, float(cols.max()) + 0.5
    v0, v1 = float(rows.min()) + 0.5, float(rows.max()) + 0.5
    return 0.5 * (u0 + u1), 0.5 * (v0 + v1), max(math.hypot(u1 - u0, v1 - v0), 1.0)


def fit_translation(
    pts: Tensor, R: Tensor, camera: PinholeCamera, mask: Tensor, rounds: int = 5, pivot: Tensor | None = None
) -> Tensor:
    """``T_camera_base [B, 4, 4]`` with rotations ``R [B, 3, 3]`` that put posed points ``pts [B, P, 3]`` (base
    frame) where the mask is: closed form, no rendering.

    Matches bounding boxes: the distance scales the projected points' box diagonal (pixels) to the mask's, the
    lateral offset moves the box centre onto the mask's (so that ray passes through the robot's centre). Boxes,
    not moments: the surface samples are spread by area, the mask by *visible* area, so their centroids and
    spreads differ by occlusion (measured: 15-28 cm ADD at the true rotation with moments), while the
    extremities are nearly always visible. A few fixed-point rounds settle the perspective coupling.
    ``pivot [B, 3]``: the rotation centre (default: the mean of ``pts``; pass it when ``pts`` is a hull).
    """
    cam = camera
    mu, mv, diag = _mask_box(mask)
    pivot = pts.mean(dim=1) if pivot is None else pivot
    p_rel = torch.bmm(pts - pivot[:, None], R.transpose(1, 2))  # camera-aligned, about the pivot
    ext = p_rel[..., :2].amax(1) - p_rel[..., :2].amin(1)  # [B, 2] metres
    t = torch.zeros_like(pivot)
    t[:, 2] = cam.fx * ext.norm(dim=-1) / diag + p_rel[..., 2].amax(1).clamp_min(0)
    for _ in range(rounds):
        pc = p_rel + t[:, None]
        z = pc[..., 2].clamp_min(1e-3)
        pu, pv = cam.fx * pc[..., 0] / z + cam.cx, cam.fy * pc[..., 1] / z + cam.cy
        pu0, pu1, pv0, pv1 = pu.amin(-1), pu.amax(-1), pv.amin(-1), pv.amax(-1)
        s = torch.sqrt((pu1 - pu0) ** 2 + (pv1 - pv0) ** 2).clamp_min(1e-3)
        t[:, 2] = t[:, 2] * (s / diag)
        t[:, 0] = t[:, 0] + (mu - 0.5 * (pu0 + pu1)) * t[:, 2] / cam.fx
        t[:, 1] = t[:, 1] + (mv - 0.5 * (pv0 + pv1)) * t[:, 2] / cam.fy
    T = torch.eye(4, dtype=R.dtype, device=R.device).repeat(R.shape[0], 1, 1)
    T[:, :3, :3] = R
    T[:, :3, 3] = t - (R @ pivot[:, :, None])[..., 0]
    return T


def suppress_duplicates(fk, q: Tensor, T: Tensor, score: Tensor, keep: int, nms_m: float,
                        return_score: bool = False):
    """The ``keep`` best by ``score`` whose camera-frame link origins differ from every better kept one by
    more than ``nms_m`` (mean over links, metres): diversity for the later stages.
    Returns ``(q, T)`` or, with ``return_score``, ``(q, T, score)``."""
    order = torch.argsort(score)[: max(16 * keep, 64)]
    q, T = q[order], T[order]
    kp = fk(q)[..., :3, 3]  # [N, L, 3] base frame
    kp = (T[:, None, :3, :3] @ kp[..., None])[..., 0] + T[:, None, :3, 3]  # camera frame
    # every pair's distance at once and one copy to the host (a read per candidate waits for the device each time)
    dist = (kp[:, None] - kp[None]).norm(dim=-1).mean(-1).cpu().numpy()  # [N, N] metres
    chosen: list[int] = []
    for i in range(len(order)):
        if chosen and float(dist[chosen, i].min()) < nms_m:
            continue
        chosen.append(i)
        if len(chosen) == keep:
            break
    idx = torch.as_tensor(chosen, device=q.device)
    return (q[idx], T[idx], score[order][idx]) if return_score else (q[idx], T[idx])


class SilhouetteSearch:
    """The search over (joint hypothesis x camera rotation) pairs of one estimate (see the module docstring).

    ``surface``: the robot's posed surface samples; ``lower, upper [J]``: joint limits; ``generator``: the
    estimator's random stream (shared with its joint sampling: the draws' order is part of the result).
    """

    def __init__(self, config: PoseEstimatorConfig, surface: PosedSurface, lower: Tensor, upper: Tensor,
                 generator: torch.Generator) -> None:
        self.config = config
        self.surface = surface
        self.lower, self.upper = lower, upper
        self.generator = generator

    def search(self, qs: Tensor, R: Tensor, known_T: Tensor | None, camera: PinholeCamera,
               mask: Tensor) -> tuple[Tensor, Tensor]:
        """The best ``search_keep`` (``known_camera_keep``) hypotheses ``(q [K, J], T [K, 4, 4])`` over every pair of
        ``qs [Q, J]`` and ``R [V, 3, 3]`` (``known_T [4, 4]``: that camera only), near-duplicates suppressed so
        that the kept few differ."""
        cfg = self.config
        q, T, score = self.scores(qs, R, known_T, camera, mask)
        known = known_T is not None
        climbers = cfg.known_camera_climbers if known else cfg.search_climbers
        if cfg.search_rounds > 0:
            # hill-climb the best few (diverse) before choosing: the grid alone is too coarse to find the basin
            q, T, score = suppress_duplicates(self.surface.fk, q, T, score, climbers, cfg.search_nms_m,
                                              return_score=True)
            q, T, score = self.local_search(q, T, score, camera, mask, optimise_q=qs.shape[0] > 1,
                                            optimise_T=known_T is None)
        return suppress_duplicates(self.surface.fk, q, T, score, cfg.known_camera_keep if known else cfg.search_keep,
                                   cfg.search_nms_m)

    @torch.no_grad()
    def scores(
        self, qs: Tensor, R: Tensor, known_T: Tensor | None, camera: PinholeCamera, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(q [B, J], T_camera_base [B, 4, 4], score [B])`` of every (joint hypothesis, camera rotation) pair
        (:func:`point_score`); each pair's translation comes from :func:`fit_translation` (``known_T``: as is)."""
        cfg = self.config
        target = search_target(camera, mask, cfg.search_size, known_camera=known_T is not None)
        pts_all = self.surface.posed(qs, cfg.search_points)  # [Q, P, 3] base frame
        n_q, n_r, P = qs.shape[0], R.shape[0], pts_all.shape[1]
        if known_T is None:  # the translation fit only needs the hull (the same boxes), and the pivot
            hull_all, pivot_all = hull_points(pts_all), pts_all.mean(dim=1)
        # bounds memory: ~400k points per chunk on the CPU (cache-sized), 4M on a GPU (fewer, larger kernels)
        chunk_q = max(1, (4_000_000 if qs.is_cuda else 400_000) // (n_r * P))
        scores, Ts = [], []
        for start in range(0, n_q, chunk_q):
            pts = pts_all[start:start + chunk_q]
            pts_b = pts.repeat_interleave(n_r, dim=0)  # [c * V, P, 3]
            R_b = R.repeat(pts.shape[0], 1, 1)
            T = known_T.expand(pts_b.shape[0], 4, 4) if known_T is not None else fit_translation(
                hull_all[start:start + chunk_q].repeat_interleave(n_r, dim=0), R_b, camera, mask,
                pivot=pivot_all[start:start + chunk_q].repeat_interleave(n_r, dim=0))
            scores.append(point_score(pts_b, T, target))
            Ts.append(T.clone())
        return qs.repeat_interleave(n_r, dim=0), torch.cat(Ts), torch.cat(scores)

    @torch.no_grad()
    def local_search(
        self, q: Tensor, T: Tensor, score: Tensor, camera: PinholeCamera, mask: Tensor, optimise_q: bool,
        optimise_T: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Stochastic hill climbing of :func:`point_score` from each hypothesis ``(q [B, J], T [B, 4, 4])``.

        ``search_rounds`` rounds of ``search_perturbations`` Gaussian perturbations per hypothesis (joints: a
        fraction of their range; camera: rotation about the robot's centre, rad, and that centre's camera-frame
        position, m, depth relative), shrinking each round; a hypothesis moves to its best perturbation when that
        scores better. Cheap (no rendering) and derivative-free, so it crosses the plateaus of the coarse
        silhouette score that stop gradient steps, and closes the gaps of the sampling grid.
        """
        cfg = self.config
        target = search_target(camera, mask, cfg.search_size, known_camera=not optimise_T)
        B, M = q.shape[0], cfg.search_perturbations
        for r in range(cfg.search_rounds):
            f = 0.5 ** r  # step sizes halve every round
            qb, Tb, pts = self._perturb(q, T, M, f, optimise_q, optimise_T)
            sb = point_score(pts, Tb, target).view(B, M)
            best, arg = sb.min(dim=1)
            better = best < score
            idx = torch.arange(B, device=q.device) * M + arg
            q = torch.where(better[:, None], qb[idx], q)
            T = torch.where(better[:, None, None], Tb[idx], T)
            score = torch.minimum(best, score)
        return q, T, score

    def _perturb(self, q: Tensor, T: Tensor, M: int, f: float, optimise_q: bool,
                 optimise_T: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``M`` random perturbations of each hypothesis at step-size factor ``f``: ``(q [B M, J], T [B M, 4, 4],
        posed search points [B M, P, 3])``."""
        cfg, gen = self.config, self.generator
        B = q.shape[0]
        qb = q.repeat_interleave(M, 0)
        Tb = T.repeat_interleave(M, 0).clone()
        if optimise_q:
            dq = torch.randn(qb.shape, generator=gen).to(qb) * (0.1 * f) * (self.upper - self.lower)
            qb = torch.minimum(torch.maximum(qb + dq, self.lower), self.upper)
        pts = self.surface.posed(qb, cfg.search_points)
        if optimise_T:
            pivot = self.surface.pivot_of(pts, qb)
            t_c = (Tb[:, :3, :3] @ pivot[..., None])[..., 0] + Tb[:, :3, 3]
            dR = so3_exp(torch.randn(B * M, 3, generator=gen).to(qb) * (0.15 * f))
            R = dR @ Tb[:, :3, :3]
            d = torch.randn(B * M, 3, generator=gen).to(qb) * f
            t_c = t_c + torch.stack([0.02 * d[:, 0], 0.02 * d[:, 1], 0.06 * d[:, 2] * t_c[:, 2]], -1)
            Tb[:, :3, :3] = R
            Tb[:, :3, 3] = t_c - (R @ pivot[..., None])[..., 0]
        return qb, Tb, pts


__all__ = ["SearchTarget", "SilhouetteSearch", "fit_translation", "hull_points", "point_score", "search_target",
           "suppress_duplicates"]
