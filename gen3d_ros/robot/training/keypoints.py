"""Training the keypoint network (``gen3d train-robot --stage keypoints``) on domain-randomised mesh renders.

    cfg = keypoint_train_config("cpu")                        # or "gpu", "tiny"; overrides like {"steps": 500}
    metrics = train_keypoints(cfg, data, Path("runs/kp"))     # data: render_keypoint_data(...) or its .npz

Loss per image: the cross-entropy between each keypoint's heatmap (spatial softmax) and a Gaussian of 1 heatmap
cell around its true position, weighted 1 (visible) / 0.3 (occluded) / 0 (out of view), plus 0.5 x the binary
cross-entropy of the robot mask. AdamW with a cosine schedule; bf16 autocast on CUDA. The last ``val_fraction`` of
the views are held out; validation images are augmented with a fixed seed. Writes ``keypoints.pt`` (format
``gen3d_ros.keypoints/1``) and ``metrics.json`` into the run folder.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gen3d_ros.robot.keypoints.detector import STRIDE, KeypointDetector
from gen3d_ros.robot.keypoints.network import KeypointNet, decode_heatmaps, heatmap_targets
from gen3d_ros.robot.training.keypoint_data import augment, keypoint_set_of, load_keypoint_data


@dataclass(frozen=True)
class KeypointTrainConfig:
    """Keypoint-network training settings (sizes in pixels, time in seconds)."""

    input_size: int = 256      # network input (square; multiple of 16)
    width: int = 32            # network width (channels at stride 4)
    batch: int = 64
    steps: int = 6000
    max_seconds: float = 240.0  # stop earlier when this much training time has passed
    lr: float = 2e-3
    weight_decay: float = 1e-4
    sigma: float = 1.0         # target Gaussian, heatmap cells
    val_fraction: float = 0.05
    device: str = "cuda"
    seed: int = 0
    views: int = 3000          # views rendered when no data is given
    render_size: int = 256


PRESETS = {
    "gpu": KeypointTrainConfig(),
    "cpu": KeypointTrainConfig(input_size=128, width=16, batch=16, steps=1500, max_seconds=600.0, device="cpu",
                               views=1500),
    "tiny": KeypointTrainConfig(input_size=64, width=8, batch=4, steps=20, max_seconds=60.0, device="cpu",
                                views=24, render_size=96, val_fraction=0.25),
}


def keypoint_train_config(preset: str, overrides: dict | None = None) -> KeypointTrainConfig:
    """A preset (``gpu``, ``cpu``, ``tiny``) with ``overrides`` (field -> value or string, e.g. from ``--set``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown keypoint preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[preset]
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    changes = {}
    for key, value in (overrides or {}).items():
        if key not in types:
            raise ValueError(f"unknown keypoint training setting {key!r}; settings: {sorted(types)}")
        try:
            changes[key] = types[key](value)
        except (TypeError, ValueError):
            raise ValueError(f"setting {key}={value!r} is not a {types[key].__name__}") from None
    cfg = replace(cfg, **changes)
    if cfg.input_size % 16 or cfg.input_size < 32:
        raise ValueError(f"input_size must be a multiple of 16 and >= 32, got {cfg.input_size}")
    return cfg


def _batch_loss(net: KeypointNet, data: dict, idx: torch.Tensor, cfg: KeypointTrainConfig, g: torch.Generator,
                amp: bool) -> tuple[torch.Tensor, dict]:
    """Loss of one augmented batch of views ``idx`` and its pixel errors (for logging)."""
    img, mask, uv, w = augment(data["rgb"][idx], data["mask"][idx], data["uv"][idx], data["vis"][idx],
                               data["photos"], cfg.input_size, g)
    with torch.autocast(device_type=img.device.type, dtype=torch.bfloat16, enabled=amp):
        heat, mask_logit = net(img)
    heat, mask_logit = heat.float(), mask_logit.float()
    h = cfg.input_size // STRIDE
    target = heatmap_targets(uv, w > 0, (h, h), STRIDE, cfg.sigma)
    logp = torch.log_softmax(heat.flatten(2), -1)
    ce = -(target.flatten(2) * logp).sum(-1)  # [B, K]
    kp_loss = (ce * w).sum() / w.sum().clamp_min(1.0)
    m_small = F.avg_pool2d(mask, STRIDE)
    loss = kp_loss + 0.5 * F.binary_cross_entropy_with_logits(mask_logit, m_small)
    return loss, {"uv": uv, "w": w, "heat": heat.detach(), "mask": m_small, "mask_logit": mask_logit.detach()}


def _to_device(raw: dict, device: torch.device) -> dict:
    return {k: torch.as_tensor(raw[k]).to(device) for k in ("rgb", "mask", "uv", "vis", "photos")}


@torch.no_grad()
def evaluate_keypoints(net: KeypointNet, data: dict, cfg: KeypointTrainConfig, seed: int = 1234) -> dict:
    """Held-out metrics on augmented views (fixed seed): median / mean pixel error of visible keypoints (at the
    network's input size and scaled to ``render_size``), PCK at 2 / 5 px of ``render_size``, mask IoU."""
    net.eval()
    device = data["rgb"].device
    g = torch.Generator(device=device).manual_seed(seed)
    errs, inter, union = [], 0.0, 0.0
    for start in range(0, len(data["rgb"]), 32):
        idx = torch.arange(start, min(start + 32, len(data["rgb"])), device=device)
        _, out = _batch_loss(net, data, idx, cfg, g, amp=device.type == "cuda")
        uv_hat, _ = decode_heatmaps(out["heat"], STRIDE)
        vis = out["w"] >= 1.0
        errs.append((uv_hat - out["uv"]).norm(dim=-1)[vis].cpu())
        pred, true = out["mask_logit"] > 0, out["mask"] > 0.5
        inter += float((pred & true).sum())
        union += float((pred | true).sum())
    net.train()
    e = torch.cat(errs).numpy() * (cfg.render_size / cfg.input_size)
    return {"val_px_err_median": float(np.median(e)), "val_px_err_mean": float(e.mean()),
            "val_pck_2px": float((e < 2).mean()), "val_pck_5px": float((e < 5).mean()),
            "val_mask_iou": inter / max(union, 1.0), "px_unit": f"pixels of a {cfg.render_size} px image"}


def train_keypoints(cfg: KeypointTrainConfig, data: dict | str | Path, out_dir: Path,
                    log_every: int = 100) -> dict:
    """Train, evaluate and save (``out_dir/keypoints.pt``, ``metrics.json``); returns the metrics."""
    from gen3d_ros.outputs import write_json

    raw = load_keypoint_data(data) if isinstance(data, (str, Path)) else data
    kps = keypoint_set_of(raw)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    n = len(raw["rgb"])
    n_val = max(1, int(round(n * cfg.val_fraction)))
    all_data = _to_device(raw, device)
    train = {k: (v[: n - n_val] if k != "photos" else v) for k, v in all_data.items()}
    val = {k: (v[n - n_val:] if k != "photos" else v) for k, v in all_data.items()}
    net = KeypointNet(len(kps), cfg.width).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    amp = device.type == "cuda"
    t0, history, step = time.perf_counter(), [], 0
    n_train = len(train["rgb"])
    for step in range(cfg.steps):
        frac = min(1.0, max(step / cfg.steps, (time.perf_counter() - t0) / cfg.max_seconds))
        for group in opt.param_groups:  # cosine by progress (steps or time, whichever is further along)
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * frac)) * min(1.0, (step + 1) / 100)
        idx = torch.randint(0, n_train, (cfg.batch,), generator=g, device=device)
        loss, _ = _batch_loss(net, train, idx, cfg, g, amp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            history.append((step, round(time.perf_counter() - t0, 1), round(float(loss.detach()), 4)))
            print(f"step {step} {history[-1][1]:.0f} s loss {history[-1][2]:.4f}", flush=True)
        if time.perf_counter() - t0 > cfg.max_seconds:
            break
    seconds = time.perf_counter() - t0
    metrics = {"robot": kps.robot_name, "keypoints": len(kps), "steps": step + 1, "seconds": round(seconds, 1),
               "train_views": n_train, "val_views": n_val, "config": asdict(cfg),
               "parameters": sum(p.numel() for p in net.parameters()), "loss_history": history,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, **evaluate_keypoints(net, val, cfg)}
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = KeypointDetector(net.to(memory_format=torch.contiguous_format).cpu(), kps, cfg.input_size)
    detector.save(out_dir / "keypoints.pt", metrics)  # atomic: KeypointDetector.save uses outputs.save_torch
    write_json(out_dir / "metrics.json", metrics)
    return metrics


__all__ = ["KeypointTrainConfig", "PRESETS", "evaluate_keypoints", "keypoint_train_config", "train_keypoints"]
