"""Continuous GCA (cGCA, Zhang et al., ICLR 2022): the GCA automaton over cells that carry latent codes.

State ``s_t`` = a set of occupied cells, each with a latent code ``z`` (N, z_dim) of the local surface (the
latent space of :class:`gen3d_ros.completion.latent.CGCAAutoencoder`); unoccupied cells have ``z = 0`` and are
simply absent. Per cell the network sees ``[z, 1, is_input]`` (the constant 1 marks occupancy, so a cell whose
code happens to be 0 is still seen).

**Head: per-offset heads** (not a ``GenerativeConv3d`` onto the dilated set). The sparse UNet's 1x1x1 head gives,
per occupied cell ``c`` and per neighbourhood offset ``o`` (K of them), an occupancy logit and a latent mean:
``K * (1 + z_dim)`` channels. A candidate ``c'`` proposed by several cells gets the *mean* over its proposers,
for the probability (as in :mod:`gen3d_ros.completion.gca`) and for the latent mean:

    p(c' | s_t)  = mean_{c in s_t, c' - c in N} sigmoid(logit(c, c' - c))
    mu(c' | s_t) = mean_{c in s_t, c' - c in N} mu(c, c' - c)

``s_{t+1}``: occupancy ~ Bernoulli(p), ``z ~ N(mu, sigma^2 I)`` per occupied candidate; the input cells are
always kept, with their input latents. The last ``mode_steps`` transitions take the mode (p > 0.5, z = mu).

Infusion training (:func:`gen3d_ros.completion.training.infusion.cgca_infusion_step`) mixes the model with the ground truth ``x`` = (cells, z_gt):

    q_occ = alpha * 1[c' in x] + (1 - alpha) * p,    q_mu = alpha * z_gt(c') + (1 - alpha) * mu   (z_gt = 0 off x)

    loss = mean_c' [ KL(Bern(q_occ) || Bern(p)) + w * q_occ * KL(N(q_mu, s^2) || N(mu, s^2)) ],
    KL(N(q_mu, s^2) || N(mu, s^2)) = |q_mu - mu|^2 / (2 s^2)

``q_occ`` and ``q_mu`` are targets (detached): the gradient pulls ``p`` towards ``q_occ`` and ``mu`` towards
``q_mu``. Successors are sampled from ``q``. Chains carry (cells, latents) in :class:`LatentChain`.

**hGCA fine stage** (``CGCAConfig.coarse_scale = r > 0``): the kernel is conditioned on a coarse completion
given as coarse cells (r fine cells per coarse edge, grids sharing the origin). Every fine cell sees one more
feature, ``1[parent(c) in coarse]`` with ``parent(c) = floor(c / r)``, and candidates whose parent is not in the
coarse set are dropped (probability 0): the fine automaton only refines geometry inside the coarse completion.
Training conditions on the ground-truth coarse cells (hGCA trains the stages separately); inference on the
coarse stage's output. The fine chain starts from the sweep's cells *and* the upsampled coarse cells
(:func:`upsample_cells`, codes 0), so it refines (prunes cells, predicts codes) everywhere in the coarse
completion at once instead of growing into it from the sweep's rings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from gen3d_ros.completion.gca import GCAConfig, in_bounds, isin_coords, pack_coords, with_batch
from gen3d_ros.sparse import Neighbourhood, SparseTensor, SparseUNet, unique_coords


@dataclass
class CGCAConfig(GCAConfig):
    """A GCA config plus the latent code: ``z_dim`` (that of the autoencoder) and the sampling std ``sigma``."""

    z_dim: int = 32
    sigma: float = 0.1
    """Std of z ~ N(mu, sigma^2) when sampling, and of both Gaussians in the latent KL."""
    latent_weight: float = 1.0
    """w: weight of the latent (Gaussian) KL term against the occupancy (Bernoulli) KL."""
    coarse_scale: int = 0
    """hGCA fine stage: fine cells per coarse cell edge (e.g. 2 for 0.4 m -> 0.2 m); 0: no coarse condition."""


class CGCATransition(nn.Module):
    """The transition kernel p(s_{t+1} | s_t) over (cells, latents): per-offset occupancy logits and latent means."""

    def __init__(self, config: CGCAConfig | None = None, backend: str | None = None) -> None:
        super().__init__()
        self.config = config or CGCAConfig()
        self.z_dim = int(self.config.z_dim)
        self.coarse_scale = int(self.config.coarse_scale)
        if self.coarse_scale < 0:
            raise ValueError(f"coarse_scale must be >= 0, got {self.coarse_scale}")
        self.in_channels = self.z_dim + 2 + (1 if self.coarse_scale else 0)
        self.neighbourhood = Neighbourhood.parse(self.config.neighbourhood)
        self.register_buffer("offsets", self.neighbourhood.offsets().int(), persistent=False)
        k = self.neighbourhood.volume
        self.unet = SparseUNet(self.in_channels, k * (1 + self.z_dim), widths=self.config.widths,
                               blocks_per_level=self.config.blocks_per_level, kernel=self.config.kernel,
                               norm=self.config.norm, activation=self.config.activation, backend=backend)

    def parents(self, cells: Tensor) -> Tensor:
        """(N, 4) fine cells -> (N, 4) their coarse cells (batch column kept)."""
        out = cells.clone()
        out[:, 1:] = torch.div(cells[:, 1:], self.coarse_scale, rounding_mode="floor")
        return out

    def in_coarse(self, cells: Tensor, coarse_cells: Tensor | None) -> Tensor:
        """(N,) bool: the coarse parent of each fine cell is in ``coarse_cells`` (M, 4)."""
        if coarse_cells is None:
            raise ValueError("this kernel is an hGCA fine stage (coarse_scale > 0): pass coarse_cells")
        return isin_coords(self.parents(cells), coarse_cells.to(cells.device), check=self.training)

    def forward(self, state: Tensor, latents: Tensor, input_cells: Tensor,
                coarse_cells: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits (N, K) and latent means (N, K, z_dim) of the K offsets of every state cell.

        ``state``: (N, 4) int32 occupied cells; ``latents``: (N, z_dim) their codes; ``input_cells``: (M, 4)
        int32 cells of s_0 (conditioning); ``coarse_cells``: (C, 4) int32 coarse completion (fine stage only).
        """
        if latents.shape != (len(state), self.z_dim):
            raise ValueError(f"latents must be ({len(state)}, {self.z_dim}), got {tuple(latents.shape)}")
        is_input = isin_coords(state, input_cells, check=self.training).to(latents.dtype)
        parts = [latents, torch.ones_like(is_input)[:, None], is_input[:, None]]
        if self.coarse_scale:
            parts.append(self.in_coarse(state, coarse_cells).to(latents.dtype)[:, None])
        feats = torch.cat(parts, 1)
        out = self.unet(SparseTensor(feats, state.to(feats.device), check=self.training)).feats
        out = out.reshape(len(state), self.neighbourhood.volume, 1 + self.z_dim)
        return out[..., 0], out[..., 1:]

    def candidates(self, state: Tensor, logits: Tensor, mu: Tensor,
                   coarse_cells: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Candidate cells (M, 4) int32, probabilities (M,) and latent means (M, z_dim): means over proposers.
        A fine stage keeps only candidates inside ``coarse_cells``."""
        n, k = logits.shape
        cand = state[:, None, :].repeat(1, k, 1)
        cand[:, :, 1:] += self.offsets.to(state.device)[None]
        uniq, inverse = unique_coords(cand.reshape(-1, 4))
        probs = torch.sigmoid(logits).reshape(-1)
        count = torch.bincount(inverse, minlength=len(uniq)).to(probs.dtype)
        p = probs.new_zeros(len(uniq)).index_add_(0, inverse, probs) / count
        m = mu.new_zeros(len(uniq), mu.shape[-1]).index_add_(0, inverse, mu.reshape(-1, mu.shape[-1]))
        uniq, m = uniq.int(), m / count[:, None]
        if self.coarse_scale:
            keep = self.in_coarse(uniq, coarse_cells)
            return uniq[keep], p[keep], m[keep]
        return uniq, p, m


# ---------------------------------------------------------------------------------------------- helpers


def sort_cells(cells: Tensor, latents: Tensor) -> tuple[Tensor, Tensor]:
    """Sort (unique) cells by (batch, x, y, z), latents along."""
    if len(cells) == 0:
        return cells.int(), latents
    order = torch.argsort(pack_coords(cells))
    return cells[order].int(), latents[order]


def merge_input(cells: Tensor, latents: Tensor, input_cells: Tensor, input_latents: Tensor) -> tuple[Tensor, Tensor]:
    """``cells`` ∪ ``input_cells``, sorted; input cells carry ``input_latents`` (they override ``latents``)."""
    keep = ~isin_coords(cells, input_cells)
    return sort_cells(torch.cat([cells[keep].int(), input_cells.int()]),
                      torch.cat([latents[keep], input_latents.to(latents)]))


def upsample_cells(coarse_cells: Tensor, scale: int) -> Tensor:
    """(C, 4) coarse cells -> (C * scale^3, 4) int32 fine cells covering them (batch column kept)."""
    r = torch.arange(scale, device=coarse_cells.device)
    sub = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3).int()
    fine = coarse_cells[:, None, :].int().repeat(1, len(sub), 1)
    fine[:, :, 1:] = fine[:, :, 1:] * scale + sub[None]
    return fine.reshape(-1, 4)


def coarse_start(input_cells: Tensor, input_latents: Tensor, coarse_cells: Tensor,
                 scale: int) -> tuple[Tensor, Tensor]:
    """The fine stage's s_0: upsampled coarse cells (codes 0) merged with the input cells (their codes)."""
    up = upsample_cells(coarse_cells.int(), scale).to(input_cells.device)
    return merge_input(up, input_latents.new_zeros(len(up), input_latents.shape[-1]), input_cells, input_latents)


def lookup_latents(query: Tensor, reference: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """For rows of ``query`` (M, 4): (found (M,) bool, values (M, D) of the matching ``reference`` row, 0 if none)."""
    out = values.new_zeros(len(query), values.shape[-1])
    if len(reference) == 0 or len(query) == 0:
        return torch.zeros(len(query), dtype=torch.bool, device=query.device), out
    ref_keys = pack_coords(reference)
    order = torch.argsort(ref_keys)
    sorted_keys = ref_keys[order]
    q_keys = pack_coords(query)
    pos = torch.searchsorted(sorted_keys, q_keys).clamp(max=len(sorted_keys) - 1)
    found = sorted_keys[pos] == q_keys
    out[found] = values[order[pos[found]]]
    return found, out


def sample_latents(mu: Tensor, sigma: float, generator: torch.Generator | None) -> Tensor:
    """``mu + sigma * N(0, I)`` (``mu`` itself for sigma <= 0): the latent draw of a transition."""
    if sigma <= 0 or mu.numel() == 0:
        return mu
    # draw on the generator's device (a CUDA generator cannot sample on the CPU), then move
    device = generator.device if generator is not None else mu.device
    noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=device).to(mu.device)
    return mu + sigma * noise


# ---------------------------------------------------------------------------------------------- inference


@dataclass
class CGCAResult:
    """States of one cGCA chain: ``states[t]`` = (cells (N_t, 4) int32, latents (N_t, z_dim)); 0 = input."""

    states: list[tuple[Tensor, Tensor]] = field(default_factory=list)

    @property
    def cells(self) -> Tensor:
        return self.states[-1][0]

    @property
    def latents(self) -> Tensor:
        return self.states[-1][1]


@torch.no_grad()
def cgca_complete(model: CGCATransition, input_cells: Tensor, input_latents: Tensor, *,
                  steps: int | None = None, mode_steps: int | None = None, sigma: float | None = None,
                  bounds: tuple[Sequence[int], Sequence[int]] | None = None,
                  generator: torch.Generator | None = None, keep_states: bool = False,
                  max_cells: int = 2_000_000, coarse_cells: Tensor | None = None) -> CGCAResult:
    """Run the automaton from ``input_cells`` (N, 4) int32 with ``input_latents`` (N, z_dim).

    Occupancy ~ Bernoulli(p) and z ~ N(mu, sigma^2) for ``steps - mode_steps`` transitions, then the mode
    (p > 0.5, z = mu). Input cells are always kept with their input latents. ``bounds``: (lo, hi) voxels.
    ``coarse_cells`` (C, 4) int32: the coarse completion that conditions an hGCA fine stage (which then starts
    from the input cells and the upsampled coarse cells, :func:`coarse_start`).
    The final (cells, latents) are ``result.cells`` / ``result.latents`` (on the CPU); decode them with
    ``CGCAAutoencoder.decode(SparseTensor(latents, cells), ...)``.
    """
    cfg = model.config
    steps = cfg.steps if steps is None else steps
    mode_steps = cfg.mode_steps if mode_steps is None else mode_steps
    sigma = cfg.sigma if sigma is None else float(sigma)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    s0, z0 = sort_cells(input_cells.int().to(device), input_latents.float().to(device))
    coarse = None if coarse_cells is None else coarse_cells.int().to(device)
    state, z = s0, z0
    if model.coarse_scale and coarse is not None:
        state, z = coarse_start(s0, z0, coarse, model.coarse_scale)
    result = CGCAResult([(state.cpu(), z.cpu())] if keep_states else [])
    for t in range(steps):
        logits, mu = model(state, z, s0, coarse)
        cand, p, m = model.candidates(state, logits, mu, coarse)
        if t >= steps - mode_steps:
            occupied, zc = p > 0.5, m
        else:
            occupied = torch.bernoulli(p, generator=generator).bool()
            zc = sample_latents(m, sigma, generator)
        cells, lat = cand[occupied], zc[occupied]
        if cfg.keep_input:
            cells, lat = merge_input(cells, lat, s0, z0)
        keep = in_bounds(cells, bounds)
        cells, lat = cells[keep], lat[keep]
        if len(cells) > max_cells:
            break
        state, z = (cells, lat) if len(cells) else (s0, z0)
        if keep_states:
            result.states.append((state.cpu(), z.cpu()))
    if not keep_states:
        result.states.append((state.cpu(), z.cpu()))
    model.train(was_training)
    return result




