"""Generative Cellular Automata (Zhang et al., ICLR 2021): a learned, local, sparse transition kernel.

State ``s_t`` = a set of occupied voxels. The transition network (a sparse UNet) gives every occupied cell
``c`` one occupancy logit per offset ``o`` of the neighbourhood ``N`` (an L1 ball, "hypercross"). A candidate
cell ``c'`` is proposed by every occupied cell within reach; its probability is the *mean* of the
probabilities its proposers give it:

    p(c' | s_t) = mean_{c in s_t, c' - c in N} sigmoid(logit(c, c' - c))

``s_{t+1}`` samples every candidate independently (Bernoulli); the input cells ``s_0`` are always kept, so
the scan is never erased. The last ``mode_steps`` transitions take the most likely state (p > 0.5) instead of
sampling, which prunes unlikely cells (cGCA's mode seeking).

Coordinates are integer voxel indices ``(batch, x, y, z)`` (int32), in the grid of the input (sensor) frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from gen3d_ros.sparse import Neighbourhood, SparseTensor, SparseUNet, unique_coords
from gen3d_ros.sparse.fused import fast_paths_apply

# Packed int64 keys for set membership: 6 bits batch + 3 x 19 bits space (±262k voxels per axis).
_AXIS_BITS = 19
_AXIS_OFFSET = 1 << (_AXIS_BITS - 1)


def pack_coords(coords: Tensor, check: bool = True) -> Tensor:
    """(N, 4) int (batch, x, y, z) -> (N,) int64 keys, order-preserving per axis; ±262143 voxels per axis.
    ``check=False`` skips the range check (a host synchronisation on a GPU) for coordinates known to fit."""
    c = coords.long()
    xyz = c[:, 1:] + _AXIS_OFFSET
    if check and (bool(((xyz < 0) | (xyz >= (1 << _AXIS_BITS))).any()) or bool((c[:, 0] >= 64).any())):
        raise ValueError("voxel coordinates exceed ±262143 per axis or batch index >= 64")
    return (((c[:, 0] << _AXIS_BITS | xyz[:, 0]) << _AXIS_BITS | xyz[:, 1]) << _AXIS_BITS) | xyz[:, 2]


def isin_coords(query: Tensor, reference: Tensor, check: bool = True) -> Tensor:
    """(M,) bool: which rows of ``query`` (M, 4) are rows of ``reference`` (K, 4) (``check``: see pack_coords)."""
    if len(reference) == 0 or len(query) == 0:
        return torch.zeros(len(query), dtype=torch.bool, device=query.device)
    return torch.isin(pack_coords(query, check), pack_coords(reference, check))


def union_coords(a: Tensor, b: Tensor) -> Tensor:
    """Unique rows of ``a`` ∪ ``b`` ((N, 4) int32)."""
    return unique_coords(torch.cat([a, b]).int())[0]


@dataclass
class GCAConfig:
    """Architecture and sampling of a GCA transition kernel."""

    neighbourhood: str = "hypercross2"
    """Cells a cell can make occupied: ``hypercrossR`` (L1 ball of radius R) or ``cubeK``."""
    widths: Sequence[int] = (16, 32, 64)
    blocks_per_level: int = 1
    kernel: str = "cube3"
    norm: str = "batch"
    activation: str = "relu"
    steps: int = 15
    """Transitions T at inference."""
    mode_steps: int = 2
    """The last ``mode_steps`` of the T transitions keep cells with p > 0.5 instead of sampling."""
    keep_input: bool = True
    """Always keep the input cells s_0 in every state."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


