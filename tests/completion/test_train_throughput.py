"""``measure_train_throughput``: each stage's real training step, timed on the CPU at tiny sizes, writing nothing."""

from __future__ import annotations

import pytest

from gen3d_ros.completion.training.throughput import measure_train_throughput

_SMALL = {"batch_size": 1, "buffer_size": 2, "threads": 1}


@pytest.mark.parametrize("stage", ["transition", "autoencoder", "fine"])
def test_each_stage_reports_a_positive_training_rate_and_writes_nothing(stage, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = {"threads": 1, "batch_size": 1, "queries_per_sample": 512} if stage == "autoencoder" else _SMALL
    r = measure_train_throughput(stage, "tiny", "cpu", steps=2, warmup=1, overrides=overrides)
    assert r["stage"] == stage and r["device"] == "cpu" and r["amp"] == "off" and r["steps"] == 2
    assert r["iters_per_s"] > 0 and r["seconds"] > 0
    assert r["iters_per_s"] == pytest.approx(r["steps"] / r["seconds"])
    assert 0 <= r["data_seconds"] <= r["seconds"] and 0 <= r["data_fraction"] <= 1
    assert r["batch_size"] == 1 and r["iterations"] > 0
    if stage != "autoencoder":  # warm-up filled the replay buffer: that simulation cost is reported per chain
        assert r["seconds_per_fresh_chain"] > 0
    assert r["predicted_train_seconds"] == pytest.approx(r["iterations"] / r["iters_per_s"])
    assert not any(tmp_path.iterdir())  # no run folder, checkpoint or log


def test_the_hierarchy_times_its_three_stages_and_totals_them():
    r = measure_train_throughput("hierarchy", "tiny", "cpu", steps=1, warmup=0,
                                 overrides={"threads": 1, "batch_size": 1})
    stages = r["stages"]
    assert set(stages) == {"autoencoder", "fine", "coarse"}
    assert all(s["iters_per_s"] > 0 for s in stages.values())
    assert r["iterations"] == sum(s["iterations"] for s in stages.values())
    assert r["predicted_train_seconds"] == pytest.approx(sum(s["predicted_train_seconds"] for s in stages.values()))
    assert r["iters_per_s"] == pytest.approx(r["iterations"] / r["predicted_train_seconds"])


def test_unknown_stages_and_fp16_off_cuda_are_refused_before_any_work():
    with pytest.raises(ValueError, match="unknown stage"):
        measure_train_throughput("coarse", "tiny")
    with pytest.raises(ValueError, match="steps >= 1"):
        measure_train_throughput("transition", "tiny", steps=0)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        measure_train_throughput("transition", "tiny", "cpu", amp="fp16")
