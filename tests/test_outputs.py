"""No output replaces an input, --force only replaces gen3d_ros outputs, nothing is half-written, and every user
mistake of the CLI ends with exit code 2 and one line — checked through the real commands on real files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gen3d_ros.cli import main
from gen3d_ros.outputs import (DIR_MARKER, OutputError, OutputExistsError, atomic_folder, atomic_path,
                               prepare_output, prepare_run_folder, remove_stale_temporaries, save_figure, save_image,
                               save_torch, temporary_sibling, write_json, written_by_gen3d)

sys.path.insert(0, str(Path(__file__).parent / "bag"))
from bagdata import write_cloud_bag  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST = ["--set", "voxel_size=0.4", "--set", "poisson_depth=6", "--set", "roi_radius=12.0"]


def digest(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (names and contents)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def run_main(args: list[str], capsys) -> tuple[int, list[str]]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err), err
    return code, err


@pytest.fixture(scope="module")
def cloud_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "drive.mcap"
    write_cloud_bag(path, 1, topic="/points")
    return path


@pytest.fixture(scope="module")
def gca_checkpoint(tmp_path_factory) -> Path:
    from gen3d_ros.completion.gca import GCAConfig, GCATransition
    from gen3d_ros.completion.training.gca import make_config, save_checkpoint

    torch.manual_seed(0)
    config = make_config("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(GCATransition(GCAConfig(**config.model)), config, path)
    return path


@pytest.fixture(scope="module")
def scan_ply(tmp_path_factory) -> Path:
    from gen3d_ros.io.pointfiles import write_ply

    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-6, 6, (400, 2)), rng.uniform(-1.7, 0.5, 400)].astype(np.float32)
    path = tmp_path_factory.mktemp("scan") / "scan.ply"
    write_ply(path, pts)
    return path


# --------------------------------------------------------------------------------------- the module itself


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("crash while writing")
    assert json.loads(target.read_text())["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_markers_are_read_back_for_every_format_we_write(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    write_json(tmp_path / "r.json", {"x": 1})
    save_image(Image.new("RGB", (4, 4)), tmp_path / "i.png")
    save_image(Image.new("P", (4, 4)), tmp_path / "i.gif")
    fig = plt.figure()
    save_figure(fig, tmp_path / "f.png")
    plt.close(fig)
    save_torch({"format": "gen3d_ros.test/1", "torch_version": torch.__version__}, tmp_path / "m.pt")
    with atomic_folder(tmp_path / "run") as work:
        (work / "x.txt").write_text("x")
    for name in ("r.json", "i.png", "i.gif", "f.png", "m.pt", "run"):
        assert written_by_gen3d(tmp_path / name), name
    # the same kinds of files written by someone else are not ours
    (tmp_path / "user.json").write_text('{"generator": "someone"}')
    Image.new("RGB", (4, 4)).save(tmp_path / "user.png")
    torch.save({"format": "other/1"}, tmp_path / "user.pt")
    (tmp_path / "user_dir").mkdir()
    (tmp_path / "user.bin").write_bytes(b"\0" * 16)
    for name in ("user.json", "user.png", "user.pt", "user_dir", "user.bin", "missing.json"):
        assert not written_by_gen3d(tmp_path / name), name
    # a checkpoint saved through save_torch stores plain strings: it loads with weights_only=True as is
    assert isinstance(torch.load(tmp_path / "m.pt", weights_only=True)["torch_version"], str)


def test_prepare_output_rules(tmp_path: Path) -> None:
    source = tmp_path / "in.ply"
    source.write_text("ply")
    with pytest.raises(OutputError, match="would overwrite the input"):
        prepare_output(source, inputs=[source], force=True)
    with pytest.raises(OutputError, match="would overwrite the input"):
        prepare_output(tmp_path / "x" / ".." / "in.ply", inputs=[source])
    with pytest.raises(OutputError, match="would overwrite the input"):  # an output folder around the input
        prepare_output(tmp_path, inputs=[source], force=True)
    link = tmp_path / "link.ply"
    link.symlink_to(source)
    with pytest.raises(OutputError, match="would overwrite the input"):
        prepare_output(link, inputs=[source], force=True)
    with pytest.raises(OutputError, match="collides with another output"):
        prepare_output(tmp_path / "o.json", others=[tmp_path / "o.json"])
    ours = write_json(tmp_path / "ours.json", {})
    with pytest.raises(OutputExistsError, match="pass --force"):
        prepare_output(ours)
    assert prepare_output(ours, force=True) == ours
    with pytest.raises(OutputError, match="not written by gen3d_ros"):
        prepare_output(source, force=True)
    with pytest.raises(OutputError, match="cannot create the output folder|not writable"):
        prepare_output(source / "sub" / "x.json")  # a file where a folder should be


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale_file = tmp_path / f".out.ply.gen3d-tmp-{dead_pid}-0123abcd.ply"
    stale_dir = tmp_path / f".demo_out.gen3d-tmp-{dead_pid}-89abcdef"
    stale_file.write_text("half")
    stale_dir.mkdir()
    (stale_dir / "x").write_text("half")
    mine = temporary_sibling(tmp_path / "keep.json")
    mine.write_text("in progress")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([stale_file.name, stale_dir.name])
    assert mine.exists() and not stale_file.exists() and not stale_dir.exists()


def test_run_folder_must_be_new_empty_or_ours(tmp_path: Path) -> None:
    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"jpg")
    with pytest.raises(OutputError, match="not written by gen3d_ros"):
        prepare_run_folder(user, force=True)
    run = prepare_run_folder(tmp_path / "run", product="model.pt")
    assert (run / DIR_MARKER).is_file() and written_by_gen3d(run)
    (run / "model.pt").write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        prepare_run_folder(run, product="model.pt")
    assert prepare_run_folder(run, product="model.pt", force=True) == run


# --------------------------------------------------------------------------------------- through the CLI


def test_bag_report_cannot_replace_the_input_bag(cloud_bag: Path, tmp_path: Path, capsys) -> None:
    before = digest(cloud_bag)
    code, err = run_main(["bag", cloud_bag, "-o", tmp_path / "out", "--report", cloud_bag, "--force", *FAST], capsys)
    assert code == 2 and "would overwrite the input" in err[-1]
    assert digest(cloud_bag) == before and not (tmp_path / "out").exists()


def test_force_never_deletes_a_folder_gen3d_did_not_write(cloud_bag: Path, tmp_path: Path, capsys) -> None:
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("precious")
    before = digest(user)
    code, err = run_main(["bag", cloud_bag, "-o", user, "--force", *FAST], capsys)
    assert code == 2 and "not written by gen3d_ros" in err[-1]
    code, err = run_main(["demo", "-o", user, "--force", "--sweeps", "1", "--robot-frames", "0"], capsys)
    assert code == 2 and "not written by gen3d_ros" in err[-1]
    assert digest(user) == before


def test_bag_force_replaces_its_own_output(cloud_bag: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "completed.mcap"
    assert main(["bag", str(cloud_bag), "-o", str(out), *FAST]) == 0
    assert written_by_gen3d(out)
    assert main(["bag", str(cloud_bag), "-o", str(out), "--force", *FAST]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["completed.mcap"]  # no temporaries left behind


def test_complete_refuses_to_overwrite_its_input_even_with_force(scan_ply: Path, gca_checkpoint: Path,
                                                                 capsys) -> None:
    before = digest(scan_ply)
    code, err = run_main(["complete", scan_ply, "-o", scan_ply, "--checkpoint", gca_checkpoint, "--force"], capsys)
    assert code == 2 and "would overwrite the input" in err[-1]
    code, err = run_main(["complete", scan_ply, "-o", gca_checkpoint, "--checkpoint", gca_checkpoint, "--force"],
                         capsys)
    assert code == 2 and "would overwrite the input" in err[-1]
    assert digest(scan_ply) == before


def test_estimate_pose_refuses_to_overwrite_the_image(tmp_path: Path, capsys) -> None:
    from PIL import Image

    image = tmp_path / "frame.png"
    Image.new("RGB", (32, 32), "white").save(image)
    before = digest(image)
    for extra in ([], ["--force"]):
        code, err = run_main(["estimate-pose", image, "--fov-deg", "45", "-o", image, *extra], capsys)
        assert code == 2 and "would overwrite the input" in err[-1]
        code, err = run_main(["estimate-pose", image, "--fov-deg", "45", "-o", tmp_path / "r.json",
                              "--overlay", image, *extra], capsys)
        assert code == 2 and "would overwrite the input" in err[-1]
    assert digest(image) == before


@pytest.mark.parametrize("args, message", [
    (["complete", "{scan}", "-o", "{tmp}/c.ply", "--checkpoint", "{ckpt}", "--steps", "-5"],
     "--steps must be >= 1"),
    (["complete", "{scan}", "-o", "{tmp}/c.ply", "--checkpoint", "{ckpt}", "--device", "cuda:0"],
     "no usable CUDA GPU"),
    (["complete", "{scan}", "-o", "{tmp}/c.ply", "--checkpoint", "{ckpt}", "--device", "gpu7"],
     "is not a torch device name"),
    (["complete", "{scan}", "-o", "{tmp}/c.ply", "--checkpoint", "{random}"], "not a torch.save zip archive"),
    (["complete", "{scan}", "-o", "{tmp}/c.ply", "--checkpoint", "{empty}"], "is empty (0 bytes)"),
    (["complete", "{scan}", "-o", "{tmp}/c.ply", "--checkpoint", "{truncated}"], "truncated or corrupt"),
    (["complete", "{scan}", "-o", "/sys/gen3d_cannot_write/c.ply", "--checkpoint", "{ckpt}"],
     "cannot create the output folder"),
    (["estimate-pose", "{image}", "--fov-deg", "45", "-o", "{tmp}/r.json", "--checkpoint", "{random}"],
     "not a torch.save zip archive"),
    (["estimate-pose", "{image}", "--fov-deg", "45", "-o", "{tmp}/r.json", "--device", "cuda"], "no usable CUDA GPU"),
    (["train-completion", "-o", "{tmp}/run", "--preset", "tiny", "--set", "device=cuda"], "no usable CUDA GPU"),
    (["train-robot", "-o", "{tmp}/run", "--device", "cuda"], "no usable CUDA GPU"),
])
def test_user_errors_exit_2_before_any_work(args: list[str], message: str, tmp_path: Path, scan_ply: Path,
                                            gca_checkpoint: Path, capsys) -> None:
    if "cuda" in " ".join(args) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from PIL import Image

    random_file = tmp_path / "random.pt"
    random_file.write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "empty.pt").write_bytes(b"")
    data = gca_checkpoint.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (32, 32), "white").save(tmp_path / "img.png")
    values = {"tmp": tmp_path, "scan": scan_ply, "ckpt": gca_checkpoint, "random": random_file,
              "empty": tmp_path / "empty.pt", "truncated": tmp_path / "trunc.pt", "image": tmp_path / "img.png"}
    code, err = run_main([a.format(**values) for a in args], capsys)
    assert code == 2, err
    assert len(err) >= 1 and message in err[-1], err
    assert not (tmp_path / "c.ply").exists() and not (tmp_path / "r.json").exists()
    assert not (tmp_path / "run").exists() or not any(p.suffix == ".pt" for p in (tmp_path / "run").iterdir())


def test_read_only_output_folder_is_reported_before_the_computation(tmp_path: Path, scan_ply: Path,
                                                                    gca_checkpoint: Path, capsys) -> None:
    if os.geteuid() == 0:  # root writes into chmod-ed folders; sysfs refuses new files even to root
        locked = Path("/sys/kernel")
        probe = locked / "gen3d_probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("no read-only folder available to root here")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
    before = sorted(p.name for p in locked.iterdir())
    code, err = run_main(["complete", scan_ply, "-o", locked / "c.ply", "--checkpoint", gca_checkpoint], capsys)
    assert code == 2 and "is not writable" in err[-1], err
    assert sorted(p.name for p in locked.iterdir()) == before


def test_sigterm_leaves_the_previous_output_and_no_temporaries(cloud_bag: Path, tmp_path: Path) -> None:
    """A demo killed half-way keeps the previous output folder intact; its temporary folder is gone."""
    out = tmp_path / "demo_out"
    with atomic_folder(out) as work:
        (work / "old.txt").write_text("previous run")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "gen3d_ros", "demo", "-o", str(out), "--force", "--sweeps", "3",
                             "--robot-frames", "0"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(".gen3d-tmp-" in p.name for p in tmp_path.iterdir()):
        time.sleep(0.05)
    assert any(".gen3d-tmp-" in p.name for p in tmp_path.iterdir()), "the demo never started writing"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert (out / "old.txt").read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_out"]
