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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import site
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlparse

import numpy as np

JOINT_TYPES = ("revolute", "continuous", "prismatic", "fixed")
"""Joint types this package models. URDF's ``floating`` and ``planar`` are rejected with a clear error."""

DEFAULT_RGBA = np.array([0.6, 0.6, 0.6, 1.0])
"""Colour of visuals without a material colour (URDF has no default; rviz also shows grey)."""

_CYLINDER_SEGMENTS = 32
_SPHERE_RINGS, _SPHERE_SEGMENTS = 12, 24


class URDFError(ValueError):
    """A URDF file that cannot be turned into a :class:`RobotModel`; the message names the file and the element."""


class URDFPathError(URDFError):
    """A mesh URI that leads outside the folders the URDF may read (see :func:`load_urdf`, "Mesh paths").

    ``uri`` is the URI as written, ``resolved`` the file it leads to (links and ``..`` resolved; ``None`` when it
    was refused before that), ``roots`` the folders it had to stay in.
    """

    def __init__(self, message: str, *, uri: str = "", resolved: Path | None = None,
                 roots: list[Path] | None = None) -> None:
        super().__init__(message)
        self.uri, self.resolved, self.roots = uri, resolved, list(roots or [])


@dataclass
class Joint:
    """One URDF joint. ``origin`` is ``T_parent_joint`` (4x4, metres); ``axis`` a unit vector in the joint frame.

    ``lower``/``upper`` are radians (revolute, continuous: ``±pi``) or metres (prismatic); 0 for fixed joints.
    ``mimic`` is ``(leader_joint, multiplier, offset)``: ``q = multiplier * q_leader + offset``.
    """

    name: str
    type: str
    parent: str
    child: str
    origin: np.ndarray
    axis: np.ndarray
    lower: float
    upper: float
    mimic: tuple[str, float, float] | None = None


@dataclass
class Visual:
    """A visual triangle mesh of ``link``: ``vertices`` [V, 3] float64 metres in the link frame, ``faces`` [F, 3] int64.

    ``rgba`` (4,) in [0, 1] is the URDF material colour (or :data:`DEFAULT_RGBA`). ``vertex_rgb`` [V, 3] in [0, 1]
    is set when the mesh file carries its own colours (e.g. COLLADA materials); those take precedence over
    ``rgba`` for shading, as in rviz.
    """

    link: str
    vertices: np.ndarray
    faces: np.ndarray
    rgba: np.ndarray
    vertex_rgb: np.ndarray | None = None
    source: str = ""
    """Where the geometry came from: ``box``, ``cylinder``, ``sphere`` or the mesh URI."""


