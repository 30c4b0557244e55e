"""hGCA's planner: global bird's-eye-view (BEV) context for the coarse GCA, computed once from the input scan.

hGCA (CVPR 2024) extrapolates outdoor scenes from LiDAR. A GCA transition kernel is local; the *planner* gives
it a global view: the input points s0 -> a per-pillar PointNet -> a dense 2D UNet -> BEV features, looked up
by every voxel of the sparse 3D UNet at its (x, y) pillar. An auxiliary loss asks the planner for dense BEV
occupancy (a pillar is occupied if the complete scene has a voxel in its column), so its features carry
"where is there geometry" beyond what the sensor saw.

Frames and grids. Everything is in the *grid frame* (the frame the voxel grid is defined in, e.g. the sample
frame of :mod:`gen3d_ros.sim.dataset`). The BEV grid has square pillars of ``cell_m`` metres; pillar ``(i, j)``
covers ``x in [ox + i * cell, ox + (i + 1) * cell)`` and ``y in [oy + j * cell, oy + (j + 1) * cell)`` with
``(ox, oy) = origin_xy``. Dense BEV tensors are ``(B, C, H, W)`` with **H along x and W along y**, so
``bev[b, :, i, j]`` is pillar ``(i, j)``. A voxel ``(b, x, y, z)`` of a grid with corner ``grid_origin`` and edge
``voxel_size`` belongs to the pillar containing its centre ``grid_origin + (x + 0.5, y + 0.5) * voxel_size``.

    planner = BEVPlanner(BEVPlannerConfig(bev_cell_m=2.0))
    bev = planner([points_0, points_1], origin, extent)     # BEVFeatures, features (2, 16, H, W)
    f = lift(bev, cells, voxel_size=0.2, grid_origin=origin)  # (N, 16) per voxel
    loss = bev_loss(bev.occupancy_logits,
                    bev_occupancy_target(complete_cells, 0.2, origin, *bev.shape, cell_m=bev.cell_m))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

PointsInput = Union[Tensor, np.ndarray, Sequence[Union[Tensor, np.ndarray]]]
CellsInput = Union[Tensor, np.ndarray, Sequence[Union[Tensor, np.ndarray]]]


@dataclass
class BEVPlannerConfig:
    """Architecture of the BEV planner and its auxiliary loss. Lengths in metres."""

    bev_cell_m: float = 2.0
    """Pillar edge (hGCA: 2 m cells over a 20 cm coarse voxel grid)."""
    feat_dim: int = 32
    """Channels of the per-pillar PointNet (max-pooled), before the 2D UNet."""
    pointnet_hidden: int = 32
    """Hidden width of the shared point MLP."""
    unet_widths: Sequence[int] = (32, 64, 128)
    """Channels per level of the 2D UNet, finest first; level i works at 1 / 2**i of the BEV resolution."""
    out_dim: int = 16
    """Channels of the BEV features handed to the 3D network."""
    norm: str = "group"
    """Normalisation of the 2D UNet: ``"group"`` (batch-size independent), ``"batch"`` or ``"none"``."""
    lift_mode: str = "nearest"
    """How voxels read the BEV features: ``"nearest"`` (their pillar) or ``"bilinear"`` (between pillar centres)."""
    voxel_size_m: float = 0.2
    """Edge of the voxels of the GCA grid that :class:`PlannedGCATransition` lifts the features into."""
    loss_weight: float = 1.0
    """beta: total loss = GCA loss + beta * BEV loss."""
    pos_weight: float | None = None
    """BCE weight of occupied pillars (``None``: 1)."""
    target_z_range_m: tuple[float, float] | None = None
    """Only voxels whose centre z lies in ``[lo, hi)`` (grid frame) make a pillar occupied; ``None`` = the
    whole column (hGCA). On street scenes with ground every pillar is occupied at 2 m, so a band above the
    ground (e.g. ``(-1.0, 10.0)`` for a sensor 1.73 m above the road) makes the target informative."""

    def __post_init__(self) -> None:
        self.unet_widths = tuple(int(w) for w in self.unet_widths)
        if not self.bev_cell_m > 0:
            raise ValueError(f"bev_cell_m must be positive metres, got {self.bev_cell_m}")
        if not self.unet_widths or min(self.unet_widths) < 1:
            raise ValueError(f"unet_widths must name at least one positive width, got {self.unet_widths}")
        if min(self.feat_dim, self.pointnet_hidden, self.out_dim) < 1:
            raise ValueError("feat_dim, pointnet_hidden and out_dim must be >= 1, got "
                             f"{self.feat_dim}, {self.pointnet_hidden}, {self.out_dim}")
        if self.norm not in ("group", "batch", "none"):
            raise ValueError(f"norm must be 'group', 'batch' or 'none', got {self.norm!r}")
        if self.lift_mode not in ("nearest", "bilinear"):
            raise ValueError(f"lift_mode must be 'nearest' or 'bilinear', got {self.lift_mode!r}")
        if not self.voxel_size_m > 0:
            raise ValueError(f"voxel_size_m must be positive metres, got {self.voxel_size_m}")
        if self.target_z_range_m is not None:
            lo, hi = (float(v) for v in self.target_z_range_m)
            if not lo < hi:
                raise ValueError(f"target_z_range_m must be (lo, hi) with lo < hi, got {self.target_z_range_m}")
            self.target_z_range_m = (lo, hi)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unet_widths"] = list(self.unet_widths)
        if self.target_z_range_m is not None:
            d["target_z_range_m"] = list(self.target_z_range_m)
        return d


@dataclass
class BEVFeatures:
    """The planner's output for a batch of B scans.

    Attributes:
        features: (B, out_dim, H, W) float, H along x, W along y.
        occupancy_logits: (B, 1, H, W) float, logit that the complete scene has geometry in the pillar.
        cell_m: pillar edge, metres.
        origin_xy: (B, 2) float, corner of pillar (0, 0) in the grid frame, metres.
    """

    features: Tensor
    occupancy_logits: Tensor
    cell_m: float
    origin_xy: Tensor

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) pillars."""
        return int(self.features.shape[-2]), int(self.features.shape[-1])

    @property
    def batch_size(self) -> int:
        return int(self.features.shape[0])


