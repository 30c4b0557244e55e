"""Training a Dr. Robot model (:class:`~gen3d_ros.robot.gaussians.RobotGaussianModel`) from rendered views.

    cfg = robot_train_config("tiny", overrides={"joint_iters": 300})
    metrics = train_robot(cfg, Path("runs/drrobot_tiny"))          # or: gen3d train-robot --preset tiny -o ...

Three stages, as in Dr. Robot (Liu et al.):

a. **canonical**: the Gaussians' own parameters (means, orientations, scales, opacities, colours) on images of the
   robot at its neutral pose, cameras all around it (skinning plays no part at the neutral pose).
b. **skinning**: the skinning MLP alone, fitted so that the posed Gaussian means match the posed mesh surface
   (Chamfer distance, squared metres) at random joint values: no images needed, so it is cheap.
c. **joint**: everything (Gaussians, skinning, appearance deformation) end to end on images of random poses:
   ``(1 - w) L1 + w (1 - SSIM)`` with ``w = ssim_weight`` (0.2, the 3DGS recipe) plus ``mask_weight`` x L1
   between the rendered alpha and the ground-truth silhouette.

Ground truth comes from :func:`gen3d_ros.sim.robot_dataset.generate_robot_views` (open3d ray casting of the URDF
meshes), recomposited onto ``background`` with the masks, and is cached in ``<run>/data/*.npz`` in a compact
form (uint8 RGB, bit-packed masks) that loads without open3d, so a GPU machine without open3d can train from a
carried cache. Validation: PSNR (whole image, background included) and SSIM on held-out random poses.

Outputs in the run folder: ``model.pt`` (checkpoint, see :meth:`RobotGaussianModel.save`), ``metrics.json``,
``preview.png`` (rows of ground truth | render | |difference|, held-out poses), ``curves.png`` (losses and
validation PSNR; needs matplotlib), ``config.json``; all written atomically and marked as gen3d_ros outputs
(:mod:`gen3d_ros.outputs`), the folder too (``.gen3d_output``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.devices import check_device
from gen3d_ros.geometry.chamfer import chamfer_distance
from gen3d_ros.outputs import (OutputError, atomic_path, mark_folder, prepare_output, save_figure, save_image,
                               write_json)
from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.robot.description import load_robot
from gen3d_ros.robot.gaussians import RobotGaussianModel
from gen3d_ros.robot.meshes import PosedMeshBuilder, sample_surface
from gen3d_ros.robot.splatting import psnr, resolve_splat_backend
from gen3d_ros.robot.ssim import ssim
from gen3d_ros.robot.urdf import RobotModel

log = logging.getLogger(__name__)

VIEWS_FORMAT = "gen3d_ros.robot_views_u8/1"


@dataclass
class RobotTrainConfig:
    """Hyper-parameters of :func:`train_robot`; presets in :data:`PRESETS`, any field settable by ``--set``.

    Units: image sizes in pixels, ``fov_deg`` vertical field of view in degrees, learning rates per Adam step in
    the parameter's units (``lr_means`` metres, ``lr_scales`` log-metres, ``lr_color`` RGB), ``background`` RGB
    in [0, 1] (use a non-white one for white robots like Panda). ``time_budget_s`` > 0 stops the training
    stages once that many seconds have passed since the first one began (the iterations done are reported).
    ``sh_increase_every``: image iterations (canonical + joint, counted together) per SH band switched on, as in
    3DGS: starting at degree 0 keeps view-dependent bands from overfitting the few canonical views.
    """

    urdf: str = "test_arm"
    device: str = "cpu"
    seed: int = 0
    backend: str = "auto"
    image_size: int = 96
    fov_deg: float = 40.0
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    canonical_views: int = 24
    train_views: int = 64
    val_views: int = 8
    n_gaussians: int = 1500
    sh_degree: int = 0
    skinning: bool = True
    appearance: bool = True
    hidden: int = 64
    n_freqs: int = 4
    canonical_iters: int = 120
    skinning_iters: int = 20
    joint_iters: int = 200
    batch_views: int = 2
    skinning_poses: int = 4
    chamfer_points: int = 2000
    lr_means: float = 5e-4
    lr_quats: float = 2e-3
    lr_scales: float = 5e-3
    lr_opacity: float = 3e-2
    lr_color: float = 1e-2
    lr_mlp: float = 1e-3
    lr_final_factor: float = 0.1
    sh_increase_every: int = 1000
    ssim_weight: float = 0.2
    mask_weight: float = 0.1
    val_every: int = 100
    preview_views: int = 4
    time_budget_s: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of its range (also run on construction; call it
        again after changing fields)."""
        self.background = tuple(float(c) for c in self.background)  # type: ignore[assignment]
        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"background must be 3 values in [0, 1], got {self.background}")
        for name in ("image_size", "canonical_views", "train_views", "val_views", "n_gaussians", "batch_views",
                     "skinning_poses", "chamfer_points", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("canonical_iters", "skinning_iters", "joint_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180), got {self.fov_deg}")

    @property
    def camera(self) -> PinholeCamera:
        """The intrinsics of every training and validation view."""
        return PinholeCamera.from_fov(self.image_size, self.image_size, self.fov_deg)


#: ``tiny``: test arm on a CPU in about a minute. ``demo``: test arm on a CPU in a few minutes (the packaged
#: checkpoint). ``gpu``: Panda at 256 px with SH degree 3 on CUDA (pass ``--set urdf=test_arm`` for the arm).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "demo": dict(image_size=128, n_gaussians=3000, canonical_views=48, train_views=200, val_views=16,
                 canonical_iters=400, skinning_iters=150, joint_iters=1200, batch_views=2, val_every=200),
    "gpu": dict(urdf="panda", device="cuda", image_size=256, background=(0.35, 0.4, 0.45), n_gaussians=10000,
                sh_degree=3, hidden=128, n_freqs=6, canonical_views=100, train_views=300, val_views=40,
                canonical_iters=1500, skinning_iters=200, joint_iters=4000, batch_views=4, skinning_poses=4,
                chamfer_points=10000, val_every=500, lr_means=3e-4),
}


