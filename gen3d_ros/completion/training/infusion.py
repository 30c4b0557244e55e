"""Infusion training of a GCA transition kernel, with a replay buffer of intermediate states.

Only the input ``s_0`` and the complete scene ``x`` are known, so intermediate states come from the infusion
chain ``q``: per candidate cell, the model's probability mixed with ground-truth occupancy,

    q_t(c) = alpha_t * 1[c in x] + (1 - alpha_t) * p_theta(c | s_t),   alpha_t = min(alpha_0 + t * delta, 1)

which drives the chain towards ``x``. The loss is KL(q_t || p_theta) of the per-cell Bernoullis (cGCA's
objective; its gradient pulls p towards the infused target). Sampling whole chains per step is costly, so a
**replay buffer** keeps chains in flight: each training step pops a batch of states, runs ONE forward pass,
samples their successors from q and pushes them back. A chain restarts from a new training sample once its
state covers ``completion_rate`` of ``x`` or after ``max_phase`` transitions.

The same step exists for hGCA's planned coarse kernel (:func:`planned_infusion_step`: plan the batch's inputs,
infusion step, + beta * BEV occupancy loss) and for cGCA's latent chains (:func:`cgca_infusion_step`: occupancy
and latent KL, see :mod:`gen3d_ros.completion.cgca`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.completion.cgca import CGCATransition, lookup_latents, merge_input, sample_latents
from gen3d_ros.completion.gca import GCATransition, crop_to_bounds, in_bounds, isin_coords, union_coords, with_batch
from gen3d_ros.completion.planned_gca import PlannedGCATransition


@dataclass
class InfusionSchedule:
    """alpha_t = min(start + speed * t, 1): 0.1 rising by 0.005 per transition in the GCA configs."""

    start: float = 0.1
    speed: float = 0.005

    def __call__(self, phase: int) -> float:
        return min(self.start + self.speed * phase, 1.0)


@dataclass
class Chain:
    """One chain in the replay buffer: cells are (N, 3) int32 voxel indices of one sample's grid."""

    sample_index: int
    state: Tensor
    input_cells: Tensor
    target: Tensor
    grid_shape: tuple[int, int, int]
    phase: int = 0


def bernoulli_kl(q: Tensor, p: Tensor, eps: float = 1e-6) -> Tensor:
    """KL(Bern(q) || Bern(p)) elementwise, nats."""
    q = q.clamp(eps, 1 - eps)
    p = p.clamp(eps, 1 - eps)
    return q * (q.log() - p.log()) + (1 - q) * ((1 - q).log() - (1 - p).log())


def batch_cells(cells: list[Tensor]) -> Tensor:
    """[(N_i, 3)] -> (sum N_i, 4) int32 with the batch index first."""
    return torch.cat([with_batch(c, i) for i, c in enumerate(cells)])


def coverage(target: Tensor, cells: Tensor) -> float:
    """|cells ∩ target| / |target| for (N, 3) voxel cells (1.0 for an empty target): a chain's progress."""
    if len(target) == 0:
        return 1.0
    return float(isin_coords(with_batch(target), with_batch(cells)).float().mean())


