"""Pure-torch 3D Gaussian splatting: the maths of gsplat 1.5.3's 3DGS CUDA kernels, on CPU or CUDA.

This is the backend behind :func:`gen3d_ros.robot.splatting.render_gaussians` when gsplat cannot run (no CUDA,
or gsplat not installed). It follows gsplat's ``fully_fused_projection`` + ``rasterize_to_pixels`` (classic
mode, pinhole camera) step by step so both backends render the same images:

projection (per camera ``c`` and Gaussian ``n``)
    * ``Sigma = R S S^T R^T`` from the quaternion (w, x, y, z; normalised here) and the scales (std-devs, m).
    * camera frame: ``mu_c = R_cb mu + t_cb``, ``Sigma_c = R_cb Sigma R_cb^T`` (``T_camera_base``, OpenCV optical).
    * culled when ``z < near`` or ``z > far`` (metres along the optical axis).
    * EWA Jacobian ``J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]`` with ``tx/z, ty/z`` clamped to the
      image's tan-half-FoV limits widened by 0.3 tan_fov on each side (gsplat's "x1.3"), so Gaussians far
      outside the view do not get huge, sheared footprints; the projected mean itself is NOT clamped:
      ``u = fx x/z + cx``, ``v = fy y/z + cy`` (pixel units, pixel centres at integer + 0.5).
    * ``Sigma_2d = J Sigma_c J^T + eps2d I`` (eps2d = 0.3 px^2 low-pass), conic = ``Sigma_2d^{-1}``.
    * opacity-aware 3-sigma box (arXiv 2402.00525): ``extend = min(3.33, sqrt(2 ln(255 opacity)))``,
      ``radius = ceil(extend sqrt(diag Sigma_2d))``; culled when opacity < 1/255, ``det <= 0`` or the box misses
      the image. Outside that box every pixel's alpha is below 1/255, so box culling never changes the image.

rasterisation (per pixel, front to back by camera-frame depth ``z``)
    * ``alpha = min(0.999, opacity exp(-0.5 d^T conic d))``, ``d`` = pixel centre - projected mean; skipped when
      ``alpha < 1/255``; weight ``w = alpha T`` with ``T`` the transmittance before this Gaussian.
    * termination like gsplat: the first Gaussian that would bring ``T`` to ``<= 1e-4`` and all behind it are
      dropped (exclusive).
    * ``alpha_px = sum w = 1 - T_final``; features (RGB and camera-frame z) are ``sum w f``; the background is
      added as ``T_final * bg`` to RGB only.

Layout for speed and memory: the image is cut into ``tile_size`` x ``tile_size`` tiles; every Gaussian is
listed in the tiles its box touches (gsplat's tile intersection), each tile's list is sorted by depth, and the
lists are consumed in depth-ordered chunks of ``chunk_size`` Gaussians for many tiles at once with a running
transmittance per pixel. A tile stops once all its pixels have terminated. The quadratic form of a chunk is one
batched matmul (pixel monomials x per-Gaussian coefficients, in tile-local coordinates for float32 accuracy).
All of it is plain autograd: gradients reach means, quats, scales, opacities, colours and ``T_camera_base``.
Results do not depend on ``tile_size`` / ``chunk_size`` beyond float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gen3d_ros.geometry.rotations import quaternion_to_matrix

# gsplat 1.5.3 constants (csrc/Common.h, RasterizeToPixels3DGSFwd.cu, ProjectionEWA3DGSFused.cu)
ALPHA_THRESHOLD = 1.0 / 255.0  # contributions below this are skipped
ALPHA_MAX = 0.999  # per-Gaussian alpha clamp (gsplat 1.5.3; the original 3DGS rasteriser used 0.99)
TRANSMITTANCE_MIN = 1e-4  # a pixel stops at the first Gaussian that would bring T to <= this
EXTEND_MAX = 3.33  # box half-size in standard deviations
FOV_CLAMP_MARGIN = 0.3  # projected-position clamp for the Jacobian: +-(limit + 0.3 tan_fov)
DEFAULT_MAX_PAIRS_CPU = 1 << 21  # pixel x Gaussian pairs per vectorised step
DEFAULT_MAX_PAIRS_CUDA = 1 << 24


@dataclass
class Projection:
    """Per-camera screen-space Gaussians, shapes ``[C, N, ...]``.

    ``means2d`` pixels (u, v); ``conics`` the upper triangle (a, b, c) of ``Sigma_2d^{-1}`` in px^-2;
    ``depths`` camera-frame z in metres; ``radii`` integer box half-sizes in pixels (0, 0 = culled);
    ``means_c`` camera-frame means in metres.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor
    means_c: Tensor