def robot_train_config(preset: str = "tiny", overrides: dict[str, Any] | None = None) -> RobotTrainConfig:
    """The config of ``preset`` with ``overrides`` (field -> value; strings are parsed to the field's type)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset])
    types = {f.name: f.type for f in dataclasses.fields(RobotTrainConfig)}
    for key, value in (overrides or {}).items():
        if key not in types:
            raise ValueError(f"unknown setting {key!r}; settable: {', '.join(sorted(types))}")
        values[key] = _parse_value(value, str(types[key]), key) if isinstance(value, str) else value
    return RobotTrainConfig(**values)


def _parse_value(text: str, type_name: str, key: str) -> Any:
    """``--set key=value`` text as the field's type (``int``, ``float``, ``bool``, ``str`` or a float tuple)."""
    try:
        if type_name == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if type_name == "int":
            return int(text)
        if type_name == "float":
            return float(text)
        if type_name.startswith("tuple"):
            return tuple(float(v) for v in text.strip("()[] ").split(","))
    except ValueError:
        raise ValueError(f"setting {key}={text!r} is not a valid {type_name}") from None
    return text


# --------------------------------------------------------------------------------------------------- data


@dataclass
class ViewSet:
    """Ground-truth views on the training background: ``q [n, J]`` float32 (rad/m), ``T_camera_base [n, 4, 4]``
    float32 (base -> OpenCV camera), ``rgb [n, H, W, 3]`` uint8, ``mask [n, H, W]`` bool, one ``camera``."""

    q: np.ndarray
    T_camera_base: np.ndarray
    rgb: np.ndarray
    mask: np.ndarray
    camera: PinholeCamera
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.q)

    def save(self, path: Path) -> None:
        """Compact ``.npz``: uint8 RGB, bit-packed masks, metadata as JSON."""
        c = self.camera
        # Written next to ``path`` and renamed when complete: a killed run never leaves a truncated cache that a
        # later run would try to reuse. A file object, so numpy does not append ".npz" to the temporary name.
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            np.savez_compressed(
                stream, q=self.q, T_camera_base=self.T_camera_base, rgb=self.rgb,
                mask=np.packbits(self.mask, axis=-1), camera=np.array([c.fx, c.fy, c.cx, c.cy, c.width, c.height]),
                meta=np.array(json.dumps({**self.meta, "format": VIEWS_FORMAT})),
            )

    @classmethod
    def load(cls, path: Path) -> "ViewSet":
        """Read :meth:`save`'s file (no open3d needed)."""
        with np.load(path, allow_pickle=False) as d:
            fx, fy, cx, cy, w, h = d["camera"].tolist()
            meta = json.loads(str(d["meta"]))
            if meta.get("format") != VIEWS_FORMAT:
                raise ValueError(f"{path} is not a view cache ({meta.get('format')!r} != {VIEWS_FORMAT!r})")
            mask = np.unpackbits(d["mask"], axis=-1, count=int(w)).astype(bool)
            return cls(d["q"], d["T_camera_base"], d["rgb"], mask, PinholeCamera(fx, fy, cx, cy, int(w), int(h)), meta)


