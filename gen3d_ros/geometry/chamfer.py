"""Chamfer distance between batched point clouds, differentiable (pytorch3d's ``chamfer_distance``).

Backend: ``pytorch3d.loss.chamfer_distance`` when pytorch3d imports, else the torch implementation here
(built on :func:`gen3d_ros.geometry.knn.knn_points`); see :func:`gen3d_ros.geometry.knn.resolve_backend`.

Definition (pytorch3d's, so a loss trained here means the same on a pytorch3d machine)::

    d(p, Y) = min_y |p - y|_2^2          (norm=2: squared Euclidean)
            = min_y |p - y|_1            (norm=1: L1, sum of absolute coordinate differences)
    cham_x[b] = point_reduction_{p in x[b]} d(p, y[b])     ("mean" | "sum" | "max")
    cham_y[b] = point_reduction_{q in y[b]} d(q, x[b])
    loss[b]   = cham_x[b] + cham_y[b]   (max(cham_x, cham_y) for "max", i.e. a Hausdorff distance;
                                          cham_x alone when single_directional)
    result    = reduction_b loss[b]     ("mean" | "sum" | None -> (B,))

Note the two directions are *summed*, not averaged, and norm=2 averages *squared* distances; the
evaluation metrics in :mod:`gen3d_ros.completion.metrics` use the halved, unsquared convention instead.
Unlike pytorch3d, which returns ``(loss, loss_normals)``, this returns the loss tensor only (no normals).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gen3d_ros.geometry.knn import _check_lengths, knn_points, resolve_backend

_BATCH_REDUCTIONS = ("mean", "sum", None)
_POINT_REDUCTIONS = ("mean", "sum", "max")


def chamfer_distance(
    x: Tensor,
    y: Tensor,
    *,
    x_lengths: Tensor | None = None,
    y_lengths: Tensor | None = None,
    norm: int = 2,
    reduction: str | None = "mean",
    point_reduction: str = "mean",
    single_directional: bool = False,
    backend: str | None = None,
) -> Tensor:
    """Chamfer distance between ``x`` and ``y`` (see the module docstring for the exact definition).

    Args:
        x: (B, N, D) float points (D = 3 for point clouds), padded clouds allowed via ``x_lengths``.
        y: (B, M, D) float points, same dtype/device.
        x_lengths: (B,) int valid points per cloud of ``x`` (None: all N).
        y_lengths: (B,) int valid points per cloud of ``y`` (None: all M).
        norm: 2 -> squared Euclidean nearest-neighbour distances; 1 -> L1 distances.
        reduction: over the batch: ``"mean"`` (default), ``"sum"``, or None for a (B,) tensor.
        point_reduction: over the points of a cloud: ``"mean"`` (default), ``"sum"`` or ``"max"``.
        single_directional: only the x -> y term.
        backend: ``"pytorch3d"`` | ``"torch"`` | None (default choice).

    Returns:
        A scalar tensor (or (B,) when ``reduction`` is None), differentiable wrt ``x`` and ``y``.
        A cloud of ``x`` with no valid points contributes 0 to its direction (pytorch3d's behaviour).

    Raises:
        ValueError: bad shapes, norm or reduction names.
    """
    if norm not in (1, 2):
        raise ValueError(f"norm must be 1 (L1) or 2 (squared Euclidean), got {norm!r}")
    if reduction not in _BATCH_REDUCTIONS:
        raise ValueError(f"reduction must be one of {_BATCH_REDUCTIONS}, got {reduction!r}")
    if point_reduction not in _POINT_REDUCTIONS:
        raise ValueError(
            f"point_reduction must be one of {_POINT_REDUCTIONS}, got {point_reduction!r} "
            "(for per-point distances call knn_points(x, y, K=1) directly)"
        )
    if not (torch.is_tensor(x) and torch.is_tensor(y)) or x.ndim != 3 or y.ndim != 3:
        raise ValueError(
            f"x and y must be (B, N, D) and (B, M, D) tensors, got {getattr(x, 'shape', type(x))} "
            f"and {getattr(y, 'shape', type(y))}"
        )
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must agree in batch size and point dimension")
    x_lengths = _check_lengths(x_lengths, x.shape[0], x.shape[1], "x_lengths", x.device)
    y_lengths = _check_lengths(y_lengths, y.shape[0], y.shape[1], "y_lengths", y.device)

    if resolve_backend(backend) == "pytorch3d":
        from pytorch3d.loss import chamfer_distance as p3d_chamfer_distance

        kwargs = {"single_directional": True} if single_directional else {}  # older pytorch3d lacks it
        if norm != 2:
            kwargs["norm"] = norm
        loss, _ = p3d_chamfer_distance(
            x,
            y,
            x_lengths=x_lengths,
            y_lengths=y_lengths,
            batch_reduction=reduction,
            point_reduction=point_reduction,
            **kwargs,
        )
        return loss

    d_x = knn_points(x, y, 1, x_lengths, y_lengths, norm=norm, backend="torch").dists[..., 0]  # (B, N), 0 at padding
    cham_x = _reduce_points(d_x, x_lengths, point_reduction)
    if single_directional:
        loss = cham_x
    else:
        d_y = knn_points(y, x, 1, y_lengths, x_lengths, norm=norm, backend="torch").dists[..., 0]
        cham_y = _reduce_points(d_y, y_lengths, point_reduction)
        loss = torch.maximum(cham_x, cham_y) if point_reduction == "max" else cham_x + cham_y
    if reduction is None:
        return loss
    total = loss.sum()
    return total / max(loss.shape[0], 1) if reduction == "mean" else total


def _reduce_points(d: Tensor, lengths: Tensor, point_reduction: str) -> Tensor:
    """(B,) reduction of (B, P) nearest-neighbour distances that are 0 at padding (pytorch3d's rules)."""
    if point_reduction == "max":
        return d.max(dim=1).values if d.shape[1] else d.new_zeros(d.shape[0]) + d.sum()
    total = d.sum(dim=1)
    if point_reduction == "mean":
        total = total / lengths.clamp(min=1).to(total.dtype)
    return total


__all__ = ["chamfer_distance"]
