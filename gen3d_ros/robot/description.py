"""Which robot: a robot description by name or path, resolved to a URDF file and loaded.

    robot = load_robot("test_arm")                  # the packaged 5-DoF test arm
    robot = load_robot("panda")                     # example-robot-data (optional package) by short name
    robot = load_robot("/ws/src/my_robot/urdf/my_robot.urdf", package_dirs={"my_robot": Path("/ws/src/my_robot")})

The parsing itself (links, joints, visual meshes, the mesh-path sandbox) is :func:`gen3d_ros.robot.urdf.load_urdf`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from gen3d_ros.robot.urdf import RobotModel, example_robot_urdf, load_urdf, test_arm_urdf


def resolve_robot_urdf(spec: str) -> Path:
    """The URDF file of a robot ``spec``: ``""`` or ``"test_arm"`` (the packaged arm), a path (ends in ``.urdf``,
    contains ``/`` or exists; ``~`` expanded), else an ``example-robot-data`` name (``"panda"``, ``"ur5"``, ...).

    Raises FileNotFoundError naming ``spec`` when the path does not exist or the name is unknown (with what to
    install when example-robot-data is missing).
    """
    if spec in ("", "test_arm"):
        return test_arm_urdf()
    path = Path(spec).expanduser()
    if path.suffix == ".urdf" or "/" in spec or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"URDF file not found: {path} (robot {spec!r}); give a URDF path, 'test_arm' "
                                    "or an example-robot-data name")
        return path
    found = example_robot_urdf(spec)  # FileNotFoundError for a name example-robot-data does not ship
    if found is None:
        raise FileNotFoundError(
            f"robot {spec!r} is neither 'test_arm' nor a URDF file, and example-robot-data (which ships it) is "
            "not installed: pip install example-robot-data trimesh pycollada"
        )
    return found


def load_robot(
    spec: str,
    *,
    package_dirs: dict[str, Path] | None = None,
    allowed_roots: Iterable[str | Path] = (),
    geometry: str = "visual",
) -> RobotModel:
    """A robot by name or path (:func:`resolve_robot_urdf`), loaded by :func:`~gen3d_ros.robot.urdf.load_urdf`.

    ``package_dirs`` (``{"package_name": folder}`` for ``package://`` mesh URIs), ``allowed_roots`` (more folders
    mesh paths may read from) and ``geometry`` (``"visual"`` or ``"collision"``) are passed through to it.
    Panda's visual meshes are COLLADA: they need trimesh + pycollada.
    """
    return load_urdf(resolve_robot_urdf(spec), package_dirs, geometry, allowed_roots=allowed_roots)


__all__ = ["load_robot", "resolve_robot_urdf"]