@dataclass
class RobotModel:
    """A robot's kinematic tree and visual geometry, as read from a URDF.

    ``links`` lists every link, root first and parents before children (depth-first in URDF joint order);
    ``joints`` keeps the URDF's order. ``urdf_sha256`` is the SHA-256 of the URDF text (to tie checkpoints and
    datasets to the exact description they were made from).
    """

    name: str
    root: str
    links: list[str]
    joints: list[Joint]
    visuals: list[Visual]
    urdf_sha256: str
    source_path: Path | None = None
    _joint_by_child: dict[str, Joint] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._joint_by_child = {j.child: j for j in self.joints}

    @property
    def actuated_joints(self) -> list[str]:
        """Names of the joints that take a value of their own: non-fixed, non-mimic, in URDF order."""
        return [j.name for j in self.joints if j.type != "fixed" and j.mimic is None]

    @property
    def lower(self) -> np.ndarray:
        """[J] lower limits of :attr:`actuated_joints` (radians or metres)."""
        by_name = self.joint_map()
        return np.array([by_name[n].lower for n in self.actuated_joints], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        """[J] upper limits of :attr:`actuated_joints` (radians or metres)."""
        by_name = self.joint_map()
        return np.array([by_name[n].upper for n in self.actuated_joints], dtype=np.float64)

    def joint_map(self) -> dict[str, Joint]:
        """Joints by name."""
        return {j.name: j for j in self.joints}

    def parent_joint(self, link: str) -> Joint | None:
        """The joint whose child is ``link`` (``None`` for the root)."""
        return self._joint_by_child.get(link)


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
    _check_mimics(joints, path)
    root, ordered_links = _tree_order(link_names, joints, path)

    materials = _named_materials(root_el, path)
    resolver = _UriResolver(path, package_dirs or {}, allowed_roots)
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
    robots = _example_robot_data_dir()
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


def _example_robot_data_dir() -> Path | None:
    """``.../cmeel.prefix/share/example-robot-data/robots`` in an installed site-packages, if any."""
    candidates = list(sys.path)
    try:
        candidates += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # virtualenvs with an old site.py
        pass
    for entry in candidates:
        robots = Path(entry) / "cmeel.prefix" / "share" / "example-robot-data" / "robots"
        if robots.is_dir():
            return robots
    return None


# --------------------------------------------------------------------------------------------------------------
# A loaded robot as one file (for machines without the mesh readers)

ROBOT_NPZ_FORMAT = "gen3d_ros.robot_model/1"


def save_robot_npz(robot: RobotModel, path: str | Path) -> Path:
    """Write a loaded robot (tree, joints, visual meshes) to one compressed ``.npz`` that :func:`load_robot_npz`
    reads back without URDF or mesh readers (trimesh, pycollada), e.g. on a GPU machine that has neither.

    Plain arrays and one JSON string, nothing pickled. Meshes are stored as float32 vertices / int32 faces
    (sub-micrometre rounding for robot-sized meshes) and read back as float64 / int64. Written atomically.
    """
    meta = {
        "format": ROBOT_NPZ_FORMAT, "name": robot.name, "root": robot.root, "links": list(robot.links),
        "urdf_sha256": robot.urdf_sha256, "source_path": str(robot.source_path) if robot.source_path else None,
        "joints": [{"name": j.name, "type": j.type, "parent": j.parent, "child": j.child,
                    "origin": np.asarray(j.origin, dtype=np.float64).tolist(),
                    "axis": np.asarray(j.axis, dtype=np.float64).tolist(), "lower": float(j.lower),
                    "upper": float(j.upper), "mimic": list(j.mimic) if j.mimic else None} for j in robot.joints],
        "visuals": [{"link": v.link, "rgba": np.asarray(v.rgba, dtype=np.float64).tolist(), "source": v.source,
                     "vertex_rgb": v.vertex_rgb is not None} for v in robot.visuals],
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for i, v in enumerate(robot.visuals):
        arrays[f"v{i}_vertices"] = np.asarray(v.vertices, dtype=np.float32)
        arrays[f"v{i}_faces"] = np.asarray(v.faces, dtype=np.int32)
        if v.vertex_rgb is not None:
            arrays[f"v{i}_vertex_rgb"] = np.asarray(v.vertex_rgb, dtype=np.float32)
    from gen3d_ros.outputs import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez_compressed(stream, **arrays)
    return path


def load_robot_npz(path: str | Path) -> RobotModel:
    """Read :func:`save_robot_npz`'s file (``np.load(allow_pickle=False)``: no code runs while reading it).

    The tree is checked as :func:`load_urdf` checks it (one root, no cycles, mimic leaders exist) and every
    mesh's shapes and face indices, so a damaged or hand-made file fails here with :class:`URDFError`.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise URDFError(f"{path}: not a robot file written by save_robot_npz ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != ROBOT_NPZ_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise URDFError(f"{path}: format {found!r}, expected {ROBOT_NPZ_FORMAT!r}; write it with save_robot_npz")
    try:
        joints = [Joint(j["name"], j["type"], j["parent"], j["child"],
                        np.array(j["origin"], dtype=np.float64).reshape(4, 4),
                        np.array(j["axis"], dtype=np.float64).reshape(3), float(j["lower"]), float(j["upper"]),
                        (str(j["mimic"][0]), float(j["mimic"][1]), float(j["mimic"][2])) if j["mimic"] else None)
                  for j in meta["joints"]]
        links = [str(name) for name in meta["links"]]
        visuals = []
        for i, v in enumerate(meta["visuals"]):
            vertices = arrays[f"v{i}_vertices"].astype(np.float64)
            faces = arrays[f"v{i}_faces"].astype(np.int64)
            rgb = arrays[f"v{i}_vertex_rgb"].astype(np.float64) if v["vertex_rgb"] else None
            if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3 or \
                    (len(faces) and (faces.min() < 0 or faces.max() >= len(vertices))) or \
                    (rgb is not None and rgb.shape != vertices.shape) or v["link"] not in links:
                raise ValueError(f"visual {i} of link {v['link']!r} has inconsistent arrays")
            visuals.append(Visual(str(v["link"]), vertices, faces, np.array(v["rgba"], dtype=np.float64).reshape(4),
                                  rgb, str(v["source"])))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise URDFError(f"{path}: damaged robot file: {exc}") from exc
    for joint in joints:
        if joint.type not in JOINT_TYPES:
            raise URDFError(f"{path}: joint {joint.name!r} has unknown type {joint.type!r}")
    _check_mimics(joints, path)
    root, ordered = _tree_order(links, joints, path)
    if ordered != links or root != meta["root"]:
        raise URDFError(f"{path}: the stored link order does not match the joints (damaged robot file)")
    return RobotModel(name=str(meta["name"]), root=root, links=links, joints=joints, visuals=visuals,
                      urdf_sha256=str(meta["urdf_sha256"]),
                      source_path=Path(meta["source_path"]) if meta.get("source_path") else None)


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
# Joints and the tree


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


def _check_mimics(joints: list[Joint], path: Path) -> None:
    """Every mimic leader exists and is not fixed; mimic chains end (no mimic cycles)."""
    by_name = {j.name: j for j in joints}
    for joint in joints:
        seen = {joint.name}
        current = joint
        while current.mimic is not None:
            leader = by_name.get(current.mimic[0])
            if leader is None:
                raise URDFError(f"{path}: joint {current.name!r} mimics unknown joint {current.mimic[0]!r}")
            if leader.type == "fixed":
                raise URDFError(f"{path}: joint {current.name!r} mimics fixed joint {leader.name!r}")
            if leader.name in seen:
                raise URDFError(f"{path}: mimic joints form a cycle through {sorted(seen)}")
            seen.add(leader.name)
            current = leader


def _tree_order(link_names: list[str], joints: list[Joint], path: Path) -> tuple[str, list[str]]:
    """The root link and all links in depth-first order (parents before children); rejects forests and cycles."""
    known = set(link_names)
    children: dict[str, list[str]] = {n: [] for n in link_names}
    parent_of: dict[str, str] = {}
    for joint in joints:
        for role, link in (("parent", joint.parent), ("child", joint.child)):
            if link not in known:
                raise URDFError(f"{path}: joint {joint.name!r} names {role} link {link!r}, which is not a <link>")
        if joint.child in parent_of:
            raise URDFError(f"{path}: link {joint.child!r} is the child of more than one joint "
                            f"(a URDF must be a tree)")
        parent_of[joint.child] = joint.parent
        children[joint.parent].append(joint.child)
    roots = [n for n in link_names if n not in parent_of]
    if len(roots) != 1:
        if not roots:
            raise URDFError(f"{path}: no root link (every link is some joint's child: the joints form a cycle)")
        raise URDFError(f"{path}: {len(roots)} root links {roots}; a URDF needs exactly one (add joints)")
    order: list[str] = []
    stack = [roots[0]]
    while stack:
        link = stack.pop()
        order.append(link)
        stack.extend(reversed(children[link]))
    if len(order) != len(link_names):
        unreached = sorted(known - set(order))
        raise URDFError(f"{path}: links {unreached} are not reachable from root {roots[0]!r} (a cycle)")
    return roots[0], order


# --------------------------------------------------------------------------------------------------------------
# Materials and geometry


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
    link: str, vis_el: ET.Element, materials: dict[str, np.ndarray], resolver: "_UriResolver", path: Path
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


def box_mesh(size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box of edge lengths ``size`` (metres) centred at the origin; 24 vertices (4 per face, so faces stay flat)."""
    half = np.asarray(size, dtype=np.float64) / 2.0
    vertices, faces = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = (axis + 1) % 3, (axis + 2) % 3
            corners = []
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u], p[v] = sign * half[axis], a * half[u], b * half[v]
                corners.append(p)
            base = len(vertices)
            vertices.extend(corners)
            # (u, v, axis) is right-handed, so counter-clockwise in (u, v) faces +axis; flip for the -axis face.
            tri = [[0, 1, 2], [0, 2, 3]] if sign > 0 else [[0, 2, 1], [0, 3, 2]]
            faces.extend([[base + i for i in t] for t in tri])
    return np.array(vertices), np.array(faces, dtype=np.int64)


def cylinder_mesh(radius: float, length: float, segments: int = _CYLINDER_SEGMENTS) -> tuple[np.ndarray, np.ndarray]:
    """URDF cylinder: axis along z, centred at the origin; side and caps with outward normals."""
    angles = np.linspace(0.0, 2.0 * math.pi, segments, endpoint=False)
    ring = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    h = length / 2.0
    bottom = np.column_stack([ring, np.full(segments, -h)])
    top = np.column_stack([ring, np.full(segments, h)])
    # Caps get their own vertices so that no vertex is shared between the side and a cap.
    vertices = np.vstack([bottom, top, bottom, top, [[0.0, 0.0, -h], [0.0, 0.0, h]]])
    i = np.arange(segments)
    j = (i + 1) % segments
    side = np.vstack([np.column_stack([i, j, segments + j]), np.column_stack([i, segments + j, segments + i])])
    c_bot, c_top = 4 * segments, 4 * segments + 1
    cap_bottom = np.column_stack([np.full(segments, c_bot), 2 * segments + j, 2 * segments + i])
    cap_top = np.column_stack([np.full(segments, c_top), 3 * segments + i, 3 * segments + j])
    return vertices, np.vstack([side, cap_bottom, cap_top]).astype(np.int64)


def sphere_mesh(
    radius: float, rings: int = _SPHERE_RINGS, segments: int = _SPHERE_SEGMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere centred at the origin with outward-facing triangles."""
    vertices = [[0.0, 0.0, radius]]
    for r in range(1, rings):
        theta = math.pi * r / rings
        for s in range(segments):
            phi = 2.0 * math.pi * s / segments
            vertices.append([radius * math.sin(theta) * math.cos(phi), radius * math.sin(theta) * math.sin(phi),
                             radius * math.cos(theta)])
    vertices.append([0.0, 0.0, -radius])
    south = len(vertices) - 1
    faces = []
    for s in range(segments):
        t = (s + 1) % segments
        faces.append([0, 1 + s, 1 + t])
        last = 1 + (rings - 2) * segments
        faces.append([south, last + t, last + s])
    for r in range(rings - 2):
        a, b = 1 + r * segments, 1 + (r + 1) * segments
        for s in range(segments):
            t = (s + 1) % segments
            faces.append([a + s, b + s, b + t])
            faces.append([a + s, b + t, a + t])
    return np.array(vertices), np.array(faces, dtype=np.int64)


# --------------------------------------------------------------------------------------------------------------
# Mesh files


class _UriResolver:
    """Turns URDF mesh URIs (``package://``, ``file://``, relative or absolute paths) into existing files, and
    refuses any that lead outside the places this URDF may read (see :func:`load_urdf`, "Mesh paths").

    Every path is checked after resolving symbolic links and ``..``, so neither a ``..`` in the URI nor a link
    inside a package can reach a file elsewhere.
    """

    def __init__(self, urdf_path: Path, package_dirs: dict[str, Path],
                 allowed_roots: Iterable[str | Path] = ()) -> None:
        self.urdf_path = urdf_path
        self.package_dirs = {k: Path(v).expanduser() for k, v in package_dirs.items()}
        self.own_roots = urdf_package_roots(urdf_path)
        # the same folders as written (links not resolved), to tell a link leading out from a path that does
        self.own_lexical = [Path(os.path.normpath(_package_folder(urdf_path.absolute())))]
        extra = [Path(r).expanduser() for r in allowed_roots] + list(self.package_dirs.values())
        self.extra_roots = _unique(root for folder in extra for root in _package_real_roots(folder))

    def resolve(self, uri: str, link: str) -> Path:
        """The file ``uri`` names, links resolved. Raises :class:`URDFPathError` (outside the allowed roots, or
        not a package name) or ``FileNotFoundError`` (no such file or package)."""
        where = f"{self.urdf_path}: mesh {uri!r} of link {link!r}"
        if uri.startswith("package://"):
            package, _, rest = uri[len("package://"):].partition("/")
            if package in ("", ".", "..") or "\\" in package or "\x00" in package:
                raise URDFPathError(f"{where}: {package!r} is not a package name (package://NAME/path/in/package)",
                                    uri=uri)
            base = self._package_dir(package)
            if base is None:
                raise FileNotFoundError(
                    f"{where}: package {package!r} not found; pass "
                    f"load_urdf(..., package_dirs={{{package!r}: Path('/path/to/{package}')}})"
                )
            candidate = base / rest
            roots = _package_real_roots(base)
            scope = f"package {package!r} ({', '.join(map(str, roots))})"
            lexical_roots = roots + [Path(os.path.normpath(base.absolute()))]
            fix = f"if the package lives elsewhere, pass load_urdf(..., package_dirs={{{package!r}: folder}})"
        elif uri.startswith("file://"):
            parsed = urlparse(uri)
            if parsed.netloc not in ("", "localhost"):
                raise URDFPathError(f"{where}: names the host {parsed.netloc!r}; only local files "
                                    f"(file:///path) can be read", uri=uri)
            candidate = Path(unquote(parsed.path))
            roots = self.own_roots + self.extra_roots
            lexical_roots = roots + self.own_lexical
            scope, fix = self._scope(), _ALLOW_HINT
        elif _SCHEME.match(uri):
            raise URDFError(f"{where}: unsupported URI scheme; use package://, file:// or a path relative to the "
                            f"URDF")
        else:
            candidate = Path(uri)
            if not candidate.is_absolute():
                candidate = self.urdf_path.absolute().parent / candidate
            roots = self.own_roots + self.extra_roots
            lexical_roots = roots + self.own_lexical
            scope, fix = self._scope(), _ALLOW_HINT
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL byte in the URI
            raise URDFError(f"{where}: cannot resolve {candidate}: {exc}") from exc
        if not any(real == root or real.is_relative_to(root) for root in roots):
            # Tell a link that leads out from a '..' or an absolute path that is out to begin with.
            lexical = Path(os.path.normpath(candidate.absolute()))
            through_link = any(lexical.is_relative_to(root) for root in lexical_roots)
            how = "a symbolic link on the way leads out" if through_link else "its path leads out"
            raise URDFPathError(
                f"{where} resolves to {real}, outside {scope}: {how}. A URDF may only read meshes inside its own "
                f"package or the package a package:// URI names; {fix}",
                uri=uri, resolved=real, roots=roots,
            )
        if not real.is_file():
            raise FileNotFoundError(f"{where} not found (looked at {candidate})")
        return real

    def _scope(self) -> str:
        own = ", ".join(map(str, self.own_roots))
        extra = f"; allowed roots: {', '.join(map(str, self.extra_roots))}" if self.extra_roots else ""
        return f"the URDF's package root ({own}{extra})"

    def _package_dir(self, package: str) -> Path | None:
        """Where ``package://<package>/`` points: ``package_dirs``, then the URDF's own ancestors (a folder of that
        name, or a sibling package in the same ``share/`` folder or with a ``package.xml``), then the ament
        index of ``AMENT_PREFIX_PATH`` (installed ROS 2 packages), then the example-robot-data install."""
        if package in self.package_dirs:
            return self.package_dirs[package]
        urdf = self.urdf_path.absolute()
        for ancestor in _unique([*urdf.parents, *urdf.resolve().parents]):
            if ancestor.name == package:
                return ancestor
            sibling = ancestor / package
            if sibling.is_dir() and (ancestor.name == "share" or (sibling / "package.xml").is_file()):
                return sibling
        for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
            share = Path(prefix) / "share"
            if (share / "ament_index" / "resource_index" / "packages" / package).is_file() and \
                    (share / package).is_dir():
                return share / package
        if package == "example-robot-data":
            robots = _example_robot_data_dir()
            if robots is not None:
                return robots.parent
        return None


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ALLOW_HINT = "if this file is meant to be read, pass load_urdf(..., allowed_roots=[its folder])"


def urdf_package_root(urdf_path: str | Path) -> Path:
    """The folder a URDF's ``file://``, absolute and relative mesh paths must stay in (links resolved).

    The nearest folder above the URDF with a ``package.xml`` (a ROS package, source or ``share/`` install);
    else, for the ROS layout ``<package>/urdf/robot.urdf``, the folder above ``urdf/``; else the URDF's folder.
    """
    return _package_folder(Path(urdf_path).absolute()).resolve()


def _package_folder(urdf: Path) -> Path:
    """:func:`urdf_package_root` of an absolute path, links not resolved."""
    for ancestor in urdf.parents:
        if (ancestor / "package.xml").is_file():
            return ancestor
    if urdf.parent.name == "urdf":
        return urdf.parent.parent
    return urdf.parent


def urdf_package_roots(urdf_path: str | Path) -> list[Path]:
    """:func:`urdf_package_root` of the URDF as given and of the file a link to it leads to, each with the real
    folder of its ``package.xml`` (``colcon build --symlink-install`` links every installed file, the URDF and
    its meshes included, back into the source package)."""
    urdf = Path(urdf_path).absolute()
    folders = [urdf_package_root(urdf), urdf_package_root(urdf.resolve())]
    return _unique(root for folder in folders for root in _package_real_roots(folder))


def _package_real_roots(folder: Path) -> list[Path]:
    """``folder`` (links resolved) and, when its ``package.xml`` is a link (a symlink install), that file's real
    folder: the package's files may live there."""
    roots = [folder.resolve()]
    manifest = folder / "package.xml"
    if manifest.is_symlink() and manifest.is_file():
        roots.append(manifest.resolve().parent)
    return _unique(roots)


def _unique(paths: Iterable[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


_OPEN3D_FORMATS = (".stl", ".obj", ".ply", ".off", ".gltf", ".glb")


def load_mesh_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a triangle mesh file: (vertices [V, 3] float64 in the file's units, faces [F, 3] int64, vertex_rgb).

    ``vertex_rgb`` [V, 3] in [0, 1] when the file carries colours (vertex colours or, through trimesh, materials),
    else ``None``. STL/OBJ/PLY/OFF/glTF via open3d; COLLADA and other formats via trimesh (+ pycollada for .dae).
    """
    suffix = path.suffix.lower()
    if suffix in _OPEN3D_FORMATS:
        return _load_with_open3d(path)
    return _load_with_trimesh(path)


def _load_with_open3d(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(path))
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.triangles, dtype=np.int64)
    if len(vertices) == 0 or len(faces) == 0:
        raise URDFError(f"mesh file {path} has no triangles (or open3d cannot read it)")
    colors = np.asarray(mesh.vertex_colors, dtype=np.float64) if mesh.has_vertex_colors() else None
    return vertices, faces, colors


def _load_with_trimesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    suffix = path.suffix.lower()
    try:
        import trimesh
    except ImportError as exc:
        raise URDFError(
            f"mesh {path} ({suffix}) needs trimesh{' and pycollada' if suffix == '.dae' else ''}: "
            f"`pip install trimesh{' pycollada' if suffix == '.dae' else ''}`, or load the collision meshes "
            f"(load_urdf(..., geometry='collision'), usually .stl)"
        ) from exc
    if suffix == ".dae":
        try:
            import collada  # noqa: F401  (trimesh's COLLADA loader)
        except ImportError as exc:
            raise URDFError(
                f"mesh {path} is COLLADA (.dae), which needs pycollada: `pip install pycollada`, or load the "
                f"collision meshes (load_urdf(..., geometry='collision'), usually .stl)"
            ) from exc
    try:
        loaded = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises many types; name the file in one place
        raise URDFError(f"cannot read mesh {path}: {exc}") from exc
    parts = []
    for geom_name in loaded.graph.nodes_geometry:
        transform, key = loaded.graph[geom_name]
        geom = loaded.geometry[key]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        vertices = trimesh.transformations.transform_points(np.asarray(geom.vertices, dtype=np.float64), transform)
        parts.append((vertices, np.asarray(geom.faces, dtype=np.int64), _trimesh_vertex_rgb(geom)))
    if not parts:
        raise URDFError(f"mesh file {path} has no triangles")
    return _merge_parts(parts)


def _trimesh_vertex_rgb(geom) -> np.ndarray | None:
    """[V, 3] colours in [0, 1] of a trimesh geometry (material or vertex colours), ``None`` if it has none."""
    if geom.visual is None or not getattr(geom.visual, "defined", True):
        return None
    try:
        colors = np.asarray(geom.visual.to_color().vertex_colors, dtype=np.float64)
    except Exception:  # textures trimesh cannot sample: fall back to the URDF colour
        return None
    if colors.ndim == 1:  # one colour for the whole part (COLLADA materials come out like this)
        colors = np.tile(colors, (len(geom.vertices), 1))
    if colors.shape != (len(geom.vertices), colors.shape[1]) or colors.shape[1] < 3:
        return None
    return colors[:, :3] / 255.0


def _merge_parts(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    offsets = np.cumsum([0] + [len(v) for v, _, _ in parts[:-1]])
    vertices = np.vstack([v for v, _, _ in parts])
    faces = np.vstack([f + o for (_, f, _), o in zip(parts, offsets)])
    if all(c is None for _, _, c in parts):
        return vertices, faces, None
    colors = np.vstack([c if c is not None else np.tile(DEFAULT_RGBA[:3], (len(v), 1)) for v, _, c in parts])
    return vertices, faces, colors


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
