"""Property-based fuzzing of the checkpoint readers: a malformed checkpoint is one CheckpointError naming the file
(or FileNotFoundError), never a KeyError / RuntimeError / TypeError from inside a loader, and never runs code.

Every generated file goes through :func:`gen3d_ros.checkpoints.load_checkpoint_file`,
:func:`~gen3d_ros.checkpoints.read_checkpoint` and the real loaders (GCA, cGCA, hGCA bundle and
``SceneCompleter``, Dr. Robot) inside :func:`harness.expect_clean_failure`: random bytes, byte mutations of small
checkpoints written once per module with the real save functions (plus the packaged cGCA and hGCA models),
zip archives with the wrong members, torch files holding foreign objects (pickles whose globals would run code:
the code must not run), and dicts with the right ``format`` but entries removed, retyped or tensors reshaped.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen3d_ros.checkpoints import LAYOUTS, CheckpointError, load_checkpoint_file, read_checkpoint
from gen3d_ros.completion import checkpoint, inference
from gen3d_ros.completion.training import autoencoder as autoencoder_training
from gen3d_ros.completion.training import gca as gca_training
from gen3d_ros.completion.cgca import CGCAConfig, CGCATransition
from gen3d_ros.completion.gca import GCAConfig, GCATransition
from gen3d_ros.completion.grid import VoxelGrid
from gen3d_ros.completion.planned_gca import PlannedGCATransition
from gen3d_ros.completion.latent import AutoencoderConfig, CGCAAutoencoder
from gen3d_ros.completion.planner import BEVPlannerConfig
from gen3d_ros.outputs import save_torch
from gen3d_ros.robot.description import load_robot
from gen3d_ros.robot.gaussians import GaussianModelConfig, RobotGaussianModel

from .harness import examples, expect_clean_failure

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
ALLOWED = (CheckpointError, FileNotFoundError)
ROBOT = load_robot("test_arm")

#: Every reader, as a callable of a path.
LOADERS: dict[str, Callable[[Path], Any]] = {
    "load_checkpoint_file": lambda p: load_checkpoint_file(p, "fuzzed"),
    "read_checkpoint": lambda p: read_checkpoint(p, "any gen3d_ros", tuple(LAYOUTS)),
    "gca": lambda p: checkpoint.load_gca(p),
    "cgca": lambda p: checkpoint.load_cgca(p),
    "bundle": lambda p: checkpoint.load_bundle(p),
    "scene": lambda p: inference.SceneCompleter(p),
    "drrobot": lambda p: RobotGaussianModel.load(p, ROBOT),
}


def save_tiny_checkpoints(root: Path) -> dict[str, Path]:
    """GCA, Dr. Robot, cGCA (with its autoencoder) and hGCA bundle checkpoints of tiny untrained models, written
    by the real save functions (tens of kB each: loading one is milliseconds, where the packaged models take
    ten times as long under the harness's allocation tracing)."""
    grid = {"half_extent_m": [2.0, 2.0], "z_range_m": [-0.8, 1.6]}
    gca_training.save_checkpoint(GCATransition(GCAConfig(widths=(4, 8), steps=2)), gca_training.TrainConfig(),
                                 root / "gca.pt")
    RobotGaussianModel(ROBOT, GaussianModelConfig(n_gaussians=64, hidden=8, n_freqs=1)).save(root / "dr.pt")
    coarse = PlannedGCATransition(GCAConfig(widths=(4,), steps=2),
                                  BEVPlannerConfig(feat_dim=4, pointnet_hidden=4, unet_widths=(4,), out_dim=4,
                                                   voxel_size_m=0.4))
    gca_training.save_checkpoint(coarse, gca_training.TrainConfig(data={"voxel_size_m": 0.4, **grid}), root / "coarse.pt")
    autoencoder = CGCAAutoencoder.from_config(
        AutoencoderConfig(z_dim=4, hidden=8, decoder_blocks=1, encoder_point_blocks=1, encoder_conv_blocks=1,
                          scales=(1,), fourier_frequencies=1), 0.2, (-2.0, -2.0, -0.8))
    fine_data = {"voxel_size_m": 0.2, **grid}
    autoencoder_training.save_checkpoint(
        autoencoder, autoencoder_training.AutoencoderTrainConfig(data=fine_data), root / "ae.pt")
    fine = checkpoint.cgca_checkpoint(CGCATransition(CGCAConfig(widths=(4,), z_dim=4, coarse_scale=2, steps=2)),
                                      {"data": fine_data}, load_checkpoint_file(root / "ae.pt"),
                                      VoxelGrid.from_data(fine_data), backend="torch")
    save_torch(fine, root / "cgca.pt")
    checkpoint.save_bundle(root / "hgca.pt", load_checkpoint_file(root / "coarse.pt"), fine)
    return {"gca": root / "gca.pt", "drrobot": root / "dr.pt", "cgca": root / "cgca.pt", "bundle": root / "hgca.pt"}


class Checkpoints:
    """Small real checkpoints (bytes and dicts) and a work folder for the cases."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        self.files = save_tiny_checkpoints(root)
        self.bytes = {name: path.read_bytes() for name, path in self.files.items()}
        self.dicts = {name: load_checkpoint_file(path) for name, path in self.files.items()}

    def case(self, data: bytes, name: str = "case.pt") -> Path:
        path = self.work / name
        path.write_bytes(data)
        return path

    def saved(self, obj: Any, name: str = "case.pt") -> Path:
        path = self.work / name
        torch.save(obj, path)
        return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> Checkpoints:
    return Checkpoints(tmp_path_factory.mktemp("fuzz_checkpoints"))


def through_every_loader(target: str, path: Path, loaders: tuple[str, ...] = tuple(LOADERS)) -> list[object]:
    return [expect_clean_failure(f"{target}/{name}", LOADERS[name], path, allowed=ALLOWED) for name in loaders]


def assert_names_the_file(outcomes: list[object], path: Path) -> None:
    for outcome in outcomes:
        if isinstance(outcome, CheckpointError):
            assert str(path) in str(outcome) or "<bundle>" not in str(outcome), outcome


def test_the_small_checkpoints_load(ckpts: Checkpoints) -> None:
    for name, loader in {"gca": "gca", "drrobot": "drrobot", "cgca": "cgca", "bundle": "scene"}.items():
        assert expect_clean_failure(f"pristine/{name}", LOADERS[loader], ckpts.files[name], allowed=()) is not None
    wrong = expect_clean_failure("pristine/wrong", LOADERS["gca"], ckpts.files["drrobot"], allowed=ALLOWED)
    assert isinstance(wrong, CheckpointError) and "format 'gen3d_ros.drrobot/1'" in str(wrong)


# ------------------------------------------------------------------------------------------------ bytes


@settings(max_examples=examples(300), **SETTINGS)
@given(head=st.sampled_from([b"", b"PK\x03\x04", b"PK\x05\x06", b"\x80\x02", b"\x89MCAP"]),
       body=st.binary(max_size=300))
def test_random_bytes_fail_cleanly(ckpts: Checkpoints, head: bytes, body: bytes) -> None:
    path = ckpts.case(head + body)
    outcomes = through_every_loader("random", path, ("load_checkpoint_file", "read_checkpoint", "gca"))
    assert all(isinstance(o, CheckpointError) for o in outcomes)
    assert all(str(path) in str(o) for o in outcomes)


@st.composite
def byte_mutation(draw: st.DrawFn, size: int) -> tuple[str, int, bytes]:
    kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "append"]))
    if kind == "flip":
        return kind, draw(st.integers(0, size - 1)), bytes([1 << draw(st.integers(0, 7))])
    if kind == "overwrite":
        return kind, draw(st.integers(0, size - 1)), draw(st.binary(min_size=1, max_size=8))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1)), b""
    return kind, size, draw(st.binary(min_size=1, max_size=64))


def apply(data: bytes, mutation: tuple[str, int, bytes]) -> bytes:
    kind, at, payload = mutation
    if kind == "flip":
        out = bytearray(data)
        out[at] ^= payload[0]
        return bytes(out)
    if kind == "overwrite":
        return data[:at] + payload + data[at + len(payload):]
    return data[:at] if kind == "truncate" else data + payload


@settings(max_examples=examples(160), **SETTINGS)
@given(which=st.sampled_from(["gca", "gca", "drrobot", "drrobot", "cgca", "bundle"]), data=st.data())
def test_byte_mutations_of_real_checkpoints_fail_cleanly(ckpts: Checkpoints, which: str, data: st.DataObject) -> None:
    """Bit flips, overwrites, truncations and appended bytes of a real checkpoint, read by its own loader. A
    flipped bit inside a member (weights included) fails the member's CRC-32, so it never loads as a
    different model."""
    pristine = ckpts.bytes[which]
    mutation = data.draw(byte_mutation(len(pristine)))
    path = ckpts.case(apply(pristine, mutation))
    loader = "scene" if which == "bundle" else which
    outcomes = through_every_loader(f"bytes/{which}", path, ("load_checkpoint_file", loader))
    assert_names_the_file(outcomes, path)


# ------------------------------------------------------------------------------------------------ archives

MEMBER_NAMES = ["archive/data.pkl", "data.pkl", "archive/data/0", "archive/version", "archive/.format_version",
                "other/data.pkl", "archive/byteorder", "../evil/data.pkl", "archive/sub/data.pkl"]


@settings(max_examples=examples(250), **SETTINGS)
@given(members=st.lists(st.tuples(st.sampled_from(MEMBER_NAMES),
                                  st.one_of(st.binary(max_size=64),
                                            st.sampled_from([pickle.dumps({"format": "gen3d_ros.gca/1"}, 2),
                                                             pickle.dumps([1, 2, 3]), b"\x80\x02}q\x00.",
                                                             b"3", b"little"]))),
                        min_size=0, max_size=4),
       deflate=st.booleans())
def test_zip_archives_with_wrong_members_fail_cleanly(ckpts: Checkpoints, members: list, deflate: bool) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as archive:
        for name, content in members:
            archive.writestr(name, content)
    path = ckpts.case(buffer.getvalue())
    outcomes = through_every_loader("zip", path)
    assert not any(isinstance(o, (dict, tuple)) for o in outcomes[2:])  # no model from a foreign archive


# ------------------------------------------------------------------------------------------------ code in pickles


class _Calls:
    """Pickles as ``fn(*args)``: what a malicious checkpoint holds (``torch.save`` pickles it, never runs it)."""

    def __init__(self, fn: Callable, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple:
        return self.fn, self.args


def _payloads(marker: Path) -> list[_Calls]:
    """Ways a pickle could create ``marker`` if its globals were honoured."""
    return [_Calls(os.system, f"touch {marker}"), _Calls(subprocess.check_call, ["touch", str(marker)]),
            _Calls(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
            _Calls(builtins.eval, f"open({str(marker)!r}, 'w').close()"), _Calls(builtins.open, str(marker), "w"),
            _Calls(Path.touch, marker)]


@settings(max_examples=examples(120), **SETTINGS)
@given(payload=st.integers(0, 5), where=st.sampled_from(["top", "value", "state_dict", "list", "format"]),
       raw_pickle=st.booleans())
def test_pickles_that_would_run_code_are_refused_and_never_run(ckpts: Checkpoints, payload: int, where: str,
                                                               raw_pickle: bool) -> None:
    marker = ckpts.work / "pwned"
    marker.unlink(missing_ok=True)
    evil = _payloads(marker)[payload]
    base = dict(ckpts.dicts["gca"])
    # The object comes first in its container: the unpickler meets it before the weights (the cases stay fast;
    # where it sits does not change what the unpickler must do with it).
    def first(key: str, value: Any) -> dict:
        return {key: value, **{k: v for k, v in base.items() if k != key}}

    obj: Any = {"top": evil, "value": first("metrics", {"iou": evil}),
                "state_dict": first("state_dict", {"x": evil, **base["state_dict"]}),
                "list": [evil, base], "format": first("format", evil)}[where]
    path = ckpts.case(pickle.dumps(obj, 2)) if raw_pickle else ckpts.saved(obj)
    outcomes = through_every_loader("pickle", path)
    assert not marker.exists(), f"loading {path} ran the pickled {evil.fn}"
    for outcome in outcomes:
        assert isinstance(outcome, CheckpointError) and str(path) in str(outcome), outcome
    if not raw_pickle:
        assert "could run code" in str(outcomes[0])


# ------------------------------------------------------------------------------------------------ foreign objects


PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=10),
              st.sampled_from(["gen3d_ros.gca/1", "gen3d_ros.hgca/1", "gen3d_ros.drrobot/1", "gen3d_ros.cgca/1"]),
              st.builds(torch.zeros, st.integers(0, 3))),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children,
                                                                              max_size=3)),
    max_leaves=8)


@settings(max_examples=examples(120), **SETTINGS)
@given(obj=PLAIN, fmt=st.sampled_from([None, *LAYOUTS, torch.ones(3), 7]))
def test_torch_files_of_foreign_objects_fail_cleanly(ckpts: Checkpoints, obj: Any, fmt: Any) -> None:
    """Valid torch files holding anything but our checkpoints: lists, tensors, numbers, dicts without a
    ``format`` or with a known ``format`` and nothing else it needs."""
    if fmt is not None:
        obj = {"format": fmt, **(obj if isinstance(obj, dict) else {"x": obj})}
    path = ckpts.saved(obj)
    outcomes = through_every_loader("foreign", path)
    assert outcomes[0] is not None or obj is None  # load_checkpoint_file returns the object
    for outcome in outcomes[1:]:
        assert isinstance(outcome, CheckpointError) and str(path) in str(outcome), outcome


# ------------------------------------------------------------------------------------------------ dict contents


def _paths(tree: Any, prefix: tuple = (), skip: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = prefix + (key,)
            if ".".join(map(str, path)) in skip:
                continue
            out.append(path)
            out += _paths(value, path, skip)
    elif isinstance(tree, list):
        for i, value in enumerate(tree[:4]):
            out.append(prefix + (i,))
            out += _paths(value, prefix + (i,), skip)
    return out


#: Values written over an entry. Integers stay small or overflow outright: a plausible mid-size width (say 4096)
#: would make a loader allocate gigabytes before load_state_dict notices the shapes (see the report).
ODD = st.one_of(st.sampled_from([None, -1, 0, 1, 3, 2**70, 1.5, float("nan"), "x", "", True, [], {}, [1, 2],
                                 {"a": 1}]), st.builds(torch.zeros, st.integers(0, 5)),
                st.builds(lambda: torch.zeros(2, 2, dtype=torch.int64)))
#: The grid entries of ``train_config.data`` that checkpoints.LAYOUTS checks (the runtime reads only the grid of
#: a data config; the scene, lidar and augmentation entries are training-only and not read when loading).
GRID_KEYS = ("voxel_size_m", "half_extent_m", "z_range_m")


def _fuzzable(which: str, path: tuple, kind: str) -> bool:
    text = [str(k) for k in path]
    if text == ["format"]:
        return False
    if which == "bundle" and ("data" in text or text[-1] == "coarse_scale"):
        return False
    if "data" in text and text.index("data") > 0 and text[text.index("data") - 1] == "train_config":
        rest = text[text.index("data") + 1:]
        return not rest or kind == "delete" and len(rest) == 1 or rest[0] in GRID_KEYS
    return True


def _mutated(tree: dict, path: tuple, kind: str, value: Any) -> dict:
    """A copy of ``tree`` with the entry at ``path`` deleted, replaced by ``value``, or (a tensor) reshaped."""
    def copy(node: Any, rest: tuple) -> Any:
        if not rest:
            return node
        key, tail = rest[0], rest[1:]
        if isinstance(node, dict):
            node = dict(node)
        elif isinstance(node, list):
            node = list(node)
        else:
            return node
        if not tail:
            if kind == "delete":
                del node[key]
            elif kind == "reshape" and isinstance(node[key], torch.Tensor):
                node[key] = node[key].flatten()[:max(1, node[key].numel() - 1)]
            else:
                node[key] = value
        else:
            node[key] = copy(node[key], tail)
        return node

    return copy(tree, path)


@settings(max_examples=examples(100), **SETTINGS)
@given(which=st.sampled_from(["gca", "cgca", "drrobot", "bundle"]), kind=st.sampled_from(["delete", "set", "reshape"]),
       data=st.data())
def test_right_format_but_wrong_entries_fail_cleanly(ckpts: Checkpoints, which: str, kind: str,
                                                    data: st.DataObject) -> None:
    """Dicts with the right ``format`` but an entry removed, given another type, or a weight tensor reshaped,
    through the loader of that format (dicts directly where the loader takes one, else saved to a file)."""
    tree = ckpts.dicts[which]
    paths = [p for p in _paths(tree) if _fuzzable(which, p, kind)]
    if kind == "reshape":
        paths = [p for p in paths if isinstance(_get(tree, p), torch.Tensor)]
    path = data.draw(st.sampled_from(paths))
    mutated = _mutated(tree, path, kind, data.draw(ODD) if kind == "set" else None)
    if which == "gca":
        outcome = expect_clean_failure("dict/gca", checkpoint.load_gca, mutated, allowed=ALLOWED)
        expect_clean_failure("dict/gca-completer", _gca_completer, mutated, allowed=ALLOWED)
    elif which == "cgca":
        outcome = expect_clean_failure("dict/cgca", checkpoint.load_cgca, mutated, allowed=ALLOWED)
    elif which == "drrobot":
        outcome = expect_clean_failure("dict/drrobot", LOADERS["drrobot"], ckpts.saved(mutated), allowed=ALLOWED)
    else:
        outcome = expect_clean_failure("dict/scene", LOADERS["scene"], ckpts.saved(mutated), allowed=ALLOWED)
    if isinstance(outcome, CheckpointError) and which == "drrobot":
        assert str(ckpts.work / "case.pt") in str(outcome)


def _get(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _gca_completer(ckpt: dict) -> Any:
    from gen3d_ros.completion.inference import GCACompleter

    return GCACompleter(ckpt)