# --------------------------------------------------------------------------------------------------
# grids and inputs


def bev_shape(extent: Sequence[float] | Tensor | np.ndarray, cell_m: float) -> tuple[int, int]:
    """(H, W) pillars covering ``extent`` ((>= 2,) metres, x and y used): ceil(extent / cell_m) per axis."""
    ext = [float(v) for v in torch.as_tensor(extent, dtype=torch.float64).reshape(-1)[:2]]
    if len(ext) != 2 or min(ext) <= 0:
        raise ValueError(f"extent must give two positive lengths (x, y) in metres, got {extent}")
    return tuple(max(1, math.ceil(e / cell_m - 1e-6)) for e in ext)  # type: ignore[return-value]


def _per_batch(value: Tensor | np.ndarray | Sequence[float], batch: int, dims: int, name: str) -> Tensor:
    """(dims,) or (B, dims) -> (B, dims) float64."""
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value.detach().cpu(),
                        dtype=torch.float64)
    if t.shape == (dims,):
        return t[None].expand(batch, dims)
    if t.ndim == 2 and t.shape[1] >= dims and t.shape[0] == batch:
        return t[:, :dims]
    if t.ndim == 1 and t.shape[0] > dims:
        return t[None, :dims].expand(batch, dims)
    raise ValueError(f"{name} must have shape ({dims},) or ({batch}, {dims}), got {tuple(t.shape)}")


