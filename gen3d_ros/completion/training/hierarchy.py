"""Training the hGCA hierarchy: autoencoder, fine cGCA and planned coarse GCA, bundled into one file.

The stages are trained separately, as in hGCA: the fine stage on ground-truth coarse cells (it needs the coarse
grid, not the coarse model). Each stage has its own run folder and is reused when its ``model.pt`` exists, so an
interrupted run resumes. The bundle (``hgca.pt``, :func:`gen3d_ros.completion.checkpoint.save_bundle`) is what
:class:`gen3d_ros.completion.inference.SceneCompleter` loads.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

from gen3d_ros.completion.checkpoint import load_cgca, load_gca, save_bundle
from gen3d_ros.completion.training import autoencoder, cgca, distributed, gca
from gen3d_ros.completion.training.data_presets import scaled
from gen3d_ros.outputs import write_json
from gen3d_ros.sim.dataset import CompletionDatasetConfig

log = logging.getLogger("gen3d_ros.completion.training.hierarchy")


def fine_data(coarse_data: Mapping, scale: int, half_extent_m: tuple[float, float] | None = None,
              surface_spacing_m: float | None = None) -> dict:
    """The fine stage's data: the coarse data on a grid ``scale`` times finer (same origin when the extent is
    kept; a smaller ``half_extent_m`` crop for the autoencoder, which is local, keeps the grids congruent)."""
    return scaled(CompletionDatasetConfig.from_dict(coarse_data).to_dict(), scale, half_extent_m, surface_spacing_m)


HIERARCHY_PRESETS: dict[str, dict[str, Any]] = {
    # Tests: about a minute on one CPU core.
    "tiny": {
        "coarse": ["tiny_planner", {"iterations": 60, "val_samples": 1}],
        "autoencoder": ["tiny", {"iterations": 60, "val_samples": 1}],
        "autoencoder_half_extent_m": [3.0, 3.0],
        "fine": ["tiny", {"iterations": 40, "val_samples": 1}],
        "scale": 2, "surface_spacing_m": None,
    },
    # The committed demo model (see gen3d_ros/models/README.md).
    "demo": {
        "coarse": ["demo_planner", {}],
        "autoencoder": ["tiny", {"iterations": 800, "val_every": 400, "val_samples": 2, "queries_per_sample": 8192,
                                 "lr": 1e-3,
                                 "model": {"z_dim": 16, "hidden": 64, "encoder_point_blocks": 2,
                                           "encoder_conv_blocks": 1, "decoder_blocks": 3}}],
        "autoencoder_half_extent_m": [6.0, 6.0],
        "fine": ["demo", {}],
        "scale": 2, "surface_spacing_m": 0.1,
    },
    # The GPU models of issue 13 (gen3d_ros/models/README.md): randomised sensors over the richer world. Train the
    # stages in parallel processes (`--stage transition --preset gpu_rich_planner -o OUT/coarse`, `--stage
    # autoencoder --preset gpu_rich -o OUT/autoencoder`, then `--stage fine`), then this preset bundles them.
    "gpu_rich": {
        "coarse": ["gpu_rich_planner", {}],
        "autoencoder": ["gpu_rich", {}],
        "autoencoder_half_extent_m": [6.0, 6.0],
        "fine": ["gpu_rich", {}],
        "scale": 2, "surface_spacing_m": 0.1,
    },
}


def stage_configs(preset: str, common: Mapping[str, Any] | None = None,
                  coarse_checkpoint: str | Path | None = None) -> dict[str, Any]:
    """The configs of the preset's three stages: ``coarse`` (planned GCA), ``autoencoder`` and ``fine`` (cGCA;
    its ``autoencoder`` path is left empty: it is the autoencoder stage's product). ``common``: overrides of
    every stage (``threads``, ``device``, ``amp``...); ``coarse_checkpoint``: take the grid from this coarse stage."""
    if preset not in HIERARCHY_PRESETS:
        raise ValueError(f"unknown hierarchy preset {preset!r}; choose from {sorted(HIERARCHY_PRESETS)}")
    spec, common = HIERARCHY_PRESETS[preset], dict(common or {})
    coarse_name, coarse_overrides = spec["coarse"]
    coarse_config = gca.make_config(coarse_name, {**coarse_overrides, **common})
    coarse_data = (load_gca(coarse_checkpoint)[1]["train_config"]["data"]
                   if coarse_checkpoint else coarse_config.data)
    scale, spacing = int(spec["scale"]), spec["surface_spacing_m"]
    name, overrides = spec["autoencoder"]
    ae_data = fine_data(coarse_data, scale, spec["autoencoder_half_extent_m"], spacing)
    ae_config = autoencoder.make_autoencoder_config(name, {**overrides, **common, "data": ae_data})
    name, overrides = spec["fine"]
    fine_config = cgca.make_cgca_config(name, {**overrides, **common,
                                               "data": fine_data(coarse_data, scale, None, spacing)})
    fine_config.model["coarse_scale"] = scale
    return {"coarse": coarse_config, "autoencoder": ae_config, "fine": fine_config}


def train_hierarchy(preset: str, out_dir: str | Path, *, coarse_checkpoint: str | Path | None = None,
                    threads: int = 0, device: str = "cpu", amp: str = "off", progress: bool = True,
                    command: str = "") -> dict:
    """Train autoencoder, fine cGCA and coarse planned GCA; write ``out_dir/hgca.pt`` and ``metrics.json``.

    Each stage has its run folder under ``out_dir`` (``autoencoder/``, ``fine/``, ``coarse/``: model, metrics,
    curve); a stage whose ``model.pt`` is already there is reused, so an interrupted run resumes and the stages
    can be trained in parallel processes. ``coarse_checkpoint``: use this trained coarse stage (``model.pt`` of
    ``train-completion``) instead. The fine stage trains on ground-truth coarse cells, so it does not need the
    coarse model, only its grid (the preset's data). In a ``torchrun`` job every rank trains each stage, rank 0
    writes; every rank sees a stage's ``model.pt`` before the next stage starts. Returns the metrics (``{}`` on
    ranks other than 0).
    """
    configs = stage_configs(preset, {"threads": threads, "device": device, "amp": amp}, coarse_checkpoint)
    dist = distributed.current()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def stage(name: str, train_fn) -> Path:
        path = out_dir / name / "model.pt"
        if path.is_file():
            log.info("reusing the trained %s stage %s", name, path)
        else:
            train_fn(out_dir / name)  # returns on every rank once rank 0 has written the stage's folder
        return path

    ae_path = stage("autoencoder", lambda d: autoencoder.train_autoencoder(configs["autoencoder"], d,
                                                                           progress=progress))
    configs["fine"].autoencoder = str(ae_path)
    fine_path = stage("fine", lambda d: cgca.train_cgca(configs["fine"], d, progress=progress))
    coarse_path = Path(coarse_checkpoint) if coarse_checkpoint else stage(
        "coarse", lambda d: gca.train(configs["coarse"], d, progress=progress))
    if not dist.is_main:
        return {}
    coarse_ckpt = load_gca(coarse_path)[1]  # a wrong file fails here, before the bundle is written
    fine_ckpt = load_cgca(fine_path)[2]
    metrics = {"coarse": coarse_ckpt.get("metrics", {}), "autoencoder": fine_ckpt["autoencoder"].get("metrics", {}),
               "fine": fine_ckpt.get("metrics", {}), "train_seconds": time.perf_counter() - start,
               "preset": preset}
    save_bundle(out_dir / "hgca.pt", coarse_ckpt, fine_ckpt, metrics, command)
    write_json(out_dir / "metrics.json", metrics, default=str)
    return metrics
