"""Mixed-precision training (``amp``) on the CPU: bf16 autocast trains with finite losses close to float32's.

The first step of two runs with the same seed sees the same initial weights and the same batch, so its loss
differs only by bf16 rounding inside the network (losses are computed in float32): under 1 % (~0.02 % here).
"""

from __future__ import annotations

import json
import math

import pytest

from gen3d_ros.cli import main
from gen3d_ros.completion.training import autoencoder, gca
from gen3d_ros.completion.training.precision import Precision, check_amp

_SHORT = {"iterations": 4, "val_every": 4, "val_samples": 0, "batch_size": 2, "buffer_size": 2, "log_every": 2,
          "threads": 1}


def test_bf16_gca_training_has_finite_losses_close_to_float32():
    _, ref = gca.train(gca.make_config("tiny", _SHORT), progress=False)
    _, amp = gca.train(gca.make_config("tiny", {**_SHORT, "amp": "bf16"}), progress=False)
    losses = amp["history"]["loss"]
    assert len(losses) == 4 and all(math.isfinite(v) and v > 0 for v in losses)
    first, ref_first = losses[0], ref["history"]["loss"][0]
    assert first != ref_first  # bf16 really ran
    assert abs(first - ref_first) < 0.01 * ref_first
    # losses are read every log_every steps, with the window's rate; the summary has the run's rate
    assert amp["history"]["log_iteration"] == [2, 4] and all(r > 0 for r in amp["history"]["iters_per_s"])
    assert amp["iters_per_s"] > 0


def test_bf16_autoencoder_step_is_finite_and_close_to_float32():
    overrides = {"queries_per_sample": 512, "val_samples": 0, "threads": 1}
    ref = autoencoder.AutoencoderTrainer(autoencoder.make_autoencoder_config("tiny", overrides)).iteration()
    amp = autoencoder.AutoencoderTrainer(
        autoencoder.make_autoencoder_config("tiny", {**overrides, "amp": "bf16"})).iteration()
    assert math.isfinite(float(amp)) and float(amp) != float(ref)
    assert abs(float(amp) - float(ref)) < 0.01 * float(ref)


def test_train_completion_amp_flag_trains_in_bf16_and_reports_the_rate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-completion", "--preset", "tiny", "--amp", "--device", "cpu", "--set", "iterations=2",
                 "--set", "val_every=2", "--set", "val_samples=1", "-o", str(out), "--no-progress"]) == 0
    assert "it/s of training" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["amp"] == "bf16" and metrics["iters_per_s"] > 0


def test_fp16_is_refused_off_cuda_with_a_one_line_reason(tmp_path, capsys):
    assert main(["train-completion", "--preset", "tiny", "--amp", "fp16", "-o", str(tmp_path / "x"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "fp16" in err and "CUDA" in err and "bf16" in err
    assert not (tmp_path / "x").exists()  # refused before the run folder was made
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        Precision.create("fp16", "cpu")
    assert check_amp("bf16", "cpu") == "bf16"
