"""gen3d_ros.checkpoints.read_checkpoint: the one reader behind every completion checkpoint loader."""

from __future__ import annotations

import pytest
import torch

from gen3d_ros.checkpoints import read_checkpoint


def test_reads_files_and_dicts_and_names_what_is_wrong(tmp_path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"format": "x/1", "value": 3}, good)
    ckpt, name = read_checkpoint(good, "X", ("x/1", "x/2"))
    assert ckpt["value"] == 3 and name == str(good)
    assert read_checkpoint({"format": "x/2"}, "X", ("x/1", "x/2")) == ({"format": "x/2"}, "<bundle>")
    with pytest.raises(FileNotFoundError, match="X checkpoint .*missing.pt does not exist"):
        read_checkpoint(tmp_path / "missing.pt", "X", ("x/1",))
    wrong = tmp_path / "wrong.pt"
    torch.save([1, 2], wrong)
    with pytest.raises(ValueError, match=r"is not a X checkpoint: format 'list', expected 'x/1' or 'x/2'"):
        read_checkpoint(wrong, "X", ("x/1", "x/2"))
    with pytest.raises(ValueError, match="format 'y/1'"):
        read_checkpoint({"format": "y/1"}, "X", ("x/1",))
