"""Multi-view ground-truth datasets of a robot: random joint configurations seen by random cameras around it.

    robot = load_urdf(test_arm_urdf())
    views = generate_robot_views(robot, 64, PinholeCamera.from_fov(128, 128, 45.0), seed=0)
    views.rgb.shape            # [64, 128, 128, 3]; views.q [64, J]; views.T_camera_base [64, 4, 4]
    views.save_npz("arm_views.npz"); RobotViews.load_npz("arm_views.npz")

Every camera looks at the centre of the robot's workspace sphere (:func:`robot_view_target`) from a distance at
which that whole sphere is in view, so the robot never leaves the image whatever its pose (no mask pixel lies on
the image border). Frames and units as in :mod:`gen3d_ros.robot`: metres, radians, OpenCV cameras,
``T_camera_base`` maps base-frame points to the camera frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError

from gen3d_ros.outputs import atomic_path
from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.meshes import PosedMeshBuilder
from gen3d_ros.robot.urdf import RobotModel
from gen3d_ros.sim.robot_render import RobotMeshRenderer


@dataclass
class RobotViews:
    """``n`` rendered views of a robot.

    ``q`` [n, J] float64 joint values (order ``joint_names``); ``T_camera_base`` [n, 4, 4] float64; one ``camera``
    for all views; ``rgb`` [n, H, W, 3] float32 in [0, 1] on a white background; ``mask`` [n, H, W] bool;
    ``depth`` [n, H, W] float32 metres along the optical axis (0 off the robot); ``link_id`` [n, H, W] int16 index
    into ``link_names`` (-1 off the robot).
    """

    q: np.ndarray
    T_camera_base: np.ndarray
    camera: PinholeCamera
    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    link_id: np.ndarray | None = None
    joint_names: list[str] = field(default_factory=list)
    link_names: list[str] = field(default_factory=list)
    robot_name: str = ""
    urdf_sha256: str = ""
    """SHA-256 of the URDF the views were rendered from (compare with ``RobotModel.urdf_sha256``)."""

    def __len__(self) -> int:
        return len(self.q)

    def subset(self, index: np.ndarray | slice | list[int]) -> "RobotViews":
        """The views at ``index`` (same camera and metadata)."""
        return RobotViews(
            q=self.q[index], T_camera_base=self.T_camera_base[index], camera=self.camera, rgb=self.rgb[index],
            mask=self.mask[index], depth=self.depth[index],
            link_id=None if self.link_id is None else self.link_id[index], joint_names=list(self.joint_names),
            link_names=list(self.link_names), robot_name=self.robot_name, urdf_sha256=self.urdf_sha256,
        )

    def save_npz(self, path: str | Path) -> None:
        """Write all arrays and metadata to one compressed ``.npz`` (exact values; float32 images)."""
        c = self.camera
        arrays = dict(
            q=self.q, T_camera_base=self.T_camera_base, rgb=self.rgb, mask=self.mask, depth=self.depth,
            camera=np.array([c.fx, c.fy, c.cx, c.cy, c.width, c.height], dtype=np.float64),
            joint_names=np.array(self.joint_names, dtype=str), link_names=np.array(self.link_names, dtype=str),
            robot_name=np.array(self.robot_name), urdf_sha256=np.array(self.urdf_sha256),
        )
        if self.link_id is not None:
            arrays["link_id"] = self.link_id
        path = Path(path)
        if path.suffix != ".npz":  # what np.savez_compressed does with a file name
            path = path.with_name(path.name + ".npz")
        # Atomic (gen3d_ros.outputs): a killed process never leaves a truncated dataset under the final name.
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            np.savez_compressed(stream, **arrays)

    @classmethod
    def load_npz(cls, path: str | Path) -> "RobotViews":
        """Read what :meth:`save_npz` wrote."""
        with np.load(Path(path), allow_pickle=False) as data:
            fx, fy, cx, cy, w, h = data["camera"].tolist()
            return cls(
                q=data["q"], T_camera_base=data["T_camera_base"],
                camera=PinholeCamera(fx, fy, cx, cy, int(w), int(h)), rgb=data["rgb"], mask=data["mask"],
                depth=data["depth"], link_id=data["link_id"] if "link_id" in data else None,
                joint_names=data["joint_names"].tolist(), link_names=data["link_names"].tolist(),
                robot_name=str(data["robot_name"]), urdf_sha256=str(data["urdf_sha256"]),
            )


def robot_view_target(robot: RobotModel, num_poses: int = 512, seed: int = 0) -> tuple[np.ndarray, float]:
    """Bounding sphere ``(centre [3] metres in the base frame, radius metres)`` of the robot over its workspace.

    Covers the robot's visual surface at the neutral pose and at ``num_poses`` configurations uniform within the
    joint limits (fixed seed, so the answer is deterministic). Not the minimal sphere: its centre is the middle of
    the bounding box of all those surfaces; cameras aimed at it see the robot wherever it reaches.
    """
    fk = ForwardKinematics(robot, dtype=torch.float64)
    points, point_link = _hull_points(PosedMeshBuilder(robot))
    q = torch.cat([fk.neutral()[None], fk.sample(num_poses, torch.Generator().manual_seed(seed))])
    with torch.no_grad():
        T = fk(q)[:, point_link]  # [N, P, 4, 4]: for each pose, the transform of each point's link
    posed = torch.einsum("npij,pj->npi", T[..., :3, :3], torch.as_tensor(points)) + T[..., :3, 3]
    posed = posed.reshape(-1, 3).numpy()
    centre = 0.5 * (posed.min(axis=0) + posed.max(axis=0))
    return centre, float(np.linalg.norm(posed - centre, axis=1).max())


def fitting_distance(radius: float, camera: PinholeCamera, margin_px: float = 1.0) -> float:
    """Smallest camera distance (metres) at which a sphere of ``radius`` centred on the optical axis is in view.

    The sphere's silhouette is a cone of half-angle ``asin(radius / d)``; it must fit inside the narrowest half
    field of view, measured to ``margin_px`` pixels inside the image edges.
    """
    half_tangents = (
        (camera.cx - margin_px) / camera.fx, (camera.width - camera.cx - margin_px) / camera.fx,
        (camera.cy - margin_px) / camera.fy, (camera.height - camera.cy - margin_px) / camera.fy,
    )
    half_angle = math.atan(min(half_tangents))
    if half_angle <= 0:
        raise ValueError(f"camera {camera} leaves no field of view inside a {margin_px}-pixel margin")
    return radius / math.sin(half_angle)


def generate_robot_views(
    robot: RobotModel,
    n: int,
    camera: PinholeCamera,
    seed: int,
    distance_scale: tuple[float, float] = (1.0, 1.3),
    elevation_deg: tuple[float, float] = (5.0, 60.0),
    show_progress: bool = False,
    framing: str = "workspace",
) -> RobotViews:
    """Render ``n`` views: ``q`` uniform within the joint limits, cameras on spheres around the robot.

    Args:
        camera: the intrinsics of every view.
        seed: seeds joint values and camera placement (same seed, same views).
        distance_scale: camera distance as a multiple (uniform in this range) of the distance at which the framed
            sphere just fits in the image (:func:`fitting_distance`). A view whose posed robot would still touch
            the image border is moved back along its viewing ray until it does not, so any value keeps the robot
            fully in view (values below 1 only make that back-off more frequent).
        elevation_deg: camera elevation above the base's xy plane, uniform in this range (degrees); azimuth is
            uniform in [0, 360).
        show_progress: a tqdm bar over the views.
        framing: ``"workspace"``: every camera looks at the workspace sphere of :func:`robot_view_target`, as a
            fixed camera watching the robot move would (the robot fills a smaller part of the image);
            ``"pose"``: each camera looks at the bounding sphere of that view's posed robot (the robot fills
            the image; more pixels per link for training).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 < distance_scale[0] <= distance_scale[1]:
        raise ValueError(f"distance_scale must be 0 < lo <= hi, got {distance_scale}")
    if framing not in ("workspace", "pose"):
        raise ValueError(f"framing must be 'workspace' or 'pose', got {framing!r}")
    rng = np.random.default_rng(seed)
    lower, upper = robot.lower, robot.upper
    q = lower + rng.random((n, len(lower))) * (upper - lower)
    renderer = RobotMeshRenderer(robot)
    if framing == "workspace":
        centre, radius = robot_view_target(robot)
    else:
        hull_points, hull_link = _hull_points(renderer.mesh)
    H, W = camera.height, camera.width
    T_all = np.empty((n, 4, 4))
    rgb = np.empty((n, H, W, 3), dtype=np.float32)
    mask = np.empty((n, H, W), dtype=bool)
    depth = np.empty((n, H, W), dtype=np.float32)
    link_id = np.empty((n, H, W), dtype=np.int16)
    indices = range(n)
    if show_progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"rendering {robot.name}", unit="view")
    for i in indices:
        azimuth = rng.uniform(0.0, 2.0 * math.pi)
        elevation = math.radians(rng.uniform(*elevation_deg))
        if framing == "pose":
            centre, radius = _bounding_sphere(renderer.link_transforms(q[i]), hull_points, hull_link)
        distance = fitting_distance(radius, camera) * rng.uniform(*distance_scale)
        T_all[i] = _camera_keeping_robot_in_view(renderer, q[i], camera, azimuth, elevation, distance, centre)
        out = renderer.render(q[i], T_all[i], camera)
        rgb[i], mask[i], depth[i], link_id[i] = out.rgb, out.mask, out.depth, out.link_id
    return RobotViews(
        q=q, T_camera_base=T_all, camera=camera, rgb=rgb, mask=mask, depth=depth, link_id=link_id,
        joint_names=robot.actuated_joints, link_names=list(robot.links), robot_name=robot.name,
        urdf_sha256=robot.urdf_sha256,
    )


