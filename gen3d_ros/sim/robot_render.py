"""Ground-truth robot images by ray casting the posed URDF visual meshes (open3d ``RaycastingScene``; CPU, no display).

    renderer = RobotMeshRenderer(load_urdf(test_arm_urdf()))
    camera = PinholeCamera.from_fov(128, 128, 50.0)
    out = renderer.render(q, sphere_camera(0.3, 0.4, 1.6, target=[0, 0, 0.35]), camera)
    out.rgb, out.mask, out.depth, out.link_id      # [H, W, 3], [H, W], [H, W], [H, W]

Pixel ``(u, v)`` (column, row) is the ray through the pixel centre ``(u + 0.5, v + 0.5)`` (the OpenCV convention of
:class:`~gen3d_ros.geometry.camera.PinholeCamera`). Shading is Lambertian with a light at the camera (a head light):
``albedo * (ambient + (1 - ambient) * |cos|)``, where ``cos`` is between the viewing ray and the face normal (two-sided,
so inside-out mesh files still shade), and albedo interpolates the mesh's vertex colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.meshes import PosedMeshBuilder
from gen3d_ros.robot.urdf import RobotModel


@dataclass
class RobotRender:
    """One ground-truth image of a robot.

    ``rgb`` [H, W, 3] float32 in [0, 1] (background colour where nothing was hit); ``mask`` [H, W] bool (robot
    pixels); ``depth`` [H, W] float32 metres along the optical axis (camera-frame z), 0 where nothing was hit;
    ``link_id`` [H, W] int16 index into ``robot.links`` of the visible surface, -1 on the background.
    """

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    link_id: np.ndarray


def camera_rays(camera: PinholeCamera) -> np.ndarray:
    """[H, W, 3] float32 ray directions in the camera frame through pixel centres, scaled so that z = 1.

    With z = 1 a ray's hit distance (in units of its direction's length) *is* the depth along the optical axis.
    """
    u = (np.arange(camera.width, dtype=np.float64) + 0.5 - camera.cx) / camera.fx
    v = (np.arange(camera.height, dtype=np.float64) + 0.5 - camera.cy) / camera.fy
    x, y = np.meshgrid(u, v)
    return np.stack([x, y, np.ones_like(x)], axis=-1).astype(np.float32)


class RobotMeshRenderer:
    """Renders RGB, mask, depth and per-pixel link ids of a robot at joint configuration ``q``.

    The link meshes are merged once; each :meth:`render` poses them directly into the camera frame, builds a
    fresh ray-casting scene (a BVH over ~1k triangles for the test arm takes well under a millisecond) and casts
    one ray per pixel. Rays are cached per camera.
    """

    def __init__(self, robot: RobotModel, ambient: float = 0.35, nthreads: int = 1) -> None:
        """``ambient`` in [0, 1]: the brightness of faces seen edge-on; ``nthreads``: ray-casting threads (0 = all)."""
        if not 0.0 <= ambient <= 1.0:
            raise ValueError(f"ambient must be in [0, 1], got {ambient}")
        self.robot = robot
        self.ambient = float(ambient)
        self.nthreads = int(nthreads)
        self.fk = ForwardKinematics(robot, dtype=torch.float64)
        self.mesh = PosedMeshBuilder(robot)
        if len(self.mesh.faces) == 0:
            raise ValueError(f"robot {robot.name!r} has no visual geometry to render")
        self._faces_u32 = o3d.core.Tensor(self.mesh.faces.astype(np.uint32))
        self._rays: dict[PinholeCamera, tuple[np.ndarray, np.ndarray]] = {}

    def link_transforms(self, q: np.ndarray) -> np.ndarray:
        """``T_base_link`` [L, 4, 4] (float64) for joint values ``q`` [J] (radians / metres)."""
        q_t = torch.as_tensor(np.asarray(q, dtype=np.float64))
        with torch.no_grad():
            return self.fk(q_t).numpy()

    def render(
        self,
        q: np.ndarray,
        T_camera_base: np.ndarray,
        camera: PinholeCamera,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> RobotRender:
        """Render the robot at ``q`` [J] seen by ``camera`` placed at ``T_camera_base`` (4x4, base -> OpenCV camera)."""
        T_camera_base = np.asarray(T_camera_base, dtype=np.float64)
        if T_camera_base.shape != (4, 4):
            raise ValueError(f"T_camera_base has shape {T_camera_base.shape}, expected (4, 4)")
        T_camera_link = T_camera_base @ self.link_transforms(q)
        vertices = self.mesh.pose_vertices(T_camera_link).astype(np.float32)

        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(vertices), self._faces_u32)
        rays, unit_dirs = self._camera_rays(camera)
        hits = scene.cast_rays(o3d.core.Tensor(rays), nthreads=self.nthreads)

        t_hit = hits["t_hit"].numpy()
        mask = np.isfinite(t_hit)
        face = np.where(mask, hits["primitive_ids"].numpy(), 0).astype(np.int64)
        depth = np.where(mask, t_hit, 0.0).astype(np.float32)
        link_id = np.where(mask, self.mesh.face_link[face], -1).astype(np.int16)

        albedo = self._albedo(face, hits["primitive_uvs"].numpy())
        cos = np.abs(np.einsum("hwk,hwk->hw", hits["primitive_normals"].numpy(), unit_dirs))
        shade = self.ambient + (1.0 - self.ambient) * np.nan_to_num(cos)
        rgb = np.where(mask[..., None], albedo * shade[..., None], np.asarray(background, dtype=np.float64))
        return RobotRender(rgb=np.clip(rgb, 0.0, 1.0).astype(np.float32), mask=mask, depth=depth, link_id=link_id)

    def _albedo(self, face: np.ndarray, uvs: np.ndarray) -> np.ndarray:
        """[H, W, 3] vertex colours interpolated at the hit (Embree barycentrics: p = (1-u-v) a + u b + v c)."""
        corners = self.mesh.faces[face]  # [H, W, 3]
        u, v = uvs[..., 0:1], uvs[..., 1:2]
        rgb = self.mesh.vertex_rgb
        return (1.0 - u - v) * rgb[corners[..., 0]] + u * rgb[corners[..., 1]] + v * rgb[corners[..., 2]]

    def _camera_rays(self, camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
        """([H, W, 6] float32 rays from the camera centre, [H, W, 3] unit directions), cached per camera."""
        cached = self._rays.get(camera)
        if cached is None:
            dirs = camera_rays(camera)
            rays = np.concatenate([np.zeros_like(dirs), dirs], axis=-1)
            cached = (rays, dirs / np.linalg.norm(dirs, axis=-1, keepdims=True))
            if len(self._rays) > 8:  # a few image sizes (pyramids) at most; don't grow without bound
                self._rays.clear()
            self._rays[camera] = cached
        return cached
