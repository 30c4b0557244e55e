"""hGCA's coarse stage: a GCA transition kernel conditioned on the BEV planner's global features.

:class:`PlannedGCATransition` is a :class:`~gen3d_ros.completion.gca.GCATransition` whose sparse UNet decoder
features ``h`` (widths[0] channels per state cell) are modulated, SPADE-style, by the BEV features ``f`` lifted
to each cell's pillar, just before the head:

    h' = h * (1 + gamma(f)) + beta(f),      logits = head(h')

``gamma`` and ``beta`` are linear layers initialised to zero, so an untrained planner changes nothing (the
kernel starts as the plain GCA). The planner sees only the input scan s0 and stays fixed through the chain:
:meth:`PlannedGCATransition.plan` computes it once and caches it; every ``forward`` of the chain reads the cache.

    model = PlannedGCATransition(GCAConfig(...), BEVPlannerConfig(voxel_size_m=0.2))
    model.plan([scan_points], grid_origin, grid_extent)        # once per input (per batch of inputs)
    chain = complete(model, s0_cells, bounds=...)              # gca.complete, unchanged
    # or, the same in one call:
    chain = complete_planned(model, [scan_points], grid_origin, grid_extent, s0_cells, bounds=...)

Training: :func:`gen3d_ros.completion.training.infusion.planned_infusion_step` = plan the batch's inputs + the
infusion step + beta * BEV occupancy loss against the complete scenes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from gen3d_ros.completion.gca import ChainResult, GCAConfig, GCATransition, complete, isin_coords
from gen3d_ros.completion.planner import (
    BEVFeatures,
    BEVPlanner,
    BEVPlannerConfig,
    PointsInput,
    bev_loss,
    bev_occupancy_target,
    cell_centres,
    lift,
)
from gen3d_ros.sparse import SparseTensor


@dataclass
class _Plan:
    key: tuple
    bev: BEVFeatures
    grid_origin: Tensor
    """(B, 3) float64, corner of voxel (0, 0, 0) of the grid the state cells index."""
    voxel_size: float
    refs: tuple = ()
    """The keyed input objects, held so that their ids in ``key`` cannot be reused while cached."""


def _flat(x) -> tuple:
    return sum((_flat(v) for v in x), (x,)) if isinstance(x, (list, tuple)) else (x,)


def _tensor_key(x) -> tuple:
    if isinstance(x, Tensor):
        return ("t", id(x), x.data_ptr(), tuple(x.shape), x._version, str(x.device))
    if isinstance(x, np.ndarray):
        return ("a", id(x), x.__array_interface__["data"][0], x.shape)
    if isinstance(x, (list, tuple)):
        return ("l",) + tuple(_tensor_key(v) for v in x)
    return ("v", repr(x))


class PlannedGCATransition(GCATransition):
    """GCA transition kernel + BEV planner (hGCA coarse stage). Input features per cell: [1, is_input].

    Args:
        config: the GCA kernel (as for :class:`GCATransition`).
        planner_config: the planner, the lift mode, the voxel size of the GCA grid and the BEV loss weight.
        backend: sparse backend name (None: run-time default).
    """

    def __init__(self, config: GCAConfig | None = None, planner_config: BEVPlannerConfig | None = None,
                 backend: str | None = None) -> None:
        super().__init__(config, backend)
        self.planner_config = planner_config or BEVPlannerConfig()
        self.planner = BEVPlanner(self.planner_config)
        width, dim = self.unet.widths[0], self.planner_config.out_dim
        self.bev_gamma = nn.Linear(dim, width)
        self.bev_beta = nn.Linear(dim, width)
        for layer in (self.bev_gamma, self.bev_beta):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self._plan: _Plan | None = None
        self.plans_computed = 0
        """How many times :meth:`plan` ran the planner (the rest were cache hits)."""

    # ---------------------------------------------------------------------------------------------- plan
    def _cache_key(self, points, origin, extent, voxel_size, lengths) -> tuple:
        params = tuple(p._version for p in self.planner.parameters())
        return (_tensor_key(points), _tensor_key(origin), _tensor_key(extent), float(voxel_size),
                _tensor_key(lengths), params, self.planner.training, torch.is_grad_enabled())

    def plan(self, input_points: PointsInput, origin, extent, *, voxel_size: float | None = None,
             lengths=None) -> BEVFeatures:
        """Runs the planner on the input scans (once per chain) and caches the result for :meth:`forward`.

        Args:
            input_points: B scans, a list of (N_i, 3) or padded (B, N, 3) (see :class:`BEVPlanner`), metres,
                grid frame. Batch index b of the state cells reads scan b.
            origin: (3,) or (B, 3) metres, corner of voxel (0, 0, 0) of the GCA grid (and of pillar (0, 0)).
            extent: (3,) metres, size of the grid box (``grid_shape * voxel_size``).
            voxel_size: edge of the GCA voxels; default ``planner_config.voxel_size_m``.
            lengths: valid rows of padded points.

        The cache is keyed by the identity (and torch version counter) of the input objects, origin, extent, the
        planner's parameter versions (an optimiser step invalidates it), train/eval mode and grad mode: calling
        ``plan`` again with the same objects is free; new objects recompute. Numpy inputs changed in place are
        not detected: pass new arrays.
        """
        voxel_size = float(self.planner_config.voxel_size_m if voxel_size is None else voxel_size)
        key = self._cache_key(input_points, origin, extent, voxel_size, lengths)
        if self._plan is not None and self._plan.key == key:
            return self._plan.bev
        bev = self.planner(input_points, origin, extent, lengths)
        grid_origin = torch.as_tensor(np.asarray(origin) if not isinstance(origin, Tensor) else origin.detach().cpu(),
                                      dtype=torch.float64)
        grid_origin = grid_origin.reshape(-1, 3).expand(bev.batch_size, 3).clone()
        self._plan = _Plan(key, bev, grid_origin, voxel_size, _flat((input_points, origin, extent, lengths)))
        self.plans_computed += 1
        return bev

    def plan_from_cells(self, input_cells: Tensor, origin, grid_shape: Sequence[int], *,
                        voxel_size: float | None = None, batch_size: int | None = None) -> BEVFeatures:
        """:meth:`plan` from voxels instead of raw points: the planner sees the centres of ``input_cells``
        (N, 4) (batch, x, y, z). For callers (e.g. the replay buffer) that keep only the voxelised scan."""
        voxel_size = float(self.planner_config.voxel_size_m if voxel_size is None else voxel_size)
        cells = input_cells.long().cpu()
        batch = batch_size if batch_size is not None else (int(cells[:, 0].max()) + 1 if len(cells) else 1)
        centres = cell_centres(cells, voxel_size, origin, batch).float()
        points = [centres[cells[:, 0] == b] for b in range(batch)]
        extent = np.asarray(grid_shape, dtype=np.float64) * voxel_size
        bev = self.planner(points, origin, extent)
        grid_origin = torch.as_tensor(np.asarray(origin) if not isinstance(origin, Tensor) else origin.detach().cpu(),
                                      dtype=torch.float64).reshape(-1, 3).expand(batch, 3).clone()
        self._plan = _Plan(("cells", id(input_cells)), bev, grid_origin, voxel_size)  # not reused by plan()
        self.plans_computed += 1
        return bev

    @property
    def current_plan(self) -> BEVFeatures | None:
        """The cached BEV features that :meth:`forward` uses (None before :meth:`plan`)."""
        return self._plan.bev if self._plan is not None else None

    def clear_plan(self) -> None:
        """Drops the cached plan (and the autograd graph it may hold)."""
        self._plan = None

    # ------------------------------------------------------------------------------------------- forward
    def bev_cell_features(self, state: Tensor, bev: BEVFeatures | None = None) -> Tensor:
        """(N, out_dim) BEV features lifted to the state cells (N, 4), from ``bev`` or the cached plan."""
        if self._plan is None:
            raise RuntimeError("PlannedGCATransition has no plan: call model.plan(input_points, origin, extent) "
                               "(or complete_planned(...)) before running the chain")
        bev = self._plan.bev if bev is None else bev
        return lift(bev, state, self._plan.voxel_size, self._plan.grid_origin, mode=self.planner_config.lift_mode)

    def forward(self, state: Tensor, input_cells: Tensor, bev: BEVFeatures | None = None) -> Tensor:
        """Occupancy logits (N, K) of the K neighbourhood offsets of every state cell.

        ``state``: (N, 4) int32 occupied cells; ``input_cells``: (M, 4) int32 cells of s0; ``bev``: BEV features
        to use instead of the cached plan (same grid; e.g. an ablation). Batch index b reads planned scan b.
        """
        is_input = isin_coords(state, input_cells, check=self.training).float()
        feats = torch.stack([torch.ones_like(is_input), is_input], 1)
        h = self.unet.forward_features(SparseTensor(feats, state.to(feats.device), check=self.training))
        f = self.bev_cell_features(state, bev).to(h.feats)
        modulated = h.feats * (1 + self.bev_gamma(f)) + self.bev_beta(f)
        return self.unet.head(h.replace_feats(modulated)).feats

    # ---------------------------------------------------------------------------------------------- loss
    def planner_loss(self, complete_cells, *, voxel_size: float | None = None) -> Tensor:
        """beta * BCE of the cached plan's BEV occupancy against the complete scenes.

        ``complete_cells``: (N, 4) int rows (batch, x, y, z) or a list of B (N_i, 3), indices of the same grid
        as the plan. The target counts voxels with centre z in ``planner_config.target_z_range_m`` (None: all).
        """
        if self._plan is None:
            raise RuntimeError("planner_loss needs a plan: call model.plan(...) on the same batch first")
        cfg = self.planner_config
        bev = self._plan.bev
        h, w = bev.shape
        target = bev_occupancy_target(complete_cells, self._plan.voxel_size if voxel_size is None else voxel_size,
                                      self._plan.grid_origin, h, w, cell_m=bev.cell_m, bev_origin_xy=bev.origin_xy,
                                      z_range_m=cfg.target_z_range_m, batch_size=bev.batch_size)
        return cfg.loss_weight * bev_loss(bev.occupancy_logits, target.to(bev.occupancy_logits.device),
                                          cfg.pos_weight)


# --------------------------------------------------------------------------------------------------
# sampler and training wrappers


def complete_planned(model: PlannedGCATransition, input_points: PointsInput, origin, extent, input_cells: Tensor, *,
                     voxel_size: float | None = None, **kwargs) -> ChainResult:
    """:func:`~gen3d_ros.completion.gca.complete` after planning (eval mode, no grad) from ``input_points``.

    ``kwargs`` go to ``complete`` (steps, mode_steps, bounds, generator, keep_states, max_cells).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.plan(input_points, origin, extent, voxel_size=voxel_size)
        return complete(model, input_cells, **kwargs)
    finally:
        model.train(was_training)
        model.clear_plan()


