"""Which 3D points of a robot the keypoint network detects: link origins plus the ends of each link's mesh.

    kps = KeypointSet.from_robot(robot)           # deterministic for a URDF
    fk = ForwardKinematics(robot)
    p_base = kps.points(fk, q)                    # [..., K, 3] metres, base frame (differentiable in q)
    uv, z = project(p_base, T_camera_base, camera) # [..., K, 2] pixels (OpenCV, centres at +0.5), [..., K] metres

Each keypoint is a fixed point in one link's frame (``link``, ``offset``). Per link: its origin (where its joint
is, DREAM's choice), then ``per_link`` points of its visual mesh: the two ends along the mesh's principal axis
(what an observer sees as "the end of the upper arm"; a disc's symmetry axis, nothing for a ball-like link),
and the centres of its smallest visual elements when it has several (markers and fins: what shows a round link's
turn). Points that stay within ``min_separation`` of an earlier
keypoint over the whole workspace (a link origin on its parent's joint, a tiny finger) are dropped: two heatmaps
for one image location teach the network nothing and weigh PnP twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.meshes import PosedMeshBuilder
from gen3d_ros.robot.urdf import RobotModel


@dataclass
class KeypointSet:
    """``K`` keypoints: ``names`` [K], ``links`` [K] (link names, order of ``fk.link_names`` irrelevant) and
    ``offsets`` [K, 3] (metres, in the link's frame)."""

    names: list[str]
    links: list[str]
    offsets: np.ndarray
    robot_name: str = ""
    urdf_sha256: str = ""
    _index_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_robot(cls, robot: RobotModel, per_link: int = 2, min_separation: float = 0.02,
                   samples: int = 64, seed: int = 0) -> "KeypointSet":
        """The keypoints of ``robot`` (see the module docstring). ``per_link`` in {0, 1, 2}: mesh ends per link;
        ``min_separation`` metres; ``samples`` joint configurations (seeded) for the separation test."""
        if per_link not in (0, 1, 2):
            raise ValueError(f"per_link must be 0, 1 or 2, got {per_link}")
        mesh = PosedMeshBuilder(robot)
        ranges = {link: (start, stop) for link, start, stop in mesh.link_ranges}
        names, links, offsets = [], [], []
        for li, link in enumerate(robot.links):
            names.append(f"{link}/origin")
            links.append(link)
            offsets.append(np.zeros(3))
            if li not in ranges or per_link == 0:
                continue
            v = mesh.vertices[ranges[li][0]:ranges[li][1]]
            centre = v.mean(axis=0)
            _, sv, vt = np.linalg.svd(v - centre, full_matrices=False)
            axis = _identifiable_axis(sv, vt)
            if axis is None:
                continue
            along = (v - centre) @ axis
            ends = [v[np.argmax(along)], v[np.argmin(along)]][:per_link]
            for end, tag in zip(ends, ("end_a", "end_b")):
                # pulled 10 % towards the centre: a mesh's extreme vertex is a corner a network can't see edge-on
                names.append(f"{link}/{tag}")
                links.append(link)
                offsets.append(0.9 * end + 0.1 * centre)
            for i, detail in enumerate(_detail_centres(robot, link, per_link)):
                names.append(f"{link}/detail_{i}")
                links.append(link)
                offsets.append(detail)
        kps = cls(names, links, np.asarray(offsets, dtype=np.float64), robot.name, robot.urdf_sha256)
        return kps._deduplicated(ForwardKinematics(robot, dtype=torch.float64), min_separation, samples, seed)

    def _deduplicated(self, fk: ForwardKinematics, min_separation: float, samples: int, seed: int) -> "KeypointSet":
        """Drop keypoints that stay within ``min_separation`` of an earlier one at every sampled configuration."""
        q = torch.cat([fk.neutral()[None], fk.sample(samples, torch.Generator().manual_seed(seed))])
        with torch.no_grad():
            p = self.points(fk, q).numpy()  # [S, K, 3]
        keep: list[int] = []
        for k in range(len(self)):
            if all(np.linalg.norm(p[:, k] - p[:, j], axis=-1).max() >= min_separation for j in keep):
                keep.append(k)
        return KeypointSet([self.names[k] for k in keep], [self.links[k] for k in keep], self.offsets[keep],
                           self.robot_name, self.urdf_sha256)

    def link_indices(self, fk: ForwardKinematics) -> Tensor:
        """``[K]`` long: each keypoint's link in ``fk``'s link order (cached per ``fk``)."""
        key = id(fk)
        if key not in self._index_cache:
            self._index_cache[key] = torch.tensor([fk.link_index(name) for name in self.links], dtype=torch.long)
        return self._index_cache[key]

    def points(self, fk: ForwardKinematics, q: Tensor) -> Tensor:
        """Keypoints in the base frame ``[..., K, 3]`` (metres) for ``q [..., J]``; differentiable in ``q``."""
        T = fk(q)[..., self.link_indices(fk).to(fk.lower.device), :, :]  # [..., K, 4, 4]
        off = torch.as_tensor(self.offsets, dtype=T.dtype, device=T.device)
        return (T[..., :3, :3] @ off[..., None])[..., 0] + T[..., :3, 3]

    def to_dict(self) -> dict:
        """Plain data for a checkpoint (see :meth:`from_dict`)."""
        return {"names": list(self.names), "links": list(self.links), "offsets": torch.as_tensor(self.offsets),
                "robot_name": self.robot_name, "urdf_sha256": self.urdf_sha256}

    @classmethod
    def from_dict(cls, data: dict) -> "KeypointSet":
        offsets = np.asarray(torch.as_tensor(data["offsets"]).double().numpy()).reshape(-1, 3)
        names, links = [str(n) for n in data["names"]], [str(n) for n in data["links"]]
        if not len(names) == len(links) == len(offsets):
            raise ValueError(f"keypoint set has {len(names)} names, {len(links)} links, {len(offsets)} offsets")
        return cls(names, links, offsets, str(data.get("robot_name", "")), str(data.get("urdf_sha256", "")))


def _detail_centres(robot: RobotModel, link: str, at_most: int) -> list[np.ndarray]:
    """Centroids (link frame) of the smallest ``at_most`` visual elements of a link that has several: markers,
    fins, connectors -- what breaks a link's symmetry (a round base's yaw is invisible without one)."""
    visuals = [v for v in robot.visuals if v.link == link and len(v.vertices)]
    if len(visuals) < 2:
        return []
    size = [float(np.ptp(v.vertices, axis=0).max()) for v in visuals]
    order = np.argsort(size)[: min(at_most, len(visuals) - 1)]  # never the main body
    return [np.asarray(visuals[i].vertices, np.float64).mean(axis=0) for i in order]


def _identifiable_axis(sv: np.ndarray, vt: np.ndarray, ratio: float = 1.25) -> np.ndarray | None:
    """The axis whose mesh ends an image can tell apart: the principal one of an elongated link; the symmetry axis
    (the thinnest) of a disc, whose in-plane "ends" would be any two opposite rim points; None for a ball-like
    link. ``sv`` [3] singular values (descending), ``vt`` [3, 3] their axes (rows)."""
    sv = np.concatenate([sv, np.zeros(3 - len(sv))]) + 1e-12
    if sv[0] / sv[1] >= ratio:
        return vt[0]
    if sv[1] / sv[2] >= ratio and len(vt) > 2:
        return vt[2]
    return None


def project(points: Tensor, T_camera_base: Tensor, camera: PinholeCamera) -> tuple[Tensor, Tensor]:
    """``(uv [..., K, 2] pixels, z [..., K] metres)`` of base-frame ``points [..., K, 3]`` seen from
    ``T_camera_base [..., 4, 4]`` (OpenCV camera; pixel centres at integer + 0.5, so uv are continuous coordinates
    with the image's top-left corner at 0). Depths are clamped at 1 mm before dividing."""
    p = (T_camera_base[..., None, :3, :3] @ points[..., None])[..., 0] + T_camera_base[..., None, :3, 3]
    z = p[..., 2]
    zc = z.clamp_min(1e-3)
    u = camera.fx * p[..., 0] / zc + camera.cx
    v = camera.fy * p[..., 1] / zc + camera.cy
    return torch.stack([u, v], dim=-1), z


def visibility(uv: np.ndarray, z: np.ndarray, link_of: np.ndarray, depth: np.ndarray, link_id: np.ndarray,
               parents: np.ndarray, tolerance: float = 0.03) -> np.ndarray:
    """Which keypoints a render shows: ``[K]`` int8, 2 visible, 1 in the image but occluded, 0 outside it.

    ``uv`` [K, 2] pixels and ``z`` [K] metres of the keypoints; ``link_of`` [K] their link indices; ``depth`` /
    ``link_id`` [H, W] of the render (0 / -1 off the robot); ``parents`` [L] each link's parent index (-1 root).
    A keypoint is visible when the surface at its pixel lies no more than ``tolerance`` in front of it, or belongs
    to its own link or that link's parent (link origins sit inside the geometry of the joint they are on).
    """
    H, W = depth.shape
    out = np.zeros(len(uv), dtype=np.int8)
    for k, ((u, v), zk) in enumerate(zip(uv, z)):
        if not (0 <= u < W and 0 <= v < H and zk > 0):
            continue
        c, r = int(u), int(v)
        surface, lid = depth[r, c], int(link_id[r, c])
        own = lid in (int(link_of[k]), int(parents[link_of[k]]))
        out[k] = 2 if (lid < 0 or own or surface >= zk - tolerance) else 1
    return out


__all__ = ["KeypointSet", "project", "visibility"]
