"""Checkpoint formats of the completion models: what each file holds, how it is loaded, how it is written.

| format                       | model                                          | written by                          |
|------------------------------|------------------------------------------------|-------------------------------------|
| ``gen3d_ros.gca/1``          | :class:`~.gca.GCATransition`                   | ``train-completion``                |
| ``gen3d_ros.hgca_coarse/1``  | :class:`~.planned_gca.PlannedGCATransition`    | ``train-completion`` with a planner |
| ``gen3d_ros.cgca_ae/1``      | :class:`~.latent.CGCAAutoencoder`              | ``--stage autoencoder``             |
| ``gen3d_ros.cgca/1``         | :class:`~.cgca.CGCATransition` + its autoencoder | ``--stage fine``                  |
| ``gen3d_ros.hgca/1``         | bundle: a coarse checkpoint + a cGCA checkpoint | ``--stage hierarchy``              |

Every checkpoint is a dict of plain data and tensors (read with ``weights_only=True`` by
:mod:`gen3d_ros.checkpoints`): ``format``, the model's config, ``state_dict``, the training config, ``grid``
(:class:`~.grid.VoxelGrid` dict; older files only have it in ``train_config.data``), the sparse backend it was
trained with, versions and metrics. Loading builds the model after checking its weights' shapes
(:func:`gen3d_ros.checkpoints.load_model`); every failure is a ``CheckpointError`` naming the file.

This module is runtime code: it imports no training loop and no data generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from gen3d_ros import __version__
from gen3d_ros.checkpoints import CheckpointError, checkpoint_contents, load_model, read_checkpoint
from gen3d_ros.completion.cgca import CGCAConfig, CGCATransition
from gen3d_ros.completion.gca import GCAConfig, GCATransition
from gen3d_ros.completion.grid import VoxelGrid
from gen3d_ros.completion.latent import AutoencoderConfig, CGCAAutoencoder
from gen3d_ros.completion.planned_gca import PlannedGCATransition
from gen3d_ros.completion.planner import BEVPlannerConfig

GCA_FORMAT = "gen3d_ros.gca/1"
PLANNED_GCA_FORMAT = "gen3d_ros.hgca_coarse/1"
"""Format of checkpoints of planned kernels (older readers refuse them instead of failing on the weights)."""
AUTOENCODER_FORMAT = "gen3d_ros.cgca_ae/1"
CGCA_FORMAT = "gen3d_ros.cgca/1"
BUNDLE_FORMAT = "gen3d_ros.hgca/1"

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def packaged_model(name: str, how_to_train: str) -> Path:
    """``gen3d_ros/models/<name>``, the model committed with the package; FileNotFoundError saying how to make it."""
    path = MODELS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"the packaged model {path} is missing; train one with `{how_to_train}`")
    return path


def default_gca_checkpoint() -> Path:
    """The GCA model committed with the package (``gen3d train-completion --preset demo``; see its model card)."""
    return packaged_model("gca_demo.pt", "gen3d train-completion --preset demo -o runs/gca_demo")


def default_hgca_checkpoint() -> Path:
    """The hGCA bundle committed with the package (see ``gen3d_ros/models/README.md``)."""
    return packaged_model("hgca_demo.pt", "gen3d train-completion --stage hierarchy --preset demo -o runs/hgca_demo")


def default_cgca_checkpoint() -> Path:
    """The single-level cGCA committed with the package (``cgca_demo.pt``; see its model card)."""
    return packaged_model("cgca_demo.pt", "gen3d train-completion --stage fine --preset demo_flat")


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _provenance(backend: str, metrics: Mapping | None) -> dict[str, Any]:
    return {"backend": backend, "gen3d_ros_version": __version__, "torch_version": str(torch.__version__),
            "metrics": dict(metrics or {})}


# ---------------------------------------------------------------------------------------------- grids


def checkpoint_grid(ckpt: Mapping, name: str = "<bundle>") -> VoxelGrid:
    """The grid a GCA/cGCA/autoencoder checkpoint works on: its ``grid`` entry, else the one its training data
    config describes (checkpoints written before grids were stored; a cGCA falls back to its autoencoder's)."""
    with checkpoint_contents(name, "completion"):
        grid = ckpt.get("grid")
        if isinstance(grid, Mapping) and "shape" in grid:
            return VoxelGrid.from_dict(grid)
        data = (ckpt.get("train_config") or {}).get("data") or {}
        if not data and isinstance(ckpt.get("autoencoder"), Mapping):
            data = (ckpt["autoencoder"].get("train_config") or {}).get("data") or {}
        return VoxelGrid.from_data(data)


# ---------------------------------------------------------------------------------------------- GCA


def gca_checkpoint(model: GCATransition, train_config: Mapping, grid: VoxelGrid, *, backend: str,
                   metrics: Mapping | None = None) -> dict:
    """The checkpoint dict of a (planned) GCA kernel: weights, kernel/planner/training configs, grid, versions."""
    planned = isinstance(model, PlannedGCATransition)
    return {"format": PLANNED_GCA_FORMAT if planned else GCA_FORMAT, "gca_config": model.config.to_dict(),
            "planner_config": model.planner_config.to_dict() if planned else None,
            "train_config": dict(train_config), "grid": grid.to_dict(), "state_dict": _state_dict(model),
            **_provenance(backend, metrics)}


def load_gca(source: str | Path | Mapping, *, device: str = "cpu",
             backend: str | None = None) -> tuple[GCATransition, dict]:
    """Model (eval mode) and the checkpoint dict. A checkpoint with a ``planner_config`` gives a
    :class:`PlannedGCATransition`, else a :class:`GCATransition`. Errors name the file and the problem."""
    ckpt, name = read_checkpoint(source, "gen3d_ros GCA", (GCA_FORMAT, PLANNED_GCA_FORMAT))
    planner = ckpt.get("planner_config")
    if (ckpt["format"] == PLANNED_GCA_FORMAT) != bool(planner):
        raise CheckpointError(f"{name}: format {ckpt['format']!r} but planner_config is {planner!r}")
    with checkpoint_contents(name, "GCA"):
        config = GCAConfig(**ckpt["gca_config"])
        planner_config = BEVPlannerConfig(**planner) if planner else None
    if planner_config is not None:
        model = load_model(name, "planned GCA", lambda: PlannedGCATransition(config, planner_config, backend=backend),
                           ckpt["state_dict"])
    else:
        model = load_model(name, "GCA", lambda: GCATransition(config, backend=backend), ckpt["state_dict"])
    return model.to(device).eval(), ckpt


# ---------------------------------------------------------------------------------------------- cGCA


def autoencoder_checkpoint(model: CGCAAutoencoder, train_config: Mapping, *, backend: str,
                           metrics: Mapping | None = None) -> dict:
    """The checkpoint dict of a cGCA autoencoder (its grid: voxel size and origin; the decoder is local)."""
    return {"format": AUTOENCODER_FORMAT, "autoencoder_config": (model.config or AutoencoderConfig()).to_dict(),
            "grid": {"voxel_size": model.voxel_size, "origin": list(model.origin)},
            "train_config": dict(train_config), "state_dict": _state_dict(model), **_provenance(backend, metrics)}


def load_autoencoder(source: str | Path | Mapping, *, device: str = "cpu",
                     backend: str | None = None) -> tuple[CGCAAutoencoder, dict]:
    """Autoencoder (eval mode) and the checkpoint dict. Errors name the file and the problem."""
    ckpt, name = read_checkpoint(source, "cGCA autoencoder", (AUTOENCODER_FORMAT,))
    with checkpoint_contents(name, "cGCA autoencoder"):
        config = AutoencoderConfig.from_dict(ckpt["autoencoder_config"])
        voxel, origin = ckpt["grid"]["voxel_size"], ckpt["grid"]["origin"]
    model = load_model(name, "cGCA autoencoder",
                       lambda: CGCAAutoencoder.from_config(config, voxel, origin, backend=backend), ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def cgca_checkpoint(model: CGCATransition, train_config: Mapping, autoencoder: Mapping, grid: VoxelGrid, *,
                    backend: str, metrics: Mapping | None = None) -> dict:
    """The checkpoint dict of a cGCA kernel, with the autoencoder checkpoint it decodes with embedded."""
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else vars(model.config)
    return {"format": CGCA_FORMAT, "cgca_config": config, "train_config": dict(train_config),
            "autoencoder": dict(autoencoder), "grid": grid.to_dict(), "state_dict": _state_dict(model),
            **_provenance(backend, metrics)}


def load_cgca(source: str | Path | Mapping, *, device: str = "cpu", backend: str | None = None
              ) -> tuple[CGCATransition, CGCAAutoencoder, dict]:
    """Kernel and autoencoder (eval mode) and the checkpoint dict; errors name the file and the problem."""
    ckpt, name = read_checkpoint(source, "cGCA", (CGCA_FORMAT,))
    with checkpoint_contents(name, "cGCA"):
        autoencoder, _ = load_autoencoder(ckpt["autoencoder"], device=device, backend=backend)
        config = CGCAConfig(**ckpt["cgca_config"])
    model = load_model(name, "cGCA", lambda: CGCATransition(config, backend=backend), ckpt["state_dict"])
    return model.to(device).eval(), autoencoder, ckpt


# ---------------------------------------------------------------------------------------------- hGCA bundle


def _half(tree: Any) -> Any:
    """Floating-point tensors of a nested checkpoint as float16 (``load_state_dict`` casts them back)."""
    if isinstance(tree, torch.Tensor):
        return tree.half() if tree.is_floating_point() else tree
    if isinstance(tree, dict):
        return {k: _half(v) for k, v in tree.items()}
    return tree


def save_bundle(path: str | Path, coarse: Mapping, fine: Mapping, metrics: Mapping | None = None,
                command: str = "", *, half: bool = False) -> None:
    """One file holding the coarse checkpoint and the fine checkpoint (which embeds its autoencoder).
    ``half``: store the weights as float16 (half the size; what the packaged demo bundle does)."""
    from gen3d_ros.outputs import save_torch

    coarse, fine = (_half(dict(coarse)), _half(dict(fine))) if half else (dict(coarse), dict(fine))
    save_torch({"format": BUNDLE_FORMAT, "coarse": coarse, "fine": fine, "metrics": dict(metrics or {}),
                "command": command, "weights_dtype": "float16" if half else "float32",
                "gen3d_ros_version": __version__, "torch_version": str(torch.__version__)}, path)


def load_bundle(path: str | Path) -> dict:
    """The bundle dict (``coarse``, ``fine`` checkpoint dicts, metrics); errors name the file."""
    return read_checkpoint(Path(path), "hGCA bundle", (BUNDLE_FORMAT,))[0]
