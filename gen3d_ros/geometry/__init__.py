"""Point-cloud and rotation geometry: k-nearest neighbours, Chamfer distance, rotation conversions.

One API over two backends, chosen at run time and logged on ``gen3d_ros.geometry``: pytorch3d when it
imports (CUDA machines with a pytorch3d build), else a pure-torch implementation with the same semantics
(these CPU machines: pytorch3d has no Linux wheel or source on the registry). ``$GEN3D_GEOMETRY_BACKEND``
or ``backend=`` forces one. Tensors in, tensors out, batched, differentiable; never imports rclpy.

For large CPU point sets without gradients (evaluation), :func:`nearest_distances` uses a scipy KD-tree.
"""

from gen3d_ros.geometry.chamfer import chamfer_distance
from gen3d_ros.geometry.knn import (
    BACKEND_NAMES,
    ENV_VAR,
    KNN,
    knn_backend,
    knn_gather,
    knn_points,
    nearest_distances,
    pytorch3d_available,
    pytorch3d_unavailable_reason,
    resolve_backend,
)
from gen3d_ros.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_ros_quaternion,
    matrix_to_rotation_6d,
    quaternion_to_matrix,
    quaternion_wxyz_to_xyzw,
    quaternion_xyzw_to_wxyz,
    ros_quaternion_to_matrix,
    rotation_6d_to_matrix,
    rotation_angle_between,
    so3_exp,
    so3_log,
)

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
