"""URDF robot descriptions -> a plain :class:`RobotModel` (kinematic tree + visual triangle meshes).

Units and frames follow URDF/REP-103: metres, radians; every joint's ``origin`` is ``T_parent_joint`` (the joint
frame in the parent link's frame); a joint's child link frame *is* its joint frame, moved by the joint value.
Visual meshes are returned in their link's frame, with the ``<visual><origin>`` and the mesh ``scale`` applied.

    robot = load_urdf(test_arm_urdf())
    robot.links            # ['base_link', 'turret', ...]  root first, parents before children
    robot.actuated_joints  # ['base_yaw', 'shoulder', 'elbow', 'wrist_pitch', 'wrist_roll']

Meshes: STL/OBJ/PLY are read with open3d; COLLADA ``.dae`` (and anything else open3d cannot read) with trimesh,
which needs ``pycollada`` for ``.dae``. ``package://NAME/...`` URIs are resolved through ``package_dirs`` or, when
not given, by looking for a folder called ``NAME`` above the URDF file (the layout of ROS share/ folders and of
the ``example-robot-data`` pip package). No mesh URI may lead outside its package or the URDF's own package
(:class:`URDFPathError`; the rules are in :func:`load_urdf`).

This module parses the XML; the parts it builds on live beside it, and their public names are re-exported here:
:mod:`~gen3d_ros.robot.robot_model` (``RobotModel``, ``Joint``, ``Visual``, the errors, the tree checks),
:mod:`~gen3d_ros.robot.urdf_paths` (mesh URIs and their sandbox), :mod:`~gen3d_ros.robot.urdf_meshes` (primitive
shapes, mesh files) and :mod:`~gen3d_ros.robot.robot_npz` (a loaded robot as one file).
"""

from __future__ import annotations

import hashlib
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

import numpy as np

from gen3d_ros.robot.robot_model import (DEFAULT_RGBA, JOINT_TYPES, Joint, RobotModel, URDFError, URDFPathError, Visual,
                                         check_mimics, tree_order)
from gen3d_ros.robot.robot_npz import ROBOT_NPZ_FORMAT, load_robot_npz, save_robot_npz
from gen3d_ros.robot.urdf_meshes import box_mesh, cylinder_mesh, load_mesh_file, sphere_mesh
from gen3d_ros.robot.urdf_paths import UriResolver, example_robot_data_dir, urdf_package_root, urdf_package_roots

__all__ = ["DEFAULT_RGBA", "JOINT_TYPES", "ROBOT_NPZ_FORMAT", "Joint", "RobotModel", "URDFError", "URDFPathError",
           "Visual", "box_mesh", "cylinder_mesh", "example_robot_urdf", "load_mesh_file", "load_robot_npz",
           "load_urdf", "rpy_matrix", "save_robot_npz", "sphere_mesh", "test_arm_urdf", "urdf_package_root",
           "urdf_package_roots"]


# --------------------------------------------------------------------------------------------------------------
# Public entry points


