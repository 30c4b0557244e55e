"""Sparse voxel tensors and sparse convolutions for GCA-style scene completion.

Public API::

    SparseTensor(feats, coords, stride=1)          coords (N, 4) int (batch, x, y, z), feats (N, C)
    CoordinateManager                               caches hashes and kernel maps per coordinate set
    Neighbourhood.cube(k) / .hypercross(r)          kernel offsets (order: dx slowest, dz fastest)
    SubmanifoldConv3d, StridedConv3d, TransposedConv3d, GenerativeConv3d, GenerativeTransposedConv3d
    SparseBatchNorm, SparseInstanceNorm, SparseReLU, SparseELU, SparseResBlock, SparseUNet
    get_backend(name=None), available_backends()    "minkowski" | "spconv" | "torch"
    set_backend(module, name)                       switch every sparse conv of a network

Weights are [K, C_in, C_out]; see ``kernels`` for the offset order and ``conv`` for semantics.
"""

from gen3d_ros.sparse.backends import available_backends, get_backend, unavailable_reason
from gen3d_ros.sparse.conv import (
    GenerativeConv3d,
    GenerativeTransposedConv3d,
    StridedConv3d,
    SubmanifoldConv3d,
    TransposedConv3d,
    dense_to_sparse_weight,
    set_backend,
    sparse_to_dense_weight,
)
from gen3d_ros.sparse.hashing import CoordinateHash, unique_coords
from gen3d_ros.sparse.kernel_map import KernelMap
from gen3d_ros.sparse.kernels import Neighbourhood
from gen3d_ros.sparse.norm import (
    SparseBatchNorm,
    SparseELU,
    SparseInstanceNorm,
    SparseReLU,
    elu,
    relu,
)
from gen3d_ros.sparse.tensor import CoordinateManager, SparseTensor, cat
from gen3d_ros.sparse.unet import SparseResBlock, SparseUNet

__all__ = [
    "CoordinateHash",
    "CoordinateManager",
    "GenerativeConv3d",
    "GenerativeTransposedConv3d",
    "KernelMap",
    "Neighbourhood",
    "SparseBatchNorm",
    "SparseELU",
    "SparseInstanceNorm",
    "SparseReLU",
    "SparseResBlock",
    "SparseTensor",
    "SparseUNet",
    "StridedConv3d",
    "SubmanifoldConv3d",
    "TransposedConv3d",
    "available_backends",
    "cat",
    "dense_to_sparse_weight",
    "elu",
    "get_backend",
    "relu",
    "set_backend",
    "sparse_to_dense_weight",
    "unavailable_reason",
    "unique_coords",
]
