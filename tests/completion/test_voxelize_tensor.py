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


def test_float32_sweeps_voxelise_on_the_device_as_their_float64_copy():
    """SceneCompleter uploads float32 sweeps as they are (half the bytes); voxelize_tensor works in float64, which
    holds every float32 exactly, so the cells equal the numpy voxelisation of the float64 copy."""
    completer = GCACompleter(default_gca_checkpoint(), half_extent_m=30.0)
    rng = np.random.default_rng(1)
    pts = rng.uniform(-40, 40, size=(20000, 3)).astype(np.float32)
    pts[:100] = (np.round(pts[:100] / completer.voxel_size) * completer.voxel_size).astype(np.float32)  # on faces
    got = completer.voxelize_tensor(torch.from_numpy(pts)).numpy()
    np.testing.assert_array_equal(got, completer.voxelize(pts.astype(np.float64)))