def load_urdf(
    path: str | Path,
    package_dirs: dict[str, Path] | None = None,
    geometry: str = "visual",
    *,
    allowed_roots: Iterable[str | Path] = (),
) -> RobotModel:
    """Read a URDF file into a :class:`RobotModel`.

    Args:
        path: the ``.urdf`` file (xacro must be expanded first).
        package_dirs: ``{"package_name": folder}`` for ``package://package_name/...`` mesh URIs; packages not
            listed are looked for as a folder of that name above the URDF file.
        geometry: ``"visual"`` (default) or ``"collision"``: which elements give the meshes. Collision meshes
            are usually STL and need no COLLADA reader.
        allowed_roots: more folders ``file://``, absolute and relative mesh paths may read from (the folders of
            ``package_dirs`` count as such too).

    Mesh paths: a URDF may only make this function read files inside the folders it belongs to, checked after
    resolving symbolic links and ``..`` (a URDF is data, often downloaded; it must not read ``/etc/...``):

    - ``package://NAME/rest`` must stay inside package ``NAME``'s folder: ``package_dirs[NAME]``; else a folder
      called ``NAME`` above the URDF, or a sibling ``NAME`` of a folder above it that is a ``share/`` folder or
      a package (has ``package.xml``); else ``$AMENT_PREFIX_PATH/share/NAME`` (installed ROS 2 packages); else
      the example-robot-data install for ``package://example-robot-data/``. ``NAME`` may not be ``..``.
    - ``file:///path``, absolute and relative paths must stay inside the URDF's package root
      (:func:`urdf_package_root`: the nearest folder above it with a ``package.xml``, else the folder above
      ``urdf/`` in the ``<package>/urdf/robot.urdf`` layout, else the URDF's folder) or ``allowed_roots``.
      ``file://host/...`` is refused.
    - A package whose ``package.xml`` is a symbolic link (``colcon build --symlink-install``) may also read
      inside the folder that link leads to (its source package).

    Raises:
        FileNotFoundError: the URDF or a mesh file it references does not exist (the message names the URI).
        URDFPathError: a mesh URI leads outside those folders (the message names the URI, the file it leads to
            and the folders it had to stay in).
        URDFError: malformed XML, an unknown or unsupported joint type, a joint naming a missing link, no single
            root link, or a cycle in the tree.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"URDF file not found: {path}")
    if geometry not in ("visual", "collision"):
        raise ValueError(f"geometry must be 'visual' or 'collision', got {geometry!r}")
    text = path.read_bytes()
    try:
        root_el = ET.fromstring(text)
    except ET.ParseError as exc:
        raise URDFError(f"{path}: malformed XML: {exc}") from exc
    if root_el.tag != "robot":
        raise URDFError(f"{path}: root element is <{root_el.tag}>, expected <robot>")

    link_names = [_required_attr(el, "name", path) for el in root_el.findall("link")]
    if not link_names:
        raise URDFError(f"{path}: no <link> elements")
    duplicates = sorted({n for n in link_names if link_names.count(n) > 1})
    if duplicates:
        raise URDFError(f"{path}: duplicate link names {duplicates}")
    joints = [_parse_joint(el, path) for el in root_el.findall("joint")]
    check_mimics(joints, path)
    root, ordered_links = tree_order(link_names, joints, path)

    materials = _named_materials(root_el, path)
    resolver = UriResolver(path, package_dirs or {}, allowed_roots)
    visuals: list[Visual] = []
    for link_el in root_el.findall("link"):
        for vis_el in link_el.findall(geometry):
            visual = _parse_visual(link_el.get("name"), vis_el, materials, resolver, path)
            if visual is not None:
                visuals.append(visual)

    return RobotModel(
        name=root_el.get("name", path.stem),
        root=root,
        links=ordered_links,
        joints=joints,
        visuals=visuals,
        urdf_sha256=hashlib.sha256(text).hexdigest(),
        source_path=path.resolve(),
    )


def test_arm_urdf() -> Path:
    """Path of the packaged procedural test arm (5 actuated joints, primitives only; see ``assets/README.md``)."""
    return Path(__file__).with_name("assets") / "test_arm.urdf"


# Not a pytest test despite the name.
test_arm_urdf.__test__ = False  # type: ignore[attr-defined]

_EXAMPLE_ROBOTS = {
    "panda": "panda_description/urdf/panda.urdf",
    "ur3": "ur_description/urdf/ur3_robot.urdf",
    "ur5": "ur_description/urdf/ur5_robot.urdf",
    "ur10": "ur_description/urdf/ur10_robot.urdf",
    "so100": "so_arm_description/urdf/so100.urdf",
    "so101": "so_arm_description/urdf/so101.urdf",
}


def example_robot_urdf(name: str) -> Path | None:
    """URDF of a robot shipped by the optional ``example-robot-data`` pip package, or ``None`` if not installed.

    ``name`` is a short name (``panda``, ``ur5``, ``ur10``, ``so100``, ...) or the stem of any URDF under
    ``robots/*/urdf/``. :func:`load_urdf` resolves its ``package://example-robot-data/...`` URIs on its own.
    Panda's visual meshes are COLLADA: loading them needs ``trimesh`` and ``pycollada``
    (or pass ``geometry="collision"`` for its STL meshes).
    """
    robots = example_robot_data_dir()
    if robots is None:
        return None
    known = _EXAMPLE_ROBOTS.get(name)
    if known is not None and (robots / known).is_file():
        return robots / known
    matches = sorted(robots.glob(f"*/urdf/{name}.urdf"))
    if not matches:
        raise FileNotFoundError(
            f"example-robot-data has no robot {name!r}; known short names: {sorted(_EXAMPLE_ROBOTS)}, "
            f"or any stem of {robots}/*/urdf/*.urdf"
        )
    return matches[0]