class GCATransition(nn.Module):
    """The transition kernel p(s_{t+1} | s_t). Input features per cell: [1, is_input]."""

    in_channels = 2

    def __init__(self, config: GCAConfig | None = None, backend: str | None = None) -> None:
        super().__init__()
        self.config = config or GCAConfig()
        self.neighbourhood = Neighbourhood.parse(self.config.neighbourhood)
        self.register_buffer("offsets", self.neighbourhood.offsets().int(), persistent=False)
        self.unet = SparseUNet(self.in_channels, self.neighbourhood.volume, widths=self.config.widths,
                               blocks_per_level=self.config.blocks_per_level, kernel=self.config.kernel,
                               norm=self.config.norm, activation=self.config.activation, backend=backend)

    def forward(self, state: Tensor, input_cells: Tensor) -> Tensor:
        """Occupancy logits (N, K) of the K neighbourhood offsets of every state cell.

        ``state``: (N, 4) int32 occupied cells; ``input_cells``: (M, 4) int32 cells of s_0 (conditioning).
        """
        is_input = isin_coords(state, input_cells, check=self.training).float()
        feats = torch.stack([torch.ones_like(is_input), is_input], 1)
        return self.unet(SparseTensor(feats, state.to(feats.device), check=self.training)).feats

    def candidates(self, state: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Candidate cells (M, 4) int32 and their probabilities (M,), the mean over proposing cells."""
        n, k = logits.shape
        cand = state[:, None, :].repeat(1, k, 1)
        cand[:, :, 1:] += self.offsets.to(state.device)[None]
        cand = cand.reshape(-1, 4)
        uniq, inverse = unique_coords(cand)
        probs = torch.sigmoid(logits).reshape(-1)
        total = probs.new_zeros(len(uniq)).index_add_(0, inverse, probs)
        count = torch.bincount(inverse, minlength=len(uniq)).to(probs.dtype)
        return uniq.int(), total / count


def in_bounds(cells: Tensor, bounds: tuple[Sequence[int], Sequence[int]] | None) -> Tensor:
    """(N,) bool: lo <= xyz < hi (``cells`` (N, 4) with batch first, ``bounds`` = (lo (3,), hi (3,)) voxels);
    None keeps all."""
    if bounds is None or len(cells) == 0:
        return torch.ones(len(cells), dtype=torch.bool, device=cells.device)
    lo = torch.as_tensor(bounds[0], device=cells.device)
    hi = torch.as_tensor(bounds[1], device=cells.device)
    return ((cells[:, 1:] >= lo) & (cells[:, 1:] < hi)).all(1)


def crop_to_bounds(cells: Tensor, bounds: tuple[Sequence[int], Sequence[int]] | None) -> Tensor:
    """Keep cells with lo <= xyz < hi (see :func:`in_bounds`); None keeps all."""
    return cells[in_bounds(cells, bounds)]


def with_batch(cells: Tensor, b: int = 0) -> Tensor:
    """(N, 3) voxel cells -> (N, 4) int32 on the CPU with batch index ``b`` first."""
    return torch.cat([torch.full((len(cells), 1), b, dtype=torch.int32), cells.int().cpu()], 1)


@dataclass
class ChainResult:
    """States of one completion chain: ``states[t]`` (N_t, 4) int32, t = 0..T (0 = input)."""

    states: list[Tensor] = field(default_factory=list)

    @property
    def final(self) -> Tensor:
        return self.states[-1]


class _BoxedChain:
    """The chain's bookkeeping on int64 keys of one fixed box (issue 12): the ``bounds`` widened by the
    neighbourhood's reach, every batch item of ``s0``. Candidates, probabilities, the draw, the union with ``s0``
    and the crop are then ~25 ops and two ``unique`` calls a step, with no host read besides ``unique``'s and no
    copy to the device, where the reference (:meth:`GCATransition.candidates`, :func:`union_coords`,
    :func:`crop_to_bounds`) has ~60 and seven reads. Same candidates in the same order (sorted (batch, x, y, z)),
    same probabilities, same draws from the generator: the same states (``tests/sparse/test_fused.py``)."""

    def __init__(self, model: GCATransition, s0: Tensor, bounds: tuple[Sequence[int], Sequence[int]],
                 batches: int) -> None:
        offsets = model.offsets.to(s0.device).long()
        r = int(offsets.abs().max()) if len(offsets) else 0
        self.lo = [0] + [int(v) - r for v in bounds[0]]
        self.ext = [batches] + [int(h) - int(lo) + 2 * r for lo, h in zip(bounds[0], bounds[1])]
        e = self.ext
        self.radix = [e[1] * e[2] * e[3], e[2] * e[3], e[3], 1]
        self.shift = sum(v * q for v, q in zip(self.lo, self.radix))
        self.delta = offsets[:, 0] * self.radix[1] + offsets[:, 1] * self.radix[2] + offsets[:, 2]  # (K,)
        self.sentinel = e[0] * self.radix[0]  # above every key: marks cells left out
        self.cell_lo = torch.tensor(list(bounds[0]), device=s0.device)
        self.cell_hi = torch.tensor(list(bounds[1]), device=s0.device)
        self.s0_keys = torch.cat([self.keys(s0), self.keys(s0).new_full((1,), self.sentinel)])

    @staticmethod
    def batches(s0: Tensor, bounds, keep_input: bool) -> int:
        """``s0``'s batch count when the boxed chain can run (bounds given, ``s0`` inside them, the input kept),
        else 0. One host read per chain."""
        if bounds is None or not keep_input or len(s0) == 0:
            return 0
        b = s0[:, 0].long()
        inside, lo_b, hi_b = torch.stack([in_bounds(s0, bounds).all().long(), b.min(), b.max()]).tolist()
        return hi_b + 1 if inside and lo_b >= 0 else 0

    def keys(self, cells: Tensor) -> Tensor:
        c = cells.long()
        out = c[:, 3] - self.shift
        for j, q in zip(range(3), self.radix[:3]):
            out = out.add_(c[:, j], alpha=q)
        return out

    def cells(self, keys: Tensor) -> Tensor:
        e, q = self.ext, self.radix
        return torch.stack([keys // q[0] + self.lo[0], (keys // q[1]) % e[1] + self.lo[1],
                            (keys // q[2]) % e[2] + self.lo[2], keys % e[3] + self.lo[3]], 1).int()

    def step(self, state: Tensor, logits: Tensor, mode: bool, generator: torch.Generator | None) -> Tensor:
        """The next state (M, 4) int32 (before the ``max_cells`` and empty-state rules)."""
        cand = (self.keys(state)[:, None] + self.delta[None, :]).reshape(-1)  # row n * K + k: logits' order
        uniq, inverse = torch.unique(cand, sorted=True, return_inverse=True)
        probs = torch.sigmoid(logits).reshape(-1)
        total = probs.new_zeros(len(uniq)).index_add_(0, inverse, probs)
        count = probs.new_zeros(len(uniq)).index_add_(0, inverse, torch.ones_like(probs))
        p = total / count
        occupied = p > 0.5 if mode else torch.bernoulli(p, generator=generator).bool()
        xyz = self.cells(uniq)[:, 1:]
        keep = occupied & ((xyz >= self.cell_lo) & (xyz < self.cell_hi)).all(1)
        kept = torch.where(keep, uniq, torch.full_like(uniq, self.sentinel))
        nxt = torch.unique(torch.cat([kept, self.s0_keys]), sorted=True)
        return self.cells(nxt[:-1])  # the sentinel, always present, sorts last


@torch.no_grad()
def complete(model: GCATransition, input_cells: Tensor, *, steps: int | None = None,
             mode_steps: int | None = None, bounds: tuple[Sequence[int], Sequence[int]] | None = None,
             generator: torch.Generator | None = None, keep_states: bool = False,
             max_cells: int = 2_000_000) -> ChainResult:
    """Run the automaton from ``input_cells`` (N, 4) int32 for ``steps`` transitions.

    ``bounds``: region (voxels) the state may occupy, e.g. the crop the model was trained on.
    ``max_cells``: a guard against a runaway chain on out-of-distribution input (stops growing).
    """
    cfg = model.config
    steps = cfg.steps if steps is None else steps
    mode_steps = cfg.mode_steps if mode_steps is None else mode_steps
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    s0 = input_cells.int().to(device)
    state = s0
    result = ChainResult([state.cpu()] if keep_states else [])
    batches = _BoxedChain.batches(s0, bounds, cfg.keep_input) if fast_paths_apply(s0.device) else 0
    boxed = _BoxedChain(model, s0, bounds, batches) if batches else None
    for t in range(steps):
        logits = model(state, s0)
        if boxed is not None:
            nxt = boxed.step(state, logits, t >= steps - mode_steps, generator)
        else:  # the reference
            cand, p = model.candidates(state, logits)
            if t >= steps - mode_steps:
                occupied = p > 0.5
            else:
                occupied = torch.bernoulli(p, generator=generator).bool()
            nxt = cand[occupied]
            if cfg.keep_input:
                nxt = union_coords(nxt, s0)
            nxt = crop_to_bounds(nxt, bounds)
        if len(nxt) > max_cells:
            break
        state = nxt if len(nxt) else s0
        if keep_states:
            result.states.append(state.cpu())
    if not keep_states:
        result.states.append(state.cpu())
    model.train(was_training)
    return result
