"""Infusion training of a GCA transition kernel, with a replay buffer of intermediate states.

Only the input ``s_0`` and the complete scene ``x`` are known, so intermediate states come from the infusion
chain ``q``: per candidate cell, the model's probability mixed with ground-truth occupancy,

    q_t(c) = alpha_t * 1[c in x] + (1 - alpha_t) * p_theta(c | s_t),   alpha_t = min(alpha_0 + t * delta, 1)

which drives the chain towards ``x``. The loss is KL(q_t || p_theta) of the per-cell Bernoullis (cGCA's
objective; its gradient pulls p towards the infused target). Sampling whole chains per step is costly, so a
**replay buffer** keeps chains in flight: each training step pops a batch of states, runs ONE forward pass,
samples their successors from q and pushes them back. A chain restarts from a new training sample once its
state covers ``completion_rate`` of ``x`` or after ``max_phase`` transitions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from gen3d_ros.completion.gca import GCATransition, crop_to_bounds, isin_coords, union_coords, with_batch


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
    loss: float
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
    logits = model(state, inputs)
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
    return loss, InfusionStepResult(float(loss.detach()), successors, finished, completion)
