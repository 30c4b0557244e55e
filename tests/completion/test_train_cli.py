"""`gen3d train-completion`: both stages write a loadable checkpoint, metrics and a training curve."""

from __future__ import annotations

import json

from gen3d_ros.cli import main


def test_train_completion_transition_stage_writes_a_loadable_run(tmp_path, capsys):
    from gen3d_ros.completion.checkpoint import load_gca as load_checkpoint

    out = tmp_path / "gca"
    assert main(["train-completion", "--preset", "tiny", "--set", "iterations=4", "--set", "val_every=4",
                 "--set", "val_samples=1", "--seed", "3", "-o", str(out), "--no-progress"]) == 0
    assert "held-out IoU" in capsys.readouterr().out
    model, ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["train_config"]["seed"] == 3 and ckpt["train_config"]["iterations"] == 4
    assert json.loads((out / "metrics.json").read_text())["final"]["iou"] >= 0
    assert (out / "training_curve.png").stat().st_size > 1000
    # an existing run is not overwritten without --force
    assert main(["train-completion", "--preset", "tiny", "-o", str(out), "--no-progress"]) == 2


def test_train_completion_autoencoder_stage_writes_a_loadable_run(tmp_path, capsys):
    from gen3d_ros.completion.checkpoint import load_autoencoder as load_checkpoint

    out = tmp_path / "ae"
    assert main(["train-completion", "--stage", "autoencoder", "--preset", "tiny", "--set", "iterations=3",
                 "--set", "val_every=3", "-o", str(out), "--no-progress"]) == 0
    assert "mesh Chamfer-L1" in capsys.readouterr().out
    loaded = load_checkpoint(out / "model.pt")
    assert loaded is not None
    assert (out / "training_curve.png").stat().st_size > 1000


def test_train_completion_rejects_unknown_keys(tmp_path, capsys):
    assert main(["train-completion", "--preset", "tiny", "--set", "itrations=4", "-o", str(tmp_path / "x"),
                 "--no-progress"]) == 2
    assert "itrations" in capsys.readouterr().err
