"""GCACompleter.voxelize_tensor (the GPU path's voxelisation) against the numpy VoxelGrid.voxelize."""

from __future__ import annotations

import numpy as np
import torch

from gen3d_ros.completion.checkpoint import default_gca_checkpoint
from gen3d_ros.completion.inference import GCACompleter


def test_voxelize_tensor_equals_numpy_voxelize_on_a_wide_grid():
    completer = GCACompleter(default_gca_checkpoint(), half_extent_m=30.0)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-40, 40, size=(20000, 3))
    pts[:, 2] = rng.uniform(-5, 8, size=20000)
    pts[:50] = np.nan
    pts[50:60] = np.inf
    # points exactly on cell faces: floor must agree
    pts[60:200] = np.round(pts[60:200] / completer.voxel_size) * completer.voxel_size + completer.origin % 1.0 * 0
    ref = completer.voxelize(pts)
    got = completer.voxelize_tensor(torch.from_numpy(pts)).numpy()
    assert len(ref) > 1000
    np.testing.assert_array_equal(got, ref)
    assert completer.voxelize_tensor(torch.zeros((0, 3), dtype=torch.float64)).shape == (0, 3)