def _views_key(robot: RobotModel, cfg: RobotTrainConfig, kind: str, n: int, seed: int) -> dict[str, Any]:
    """What a cached view set must match to be reused."""
    return dict(kind=kind, n=n, seed=seed, urdf_sha256=robot.urdf_sha256, image_size=cfg.image_size,
                fov_deg=cfg.fov_deg, background=list(cfg.background))


def render_views(robot: RobotModel, cfg: RobotTrainConfig, kind: str, n: int, seed: int) -> ViewSet:
    """Render ``n`` ground-truth views with open3d: ``kind`` ``"canonical"`` (neutral pose, cameras all around)
    or ``"posed"`` (random joint values, :func:`generate_robot_views` with per-pose framing)."""
    from gen3d_ros.sim.robot_dataset import generate_robot_views  # open3d: only where views are rendered

    camera = cfg.camera
    if kind == "canonical":
        q, T, rgb, mask = _render_neutral_views(robot, n, camera, seed)
    else:
        v = generate_robot_views(robot, n, camera, seed=seed, framing="pose", show_progress=n >= 50)
        q, T, rgb, mask = v.q, v.T_camera_base, v.rgb, v.mask
    # The renderer draws on white; put the training background behind the (hard-edged) silhouettes.
    rgb = np.where(mask[..., None], rgb, np.asarray(cfg.background, dtype=np.float32))
    return ViewSet(q.astype(np.float32), T.astype(np.float32), np.round(rgb * 255).astype(np.uint8), mask, camera,
                   _views_key(robot, cfg, kind, n, seed))


