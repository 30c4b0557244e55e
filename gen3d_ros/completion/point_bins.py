"""Fixed-radius neighbour tests on any torch device: "is there a point within r of this query?" for millions of
queries, without a k-d tree (none runs on the GPU) and without an all-pairs distance matrix.

The points are binned in cubes of edge ``radius`` and sorted by bin; a query can only meet points in the 27 bins
around its own, whose ranges in the sorted order come from ``searchsorted``. The (query, point) candidate pairs
are expanded in chunks of at most ``max_pairs`` and their distances checked exactly.

    paired = any_within(far_centroids, near_centroids, radius=1.7)    # (Q,) bool
"""

from __future__ import annotations

import torch
from torch import Tensor

_OFFSETS = tuple((i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1))


class _Bins:
    """Points sorted by the cube of edge ``radius`` they fall in, and each bin's range in that order.

    Ranges come from a dense table of cumulative counts over the bins' bounding box when it has at most
    ``dense_bins`` bins (one gather per lookup), else from ``searchsorted`` on the sorted keys.
    """

    def __init__(self, points: Tensor, radius: float, lo: Tensor, span: Tensor, dense_bins: int) -> None:
        self.radius, self.lo, self.span = float(radius), lo, span
        key = self.key(self.bin_of(points))
        self.sorted_key, order = torch.sort(key)
        self.points = points[order]
        n_bins = int(span.prod())
        self.cumulative = None
        if n_bins <= dense_bins:
            counts = torch.bincount(self.sorted_key, minlength=n_bins)
            self.cumulative = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])

    def bin_of(self, p: Tensor) -> Tensor:
        """(K, 3) -> (K, 3) int64 bin coordinates, shifted so that every neighbour bin of a point is >= 0."""
        return torch.floor(p / self.radius).long() - self.lo + 1

    def key(self, b: Tensor) -> Tensor:
        return (b[:, 0] * self.span[1] + b[:, 1]) * self.span[2] + b[:, 2]

    def ranges(self, b: Tensor) -> tuple[Tensor, Tensor]:
        """(K, 3) bin coordinates -> first index and count of the sorted points in each bin."""
        k = self.key(b)
        if self.cumulative is not None:
            start = self.cumulative[k]
            return start, self.cumulative[k + 1] - start
        start = torch.searchsorted(self.sorted_key, k)
        return start, torch.searchsorted(self.sorted_key, k, right=True) - start


def any_within(queries: Tensor, points: Tensor, radius: float, *, hints: Tensor | None = None,
               max_pairs: int = 1 << 25, dense_bins: int = 1 << 26) -> Tensor:
    """(Q,) bool: whether some point lies within ``radius`` (Euclidean, inclusive) of each query.

    Args:
        queries: (Q, 3) float positions; points: (P, 3) float positions, same units and device.
        radius: search radius, same units (> 0).
        hints: (Q, 3) or None: where each query's neighbour most likely is. When given, the bin of each hint is
            checked first and only the queries it does not settle search their 27 bins (much less work when
            the guess is good; the answer is the same).
        max_pairs: candidate (query, point) pairs checked at a time (memory: ~40 bytes each).
        dense_bins: largest bin grid (over the bounding box of all positions) looked up through a dense table
            (8 bytes per bin); larger grids use binary search.
    """
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    found = torch.zeros(len(queries), dtype=torch.bool, device=queries.device)
    if len(queries) == 0 or len(points) == 0:
        return found
    everything = torch.cat([queries, points] + ([hints] if hints is not None else []))
    lo = torch.floor(everything.min(0).values / radius).long()
    span = torch.floor(everything.max(0).values / radius).long() - lo + 3
    bins = _Bins(points, radius, lo, span, int(dense_bins))
    todo = torch.arange(len(queries), device=queries.device)
    if hints is not None:
        found = _search(bins, queries, todo, bins.bin_of(hints).unsqueeze(1), max_pairs)
        todo = todo[~found]
    offsets = torch.tensor(_OFFSETS, dtype=torch.int64, device=queries.device)
    for start in range(0, len(todo), max(1, max_pairs // 64)):  # bounds the (chunk, 27) range tables
        part = todo[start:start + max(1, max_pairs // 64)]
        bin_ids = bins.bin_of(queries[part]).unsqueeze(1) + offsets
        found[part] = _search(bins, queries, part, bin_ids, max_pairs)
    return found


def _search(bins: _Bins, queries: Tensor, which: Tensor, bin_ids: Tensor, max_pairs: int) -> Tensor:
    """(len(which),) bool: a point of the bins ``bin_ids`` (len(which), B, 3) lies within the radius of each
    query ``queries[which]``."""
    n, b = bin_ids.shape[:2]
    start, count = bins.ranges(bin_ids.reshape(-1, 3))
    start, count = start.view(n, b), count.view(n, b)
    per_query = count.sum(1)
    found = torch.zeros(n, dtype=torch.bool, device=queries.device)
    ends = torch.cumsum(per_query, 0)
    lo = 0
    while lo < n:  # query chunks whose candidate pairs fit in max_pairs (at least one query per chunk)
        before = int(ends[lo - 1]) if lo else 0
        hi = min(n, max(lo + 1, int(torch.searchsorted(ends, before + max_pairs, right=True))))
        found[lo:hi] = _check_pairs(bins, queries[which[lo:hi]], start[lo:hi], count[lo:hi])
        lo = hi
    return found


def _check_pairs(bins: _Bins, q: Tensor, start: Tensor, count: Tensor) -> Tensor:
    """(K,) bool for K queries ``q`` (K, 3) and their bins' (K, B) sorted ranges: some point within the radius."""
    flat_count = count.reshape(-1)
    pair_bin = torch.repeat_interleave(torch.arange(len(flat_count), device=q.device), flat_count)
    first = torch.cumsum(flat_count, 0) - flat_count
    point = start.reshape(-1)[pair_bin] + (torch.arange(len(pair_bin), device=q.device) - first[pair_bin])
    query = pair_bin // count.shape[1]
    close = ((bins.points[point] - q[query]) ** 2).sum(1) <= bins.radius ** 2
    hit = torch.zeros(len(q), dtype=torch.bool, device=q.device)
    return hit.index_put_((query[close],), torch.ones_like(query[close], dtype=torch.bool))
