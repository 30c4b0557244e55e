"""gen3d_ros.checkpoints: the one reader behind every checkpoint loader. Formats, damaged and foreign files (empty,
random, truncated, a flipped bit, zips torch did not write, pickles that would run code), entries of the wrong
type, the packaged models, and the errors of the loaders that build models from them."""

from __future__ import annotations

import copy
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from gen3d_ros.checkpoints import CheckpointError, load_checkpoint_file, read_checkpoint


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


# --------------------------------------------------------------------------------------------------- damaged files

MODELS = Path(__file__).resolve().parents[1] / "gen3d_ros" / "models"
PACKAGED = sorted(MODELS.glob("*.pt"))


def test_an_empty_file_is_a_checkpoint_error_naming_it(tmp_path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'empty.pt'} is empty \(0 bytes\)"):
        load_checkpoint_file(tmp_path / "empty.pt")


def test_random_bytes_are_not_a_checkpoint(tmp_path) -> None:
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'noise.pt'} is not a X checkpoint: not a torch.save "
                                              "zip archive"):
        read_checkpoint(tmp_path / "noise.pt", "X", ("x/1",))
    (tmp_path / "zipnoise.pt").write_bytes(b"PK\x03\x04" + os.urandom(4096))
    with pytest.raises(CheckpointError, match="truncated or corrupt: its zip directory is missing"):
        load_checkpoint_file(tmp_path / "zipnoise.pt")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_a_truncated_real_checkpoint_is_a_checkpoint_error(tmp_path, fraction: float) -> None:
    data = (MODELS / "gca_demo.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'cut.pt'} is truncated or corrupt"):
        training_load(tmp_path / "cut.pt")


def training_load(path):
    from gen3d_ros.completion.checkpoint import load_gca as load_checkpoint

    return load_checkpoint(path)


def test_a_flipped_bit_in_a_weight_fails_the_crc_instead_of_loading_a_different_model(tmp_path) -> None:
    data = bytearray((MODELS / "gca_demo.pt").read_bytes())
    with zipfile.ZipFile(MODELS / "gca_demo.pt") as archive:
        weight = max(archive.infolist(), key=lambda m: m.file_size)  # the largest tensor's bytes
        start = weight.header_offset + 30 + len(weight.filename.encode()) + len(weight.extra)
    data[start + weight.file_size // 2] ^= 0x04
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'flipped.pt'} is damaged: the bytes of member "
                                              rf"'?{weight.filename}'? fail their CRC-32 check"):
        training_load(tmp_path / "flipped.pt")