def _camera_keeping_robot_in_view(
    renderer: RobotMeshRenderer, q: np.ndarray, camera: PinholeCamera, azimuth: float, elevation: float,
    distance: float, target: np.ndarray,
) -> np.ndarray:
    """``T_camera_base`` on the sphere; backs off along the viewing ray if the posed robot would touch the border.

    The workspace sphere comes from sampled poses, so an extreme pose can poke out of it slightly: checking the
    posed vertices' projections makes "fully in view" hold for every view, not just almost every one.
    """
    T_base_link = renderer.link_transforms(q)
    for _ in range(20):
        T = sphere_camera(azimuth, elevation, distance, target)
        v = renderer.mesh.pose_vertices(T @ T_base_link)
        if np.all(v[:, 2] > 1e-3):
            u = camera.fx * v[:, 0] / v[:, 2] + camera.cx
            w = camera.fy * v[:, 1] / v[:, 2] + camera.cy
            if u.min() >= 1.0 and w.min() >= 1.0 and u.max() <= camera.width - 1 and w.max() <= camera.height - 1:
                return T
        distance *= 1.1
    raise RuntimeError(f"could not fit robot {renderer.robot.name!r} at q={q.tolist()} into the image")


def _bounding_sphere(T_base_link: np.ndarray, points: np.ndarray, point_link: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre, radius) enclosing link-frame ``points`` posed by ``T_base_link``; centre = bounding-box middle."""
    T = T_base_link[point_link]
    posed = np.einsum("pij,pj->pi", T[:, :3, :3], points) + T[:, :3, 3]
    centre = 0.5 * (posed.min(axis=0) + posed.max(axis=0))
    return centre, float(np.linalg.norm(posed - centre, axis=1).max())


def _hull_points(mesh: PosedMeshBuilder) -> tuple[np.ndarray, np.ndarray]:
    """Convex-hull vertices of each link's mesh ([P, 3] link frame, [P] link index): same bounds, far fewer points."""
    points, links = [], []
    for link, start, stop in mesh.link_ranges:
        v = mesh.vertices[start:stop]
        try:
            v = v[ConvexHull(v).vertices]
        except (QhullError, ValueError):  # flat or tiny meshes: keep every vertex
            pass
        points.append(v)
        links.append(np.full(len(v), link, dtype=np.int64))
    return np.vstack(points), np.concatenate(links)