def _point_list(points: PointsInput, lengths: Sequence[int] | Tensor | None) -> list[Tensor]:
    """List of (N_i, 3) float tensors, non-finite rows dropped (that is how padding may be marked)."""
    if isinstance(points, (Tensor, np.ndarray)):
        p = torch.as_tensor(points)
        if p.ndim == 2:
            p = p[None]
        if p.ndim != 3 or p.shape[-1] != 3:
            raise ValueError(f"points must be (B, N, 3) or a list of (N_i, 3), got shape {tuple(p.shape)}")
        items = [p[b, : int(lengths[b])] if lengths is not None else p[b] for b in range(p.shape[0])]
    else:
        if lengths is not None:
            raise ValueError("lengths only applies to padded (B, N, 3) points, not to a list")
        items = [torch.as_tensor(np.asarray(q) if not isinstance(q, Tensor) else q) for q in points]
    out = []
    for i, q in enumerate(items):
        if q.ndim != 2 or q.shape[-1] != 3:
            raise ValueError(f"points[{i}] must have shape (N, 3), got {tuple(q.shape)}")
        q = q.float()
        out.append(q[torch.isfinite(q).all(1)])
    if not out:
        raise ValueError("points is empty: need at least one scan (an empty (0, 3) scan is fine)")
    return out


def _cells_batched(cells: CellsInput) -> Tensor:
    """(N, 4) int64 rows (batch, x, y, z) from an (N, 4) array or a list of (N_i, 3) arrays."""
    if isinstance(cells, (Tensor, np.ndarray)):
        c = torch.as_tensor(np.asarray(cells) if not isinstance(cells, Tensor) else cells)
        if c.ndim != 2 or c.shape[1] != 4:
            raise ValueError(f"cells must be (N, 4) rows (batch, x, y, z) or a list of (N_i, 3), got {tuple(c.shape)}")
        return c.long()
    rows = []
    for b, c in enumerate(cells):
        c = torch.as_tensor(np.asarray(c) if not isinstance(c, Tensor) else c).long().reshape(-1, 3)
        rows.append(torch.cat([torch.full((len(c), 1), b, dtype=torch.long, device=c.device), c], 1))
    return torch.cat(rows) if rows else torch.zeros((0, 4), dtype=torch.long)


def cell_centres(cells: Tensor, voxel_size: float, grid_origin: Tensor | np.ndarray | Sequence[float],
                 batch_size: int | None = None) -> Tensor:
    """(N, 3) float64 centres (metres, grid frame) of voxels ``cells`` (N, 4) (batch, x, y, z).

    ``grid_origin``: (3,) or (B, 3), the corner of voxel (0, 0, 0).
    """
    cells = cells.long()
    b = cells[:, 0]
    batch = batch_size if batch_size is not None else (int(b.max()) + 1 if len(b) else 1)
    origin = _per_batch(grid_origin, batch, 3, "grid_origin").to(cells.device)
    return origin[b] + (cells[:, 1:].double() + 0.5) * float(voxel_size)


def _pillar_coords(cells: Tensor, voxel_size: float, grid_origin, origin_xy: Tensor, cell_m: float) -> Tensor:
    """(N, 2) float64 continuous pillar coordinates of voxel centres: pillar (i, j) spans [i, i+1) x [j, j+1)."""
    batch = origin_xy.shape[0]
    centres = cell_centres(cells, voxel_size, grid_origin, batch)
    return (centres[:, :2] - origin_xy.double().to(cells.device)[cells[:, 0].long()]) / float(cell_m)


# --------------------------------------------------------------------------------------------------
# network


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class _ConvBlock2d(nn.Sequential):
    """(conv3x3 -> norm -> ReLU) x 2."""

    def __init__(self, cin: int, cout: int, norm: str) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"), _norm2d(norm, cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"), _norm2d(norm, cout), nn.ReLU(inplace=True),
        )


