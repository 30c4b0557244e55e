"""Completion pairs: partial within complete, crops, augmentation consistency, reproducibility, batching."""

from __future__ import annotations

import numpy as np
import pytest

from gen3d_ros.completion.voxelize import isin_voxels, point_indices, unique_voxels, voxel_centers, voxelize
from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig, collate_sparse
from gen3d_ros.sim.lidar import LidarConfig
from gen3d_ros.sim.scene import SceneConfig


def _config(**kw: object) -> CompletionDatasetConfig:
    base = dict(
        scene=SceneConfig(size_m=40.0),
        lidar=LidarConfig.preset("demo").with_(range_noise_std_m=0.01),
        voxel_size_m=0.25,
        half_extent_m=(12.0, 12.0),
        z_range_m=(-3.0, 5.0),
        length=8,
        base_seed=100,
    )
    base.update(kw)
    return CompletionDatasetConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def plain() -> CompletionDataset:
    return CompletionDataset(_config())


def test_partial_voxels_lie_in_complete_voxels(plain: CompletionDataset) -> None:
    for i in (0, 1, 2):
        s = plain[i]
        assert s.partial.shape[0] > 500 and s.complete.shape[0] > 5 * s.partial.shape[0]
        assert isin_voxels(s.partial, s.complete).mean() >= 0.95
    exact = CompletionDataset(_config(lidar=LidarConfig.preset("demo").with_(range_noise_std_m=0.0, dropout=0.0)))
    s = exact[0]
    assert isin_voxels(s.partial, s.complete).mean() >= 0.99


def test_every_voxel_and_point_lies_inside_the_crop(plain: CompletionDataset) -> None:
    s = plain[1]
    assert s.grid_shape.tolist() == [96, 96, 32]
    np.testing.assert_allclose(s.origin, [-12.0, -12.0, -3.0])
    for vox in (s.partial, s.complete):
        assert vox.dtype == np.int32 and vox.shape[1] == 3
        assert vox.min() >= 0 and np.all(vox.max(axis=0) < s.grid_shape)
        assert len(unique_voxels(vox)) == len(vox)
    p = s.partial_points
    assert np.all(p[:, :2] >= -12.0) and np.all(p[:, :2] < 12.0) and np.all(p[:, 2] >= -3.0) and np.all(p[:, 2] < 5.0)
    assert np.array_equal(voxelize(p, s.voxel_size, s.origin), s.partial)
    # the complete grid reaches the crop's edges in x and y (the scene is larger than the crop)
    assert s.complete[:, 0].min() == 0 and s.complete[:, 0].max() == 95
    assert s.complete[:, 1].min() == 0 and s.complete[:, 1].max() == 95
    # without augmentation the sample frame is the sensor frame
    assert np.array_equal(s.T_sample_lidar, np.eye(4))


def test_augmentation_rotates_partial_and_complete_together(plain: CompletionDataset) -> None:
    aug = CompletionDataset(_config(augment=True, augment_seed=7))
    i = 2
    a, b = plain[i], aug[i]
    A = b.T_sample_lidar
    assert not np.allclose(A, np.eye(4))  # something was applied
    assert abs(abs(np.linalg.det(A[:3, :3])) - 1.0) < 1e-9 and np.allclose(A[2], [0, 0, 1, 0])
    np.testing.assert_array_equal(a.T_world_lidar, b.T_world_lidar)
    # the raw sweep: the augmented points are the plain points moved by A (inside a disc both crops contain)
    def disc(points: np.ndarray) -> np.ndarray:
        return points[np.linalg.norm(points[:, :2], axis=1) < 11.0]

    moved = disc(a.partial_points.astype(np.float64) @ A[:3, :3].T)
    got = disc(b.partial_points.astype(np.float64))
    assert moved.shape == got.shape
    np.testing.assert_allclose(np.sort(moved, axis=0), np.sort(got, axis=0), atol=1e-4)
    # the complete voxels moved by A land on (or next to) the augmented complete voxels
    centers = voxel_centers(a.complete, a.voxel_size, a.origin).astype(np.float64)
    centers = centers[np.linalg.norm(centers[:, :2], axis=1) < 10.0] @ A[:3, :3].T
    moved_vox = point_indices(centers, b.voxel_size, b.origin)
    offsets = np.array([[x, y, z] for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)])
    near = np.zeros(len(moved_vox), bool)
    for o in offsets:
        near |= isin_voxels(moved_vox + o, b.complete)
    assert near.mean() > 0.99
    # partial stays inside complete after augmentation; a mismatched pair (complete not rotated) does not
    assert isin_voxels(b.partial, b.complete).mean() >= 0.95
    assert isin_voxels(b.partial, a.complete).mean() < 0.6


def test_samples_are_reproducible_and_scenes_cached() -> None:
    ds = CompletionDataset(_config(scans_per_scene=2))
    first = ds[3]
    again = CompletionDataset(_config(scans_per_scene=2))[3]
    assert np.array_equal(first.partial, again.partial) and np.array_equal(first.complete, again.complete)
    assert first.scene_seed == 100 + 3 // 2
    assert ds.scene(2) is ds.scene(3)
    assert not np.allclose(ds[2].T_world_lidar, ds[3].T_world_lidar)  # two poses in one scene
    assert len(ds) == 8
    with pytest.raises(IndexError, match="index 8 out of range"):
        ds[8]


def test_collate_adds_a_batch_column(plain: CompletionDataset) -> None:
    s0, s1 = plain[0], plain[1]
    batch = collate_sparse([s0, s1])
    assert batch["partial"].shape == (len(s0.partial) + len(s1.partial), 4)
    assert batch["partial"].dtype == np.int32
    assert np.array_equal(np.bincount(batch["complete"][:, 0]), [len(s0.complete), len(s1.complete)])
    assert np.array_equal(batch["partial"][batch["partial"][:, 0] == 1, 1:], s1.partial)
    assert batch["T_world_lidar"].shape == (2, 4, 4)


def test_configs_round_trip_through_yaml() -> None:
    import yaml

    cfg = _config(augment=True)
    text = yaml.safe_dump(cfg.to_dict())
    back = CompletionDatasetConfig.from_dict(yaml.safe_load(text))
    assert back.to_dict() == cfg.to_dict()
    assert back.lidar.n_columns == cfg.lidar.n_columns and back.scene.size_m == 40.0
    lidar = LidarConfig.from_dict({"preset": "hdl64", "dropout": 0.05})
    assert lidar.n_beams == 64 and lidar.dropout == 0.05
    with pytest.raises(ValueError, match=r"unknown SceneConfig keys \['n_bikes'\]"):
        SceneConfig.from_dict({"n_bikes": 3})
