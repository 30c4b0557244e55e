"""Point-cloud and rotation geometry: k-nearest neighbours, Chamfer distance, rotation conversions.

One API over two backends, chosen at run time and logged on ``gen3d_ros.geometry``: pytorch3d when it
imports (CUDA machines with a pytorch3d build), else a pure-torch implementation with the same semantics
(these CPU machines: pytorch3d has no Linux wheel or source on the registry). ``$GEN3D_GEOMETRY_BACKEND``
or ``backend=`` forces one. Tensors in, tensors out, batched, differentiable; never imports rclpy.

For large CPU point sets without gradients (evaluation), :func:`nearest_distances` uses a scipy KD-tree.
"""

# The torch-based modules load on first use (PEP 562): the camera model and rigid transforms (camera.py,
# rigid.py) are used where torch is not imported, e.g. by a node declaring its parameters.
from importlib import import_module
from typing import Any

_LAZY = {
    "chamfer_distance": "chamfer",
    "BACKEND_NAMES": "knn",
    "ENV_VAR": "knn",
    "KNN": "knn",
    "knn_backend": "knn",
    "knn_gather": "knn",
    "knn_points": "knn",
    "nearest_distances": "knn",
    "pytorch3d_available": "knn",
    "pytorch3d_unavailable_reason": "knn",
    "resolve_backend": "knn",
    "axis_angle_to_matrix": "rotations",
    "matrix_to_axis_angle": "rotations",
    "matrix_to_quaternion": "rotations",
    "matrix_to_ros_quaternion": "rotations",
    "matrix_to_rotation_6d": "rotations",
    "quaternion_to_matrix": "rotations",
    "quaternion_wxyz_to_xyzw": "rotations",
    "quaternion_xyzw_to_wxyz": "rotations",
    "ros_quaternion_to_matrix": "rotations",
    "rotation_6d_to_matrix": "rotations",
    "rotation_angle_between": "rotations",
    "so3_exp": "rotations",
    "so3_log": "rotations",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BACKEND_NAMES",
    "ENV_VAR",
    "KNN",
    "axis_angle_to_matrix",
    "chamfer_distance",
    "knn_backend",
    "knn_gather",
    "knn_points",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_ros_quaternion",
    "matrix_to_rotation_6d",
    "nearest_distances",
    "pytorch3d_available",
    "pytorch3d_unavailable_reason",
    "quaternion_to_matrix",
    "quaternion_wxyz_to_xyzw",
    "quaternion_xyzw_to_wxyz",
    "resolve_backend",
    "ros_quaternion_to_matrix",
    "rotation_6d_to_matrix",
    "rotation_angle_between",
    "so3_exp",
    "so3_log",
]