def _render_neutral_views(
    robot: RobotModel, n: int, camera: PinholeCamera, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The neutral pose from ``n`` cameras on a sphere around it (azimuth uniform, elevation -20..75 deg)."""
    from gen3d_ros.sim.robot_dataset import fitting_distance
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    renderer = RobotMeshRenderer(robot)
    q0 = renderer.fk.neutral().numpy()
    v = PosedMeshBuilder(robot).pose_vertices(renderer.link_transforms(q0))
    centre = 0.5 * (v.min(axis=0) + v.max(axis=0))
    radius = float(np.linalg.norm(v - centre, axis=1).max())
    rng = np.random.default_rng(seed)
    H, W = camera.height, camera.width
    T = np.empty((n, 4, 4))
    rgb, mask = np.empty((n, H, W, 3), np.float32), np.empty((n, H, W), bool)
    for i in range(n):
        distance = fitting_distance(radius, camera) * rng.uniform(1.0, 1.15)
        T[i] = sphere_camera(rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(-20.0, 75.0)), distance, centre)
        out = renderer.render(q0, T[i], camera)
        rgb[i], mask[i] = out.rgb, out.mask
    return np.tile(q0, (n, 1)), T, rgb, mask


def load_or_render_views(
    robot: RobotModel, cfg: RobotTrainConfig, data_dir: Path
) -> dict[str, ViewSet]:
    """``{"canonical", "train", "val"}`` view sets, read from ``data_dir/<name>.npz`` when they match ``cfg``
    (robot hash, size, count, seed), else rendered and written there. Seeds differ per set, so the validation
    poses are never trained on."""
    specs = {"canonical": ("canonical", cfg.canonical_views, cfg.seed + 1000),
             "train": ("posed", cfg.train_views, cfg.seed + 2000),
             "val": ("posed", cfg.val_views, cfg.seed + 3000)}
    data_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (kind, n, seed) in specs.items():
        path = data_dir / f"{name}.npz"
        key = _views_key(robot, cfg, kind, n, seed)
        if path.is_file():
            views = ViewSet.load(path)
            if {k: views.meta.get(k) for k in key} == key:
                out[name] = views
                continue
            log.info("view cache %s does not match the config; re-rendering", path)
        t0 = time.perf_counter()
        out[name] = render_views(robot, cfg, kind, n, seed)
        out[name].save(path)  # atomic: ViewSet.save writes through outputs.atomic_path
        log.info("rendered %d %s views in %.1f s -> %s", n, name, time.perf_counter() - t0, path)
    return out


def _to_device(views: ViewSet, device: torch.device) -> dict[str, Tensor]:
    return dict(q=torch.as_tensor(views.q, device=device), T=torch.as_tensor(views.T_camera_base, device=device),
                rgb=torch.as_tensor(views.rgb, device=device), mask=torch.as_tensor(views.mask, device=device))


# --------------------------------------------------------------------------------------------------- losses


def image_loss(
    render_rgb: Tensor, render_alpha: Tensor, gt_rgb: Tensor, gt_mask: Tensor, cfg: RobotTrainConfig
) -> Tensor:
    """``(1 - w) L1 + w (1 - SSIM) + mask_weight L1(alpha, mask)`` on ``[B, H, W, ...]`` images in [0, 1]."""
    l1 = (render_rgb - gt_rgb).abs().mean()
    loss = (1.0 - cfg.ssim_weight) * l1 + cfg.ssim_weight * (1.0 - ssim(render_rgb, gt_rgb))
    if cfg.mask_weight > 0:
        loss = loss + cfg.mask_weight * (render_alpha - gt_mask.to(render_alpha.dtype)).abs().mean()
    return loss


@torch.no_grad()
def evaluate(model: RobotGaussianModel, views: dict[str, Tensor], cfg: RobotTrainConfig) -> dict[str, float]:
    """Mean PSNR (dB, whole image) and SSIM of the model's renders against ``views`` (one render per view)."""
    bg = torch.tensor(cfg.background, device=views["q"].device)
    psnrs, ssims = [], []
    for i in range(len(views["q"])):
        out = model.render(views["q"][i], views["T"][i], cfg.camera, background=bg, backend=cfg.backend)
        gt = views["rgb"][i].float() / 255.0
        psnrs.append(psnr(out.rgb.clamp(0, 1), gt))
        ssims.append(float(ssim(out.rgb.clamp(0, 1), gt)))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "psnr_min": float(np.min(psnrs))}


# --------------------------------------------------------------------------------------------------- stages


def chamfer_l2(x: Tensor, y: Tensor, rows_per_chunk: int = 4096) -> Tensor:
    """Symmetric Chamfer distance, mean squared nearest-neighbour distance both ways (m²), averaged over ``B``.

    ``x [B, N, 3]``, ``y [B, M, 3]``. Dense ``torch.cdist`` in row chunks: for the ~10k-point clouds here this
    is one fast kernel on CUDA, and its backward is a cheap gather.
    """
    total = x.new_zeros(())
    for b in range(x.shape[0]):
        d_xy, d_yx = [], []
        col_min = None
        for start in range(0, x.shape[1], rows_per_chunk):
            d = torch.cdist(x[b, start:start + rows_per_chunk], y[b]).square()  # [n, M]
            d_xy.append(d.min(dim=1).values)
            m = d.min(dim=0).values
            col_min = m if col_min is None else torch.minimum(col_min, m)
        total = total + torch.cat(d_xy).mean() + col_min.mean()
    return total / x.shape[0]


def _gaussian_groups(model: RobotGaussianModel, cfg: RobotTrainConfig) -> list[dict[str, Any]]:
    """Adam parameter groups of the Gaussians' own parameters (higher SH bands at lr/20, as in 3DGS)."""
    return [
        {"params": [model.means], "lr": cfg.lr_means, "name": "means"},
        {"params": [model.quats], "lr": cfg.lr_quats, "name": "quats"},
        {"params": [model.log_scales], "lr": cfg.lr_scales, "name": "scales"},
        {"params": [model.opacity_logits], "lr": cfg.lr_opacity, "name": "opacity"},
        # The DC term of SH is in units of rgb / SH_C0 (~3.5x rgb): scale the lr so lr_color is in RGB units.
        {"params": [model.sh], "lr": cfg.lr_color / 0.28209479, "name": "sh"},
    ]


