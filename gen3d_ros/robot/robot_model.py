"""A robot as plain data: :class:`RobotModel` (kinematic tree + visual triangle meshes), its :class:`Joint` and
:class:`Visual` records, the URDF errors, and the tree checks every way of building one runs (one root, no cycles,
mimic leaders that exist). Built by :func:`gen3d_ros.robot.urdf.load_urdf` or
:func:`gen3d_ros.robot.robot_npz.load_robot_npz`.

Units and frames follow URDF/REP-103: metres, radians; ``Joint.origin`` is ``T_parent_joint``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

JOINT_TYPES = ("revolute", "continuous", "prismatic", "fixed")
"""Joint types this package models. URDF's ``floating`` and ``planar`` are rejected with a clear error."""

DEFAULT_RGBA = np.array([0.6, 0.6, 0.6, 1.0])
"""Colour of visuals without a material colour (URDF has no default; rviz also shows grey)."""


class URDFError(ValueError):
    """A URDF file that cannot be turned into a :class:`RobotModel`; the message names the file and the element."""


class URDFPathError(URDFError):
    """A mesh URI that leads outside the folders the URDF may read (see :func:`~gen3d_ros.robot.urdf.load_urdf`,
    "Mesh paths").

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


def check_mimics(joints: list[Joint], path: Path) -> None:
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


def tree_order(link_names: list[str], joints: list[Joint], path: Path) -> tuple[str, list[str]]:
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
