"""``KeypointDetector``: a trained keypoint network (checkpoint format ``gen3d_ros.keypoints/1``) applied to images.

    detector = KeypointDetector.load("gen3d_ros/models/keypoints_gen3d_test_arm.pt")
    det = detector.detect(rgb)            # rgb [H, W, 3] uint8 or float in [0, 1]
    det.uv [K, 2] pixels of that image (continuous: top-left corner 0, OpenCV centre convention), det.confidence [K],
    det.mask [H, W] float robot probability

The image is padded to a square (right / bottom, grey) and resized to the network's input size, so any aspect
ratio works; the answers are mapped back to the original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gen3d_ros.robot.keypoints.definition import KeypointSet
from gen3d_ros.robot.keypoints.network import KeypointNet, decode_heatmaps

FORMAT = "gen3d_ros.keypoints/1"
STRIDE = 4


@dataclass
class Detection:
    """Keypoints in one image: ``uv`` [K, 2] float64 pixels, ``confidence`` [K] in [0, 1], ``mask`` [H, W] float32
    robot probability in [0, 1]."""

    uv: np.ndarray
    confidence: np.ndarray
    mask: np.ndarray


class KeypointDetector:
    """A :class:`~.network.KeypointNet` with its :class:`~.definition.KeypointSet` and input size."""

    def __init__(self, net: KeypointNet, keypoints: KeypointSet, input_size: int, device: str = "cpu",
                 metrics: dict | None = None) -> None:
        self.net = net.to(device).eval()
        self.keypoints = keypoints
        self.input_size = int(input_size)
        self.device = torch.device(device)
        self.metrics = dict(metrics or {})

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "KeypointDetector":
        """Read a checkpoint (``weights_only=True``, through :mod:`gen3d_ros.checkpoints`)."""
        from gen3d_ros.checkpoints import load_model, read_checkpoint

        ckpt, name = read_checkpoint(path, "keypoint network", (FORMAT,))
        net_cfg = ckpt["net"]
        keypoints = KeypointSet.from_dict(ckpt["keypoints"])
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        net = load_model(name, "keypoint network",
                         lambda: KeypointNet(int(net_cfg["num_keypoints"]), int(net_cfg["width"])), state)
        return cls(net, keypoints, int(net_cfg["input_size"]), device, ckpt.get("metrics"))

    def save(self, path: str | Path, metrics: dict | None = None, extra: dict | None = None) -> None:
        """Write the checkpoint (weights as float16: half the size, well within the heatmaps' precision)."""
        from gen3d_ros.outputs import save_torch

        state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
                 for k, v in self.net.state_dict().items()}
        save_torch({"format": FORMAT, "robot_name": self.keypoints.robot_name,
                    "urdf_sha256": self.keypoints.urdf_sha256, "keypoints": self.keypoints.to_dict(),
                    "net": {"num_keypoints": self.net.num_keypoints, "width": self.net.width,
                            "input_size": self.input_size},
                    "state_dict": state, "metrics": dict(metrics or self.metrics), **(extra or {})}, path)

    def to_input(self, image: np.ndarray | Tensor) -> tuple[Tensor, float]:
        """``(x [1, 3, S, S] on the device, scale)``: the image padded to a square and resized; input pixel =
        image pixel * scale."""
        img = torch.as_tensor(np.array(image) if not torch.is_tensor(image) else image)  # a copy: inputs may be read-only
        img = img.to(self.device)
        img = img.float() / 255.0 if not img.is_floating_point() else img.float()
        H, W = img.shape[:2]
        side = max(H, W)
        x = img[..., :3].permute(2, 0, 1)[None]
        if H != W:
            x = F.pad(x, (0, side - W, 0, side - H), value=0.5)
        scale = self.input_size / side
        if side != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=scale < 1)
        return x.clamp(0, 1), scale

    @torch.no_grad()
    def detect(self, image: np.ndarray | Tensor) -> Detection:
        """Keypoints and robot mask of one image ``[H, W, 3]`` (see :class:`Detection`)."""
        H, W = image.shape[:2]
        x, scale = self.to_input(image)
        heat, mask_logit = self.net(x)
        uv, conf = decode_heatmaps(heat, STRIDE)
        side = max(H, W)
        mask = F.interpolate(torch.sigmoid(mask_logit.float()), size=(side, side), mode="bilinear",
                             align_corners=False)[0, 0, :H, :W]
        return Detection(uv=(uv[0] / scale).double().cpu().numpy(), confidence=conf[0].cpu().numpy(),
                         mask=mask.cpu().numpy().astype(np.float32))


__all__ = ["Detection", "FORMAT", "KeypointDetector"]