def _run_stage(
    name: str, iters: int, params: list[dict[str, Any]], step: Callable[[int], Tensor], cfg: RobotTrainConfig,
    history: list[dict[str, Any]], on_val: Callable[[int], None] | None = None, offset: int = 0,
    deadline: float = math.inf,
) -> tuple[float, int]:
    """Adam over ``params`` for ``iters`` steps of ``step(i) -> loss`` with exponential lr decay, stopping early at
    ``deadline`` (``time.perf_counter()`` value); returns (seconds, iterations done)."""
    from tqdm import tqdm

    if iters == 0 or not params:
        return 0.0, 0
    opt = torch.optim.Adam(params, eps=1e-15)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: cfg.lr_final_factor ** (i / max(iters, 1)))
    t0 = time.perf_counter()
    bar = tqdm(range(iters), desc=f"stage {name}", unit="it", leave=False, mininterval=1.0)
    done = 0
    for i in bar:
        if time.perf_counter() > deadline:
            log.warning("stage %s stopped at the time budget after %d of %d iterations", name, i, iters)
            break
        opt.zero_grad(set_to_none=True)
        loss = step(i)
        loss.backward()
        opt.step()
        sched.step()
        done += 1
        value = loss.item()
        history.append({"stage": name, "iter": offset + i, "loss": value})
        if i % 10 == 0:
            bar.set_postfix(loss=f"{value:.4f}")
        if on_val is not None and (i + 1) % cfg.val_every == 0 and i + 1 < iters:
            on_val(offset + i + 1)
    return time.perf_counter() - t0, done


#: Files :func:`train_robot` writes into the run folder (besides the view caches in ``data/``).
RUN_FILES = ("config.json", "model.pt", "preview.png", "curves.png", "metrics.json")


def train_robot(
    cfg: RobotTrainConfig, out_dir: Path, robot: RobotModel | None = None, data_dir: Path | None = None,
) -> dict[str, Any]:
    """Train a model with ``cfg``; write checkpoint, metrics, previews into ``out_dir``; return the metrics.

    ``robot``: the loaded URDF (default ``load_robot(cfg.urdf)``). ``data_dir``: view caches (default
    ``out_dir/data``); must hold matching caches where open3d is missing.

    The config, device, splatting backend and robot are checked before ``out_dir`` is touched, so a bad URDF or
    setting leaves nothing behind. A folder this call creates is marked as a gen3d_ros output and, if the
    training then fails (or is interrupted), removed again; in a folder that existed before, only what this call
    added is removed. Existing run files are replaced only when gen3d_ros wrote them (``OutputError`` otherwise);
    every file is written atomically (:mod:`gen3d_ros.outputs`).
    """
    out_dir = Path(out_dir)
    cfg.validate()
    device = torch.device(check_device(cfg.device))  # DeviceError (a ValueError) naming what is missing
    resolve_splat_backend(cfg.backend, device)  # an unknown backend, or gsplat without CUDA, fails here
    robot = robot if robot is not None else load_robot(cfg.urdf)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"run folder {out_dir} exists and is not a folder; choose another --output")
    with _run_folder(out_dir, inputs=[robot.source_path]):
        return _train(cfg, out_dir, robot, device, Path(data_dir) if data_dir else out_dir / "data")


@contextlib.contextmanager
def _run_folder(out_dir: Path, inputs: list[Path | None]) -> Iterator[Path]:
    """Create (and mark) ``out_dir`` if needed and check that the run files may be written there; on an exception
    inside the block, remove what was created: the whole folder (and any parents) if this call made it, else the
    files and folders that were not there before."""
    top = _topmost_missing(out_dir)
    before = set() if top is not None else _tree(out_dir)
    try:
        for name in RUN_FILES:
            # force=True: replace an earlier run's files (callers such as the CLI ask for --force before), but only
            # those gen3d_ros wrote; a user's own config.json in the folder is never overwritten.
            prepare_output(out_dir / name, inputs=inputs, force=True, what="run file")
        if top is not None:
            mark_folder(out_dir)
        yield out_dir
    except BaseException:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        else:
            for path in sorted(_tree(out_dir) - before, key=lambda p: len(p.parts)):  # parents before children
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists() or path.is_symlink():
                    path.unlink(missing_ok=True)
        raise


