"""Training data of the keypoint network: mesh renders of the robot with its keypoints, and domain randomisation.

    data = render_keypoint_data(robot, n=3000, size=256, seed=0)    # open3d ray casting, ~15 ms a view
    save_keypoint_data(data, "runs/kp/data/keypoint_views.npz")       # ~4 kB a view (robot on white compresses)
    img, mask, uv, weight = augment(batch, photos, out_size=256, generator=g)   # torch, any device

Renders (:func:`render_keypoint_data`): joints uniform within the limits, cameras at 0-70 deg elevation framing the
posed robot from 0.9-1.8x the distance at which it just fits (``framing="pose"`` of
:func:`gen3d_ros.sim.robot_dataset.generate_robot_views`), the robot alone on white with its mask, each keypoint's
pixel and visibility (2 visible, 1 occluded by another link, 0 out of view; :func:`~..keypoints.definition.visibility`).

Domain randomisation happens at training time, on the training device (:func:`augment`), so no two epochs see the
same image: a random similarity transform (zoom 0.7-1.6x, so the robot gets cut by the border = truncation;
roll +-25 deg; shifts; together an intrinsics change), robot colour gains / channel swaps / a light gradient,
backgrounds that are photos (skimage's sample images: public domain or CC0, see their docstrings) or procedural
textures (multi-scale noise, stripes, checkers, flat colour), occluders cut from other backgrounds, then blur,
noise and global brightness / contrast.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.keypoints.definition import KeypointSet, project, visibility
from gen3d_ros.robot.urdf import RobotModel

PHOTOS = ("astronaut", "chelsea", "rocket", "hubble_deep_field", "brick", "grass")
"""skimage.data images used as training backgrounds (public domain or CC0 according to their docstrings)."""
HELD_OUT_PHOTOS = ("coffee", "gravel")
"""skimage.data images kept out of training: the benchmark's photo backgrounds."""


def load_photos(size: int = 256, names: tuple[str, ...] = PHOTOS) -> np.ndarray:
    """``[P, size, size, 3]`` uint8 background photos (skimage.data ``names``; empty when skimage is missing)."""
    try:
        import skimage.data as sk
        from skimage.transform import resize
    except ImportError:
        return np.zeros((0, size, size, 3), np.uint8)
    out = []
    for name in names:
        img = np.asarray(getattr(sk, name)())
        img = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3]
        side = min(img.shape[:2])
        img = img[:side, :side]
        out.append((resize(img, (size, size), anti_aliasing=True) * 255).astype(np.uint8))
    return np.stack(out)


def _link_parents(robot: RobotModel) -> np.ndarray:
    """``[L]`` each link's parent index in ``robot.links`` (-1 for the root)."""
    index = {name: i for i, name in enumerate(robot.links)}
    parents = np.full(len(robot.links), -1, dtype=np.int64)
    for joint in robot.joints:
        parents[index[joint.child]] = index[joint.parent]
    return parents