def covariances_from_quats_scales(quats: Tensor, scales: Tensor) -> Tensor:
    """``[N, 3, 3]`` covariances ``R S S^T R^T`` (m^2); quats (w, x, y, z) of any non-zero norm, scales in m."""
    R = quaternion_to_matrix(quats)  # normalises implicitly (2 / |q|^2)
    M = R * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    T_camera_base: Tensor,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near: float = 0.01,
    far: float = 100.0,
) -> Projection:
    """EWA projection of base-frame Gaussians into ``C`` pinhole cameras (gsplat's fused 3DGS projection).

    ``means [..., N, 3]`` m (base frame), ``quats [..., N, 4]`` (w, x, y, z), ``scales [..., N, 3]`` m,
    ``opacities [..., N]``, ``T_camera_base [..., C, 4, 4]`` (``...``: batch dimensions, also none); the
    :class:`Projection` is ``[..., C, N, ...]``. Differentiable w.r.t. all tensors (radii are integer and carry
    no gradient).
    """
    R = T_camera_base[..., :3, :3]  # [..., C, 3, 3]
    t = T_camera_base[..., :3, 3]
    means_c = torch.einsum("...cij,...nj->...cni", R, means) + t[..., None, :]  # [..., C, N, 3]
    cov = covariances_from_quats_scales(quats, scales)  # [..., N, 3, 3]
    cov_c = torch.einsum("...cij,...njk,...clk->...cnil", R, cov, R)  # [..., C, N, 3, 3]

    x, y, z = means_c.unbind(-1)
    in_depth = (z >= near) & (z <= far)
    # culled Gaussians still flow through autograd (with zero upstream gradient): keep z away from 0 so that
    # 0 * (1/0) cannot turn their zero gradients into NaN.
    z = torch.where(in_depth, z, torch.ones_like(z))
    rz = 1.0 / z
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + FOV_CLAMP_MARGIN * tan_fovx
    lim_x_neg = cx / fx + FOV_CLAMP_MARGIN * tan_fovx
    lim_y_pos = (height - cy) / fy + FOV_CLAMP_MARGIN * tan_fovy
    lim_y_neg = cy / fy + FOV_CLAMP_MARGIN * tan_fovy
    tx = z * torch.clamp(x * rz, min=-lim_x_neg, max=lim_x_pos)
    ty = z * torch.clamp(y * rz, min=-lim_y_neg, max=lim_y_pos)

    # J = [[a, 0, b], [0, c, d]]; J Sigma J^T written out (J is sparse)
    a, b = fx * rz, -fx * tx * rz * rz
    c, d = fy * rz, -fy * ty * rz * rz
    s00, s01, s02 = cov_c[..., 0, 0], cov_c[..., 0, 1], cov_c[..., 0, 2]
    s11, s12, s22 = cov_c[..., 1, 1], cov_c[..., 1, 2], cov_c[..., 2, 2]
    c00 = a * a * s00 + 2.0 * a * b * s02 + b * b * s22 + eps2d
    c01 = a * c * s01 + a * d * s02 + b * c * s12 + b * d * s22
    c11 = c * c * s11 + 2.0 * c * d * s12 + d * d * s22 + eps2d
    det = c00 * c11 - c01 * c01
    det_ok = det > 0
    det = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack((c11 / det, -c01 / det, c00 / det), dim=-1)
    means2d = torch.stack((fx * x * rz + cx, fy * y * rz + cy), dim=-1)

    with torch.no_grad():
        op = opacities.detach().to(means_c.dtype)[..., None, :].expand_as(z)
        opaque_enough = op >= ALPHA_THRESHOLD
        extend = torch.sqrt(2.0 * torch.log(op.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = extend.clamp(max=EXTEND_MAX)
        rx = torch.ceil(extend * torch.sqrt(c00.detach().clamp(min=0)))
        ry = torch.ceil(extend * torch.sqrt(c11.detach().clamp(min=0)))
        u, v = means2d.detach().unbind(-1)
        on_image = (u + rx > 0) & (u - rx < width) & (v + ry > 0) & (v - ry < height)
        ok = in_depth & det_ok & opaque_enough & ((rx > 0) | (ry > 0)) & on_image
        radii = torch.stack((rx, ry), dim=-1) * ok[..., None]
        radii = radii.to(torch.int32)
    return Projection(means2d=means2d, conics=conics, depths=means_c[..., 2], radii=radii, means_c=means_c)


@dataclass
class _TileLists:
    """Depth-sorted (tile, Gaussian) intersections over all images, CSR-style by global tile id."""

    gaussian_ids: Tensor  # [M] flat index image * N + n, grouped by tile, front to back within a tile
    counts: Tensor  # [I * n_tiles]
    offsets: Tensor  # [I * n_tiles] start of each tile's run in gaussian_ids
    tiles_x: int
    tiles_y: int


@torch.no_grad()
def _intersect_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, width: int, height: int
) -> _TileLists:
    """Every visible Gaussian's box -> the tiles it touches (gsplat's isect_tiles), sorted by (tile, depth)."""
    I, N = depths.shape
    tw, th = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles = tw * th
    device = means2d.device
    vis = (radii > 0).all(-1).reshape(-1)
    flat = torch.nonzero(vis).squeeze(1)
    m = means2d.detach().reshape(-1, 2)[flat].double()
    r = radii.reshape(-1, 2)[flat].double()
    x0 = torch.floor((m[:, 0] - r[:, 0]) / tile_size).clamp(0, tw).long()
    x1 = torch.ceil((m[:, 0] + r[:, 0]) / tile_size).clamp(0, tw).long()
    y0 = torch.floor((m[:, 1] - r[:, 1]) / tile_size).clamp(0, th).long()
    y1 = torch.ceil((m[:, 1] + r[:, 1]) / tile_size).clamp(0, th).long()
    nx, ny = x1 - x0, y1 - y0
    n = nx * ny
    keep = n > 0
    flat, x0, y0, nx, n = flat[keep], x0[keep], y0[keep], nx[keep], n[keep]
    M = int(n.sum())
    start = torch.cumsum(n, 0) - n
    pair_g = torch.repeat_interleave(flat, n, output_size=M)
    local = torch.arange(M, device=device) - torch.repeat_interleave(start, n, output_size=M)
    nx_r = torch.repeat_interleave(nx, n, output_size=M)
    tx = torch.repeat_interleave(x0, n, output_size=M) + local % nx_r
    ty = torch.repeat_interleave(y0, n, output_size=M) + local // nx_r
    tile = (pair_g // N) * n_tiles + ty * tw + tx
    # depth rank over all images (a global stable sort ranks each image's Gaussians consistently); ties keep
    # the lower index first, as gsplat's stable radix sort does
    order = torch.sort(depths.detach().reshape(-1), stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=device)
    key = tile * (I * N) + rank[pair_g]
    key, perm = torch.sort(key)
    counts = torch.bincount(key // (I * N), minlength=I * n_tiles)
    offsets = torch.cumsum(counts, 0) - counts
    return _TileLists(pair_g[perm], counts, offsets, tw, th)


@dataclass
class _Splats:
    """The projected Gaussians of all images, flattened to ``[I * N, ...]`` for gathering by ``image * N + n``."""

    means2d: Tensor  # [I * N, 2] px
    conics: Tensor  # [I * N, 3] px^-2
    log_opacity: Tensor  # [I * N]
    features: Tensor  # [I * N, D + 1]: the features and a channel of ones (accumulates sum w: the pixel's alpha)


def _flatten_splats(means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor) -> _Splats:
    I, N = opacities.shape
    D = features.shape[-1]
    # log-opacity folded into the quadratic form: alpha = exp(-(sigma - log o)); culled Gaussians are never
    # gathered, visible ones have o >= 1/255, so the log is finite where it is used
    log_op = torch.log(opacities.reshape(I * N).clamp(min=1e-30))
    # one extra feature channel of ones accumulates sum w (the pixel's alpha) in the same matmul
    feats = torch.cat((features.reshape(I * N, D), torch.ones_like(features.reshape(I * N, D)[:, :1])), dim=1)
    return _Splats(means2d.reshape(I * N, 2), conics.reshape(I * N, 3), log_op, feats)


def _pixel_monomials(tile_size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[P, 6]`` quadratic monomials ``(x^2, y^2, x y, x, y, 1)`` of a tile's pixel centres relative to the tile
    centre (tile-local coordinates keep float32 accurate), ``P = tile_size^2`` in row-major order."""
    lin = torch.arange(tile_size * tile_size, device=device)
    lx = (lin % tile_size).to(dtype) + 0.5 - 0.5 * tile_size
    ly = (lin // tile_size).to(dtype) + 0.5 - 0.5 * tile_size
    return torch.stack((lx * lx, ly * ly, lx * ly, lx, ly, torch.ones_like(lx)), dim=-1)


def _composite_chunk(
    splats: _Splats, gid: Tensor, valid: Tensor, centre_x: Tensor, centre_y: Tensor, mono: Tensor, T_in: Tensor
) -> tuple[Tensor, Tensor]:
    """One depth-ordered chunk of ``K`` Gaussians ``gid [A, K]`` (``valid``: real entries) over ``A`` tiles whose
    centres are ``centre_x/y [A]`` px, with transmittance ``T_in [A, P]`` before it.

    Returns the chunk's contribution ``sum_k w_k f_k`` ``[A, P, D + 1]`` and the transmittance after it ``[A, P]``.
    """
    # Gaussian parameters in tile-local pixel coordinates
    mx = splats.means2d[gid, 0] - centre_x[:, None]
    my = splats.means2d[gid, 1] - centre_y[:, None]
    ca, cb, cc = splats.conics[gid].unbind(-1)
    lo = torch.where(valid, splats.log_opacity[gid], torch.full_like(mx, -1e4))
    # sigma - log o = [lx^2, ly^2, lx ly, lx, ly, 1] . coef
    coef = torch.stack(
        (
            0.5 * ca,
            0.5 * cc,
            cb,
            -(ca * mx + cb * my),
            -(cc * my + cb * mx),
            0.5 * ca * mx * mx + 0.5 * cc * my * my + cb * mx * my - lo,
        ),
        dim=1,
    )  # [A, 6, K]
    power = torch.matmul(mono, coef)  # [A, P, K]
    alpha = torch.exp(-power).clamp(max=ALPHA_MAX)
    alpha = torch.where(alpha >= ALPHA_THRESHOLD, alpha, torch.zeros_like(alpha))
    T_incl = T_in[:, :, None] * torch.cumprod(1.0 - alpha, dim=-1)
    T_excl = torch.cat((T_in[:, :, None], T_incl[:, :, :-1]), dim=-1)
    w = torch.where(T_incl > TRANSMITTANCE_MIN, alpha * T_excl, torch.zeros_like(alpha))
    return torch.bmm(w, splats.features[gid]), T_incl[:, :, -1]


def _composite_tiles(
    splats: _Splats, lists: _TileLists, tiles: Tensor, mono: Tensor, tile_size: int, chunk_size: int
) -> Tensor:
    """Front-to-back compositing of the global tiles ``tiles [G]``: ``[G, P, D + 1]`` accumulated features (the
    last channel is the alpha); a tile stops once all its pixels have terminated."""
    dtype, device = mono.dtype, mono.device
    G, P, K = tiles.numel(), mono.shape[0], chunk_size
    cnt = lists.counts[tiles]
    off = lists.offsets[tiles]
    local_tile = tiles % (lists.tiles_x * lists.tiles_y)
    centre_x = ((local_tile % lists.tiles_x) * tile_size).to(dtype) + 0.5 * tile_size
    centre_y = ((local_tile // lists.tiles_x) * tile_size).to(dtype) + 0.5 * tile_size
    T_run = torch.ones(G, P, dtype=dtype, device=device)
    acc = torch.zeros(G, P, splats.features.shape[1], dtype=dtype, device=device)
    alive = torch.ones(G, dtype=torch.bool, device=device)
    last = max(lists.gaussian_ids.numel() - 1, 0)
    arangeK = torch.arange(K, device=device)
    for k in range(0, int(cnt.max()), K):
        act = torch.nonzero((cnt > k) & alive).squeeze(1)
        if act.numel() == 0:
            break
        slot = k + arangeK
        valid = slot[None, :] < cnt[act, None]  # [A, K]
        gid = lists.gaussian_ids[(off[act, None] + slot[None, :]).clamp(max=last)]
        contribution, T_last = _composite_chunk(splats, gid, valid, centre_x[act], centre_y[act], mono, T_run[act])
        acc = acc.index_add(0, act, contribution)
        T_run = T_run.index_copy(0, act, T_last)
        alive[act] = (T_last > TRANSMITTANCE_MIN).any(-1)
    return acc


def rasterize(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    features: Tensor,
    depths: Tensor,
    radii: Tensor,
    width: int,
    height: int,
    tile_size: int = 16,
    chunk_size: int = 32,
    max_pairs_per_step: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of projected Gaussians (gsplat's rasterize_to_pixels, classic mode).

    Inputs ``[I, N, ...]`` for ``I`` images: ``means2d`` px, ``conics`` (a, b, c) px^-2, ``opacities`` in [0, 1],
    ``features [I, N, D]`` (anything linear: RGB, depth), ``depths`` (sort key, m), ``radii`` (int, 0 = culled).
    Returns ``features [I, H, W, D] = sum_i w_i f_i`` and ``alpha [I, H, W] = sum_i w_i`` (no background).

    ``chunk_size`` Gaussians per tile per step; ``max_pairs_per_step`` bounds the pixel x Gaussian pairs of one
    vectorised step (forward memory; with autograd every step's intermediates are kept for the backward pass).
    None: 2^21 on CPU (cache-sized steps), 2^24 on CUDA (fewer, larger kernels).
    """
    if max_pairs_per_step is None:
        max_pairs_per_step = DEFAULT_MAX_PAIRS_CUDA if means2d.is_cuda else DEFAULT_MAX_PAIRS_CPU
    I, D = depths.shape[0], features.shape[-1]
    ts, K = int(tile_size), int(chunk_size)
    lists = _intersect_tiles(means2d, radii, depths, ts, width, height)
    splats = _flatten_splats(means2d, conics, opacities, features)
    mono = _pixel_monomials(ts, means2d.dtype, means2d.device)
    nonempty = torch.nonzero(lists.counts).squeeze(1)
    group = max(1, int(max_pairs_per_step) // (ts * ts * K))  # tiles per vectorised step
    out_tiles: list[Tensor] = []
    out_vals: list[Tensor] = []
    for g0 in range(0, nonempty.numel(), group):
        tiles = nonempty[g0 : g0 + group]
        out_tiles.append(tiles)
        out_vals.append(_composite_tiles(splats, lists, tiles, mono, ts, K))
    tw, th = lists.tiles_x, lists.tiles_y
    full = torch.zeros(I * tw * th, ts * ts, D + 1, dtype=means2d.dtype, device=means2d.device)
    if out_tiles:
        full = full.index_copy(0, torch.cat(out_tiles), torch.cat(out_vals))
    img = full.reshape(I, th, tw, ts, ts, D + 1).permute(0, 1, 3, 2, 4, 5).reshape(I, th * ts, tw * ts, D + 1)
    img = img[:, :height, :width]
    return img[..., :D], img[..., D]