def _topmost_missing(path: Path) -> Path | None:
    """The highest folder of ``path`` (itself included) that does not exist yet: what ``mkdir(parents=True)``
    creates; ``None`` if ``path`` exists."""
    top = None
    for candidate in [path.absolute(), *path.absolute().parents]:
        if candidate.exists() or candidate.is_symlink():
            break
        top = candidate
    return top


def _tree(folder: Path) -> set[Path]:
    """Every file and folder under ``folder`` (links not followed)."""
    out = set()
    for root, dirs, files in os.walk(folder, followlinks=False):
        out.update(Path(root) / name for name in dirs + files)
    return out


def _train(cfg: RobotTrainConfig, out_dir: Path, robot: RobotModel, device: torch.device,
           data_dir: Path) -> dict[str, Any]:
    """The body of :func:`train_robot`, once the inputs are checked and the run folder is ready."""
    torch.manual_seed(cfg.seed)
    write_json(out_dir / "config.json", dataclasses.asdict(cfg))

    t_data = time.perf_counter()
    views = load_or_render_views(robot, cfg, data_dir)
    t_data = time.perf_counter() - t_data
    data = {k: _to_device(v, device) for k, v in views.items()}

    model = RobotGaussianModel.from_robot(
        robot, n_gaussians=cfg.n_gaussians, sh_degree=cfg.sh_degree, seed=cfg.seed, skinning=cfg.skinning,
        appearance=cfg.appearance, hidden=cfg.hidden, n_freqs=cfg.n_freqs, urdf=cfg.urdf,
    ).to(device)
    bg = torch.tensor(cfg.background, device=device)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    val_curve: list[dict[str, Any]] = []

    def validate(it: int) -> dict[str, float]:
        m = evaluate(model, data["val"], cfg)
        val_curve.append({"iter": it, **m})
        log.info("iter %d: held-out PSNR %.2f dB, SSIM %.4f", it, m["psnr"], m["ssim"])
        return m

    init = validate(0)

    image_iters = [0]  # canonical + joint image iterations so far (drives the SH schedule)

    def image_step(views: dict[str, Tensor]) -> Callable[[int], Tensor]:
        def step(_: int) -> Tensor:
            model.active_sh_degree = min(model.sh_degree, image_iters[0] // max(cfg.sh_increase_every, 1))
            image_iters[0] += 1
            idx = torch.randint(len(views["q"]), (cfg.batch_views,), generator=gen).to(device)
            out = model.render(views["q"][idx], views["T"][idx], cfg.camera, background=bg, backend=cfg.backend)
            return image_loss(out.rgb, out.alpha, views["rgb"][idx].float() / 255.0, views["mask"][idx], cfg)
        return step

    # Chamfer targets: a fixed set of surface samples, in their links' frames, posed by FK at each step.
    surf = sample_surface(robot, cfg.chamfer_points, np.random.default_rng(cfg.seed + 1))
    surf_pts = torch.as_tensor(surf.points, dtype=torch.float32, device=device)
    surf_link = torch.as_tensor(surf.link_index, device=device)

    def skin_step(_: int) -> Tensor:
        q = model.fk.sample(cfg.skinning_poses, gen).to(device)
        T = model.fk(q)[:, surf_link]  # [B, M, 4, 4]
        target = (T[..., :3, :3] @ surf_pts[..., None])[..., 0] + T[..., :3, 3]
        # geometry.chamfer_distance's torch kNN is the fast one on CPU, dense cdist is the fast one on CUDA
        chamfer = chamfer_l2 if device.type == "cuda" else chamfer_distance
        return chamfer(model.posed_means(q), target)

    times, done = {}, {}
    deadline = time.perf_counter() + cfg.time_budget_s if cfg.time_budget_s > 0 else math.inf
    times["canonical"], done["canonical"] = _run_stage(
        "canonical", cfg.canonical_iters, _gaussian_groups(model, cfg), image_step(data["canonical"]), cfg, history,
        deadline=deadline)
    it0 = done["canonical"]
    after_canonical = validate(it0)
    skin_params = [{"params": list(model.skin_mlp.parameters()), "lr": cfg.lr_mlp}] if model.skin_mlp else []
    times["skinning"], done["skinning"] = _run_stage(
        "skinning", cfg.skinning_iters, skin_params, skin_step, cfg, history, offset=it0, deadline=deadline)
    it0 += done["skinning"]
    mlp_params = [p for mod in (model.skin_mlp, model.appearance_mlp) if mod is not None for p in mod.parameters()]
    joint_groups = _gaussian_groups(model, cfg) + ([{"params": mlp_params, "lr": cfg.lr_mlp}] if mlp_params else [])
    times["joint"], done["joint"] = _run_stage(
        "joint", cfg.joint_iters, joint_groups, image_step(data["train"]), cfg, history, on_val=validate, offset=it0,
        deadline=deadline)
    it0 += done["joint"]
    model.active_sh_degree = model.sh_degree  # evaluate and save with every band
    final = validate(it0)

    metrics: dict[str, Any] = {
        "robot": robot.name, "urdf_sha256": robot.urdf_sha256, "device": _device_name(device),
        "torch": torch.__version__, "n_gaussians": model.num_gaussians, "sh_degree": model.sh_degree,
        "image_size": cfg.image_size, "psnr_heldout": final["psnr"], "ssim_heldout": final["ssim"],
        "psnr_heldout_min": final["psnr_min"], "psnr_init": init["psnr"], "ssim_init": init["ssim"],
        "psnr_after_canonical": after_canonical["psnr"], "val_views": len(views["val"]),
        "seconds": {"data": round(t_data, 2), **{k: round(v, 2) for k, v in times.items()}},
        "iterations": done,
        "val_curve": val_curve,
    }
    model.save(out_dir / "model.pt",  # atomic: RobotGaussianModel.save uses outputs.save_torch
               extra={"train_config": dataclasses.asdict(cfg)},
               metrics={k: v for k, v in metrics.items() if k != "val_curve"})
    metrics["checkpoint_bytes"] = (out_dir / "model.pt").stat().st_size
    write_preview(model, views["val"], cfg, out_dir / "preview.png")
    write_curves(history, val_curve, out_dir / "curves.png")
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"


# --------------------------------------------------------------------------------------------------- images


@torch.no_grad()
def write_preview(model: RobotGaussianModel, views: ViewSet, cfg: RobotTrainConfig, path: Path) -> None:
    """PNG with one row per held-out view: ground truth | render | |difference| (x1, clipped)."""
    from PIL import Image

    device = model.means.device
    bg = torch.tensor(cfg.background, device=device)
    rows = []
    for i in range(min(cfg.preview_views, len(views))):
        out = model.render(torch.as_tensor(views.q[i], device=device),
                           torch.as_tensor(views.T_camera_base[i], device=device), views.camera, background=bg,
                           backend=cfg.backend)
        gt = views.rgb[i].astype(np.float32) / 255.0
        render = out.rgb.clamp(0, 1).cpu().numpy()
        rows.append(np.concatenate([gt, render, np.abs(render - gt)], axis=1))
    save_image(Image.fromarray(np.round(np.concatenate(rows, axis=0) * 255).astype(np.uint8)), path)


def write_curves(history: list[dict[str, Any]], val_curve: list[dict[str, Any]], path: Path) -> bool:
    """Training losses per stage and held-out PSNR against the iteration; False (nothing written) without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no %s", path)
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for stage in ("canonical", "skinning", "joint"):
        pts = [(h["iter"], h["loss"]) for h in history if h["stage"] == stage]
        if pts:
            x, y = zip(*pts)
            ax1.plot(x, y, lw=0.8, label=stage)
    ax1.set_yscale("log")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("loss (skinning: Chamfer, m²)")
    ax1.legend()
    ax2.plot([v["iter"] for v in val_curve], [v["psnr"] for v in val_curve], "o-")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("held-out PSNR [dB]")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return True


__all__ = ["PRESETS", "RobotTrainConfig", "ViewSet", "evaluate", "image_loss", "load_or_render_views",
           "render_views", "robot_train_config", "train_robot", "write_curves", "write_preview"]