def render_keypoint_data(robot: RobotModel, n: int, size: int = 256, seed: int = 0, fov_deg: float = 40.0,
                         keypoints: KeypointSet | None = None, show_progress: bool = False) -> dict[str, np.ndarray]:
    """``n`` mesh renders with keypoints (see the module docstring): ``rgb [n, S, S, 3]`` uint8 on white,
    ``mask [n, S, S]`` bool, ``uv [n, K, 2]`` float32 pixels (continuous), ``vis [n, K]`` int8, ``q [n, J]``,
    ``T_camera_base [n, 4, 4]``, the keypoint set, robot name / hash, camera (fx, fy, cx, cy, w, h) and photos."""
    from gen3d_ros.sim.robot_dataset import (_bounding_sphere, _camera_keeping_robot_in_view, _hull_points,
                                             fitting_distance)
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    kps = keypoints or KeypointSet.from_robot(robot)
    renderer = RobotMeshRenderer(robot)
    fk = renderer.fk
    camera = PinholeCamera.from_fov(size, size, fov_deg)
    hull_points, hull_link = _hull_points(renderer.mesh)
    parents = _link_parents(robot)
    link_of = kps.link_indices(fk).numpy()
    rng = np.random.default_rng(seed)
    lo, hi = robot.lower, robot.upper
    K = len(kps)
    out = {"rgb": np.empty((n, size, size, 3), np.uint8), "mask": np.empty((n, size, size), bool),
           "uv": np.empty((n, K, 2), np.float32), "vis": np.empty((n, K), np.int8),
           "q": np.empty((n, len(lo))), "T_camera_base": np.empty((n, 4, 4))}
    it = range(n)
    if show_progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"rendering {robot.name} keypoint views", unit="view")
    for i in it:
        q = lo + rng.random(len(lo)) * (hi - lo)
        centre, radius = _bounding_sphere(renderer.link_transforms(q), hull_points, hull_link)
        distance = fitting_distance(radius, camera) * rng.uniform(0.9, 1.8)
        T = _camera_keeping_robot_in_view(renderer, q, camera, rng.uniform(0, 2 * math.pi),
                                          math.radians(rng.uniform(0.0, 70.0)), distance, centre)
        r = renderer.render(q, T, camera)
        with torch.no_grad():
            uv, z = project(kps.points(fk, torch.as_tensor(q)), torch.as_tensor(T), camera)
        out["rgb"][i] = np.round(r.rgb * 255).astype(np.uint8)
        out["mask"][i], out["q"][i], out["T_camera_base"][i] = r.mask, q, T
        out["uv"][i] = uv.numpy()
        out["vis"][i] = visibility(uv.numpy(), z.numpy(), link_of, r.depth, r.link_id, parents)
    out.update(kp_names=np.array(kps.names), kp_links=np.array(kps.links), kp_offsets=kps.offsets,
               robot_name=np.array(robot.name), urdf_sha256=np.array(robot.urdf_sha256),
               camera=np.array([camera.fx, camera.fy, camera.cx, camera.cy, size, size], np.float64),
               photos=load_photos(size))
    return out


def save_keypoint_data(data: dict[str, np.ndarray], path: str | Path) -> None:
    """One compressed ``.npz`` (atomic, through :mod:`gen3d_ros.outputs`)."""
    from gen3d_ros.outputs import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez_compressed(stream, **data)


