"""A loaded robot as one ``.npz`` file, for machines without the URDF mesh readers (trimesh, pycollada): plain
arrays and one JSON string, nothing pickled, checked on reading as a URDF is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gen3d_ros.robot.robot_model import JOINT_TYPES, Joint, RobotModel, URDFError, Visual, check_mimics, tree_order

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

    The tree is checked as :func:`~gen3d_ros.robot.urdf.load_urdf` checks it (one root, no cycles, mimic leaders
    exist) and every mesh's shapes and face indices, so a damaged or hand-made file fails here with
    :class:`URDFError`.
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
    check_mimics(joints, path)
    root, ordered = tree_order(links, joints, path)
    if ordered != links or root != meta["root"]:
        raise URDFError(f"{path}: the stored link order does not match the joints (damaged robot file)")
    return RobotModel(name=str(meta["name"]), root=root, links=links, joints=joints, visuals=visuals,
                      urdf_sha256=str(meta["urdf_sha256"]),
                      source_path=Path(meta["source_path"]) if meta.get("source_path") else None)