# --------------------------------------------------------------------------------------------------------------
# Transforms


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF ``rpy`` (fixed-axis x, then y, then z; radians) as a 3x3 rotation: ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw),
                              math.sin(yaw))
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def _origin_matrix(el: ET.Element | None, path: Path) -> np.ndarray:
    """4x4 transform of an ``<origin xyz rpy>`` element (identity when absent)."""
    T = np.eye(4)
    if el is None:
        return T
    T[:3, 3] = _floats(el.get("xyz", "0 0 0"), 3, f"origin xyz of {_describe(el)}", path)
    T[:3, :3] = rpy_matrix(*_floats(el.get("rpy", "0 0 0"), 3, f"origin rpy of {_describe(el)}", path))
    return T


# --------------------------------------------------------------------------------------------------------------
# Joints


def _parse_joint(el: ET.Element, path: Path) -> Joint:
    name = _required_attr(el, "name", path)
    jtype = el.get("type")
    if jtype in ("floating", "planar"):
        raise URDFError(f"{path}: joint {name!r} has type {jtype!r}, which gen3d_ros does not model; "
                        f"supported: {JOINT_TYPES}")
    if jtype not in JOINT_TYPES:
        raise URDFError(f"{path}: joint {name!r} has unknown type {jtype!r}; expected one of {JOINT_TYPES}")
    parent_el, child_el = el.find("parent"), el.find("child")
    if parent_el is None or child_el is None or not parent_el.get("link") or not child_el.get("link"):
        raise URDFError(f"{path}: joint {name!r} needs <parent link=...> and <child link=...>")

    axis = np.array([1.0, 0.0, 0.0])  # the URDF default
    axis_el = el.find("axis")
    if axis_el is not None and jtype != "fixed":
        axis = _floats(axis_el.get("xyz", "1 0 0"), 3, f"axis of joint {name!r}", path)
        norm = float(np.linalg.norm(axis))
        if norm < 1e-9:
            raise URDFError(f"{path}: joint {name!r} has a zero axis {axis.tolist()}")
        axis = axis / norm

    lower, upper = _joint_limits(el, name, jtype, path)
    mimic = None
    mimic_el = el.find("mimic")
    if mimic_el is not None and jtype != "fixed":
        leader = _required_attr(mimic_el, "joint", path)
        mimic = (leader, float(mimic_el.get("multiplier", "1")), float(mimic_el.get("offset", "0")))
    return Joint(name, jtype, parent_el.get("link"), child_el.get("link"), _origin_matrix(el.find("origin"), path),
                 axis, lower, upper, mimic)


def _joint_limits(el: ET.Element, name: str, jtype: str, path: Path) -> tuple[float, float]:
    if jtype == "fixed":
        return 0.0, 0.0
    if jtype == "continuous":
        return -math.pi, math.pi
    limit_el = el.find("limit")
    if limit_el is None:
        raise URDFError(f"{path}: {jtype} joint {name!r} has no <limit>; URDF requires one")
    lower, upper = float(limit_el.get("lower", "0")), float(limit_el.get("upper", "0"))
    if not lower <= upper:
        raise URDFError(f"{path}: joint {name!r} has lower limit {lower} above upper limit {upper}")
    return lower, upper


# --------------------------------------------------------------------------------------------------------------
# Materials and visuals


def _named_materials(root_el: ET.Element, path: Path) -> dict[str, np.ndarray]:
    """Named material colours: robot-level declarations first, then colours first given inside a visual.

    Like urdfdom, a ``<material name="x"><color/></material>`` inside one link's visual also defines ``x`` for
    later visuals that only name it (xacro output often does this).
    """
    materials: dict[str, np.ndarray] = {}
    for mat_el in list(root_el.findall("material")) + list(root_el.iter("material")):
        name = mat_el.get("name")
        if name and name not in materials:
            rgba = _material_rgba(mat_el, {}, path)
            if rgba is not None:
                materials[name] = rgba
    return materials