def load_keypoint_data(path: str | Path) -> dict[str, np.ndarray]:
    """What :func:`save_keypoint_data` wrote (no pickles)."""
    with np.load(Path(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def keypoint_set_of(data: dict[str, np.ndarray]) -> KeypointSet:
    """The :class:`KeypointSet` stored in a data dict."""
    return KeypointSet([str(x) for x in data["kp_names"]], [str(x) for x in data["kp_links"]],
                       np.asarray(data["kp_offsets"], np.float64), str(data["robot_name"]), str(data["urdf_sha256"]))


# ------------------------------------------------------------------------------------------- domain randomisation


def _rand(g: torch.Generator, *shape: int, device) -> Tensor:
    return torch.rand(*shape, generator=g, device=g.device).to(device)


def _similarity(B: int, g: torch.Generator, device, zoom: tuple[float, float], roll_deg: float, shift: float
                ) -> Tensor:
    """``[B, 2, 3]`` affine_grid thetas (output -> input normalised coordinates): zoom, roll, shift."""
    s = torch.exp(math.log(zoom[0]) + _rand(g, B, device=device) * math.log(zoom[1] / zoom[0]))
    a = torch.deg2rad((2 * _rand(g, B, device=device) - 1) * roll_deg)
    t = (2 * _rand(g, B, 2, device=device) - 1) * shift
    c, sn = torch.cos(a) / s, torch.sin(a) / s
    return torch.stack([torch.stack([c, -sn, t[:, 0]], -1), torch.stack([sn, c, t[:, 1]], -1)], 1)


def random_backgrounds(B: int, S: int, photos: Tensor, g: torch.Generator, device) -> Tensor:
    """``[B, 3, S, S]`` random backgrounds: photos (random crop / zoom / flip), multi-scale noise, stripes or
    checkers, flat colours, mixed per image."""
    kind = _rand(g, B, device=device)
    noise = torch.zeros(B, 3, S, S, device=device)
    for cells, amp in ((2, 0.5), (6, 0.3), (24, 0.15), (S // 2, 0.08)):
        noise += amp * F.interpolate(_rand(g, B, 3, cells, cells, device=device) - 0.5, size=(S, S),
                                     mode="bicubic", align_corners=False)
    noise = (noise + _rand(g, B, 3, 1, 1, device=device)).clamp(0, 1)
    ys = torch.linspace(-1, 1, S, device=device)
    freq = 2 + 20 * _rand(g, B, 1, 1, device=device)
    ang = _rand(g, B, 1, 1, device=device) * math.pi
    wave = torch.sin(freq * (ys[None, None, :] * torch.cos(ang) + ys[None, :, None] * torch.sin(ang)))
    checker = (wave > 0).float()[:, None]
    colours = _rand(g, B, 2, 3, 1, 1, device=device)
    pattern = colours[:, 0] * checker + colours[:, 1] * (1 - checker)
    flat = _rand(g, B, 3, 1, 1, device=device).expand(B, 3, S, S)
    out = torch.where((kind < 0.55)[:, None, None, None], noise, pattern)
    out = torch.where((kind > 0.85)[:, None, None, None], flat, out)
    if len(photos):
        idx = (_rand(g, B, device=device) * len(photos)).long().clamp_max(len(photos) - 1).to(photos.device)
        grid = F.affine_grid(_similarity(B, g, device, (1.0, 3.0), 180.0, 0.6), [B, 3, S, S], align_corners=False)
        photo = F.grid_sample(photos[idx].to(device).permute(0, 3, 1, 2).float() / 255, grid,
                              padding_mode="reflection", align_corners=False)
        out = torch.where((kind < 0.4)[:, None, None, None], photo, out)
    return out


def _blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Per-image Gaussian blur of ``x [B, C, H, W]`` with ``sigma [B]`` pixels (<= 2.5; 0 = unchanged)."""
    r = torch.arange(-4, 5, device=x.device, dtype=x.dtype)
    k = torch.exp(-r[None] ** 2 / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    k = k / k.sum(-1, keepdim=True)  # [B, 9]
    B, C, H, W = x.shape
    y = x.reshape(1, B * C, H, W)
    kk = k.repeat_interleave(C, 0)
    y = F.conv2d(F.pad(y, (4, 4, 0, 0), mode="replicate"), kk[:, None, None, :], groups=B * C)
    y = F.conv2d(F.pad(y, (0, 0, 4, 4), mode="replicate"), kk[:, None, :, None], groups=B * C)
    return y.reshape(B, C, H, W)


def augment(rgb: Tensor, mask: Tensor, uv: Tensor, vis: Tensor, photos: Tensor, out_size: int,
            generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Domain-randomised training images from robot renders.

    Args: ``rgb [B, S, S, 3]`` uint8, ``mask [B, S, S]`` bool, ``uv [B, K, 2]`` pixels, ``vis [B, K]`` int8 (as
    rendered), ``photos [P, S', S', 3]`` uint8, all on one device; ``generator`` on that device (or the CPU).
    Returns ``(images [B, 3, o, o] in [0, 1], masks [B, 1, o, o], uv [B, K, 2] in output pixels, weights [B, K])``
    with ``o = out_size``; weights 1 for visible keypoints, 0.3 for occluded ones, 0 outside the image.
    """
    device, B, S, K = rgb.device, rgb.shape[0], rgb.shape[1], uv.shape[1]
    g, o = generator, out_size
    theta = _similarity(B, g, device, (0.7, 1.6), 25.0, 0.3)
    grid = F.affine_grid(theta, [B, 4, o, o], align_corners=False)
    src = torch.cat([rgb.permute(0, 3, 1, 2).float() / 255, mask[:, None].float()], 1)
    warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    robot, m = warped[:, :3], warped[:, 3:]
    # keypoints: input normalised = A out + t  =>  out = A^-1 (in - t)
    n_in = uv / S * 2 - 1
    A, t = theta[:, :, :2], theta[:, :, 2]
    n_out = torch.linalg.solve(A[:, None], (n_in - t[:, None])[..., None])[..., 0]
    uv_out = (n_out + 1) / 2 * o
    inside = (uv_out >= 0).all(-1) & (uv_out < o).all(-1) & (vis > 0)
    weight = torch.where(vis == 2, 1.0, 0.3) * inside
    # robot appearance: gains, occasional channel swap, a light gradient
    gain = (0.6 + 0.8 * _rand(g, B, 1, 1, 1, device=device)) * (0.85 + 0.3 * _rand(g, B, 3, 1, 1, device=device))
    perm = torch.stack([torch.randperm(3, generator=torch.Generator().manual_seed(int(s)))
                        for s in (_rand(g, B, device="cpu") * 2**30).long()]).to(device)
    swapped = torch.gather(robot, 1, perm[:, :, None, None].expand(-1, -1, o, o))
    robot = torch.where((_rand(g, B, device=device) < 0.2)[:, None, None, None], swapped, robot)
    xs = torch.linspace(-1, 1, o, device=device)
    phi = _rand(g, B, 1, 1, device=device) * 2 * math.pi
    light = 1 + 0.5 * _rand(g, B, 1, 1, device=device) * (xs[None, None] * torch.cos(phi)
                                                           + xs[None, :, None] * torch.sin(phi))
    robot = (robot * gain * light[:, None]).clamp(0, 1)
    img = m * robot + (1 - m) * random_backgrounds(B, o, photos, g, device)
    # occluders: a box or ellipse of another background in ~35 % of the images
    occ_bg = random_backgrounds(B, o, photos, g, device)
    cx, cy = _rand(g, B, 1, 1, device=device), _rand(g, B, 1, 1, device=device)
    rx, ry = 0.05 + 0.15 * _rand(g, B, 1, 1, device=device), 0.05 + 0.15 * _rand(g, B, 1, 1, device=device)
    grid01 = (torch.arange(o, device=device) + 0.5) / o
    dx, dy = (grid01[None, None] - cx) / rx, (grid01[None, :, None] - cy) / ry
    ellipse = _rand(g, B, 1, 1, device=device) < 0.5
    occ = torch.where(ellipse, dx ** 2 + dy ** 2 < 1, (dx.abs() < 1) & (dy.abs() < 1))
    occ = occ & (_rand(g, B, 1, 1, device=device) < 0.35)
    img = torch.where(occ[:, None], occ_bg, img)
    m = m * (~occ[:, None]).float()
    ku = (uv_out[..., 0].long().clamp(0, o - 1), uv_out[..., 1].long().clamp(0, o - 1))
    covered = occ[torch.arange(B, device=device)[:, None], ku[1], ku[0]]
    weight = torch.where(covered & inside, 0.3 * inside.float(), weight)
    # camera: blur, brightness / contrast, noise
    sigma = torch.where(_rand(g, B, device=device) < 0.5, 2.0 * _rand(g, B, device=device), 0.0)
    img = _blur(img, sigma)
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 0.7 + 0.6 * _rand(g, B, 1, 1, 1, device=device)
    img = (img - mean) * contrast + mean * (0.7 + 0.6 * _rand(g, B, 1, 1, 1, device=device))
    img = img + 0.04 * _rand(g, B, 1, 1, 1, device=device) * torch.randn(img.shape, generator=g, device=g.device).to(device)
    return img.clamp(0, 1), m, uv_out, weight


__all__ = ["HELD_OUT_PHOTOS", "PHOTOS", "augment", "keypoint_set_of", "load_keypoint_data", "load_photos", "random_backgrounds", "render_keypoint_data",
           "save_keypoint_data"]