class _Touches:
    """Pickles as ``os.system("touch <marker>")``: what a malicious checkpoint could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("raw", [False, True], ids=["torch-zip", "plain-pickle"])
def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, raw: bool) -> None:
    marker = tmp_path / "pwned"
    payload = {"format": "gen3d_ros.gca/1", "metrics": {"iou": _Touches(marker)}}
    path = tmp_path / "evil.pt"
    if raw:
        path.write_bytes(pickle.dumps(payload, 2))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError) as raised:
        training_load(path)
    assert not marker.exists()
    assert str(path) in str(raised.value)
    assert ("could run code" in str(raised.value) and "posix.system" in str(raised.value)) if not raw else \
        "not a torch.save zip archive" in str(raised.value)
    os.system(f"touch {marker}")  # the payload does what the test says it would
    assert marker.exists()


@pytest.mark.parametrize("path", PACKAGED, ids=[p.name for p in PACKAGED])
def test_packaged_models_load_with_weights_only(path: Path) -> None:
    from torch.torch_version import TorchVersion

    with torch.serialization.safe_globals([TorchVersion]):
        plain = torch.load(path, map_location="cpu", weights_only=True)
    ours = load_checkpoint_file(path)
    assert ours["format"] == plain["format"] and ours["format"].startswith("gen3d_ros.")
    assert read_checkpoint(path, "packaged", (ours["format"],))[0]["format"] == ours["format"]


def test_packaged_models_build_with_their_loaders() -> None:
    from gen3d_ros.completion.checkpoint import load_cgca as load_cgca_checkpoint
    from gen3d_ros.completion.inference import SceneCompleter
    from gen3d_ros.robot.gaussians import RobotGaussianModel

    model, ckpt = training_load(MODELS / "gca_demo.pt")
    assert ckpt["format"] == "gen3d_ros.gca/1" and sum(p.numel() for p in model.parameters()) > 10_000
    assert load_cgca_checkpoint(MODELS / "cgca_demo.pt")[2]["format"] == "gen3d_ros.cgca/1"
    assert SceneCompleter(MODELS / "hgca_demo.pt").fine_voxel == pytest.approx(0.2)
    assert RobotGaussianModel.load(MODELS / "drrobot_gen3d_test_arm.pt").config.n_gaussians == 3000


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_archives_torch_did_not_write_are_refused(tmp_path) -> None:
    plain = pickle.dumps({"format": "x/1"}, 2)
    with pytest.raises(CheckpointError, match="zip archive but not a X checkpoint: torch.save writes a "
                                              "<name>/data.pkl member, it has notes.txt"):
        read_checkpoint(_zip(tmp_path / "a.pt", {"notes.txt": b"hi"}), "X", ("x/1",))
    with pytest.raises(CheckpointError, match="member 'ckpt/data.pkl' is compressed"):
        read_checkpoint(_zip(tmp_path / "b.pt", {"ckpt/data.pkl": plain}, zipfile.ZIP_DEFLATED), "X", ("x/1",))
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'c.pt'} is truncated or corrupt"):
        read_checkpoint(_zip(tmp_path / "c.pt", {"ckpt/data.pkl": b"\x80\x02garbage"}), "X", ("x/1",))


def test_right_format_with_missing_or_mistyped_entries_names_the_entry(tmp_path) -> None:
    from gen3d_ros.completion.checkpoint import load_gca as load_checkpoint

    ckpt = load_checkpoint_file(MODELS / "gca_demo.pt")
    for change, message in [
        (lambda c: c.pop("state_dict"), "entry 'state_dict' is missing"),
        (lambda c: c.__setitem__("gca_config", [1, 2]), "entry 'gca_config' is a list, not a Mapping"),
        (lambda c: c["train_config"]["data"].__setitem__("voxel_size_m", "0.2"),
         "entry 'train_config.data.voxel_size_m' must be a finite number, not '0.2'"),
        (lambda c: c["train_config"]["data"].__setitem__("half_extent_m", [1.0]),
         "entry 'train_config.data.half_extent_m' must be two numbers"),
        (lambda c: c.__setitem__("planner_config", {"bev_cell_m": 2.0}), "entry 'planner_config' is a dict, not a "
                                                                         "null"),
    ]:
        bad = copy.deepcopy(ckpt)
        change(bad)
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=rf"{tmp_path / 'bad.pt'} is a gen3d_ros GCA checkpoint "
                                                  rf"\(gen3d_ros.gca/1\) whose {message}"):
            load_checkpoint(tmp_path / "bad.pt")
    bad = copy.deepcopy(ckpt)
    first = next(iter(bad["state_dict"]))
    bad["state_dict"][first] = torch.zeros(3, 3, 3)
    with pytest.raises(CheckpointError, match=r"<bundle>: the GCA weights do not fit the model its config describes: "
                                              r"1 weight\(s\) of the wrong shape"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="must be a file path or a checkpoint dict, not a int"):
        read_checkpoint(5, "X", ("x/1",))  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match=r"format tensor\(\[1\., 1\.\]\), expected 'x/1'"):
        read_checkpoint({"format": torch.ones(2)}, "X", ("x/1",))


def test_a_damaged_part_of_a_cgca_checkpoint_names_the_file(tmp_path) -> None:
    from gen3d_ros.completion.checkpoint import load_cgca as load_cgca_checkpoint

    ckpt = load_checkpoint_file(MODELS / "cgca_demo.pt")
    ckpt["autoencoder"]["state_dict"].popitem()
    torch.save(ckpt, tmp_path / "cgca.pt")
    with pytest.raises(CheckpointError, match=rf"a part of {tmp_path / 'cgca.pt'}: the cGCA autoencoder weights "
                                              r"do not fit the model its config describes: 1 missing weight"):
        load_cgca_checkpoint(tmp_path / "cgca.pt")


# --------------------------------------------------------------------------------------------------- loaders
# Errors found while building the models a checkpoint describes are CheckpointErrors naming the file.


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fuzz.test_fuzz_checkpoints import save_tiny_checkpoints

    return save_tiny_checkpoints(tmp_path_factory.mktemp("tiny_checkpoints"))


def test_gca_completer_with_a_bad_grid_is_a_checkpoint_error(tiny) -> None:
    from gen3d_ros.completion.inference import GCACompleter

    ckpt = load_checkpoint_file(tiny["gca"])
    ckpt["grid"]["voxel_size"] = -0.5
    with pytest.raises(CheckpointError, match="<bundle>"):
        GCACompleter(ckpt)
    # a checkpoint from before grids were stored: the grid comes from its data config
    ckpt = load_checkpoint_file(tiny["gca"])
    del ckpt["grid"]
    ckpt["train_config"]["data"]["half_extent_m"] = [2.05, 2.0]  # not a multiple of the voxel size
    with pytest.raises(CheckpointError, match="<bundle>.*not a multiple of the voxel size"):
        GCACompleter(ckpt)


def test_the_runtime_reads_only_the_grid_of_a_training_data_config(tiny) -> None:
    """Loading a model does not depend on training-only entries (the simulated sensor, the scenes)."""
    from gen3d_ros.completion.inference import GCACompleter

    ckpt = load_checkpoint_file(tiny["gca"])
    ckpt["train_config"]["data"]["lidar"] = {"preset": "a sensor this version does not know"}
    completer = GCACompleter(ckpt)
    assert completer.grid.same_as(GCACompleter(tiny["gca"]).grid)


def test_scene_completer_with_mismatched_grids_is_a_checkpoint_error(tiny, tmp_path) -> None:
    from gen3d_ros.completion.inference import SceneCompleter

    bundle = load_checkpoint_file(tiny["bundle"])
    bundle["coarse"]["grid"]["voxel_size"] = 0.8  # the grid the runtime reads
    torch.save(bundle, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=str(tmp_path / "b.pt")):
        SceneCompleter(tmp_path / "b.pt")


def test_scene_completer_errors_about_a_part_name_the_bundle_file(tiny, tmp_path) -> None:
    from gen3d_ros.completion.inference import SceneCompleter

    bundle = load_checkpoint_file(tiny["bundle"])
    bundle["coarse"]["state_dict"].popitem()
    torch.save(bundle, tmp_path / "b.pt")
    with pytest.raises(CheckpointError) as raised:
        SceneCompleter(tmp_path / "b.pt")
    assert str(tmp_path / "b.pt") in str(raised.value)


def test_a_config_asking_for_huge_layers_fails_without_allocating_them(tiny, tmp_path) -> None:
    """Sizes in a checkpoint's config are not trusted: the model is sized on the meta device and compared with
    the weights really stored before anything is allocated."""
    import tracemalloc

    from gen3d_ros.completion.checkpoint import load_gca as load_checkpoint

    ckpt = load_checkpoint_file(tiny["gca"])
    ckpt["gca_config"]["widths"] = [4096, 8192, 8192]
    torch.save(ckpt, tmp_path / "huge.pt")
    tracemalloc.start()
    with pytest.raises(CheckpointError, match="do not fit the model its config describes"):
        load_checkpoint(tmp_path / "huge.pt")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB allocated"