def _material_rgba(mat_el: ET.Element | None, named: dict[str, np.ndarray], path: Path) -> np.ndarray | None:
    """A material's colour: its own ``<color rgba>``, else the robot-level material of the same name."""
    if mat_el is None:
        return None
    color_el = mat_el.find("color")
    if color_el is not None and color_el.get("rgba"):
        rgba = _floats(color_el.get("rgba"), 4, f"material {mat_el.get('name', '')!r} rgba", path)
        return np.clip(rgba, 0.0, 1.0)
    return named.get(mat_el.get("name", ""))


def _parse_visual(
    link: str, vis_el: ET.Element, materials: dict[str, np.ndarray], resolver: "UriResolver", path: Path
) -> Visual | None:
    geom_el = vis_el.find("geometry")
    if geom_el is None or len(geom_el) == 0:
        raise URDFError(f"{path}: a <{vis_el.tag}> of link {link!r} has no <geometry>")
    shape = geom_el[0]
    vertex_rgb = None
    if shape.tag == "box":
        size = _floats(shape.get("size"), 3, f"box size in link {link!r}", path)
        vertices, faces = box_mesh(size)
        source = "box"
    elif shape.tag == "cylinder":
        radius = _positive(shape, "radius", link, path)
        length = _positive(shape, "length", link, path)
        vertices, faces = cylinder_mesh(radius, length)
        source = "cylinder"
    elif shape.tag == "sphere":
        vertices, faces = sphere_mesh(_positive(shape, "radius", link, path))
        source = "sphere"
    elif shape.tag == "mesh":
        uri = _required_attr(shape, "filename", path)
        vertices, faces, vertex_rgb = load_mesh_file(resolver.resolve(uri, link))
        scale = _floats(shape.get("scale", "1 1 1"), 3, f"mesh scale in link {link!r}", path)
        vertices = vertices * scale
        if np.prod(scale) < 0:  # a mirroring scale turns the triangles inside out: keep normals outward
            faces = faces[:, ::-1].copy()
        source = uri
    else:
        raise URDFError(f"{path}: link {link!r} has unsupported geometry <{shape.tag}>")
    if len(faces) == 0:
        return None
    T = _origin_matrix(vis_el.find("origin"), path)
    vertices = vertices @ T[:3, :3].T + T[:3, 3]
    rgba = _material_rgba(vis_el.find("material"), materials, path)
    return Visual(
        link=link,
        vertices=np.ascontiguousarray(vertices, dtype=np.float64),
        faces=np.ascontiguousarray(faces, dtype=np.int64),
        rgba=DEFAULT_RGBA.copy() if rgba is None else rgba,
        vertex_rgb=vertex_rgb,
        source=source,
    )


# --------------------------------------------------------------------------------------------------------------
# Small XML helpers


def _describe(el: ET.Element) -> str:
    return f"<{el.tag}{' name=' + repr(el.get('name')) if el.get('name') else ''}>"


def _required_attr(el: ET.Element, name: str, path: Path) -> str:
    value = el.get(name)
    if not value:
        raise URDFError(f"{path}: {_describe(el)} has no {name!r} attribute")
    return value


def _floats(text: str | None, count: int, what: str, path: Path) -> np.ndarray:
    try:
        values = np.array([float(t) for t in (text or "").split()], dtype=np.float64)
    except ValueError as exc:
        raise URDFError(f"{path}: {what} is {text!r}, not {count} numbers") from exc
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise URDFError(f"{path}: {what} is {text!r}, expected {count} finite numbers")
    return values


def _positive(el: ET.Element, name: str, link: str, path: Path) -> float:
    value = float(_floats(el.get(name), 1, f"{el.tag} {name} in link {link!r}", path)[0])
    if value <= 0:
        raise URDFError(f"{path}: {el.tag} {name} in link {link!r} is {value}; must be positive")
    return value
