"""Data made ahead by worker processes: the same data as in-process, in order; runs stop at their time limit."""

from __future__ import annotations

import numpy as np

from gen3d_ros.completion.training.gca import make_config, train
from gen3d_ros.completion.training.prefetch import Prefetcher, completion_sample, make_dataset, sample_tasks
from gen3d_ros.sim.dataset import CompletionDatasetConfig

_DATA = {"voxel_size_m": 0.5, "half_extent_m": [6.0, 6.0], "z_range_m": [-3.0, 3.0], "lidar": {"preset": "demo"},
         "scene": {"size_m": 30.0, "n_buildings": 2, "n_cars": 2, "n_trees": 2}, "sensor": "randomized",
         "sensor_height_m": [1.2, 2.5], "tilt_max_deg": 3.0, "augment": True, "length": 16}


def _draw(workers: int, n: int) -> list:
    data = CompletionDatasetConfig.from_dict(_DATA).to_dict()
    pf = Prefetcher(make_dataset, (data,), completion_sample, sample_tasks(np.random.default_rng(5), 16, True),
                    workers=workers, depth=3)
    try:
        return [next(pf) for _ in range(n)]
    finally:
        pf.close()


def test_worker_samples_equal_in_process_samples_in_order():
    here, there = _draw(0, 4), _draw(2, 4)
    for a, b in zip(here, there):
        assert a.index == b.index
        np.testing.assert_array_equal(a.partial, b.partial)
        np.testing.assert_array_equal(a.complete, b.complete)
        np.testing.assert_allclose(a.T_sample_lidar, b.T_sample_lidar)
    assert len({s.index for s in here}) > 1


def test_training_stops_at_its_time_limit_and_still_validates():
    config = make_config("tiny", {"iterations": 100_000, "time_limit_s": 1.0, "val_samples": 1, "threads": 1})
    _, summary = train(config, None, progress=False)
    assert 1 <= summary["iterations_done"] < 100_000
    assert summary["train_seconds"] - summary["validation_seconds"] < 10.0
    assert summary["history"]["val_iteration"] == [summary["iterations_done"]]
    assert "iou" in summary["final"] or summary["final"]


def test_fine_tuning_starts_from_the_packaged_weights():
    import torch

    from gen3d_ros.completion.checkpoint import default_gca_checkpoint, default_hgca_checkpoint, load_gca
    from gen3d_ros.completion.training.gca import prepare_training

    source = load_gca(default_gca_checkpoint())[0].state_dict()
    setup = prepare_training(make_config("demo", {"init_checkpoint": str(default_gca_checkpoint()), "threads": 1}))
    for k, v in setup.model.state_dict().items():
        torch.testing.assert_close(v, source[k])
    planned = prepare_training(make_config("demo_planner", {
        "init_checkpoint": f"{default_hgca_checkpoint()}:coarse", "threads": 1}))
    assert planned.model.planner is not None
