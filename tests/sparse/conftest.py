"""Shared helpers for the sparse-conv tests: small random voxel sets and their dense grids."""

from __future__ import annotations

import pytest
import torch

from gen3d_ros.sparse import SparseTensor


def random_coords(
    gen: torch.Generator, n_batch: int, grid: int, density: float, stride: int = 1, origin: int = -4
) -> torch.Tensor:
    """Unique (N, 4) int32 coords: each cell of a ``grid``^3 box (cells of size ``stride``, first cell at
    voxel ``origin`` which may be negative) is occupied with probability ``density``."""
    occ = torch.rand(n_batch, grid, grid, grid, generator=gen) < density
    occ[:, 0, 0, 0] = True  # never empty
    idx = torch.nonzero(occ)
    idx[:, 1:] = idx[:, 1:] * stride + origin
    return idx.int()


def to_dense(x: SparseTensor, grid: int, origin: int) -> torch.Tensor:
    """(B, C, grid, grid, grid) with cell i at voxel ``origin + i * x.stride``."""
    return x.dense((grid, grid, grid), (origin, origin, origin))


def read_dense(d: torch.Tensor, coords: torch.Tensor, origin: int, stride: int) -> torch.Tensor:
    """Rows of a dense (B, C, X, Y, Z) grid at voxel coords (cell = (coord - origin) / stride)."""
    c = coords.long()
    cell = torch.div(c[:, 1:] - origin, stride, rounding_mode="floor")
    assert bool(((c[:, 1:] - origin) % stride == 0).all())
    return d[c[:, 0], :, cell[:, 0], cell[:, 1], cell[:, 2]]


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(autouse=True)
def _no_backend_from_environment(monkeypatch):
    """Tests choose backends explicitly; $GEN3D_SPARSE_BACKEND must not change what 'default' means."""
    monkeypatch.delenv("GEN3D_SPARSE_BACKEND", raising=False)


@pytest.fixture
def grids():
    """The helpers above, as a fixture (works under any pytest import mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(random_coords=random_coords, to_dense=to_dense, read_dense=read_dense)