class ReplayBuffer:
    """Chains in flight. ``pop(k)`` takes k random chains out; ``push`` puts successors back."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity = capacity
        self.chains: list[Chain] = []
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.chains)

    def push(self, chain: Chain) -> None:
        if len(self.chains) >= self.capacity:
            self.chains.pop(self.rng.randrange(len(self.chains)))
        self.chains.append(chain)

    def pop(self, k: int) -> list[Chain]:
        k = min(k, len(self.chains))
        picked = sorted(self.rng.sample(range(len(self.chains)), k), reverse=True)
        return [self.chains.pop(i) for i in picked]


@dataclass
class InfusionStepResult:
    loss: Tensor
    """The step's loss, detached: a 0-dim tensor on the model's device (read it with ``float``, which waits for
    the device; the training loop reads a window of them at once)."""
    successors: list[Chain]
    finished: int
    """Chains that reached completion_rate or max_phase this step (they are not in ``successors``)."""
    completion: list[float]
    """|state ∩ x| / |x| of each successor before the restart decision."""


def infusion_step(model: GCATransition, chains: list[Chain], schedule: InfusionSchedule, *,
                  completion_rate: float = 0.95, max_phase: int = 30,
                  generator: torch.Generator | None = None) -> tuple[Tensor, InfusionStepResult]:
    """One forward pass over a batch of chains: the KL loss (a graph, for backward) and the successors."""
    device = next(model.parameters()).device
    state = batch_cells([c.state for c in chains]).to(device)
    inputs = batch_cells([c.input_cells for c in chains]).to(device)
    targets = batch_cells([c.target for c in chains]).to(device)
    logits = model(state, inputs).float()  # under autocast the network's output is bf16/fp16; the loss is float32
    cand, p = model.candidates(state, logits)
    y = isin_coords(cand, targets).float()
    alpha = torch.tensor([schedule(c.phase) for c in chains], device=device)[cand[:, 0].long()]
    q = alpha * y + (1 - alpha) * p
    kl = bernoulli_kl(q, p)
    # Mean per scene, then over scenes: big scenes do not drown small ones.
    per_item = torch.zeros(len(chains), device=device).index_add_(0, cand[:, 0].long(), kl)
    counts = torch.bincount(cand[:, 0].long(), minlength=len(chains)).clamp(min=1)
    loss = (per_item / counts).mean()

    with torch.no_grad():
        occupied = torch.bernoulli(q.detach(), generator=generator).bool()
        nxt_all = cand[occupied]
    successors, completion, finished = [], [], 0
    for i, chain in enumerate(chains):
        nxt = nxt_all[nxt_all[:, 0] == i]
        cells = union_coords(nxt, with_batch(chain.input_cells, i).to(device))
        cells = crop_to_bounds(cells, ((0, 0, 0), chain.grid_shape))[:, 1:].cpu()
        covered = coverage(chain.target, cells)
        completion.append(covered)
        if covered >= completion_rate or chain.phase + 1 >= max_phase:
            finished += 1
            continue
        successors.append(Chain(chain.sample_index, cells, chain.input_cells, chain.target, chain.grid_shape,
                                chain.phase + 1))
    return loss, InfusionStepResult(loss.detach(), successors, finished, completion)


# ---------------------------------------------------------------------------------------------- planned GCA


@dataclass
class PlannedStepResult(InfusionStepResult):
    gca_loss: Tensor | float = 0.0
    """The infusion KL (same as ``loss`` of :class:`InfusionStepResult` before the BEV term); 0-dim, detached."""
    bev_loss: Tensor | float = 0.0
    """beta * BEV BCE of this batch; 0-dim, detached."""
    total_loss: Tensor | float = 0.0


def planned_infusion_step(model: PlannedGCATransition, chains: list[Chain], schedule: InfusionSchedule, *,
                          voxel_size: float, grid_origin, points: list | None = None,
                          completion_rate: float = 0.95, max_phase: int = 30,
                          generator: torch.Generator | None = None) -> tuple[Tensor, PlannedStepResult]:
    """One infusion step of a planned kernel: plan the chains' inputs, run :func:`infusion_step`, add beta * BEV loss.

    Args:
        chains: the replay-buffer batch (all of one grid shape).
        voxel_size, grid_origin: the grid of the chains' cells ((3,) or (len(chains), 3) metres).
        points: per chain, the raw input scan (N_i, 3) metres in the grid frame; ``None`` plans from the voxel
            centres of ``chain.input_cells`` (then inference must plan from voxel centres too).
    Returns ``(loss, result)``: ``loss`` = GCA KL + beta * BEV BCE (a graph, for backward) and the step's result
    with ``successors`` etc. as :func:`infusion_step` plus ``gca_loss``/``bev_loss``/``total_loss``.
    """
    shapes = {tuple(int(v) for v in c.grid_shape) for c in chains}
    if len(shapes) != 1:
        raise ValueError(f"planned_infusion_step needs chains of one grid shape (one BEV size), got {sorted(shapes)}")
    shape = shapes.pop()
    extent = np.asarray(shape, dtype=np.float64) * float(voxel_size)
    if points is None:
        cells = torch.cat([torch.cat([torch.full((len(c.input_cells), 1), i, dtype=torch.int64),
                                      c.input_cells.long().cpu()], 1) for i, c in enumerate(chains)])
        model.plan_from_cells(cells, grid_origin, shape, voxel_size=voxel_size, batch_size=len(chains))
    else:
        if len(points) != len(chains):
            raise ValueError(f"points has {len(points)} scans for {len(chains)} chains")
        model.plan(list(points), grid_origin, extent, voxel_size=voxel_size)
    gca, step = infusion_step(model, chains, schedule, completion_rate=completion_rate, max_phase=max_phase,
                              generator=generator)
    bev = model.planner_loss([c.target for c in chains]).float()
    total = gca + bev
    result = PlannedStepResult(step.loss, step.successors, step.finished, step.completion,
                               gca_loss=step.loss, bev_loss=bev.detach(), total_loss=total.detach())
    model.clear_plan()  # drop the graph; the next batch has other inputs
    return total, result


# ---------------------------------------------------------------------------------------------- cGCA


@dataclass
class LatentChain(Chain):
    """A replay-buffer chain with latent codes: ``latents`` (N, z_dim) of ``state``, ``target_latents``
    (T, z_dim) of ``target`` (the autoencoder's codes of the complete surface), ``input_latents`` (S, z_dim)
    of ``input_cells`` (codes of the partial scan; None: the target codes at the input cells, 0 off target).
    ``coarse`` (C, 3) int32: coarse cells conditioning an hGCA fine stage (training: the ground truth's).
    Cells are (N, 3) int32 voxel indices, as in :class:`Chain`."""

    latents: Tensor | None = None
    target_latents: Tensor | None = None
    input_latents: Tensor | None = None
    coarse: Tensor | None = None

    def __post_init__(self) -> None:
        if self.latents is None or self.target_latents is None:
            raise ValueError("LatentChain needs latents and target_latents")
        if len(self.latents) != len(self.state) or len(self.target_latents) != len(self.target):
            raise ValueError("latents / target_latents must have one row per state / target cell")
        if self.input_latents is None:
            _, self.input_latents = lookup_latents(with_batch(self.input_cells), with_batch(self.target),
                                                   self.target_latents.float())
        if len(self.input_latents) != len(self.input_cells):
            raise ValueError("input_latents must have one row per input cell")


@dataclass
class CGCAStepResult:
    loss: Tensor
    """The step's losses, detached 0-dim tensors on the model's device (see :class:`InfusionStepResult`)."""
    occupancy_kl: Tensor
    latent_kl: Tensor
    successors: list[LatentChain]
    finished: int
    """Chains that reached completion_rate or max_phase this step (they are not in ``successors``)."""
    completion: list[float]


def cgca_infusion_step(model: CGCATransition, chains: list[LatentChain], schedule: InfusionSchedule, *,
                       sigma: float | None = None, latent_weight: float | None = None,
                       completion_rate: float = 0.95, max_phase: int = 30,
                       generator: torch.Generator | None = None) -> tuple[Tensor, CGCAStepResult]:
    """One forward pass over a batch of latent chains: the loss (a graph, for backward) and the successors.

    Loss per scene = mean over candidates of [KL_Bern(q_occ || p) + w q_occ |q_mu - mu|^2 / (2 sigma^2)]
    (|.|^2 summed over z_dim), then mean over scenes. Successors: occupancy ~ Bern(q_occ),
    z ~ N(q_mu, sigma^2); input cells kept with their input latents; cropped to the chain's grid.
    """
    cfg = model.config
    sigma = cfg.sigma if sigma is None else float(sigma)
    w = cfg.latent_weight if latent_weight is None else float(latent_weight)
    if sigma <= 0:
        raise ValueError("sigma must be > 0 (the latent KL divides by sigma^2)")
    device = next(model.parameters()).device
    state = batch_cells([c.state for c in chains]).to(device)
    lat = torch.cat([c.latents.float() for c in chains]).to(device)
    inputs = batch_cells([c.input_cells for c in chains]).to(device)
    targets = batch_cells([c.target for c in chains]).to(device)
    target_lat = torch.cat([c.target_latents.float() for c in chains]).to(device)
    coarse = None
    if model.coarse_scale:
        if any(c.coarse is None for c in chains):
            raise ValueError("an hGCA fine stage trains on chains with coarse cells (LatentChain.coarse)")
        coarse = batch_cells([c.coarse for c in chains]).to(device)

    logits, mu = model(state, lat, inputs, coarse)
    logits, mu = logits.float(), mu.float()  # under autocast the network's outputs are bf16/fp16; losses are float32
    cand, p, m = model.candidates(state, logits, mu, coarse)
    y, z_gt = lookup_latents(cand, targets, target_lat)
    b = cand[:, 0].long()
    alpha = torch.tensor([schedule(c.phase) for c in chains], device=device, dtype=p.dtype)[b]
    with torch.no_grad():
        q_occ = alpha * y.to(p.dtype) + (1 - alpha) * p
        q_mu = alpha[:, None] * z_gt + (1 - alpha[:, None]) * m
    occ_kl = bernoulli_kl(q_occ, p)
    lat_kl = q_occ * ((q_mu - m) ** 2).sum(1) / (2 * sigma ** 2)
    counts = torch.bincount(b, minlength=len(chains)).clamp(min=1).to(p.dtype)

    def per_scene_mean(v: Tensor) -> Tensor:
        return (torch.zeros(len(chains), device=device, dtype=v.dtype).index_add_(0, b, v) / counts).mean()

    occ_loss, lat_loss = per_scene_mean(occ_kl), per_scene_mean(lat_kl)
    loss = occ_loss + w * lat_loss

    with torch.no_grad():
        occupied = torch.bernoulli(q_occ, generator=generator).bool()
        nxt_cells = cand[occupied]
        nxt_lat = sample_latents(q_mu[occupied], sigma, generator)
    successors, completion, finished = [], [], 0
    for i, chain in enumerate(chains):
        sel = nxt_cells[:, 0] == i
        cells, z = merge_input(nxt_cells[sel], nxt_lat[sel], with_batch(chain.input_cells, i).to(device),
                               chain.input_latents.float().to(device))
        keep = in_bounds(cells, ((0, 0, 0), chain.grid_shape))
        cells, z = cells[keep][:, 1:].cpu(), z[keep].cpu()
        covered = coverage(chain.target, cells)
        completion.append(covered)
        if covered >= completion_rate or chain.phase + 1 >= max_phase:
            finished += 1
            continue
        successors.append(LatentChain(chain.sample_index, cells, chain.input_cells, chain.target, chain.grid_shape,
                                      chain.phase + 1, latents=z, target_latents=chain.target_latents,
                                      input_latents=chain.input_latents, coarse=chain.coarse))
    return loss, CGCAStepResult(loss.detach(), occ_loss.detach(), lat_loss.detach(), successors, finished,
                                completion)
