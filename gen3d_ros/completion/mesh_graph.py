"""Connected components of a triangle mesh on any torch device (GPU included), for removing small islands.

Two faces are connected when they share an edge (the clusters of open3d's ``cluster_connected_triangles`` and of
:func:`gen3d_ros.completion.udf_mesh._large_components`). Components are found by FastSV-style pointer jumping
(Zhang, Azad, Hu, "FastSV", 2020): every face points at a smaller face of its component; each round hooks the
trees of adjacent faces onto the smaller root and halves the paths, so a few tens of rounds of ``scatter_reduce``
settle a mesh of millions of faces, however long its surface is, where plain label propagation needs as many
rounds as the mesh is wide.
"""

from __future__ import annotations

import torch
from torch import Tensor


def face_adjacency(faces: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs of faces that share an edge: (K,) int64 ``a`` and ``b``, ``a`` != ``b``.

    Args:
        faces: (F, 3) int vertex indices.
    Returns:
        Enough pairs to connect all faces around each edge (a chain when more than two faces share one).
    """
    f = faces.long()
    n_vert = int(f.max()) + 1 if len(f) else 0
    ends = f[:, [[0, 1], [1, 2], [2, 0]]].reshape(-1, 2)
    key = torch.minimum(ends[:, 0], ends[:, 1]) * n_vert + torch.maximum(ends[:, 0], ends[:, 1])
    key, order = torch.sort(key)
    face = order // 3
    same = key[1:] == key[:-1]
    return face[:-1][same], face[1:][same]


def connected_components(n: int, a: Tensor, b: Tensor) -> Tensor:
    """(n,) int64 component label of each node of an undirected graph: the smallest node id in its component.

    Args:
        n: node count; a, b: (K,) int64 edge end points in [0, n).
    """
    parent = torch.arange(n, device=a.device)
    while True:  # each node points at a smaller-or-equal id, so the rounds only lower pointers and terminate
        grand = parent[parent]
        nxt = parent.clone()
        nxt.scatter_reduce_(0, parent[a], grand[b], reduce="amin")  # hook a's root under b's grandparent
        nxt.scatter_reduce_(0, parent[b], grand[a], reduce="amin")
        nxt.scatter_reduce_(0, a, grand[b], reduce="amin")  # aggressive hooking of the nodes themselves
        nxt.scatter_reduce_(0, b, grand[a], reduce="amin")
        nxt = torch.minimum(nxt, grand)  # shortcut: halve every path
        if torch.equal(nxt, parent):  # a fixed point is a set of stars whose edges join equal roots
            return parent
        parent = nxt


def large_components(faces: Tensor, min_faces: int) -> Tensor:
    """(F,) bool: faces in edge-connected components with at least ``min_faces`` faces."""
    if len(faces) == 0:
        return torch.zeros(0, dtype=torch.bool, device=faces.device)
    a, b = face_adjacency(faces)
    label = connected_components(len(faces), a, b)
    sizes = torch.bincount(label, minlength=len(faces))
    return sizes[label] >= int(min_faces)