class BEVUNet2d(nn.Module):
    """A small dense 2D UNet: max-pool down, transposed-conv up, skip concatenation.

    Any (H, W) works: the input is zero-padded (right/bottom) to a multiple of ``2**(levels-1)`` and the output
    cropped back. Output: (B, widths[0], H, W).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], norm: str = "group") -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.encoders = nn.ModuleList(
            [_ConvBlock2d(in_channels, self.widths[0], norm)]
            + [_ConvBlock2d(self.widths[i - 1], self.widths[i], norm) for i in range(1, len(self.widths))]
        )
        self.ups = nn.ModuleList(nn.ConvTranspose2d(self.widths[i + 1], self.widths[i], 2, stride=2)
                                 for i in range(len(self.widths) - 1))
        self.decoders = nn.ModuleList(_ConvBlock2d(2 * self.widths[i], self.widths[i], norm)
                                      for i in range(len(self.widths) - 1))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = 1 << (len(self.widths) - 1)
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m))
        skips = []
        for i, enc in enumerate(self.encoders):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = enc(x)
            skips.append(x)
        for i in reversed(range(len(self.widths) - 1)):
            x = self.decoders[i](torch.cat([self.ups[i](x), skips[i]], 1))
        return x[..., :h, :w]


class BEVPlanner(nn.Module):
    """Input scan -> per-pillar PointNet -> 2D UNet -> BEV features and BEV occupancy logits.

    PointNet input per point: ``[2 (x - cx) / cell, 2 (y - cy) / cell, 2 (z - oz) / ez - 1]`` with ``(cx, cy)``
    the pillar centre, ``oz``/``ez`` the grid's z origin/extent (so every entry lies in [-1, 1]); a shared MLP
    (3 -> pointnet_hidden -> feat_dim, ReLU) and a max over the points of each pillar (``scatter_reduce``).
    Two more channels per pillar: 1 if it has points and ``log(1 + count)``. Empty pillars are all zero.
    """

    def __init__(self, config: BEVPlannerConfig | None = None) -> None:
        super().__init__()
        self.config = config or BEVPlannerConfig()
        c = self.config
        self.point_mlp = nn.Sequential(
            nn.Linear(3, c.pointnet_hidden), nn.ReLU(inplace=True),
            nn.Linear(c.pointnet_hidden, c.feat_dim), nn.ReLU(inplace=True),
        )
        self.unet = BEVUNet2d(c.feat_dim + 2, c.unet_widths, c.norm)
        self.feature_head = nn.Conv2d(c.unet_widths[0], c.out_dim, 1)
        self.occupancy_head = nn.Conv2d(c.unet_widths[0], 1, 1)

    def pillar_grid(self, points: PointsInput, origin, extent, lengths=None) -> Tensor:
        """The dense PointNet grid (B, feat_dim + 2, H, W) before the UNet (see the class docstring)."""
        cell = float(self.config.bev_cell_m)
        pts = _point_list(points, lengths)
        batch = len(pts)
        device = next(self.parameters()).device
        org = _per_batch(origin, batch, 3, "origin").to(device)
        ext = torch.as_tensor(np.asarray(extent) if not isinstance(extent, Tensor) else extent.detach().cpu(),
                              dtype=torch.float64).reshape(-1)
        if ext.shape != (3,) or bool((ext <= 0).any()):
            raise ValueError(f"extent must be 3 positive lengths (metres), got {extent}")
        ext = ext.to(device)
        h, w = bev_shape(ext, cell)
        feats_in, flat = [], []
        for b, p in enumerate(pts):
            p = p.to(device).double()
            rel = p - org[b]
            inside = ((rel >= 0) & (rel < ext)).all(1)
            rel = rel[inside]
            ij = torch.floor(rel[:, :2] / cell).long()
            ok = (ij[:, 0] < h) & (ij[:, 1] < w)  # ceil() may leave a partial last pillar; guard rounding
            rel, ij = rel[ok], ij[ok]
            centre = (ij.double() + 0.5) * cell
            feats_in.append(torch.cat([2.0 * (rel[:, :2] - centre) / cell, 2.0 * rel[:, 2:] / ext[2] - 1.0], 1))
            flat.append((b * h + ij[:, 0]) * w + ij[:, 1])
        x = torch.cat(feats_in).float()
        idx = torch.cat(flat)
        f = self.point_mlp(x)
        n_cells = batch * h * w
        pooled = f.new_zeros(n_cells, f.shape[1]).scatter_reduce(
            0, idx[:, None].expand(-1, f.shape[1]), f, reduce="amax", include_self=False)
        count = torch.bincount(idx, minlength=n_cells).to(f.dtype)
        grid = torch.cat([pooled, (count > 0).to(f.dtype)[:, None], torch.log1p(count)[:, None]], 1)
        return grid.view(batch, h, w, -1).permute(0, 3, 1, 2).contiguous()

    def forward(self, points: PointsInput, origin, extent, lengths=None) -> BEVFeatures:
        """BEV features of a batch of scans.

        Args:
            points: a list of B (N_i, 3) arrays, or padded (B, N, 3) (rows past ``lengths[b]`` or non-finite rows
                are ignored); metres, grid frame. Points outside the box ``[origin, origin + extent)`` are dropped.
            origin: (3,) or (B, 3) metres, corner of the grid (voxel (0, 0, 0) and pillar (0, 0)).
            extent: (3,) metres, size of the grid box; (H, W) = ceil(extent_xy / bev_cell_m).
            lengths: (B,) valid rows of padded ``points``.
        """
        grid = self.pillar_grid(points, origin, extent, lengths)
        h = self.unet(grid)
        batch = grid.shape[0]
        origin_xy = _per_batch(origin, batch, 3, "origin")[:, :2].to(grid.device, torch.float32).clone()
        return BEVFeatures(self.feature_head(h), self.occupancy_head(h), float(self.config.bev_cell_m), origin_xy)


# --------------------------------------------------------------------------------------------------
# voxels <-> pillars


def lift(bev: BEVFeatures, cells: Tensor, voxel_size: float, grid_origin, mode: str = "nearest") -> Tensor:
    """BEV features at voxels: (N, out_dim) for ``cells`` (N, 4) int (batch, x, y, z).

    ``grid_origin``: (3,) or (B, 3) metres, corner of voxel (0, 0, 0) of the cells' grid (need not coincide with
    the BEV origin). ``"nearest"``: the features of the pillar holding the voxel centre (voxels outside the BEV
    grid read the nearest border pillar). ``"bilinear"``: interpolated between the four nearest pillar centres
    (border-clamped), differentiable in the features.
    """
    if cells.ndim != 2 or cells.shape[1] != 4:
        raise ValueError(f"cells must be (N, 4) rows (batch, x, y, z), got shape {tuple(cells.shape)}")
    feats = bev.features
    batch, channels, h, w = feats.shape
    cells = cells.to(feats.device).long()
    if len(cells) and (int(cells[:, 0].min()) < 0 or int(cells[:, 0].max()) >= batch):
        raise ValueError(f"cells have batch indices in [{int(cells[:, 0].min())}, {int(cells[:, 0].max())}] "
                         f"but the BEV features hold {batch} scan(s); plan all scans of the batch")
    table = feats.permute(0, 2, 3, 1).reshape(batch * h * w, channels)
    u = _pillar_coords(cells, voxel_size, grid_origin, bev.origin_xy, bev.cell_m)
    b = cells[:, 0]

    def at(i: Tensor, j: Tensor) -> Tensor:
        return table[(b * h + i.clamp(0, h - 1)) * w + j.clamp(0, w - 1)]

    if mode == "nearest":
        ij = torch.floor(u).long()
        return at(ij[:, 0], ij[:, 1])
    if mode != "bilinear":
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    v = u - 0.5  # pillar centres at integer coordinates
    i0 = torch.floor(v).long()
    t = (v - i0.double()).to(feats.dtype)
    i, j = i0[:, 0], i0[:, 1]
    tx, ty = t[:, :1], t[:, 1:]
    return ((1 - tx) * (1 - ty) * at(i, j) + tx * (1 - ty) * at(i + 1, j)
            + (1 - tx) * ty * at(i, j + 1) + tx * ty * at(i + 1, j + 1))


def bev_occupancy_target(complete_cells: CellsInput, voxel_size: float, grid_origin, H: int, W: int, *,
                         cell_m: float = 2.0, bev_origin_xy=None, z_range_m: tuple[float, float] | None = None,
                         batch_size: int | None = None) -> Tensor:
    """(B, 1, H, W) float32: 1 where a voxel of the complete scene lies in the pillar's column, else 0.

    Args:
        complete_cells: (N, 4) int rows (batch, x, y, z), or a list of B (N_i, 3) int arrays.
        voxel_size, grid_origin: the voxel grid ((3,) or (B, 3) metres, corner of voxel (0, 0, 0)).
        H, W: BEV pillars along x and y.
        cell_m: pillar edge; ``bev_origin_xy``: (2,) or (B, 2) corner of pillar (0, 0) (default: grid origin xy).
        z_range_m: only voxels with centre z in ``[lo, hi)`` (grid frame) count; ``None`` = whole column.
        batch_size: B (default: the list length, or 1 + the largest batch index).
    Voxels whose centre falls outside the H x W pillars are ignored.
    """
    if isinstance(complete_cells, (Tensor, np.ndarray)):
        cells = _cells_batched(complete_cells)
        batch = batch_size if batch_size is not None else (int(cells[:, 0].max()) + 1 if len(cells) else 1)
    else:
        batch = batch_size if batch_size is not None else len(complete_cells)
        cells = _cells_batched(complete_cells)
    if batch < 1:
        raise ValueError("bev_occupancy_target needs at least one scan (batch_size >= 1)")
    if len(cells) and int(cells[:, 0].max()) >= batch:
        raise ValueError(f"complete_cells has batch index {int(cells[:, 0].max())} but batch_size is {batch}")
    if bev_origin_xy is None:
        origin_xy = _per_batch(grid_origin, batch, 3, "grid_origin")[:, :2]
    else:
        origin_xy = _per_batch(bev_origin_xy, batch, 2, "bev_origin_xy")
    target = torch.zeros(batch * H * W, dtype=torch.float32, device=cells.device)
    if len(cells):
        if z_range_m is not None:
            z = cell_centres(cells, voxel_size, grid_origin, batch)[:, 2]
            cells = cells[(z >= z_range_m[0]) & (z < z_range_m[1])]
        ij = torch.floor(_pillar_coords(cells, voxel_size, grid_origin, origin_xy.to(cells.device), cell_m)).long()
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < H) & (ij[:, 1] >= 0) & (ij[:, 1] < W)
        target[((cells[ok, 0] * H + ij[ok, 0]) * W + ij[ok, 1])] = 1.0
    return target.view(batch, 1, H, W)


def input_occupancy(points: PointsInput, origin, extent, cell_m: float, *,
                    z_range_m: tuple[float, float] | None = None, lengths=None) -> Tensor:
    """(B, 1, H, W) float32: 1 where the *input* has a point in the pillar (the "copy the scan" baseline)."""
    pts = _point_list(points, lengths)
    org = _per_batch(origin, len(pts), 3, "origin")
    ext = torch.as_tensor(np.asarray(extent, dtype=np.float64)).reshape(-1)
    h, w = bev_shape(ext, cell_m)
    out = torch.zeros(len(pts), h * w)
    for b, p in enumerate(pts):
        rel = p.double().cpu() - org[b]
        keep = ((rel >= 0) & (rel < ext)).all(1)
        if z_range_m is not None:
            keep &= (p[:, 2].double().cpu() >= z_range_m[0]) & (p[:, 2].double().cpu() < z_range_m[1])
        ij = torch.floor(rel[keep, :2] / cell_m).long()
        ok = (ij[:, 0] < h) & (ij[:, 1] < w)
        out[b, ij[ok, 0] * w + ij[ok, 1]] = 1.0
    return out.view(len(pts), 1, h, w)


def bev_loss(logits: Tensor, target: Tensor, pos_weight: float | Tensor | None = None) -> Tensor:
    """Mean binary cross-entropy of BEV occupancy ``logits`` (B, 1, H, W) against ``target`` (same shape, 0/1)."""
    if logits.shape != target.shape:
        raise ValueError(f"BEV logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits), pos_weight=pw)


def bev_iou(pred: Tensor, target: Tensor) -> float:
    """IoU of two binary BEV maps (any shape; ``pred`` may be a bool or 0/1 tensor). 1.0 when both are empty."""
    p, t = pred.bool(), target.bool()
    union = int((p | t).sum())
    return float((p & t).sum()) / union if union else 1.0
