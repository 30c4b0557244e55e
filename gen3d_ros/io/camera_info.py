"""``sensor_msgs/CameraInfo`` <-> :class:`CameraIntrinsics` (pinhole K, distortion D, image size).

Pixel convention (OpenCV/ROS): pixel (u, v) has its centre at integer coordinates; the camera optical frame is
x right, y down, z forward (REP-103 ``*_optical_frame``); K maps metres in that frame to pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gen3d_ros.io.messages import MessageFactory
from gen3d_ros.io.messages import float64_sequence, make_header, uint_field


@dataclass(eq=False)  # holds numpy arrays: compare fields explicitly
class CameraIntrinsics:
    """Pinhole intrinsics of one image stream.

    K: (3, 3) float64 camera matrix in pixels, ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
    D: (n,) float64 distortion coefficients of ``distortion_model`` (``plumb_bob``: k1 k2 t1 t2 k3), applied to
        normalised coordinates, so they do not change when the image is scaled.
    width, height: image size in pixels.
    distortion_model: ROS name, e.g. ``"plumb_bob"``, ``"rational_polynomial"``, ``"equidistant"``.
    """

    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    width: int = 0
    height: int = 0
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must be 3x3, got shape {K.shape}")
        self.K = K
        self.D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        self.width, self.height = int(self.width), int(self.height)

    @property
    def fx(self) -> float:
        """Focal length along u, pixels."""
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        """Focal length along v, pixels."""
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        """Principal point u, pixels."""
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        """Principal point v, pixels."""
        return float(self.K[1, 2])

    def scaled(self, factor: float) -> CameraIntrinsics:
        """Intrinsics of the image resized by ``factor`` (e.g. 0.5 halves each side), as ``cv2.resize`` does.

        The new size is ``round(width * factor) x round(height * factor)``; the exact per-axis ratios
        ``s = new / old`` give ``f' = f * s`` and ``c' = (c + 0.5) * s - 0.5`` (pixel centres at integers).
        D is unchanged.
        """
        factor = float(factor)
        if not np.isfinite(factor) or factor <= 0:
            raise ValueError(f"scale factor must be a positive finite number, got {factor}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"cannot scale intrinsics of an image of size {self.width}x{self.height}")
        width = max(1, int(round(self.width * factor)))
        height = max(1, int(round(self.height * factor)))
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, 0], K[0, 1] = K[0, 0] * sx, K[0, 1] * sx
        K[1, 1] = K[1, 1] * sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return CameraIntrinsics(K, self.D.copy(), width, height, self.distortion_model)


def _values(msg: Any, name: str) -> np.ndarray:
    """``msg.<name>`` as finite float64 values (N,), or a ValueError naming the field and its values."""
    try:
        values = np.asarray(getattr(msg, name), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"CameraInfo {name} is not a list of numbers: {exc}") from exc
    if not np.isfinite(values).all():
        raise ValueError(f"CameraInfo {name.upper()} has non-finite values ({name}={values.tolist()}); "
                         f"the calibration is corrupt: recalibrate or fix the camera_info file")
    return values


def _matrix(msg: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    """``msg.<name>`` as a finite float64 matrix of ``shape`` (row-major), or a ValueError naming the field."""
    values = _values(msg, name)
    if values.size != shape[0] * shape[1]:
        raise ValueError(f"CameraInfo {name} has {values.size} values; it must have {shape[0] * shape[1]} "
                         f"({shape[0]}x{shape[1]} row-major)")
    return values.reshape(shape).copy()


def camera_info_to_intrinsics(msg: Any, *, rectified: bool = False) -> CameraIntrinsics:
    """A ``sensor_msgs/CameraInfo`` (either world) as :class:`CameraIntrinsics` of the published image.

    Binning and ROI are applied as image_geometry does, so the result describes the image actually
    published: ``c -= roi offset``, then ``f /= binning`` and ``c /= binning``; the size is the ROI size (or
    full size) divided by the binning.

    Args:
        rectified: describe the rectified image (``image_rect``): K = P[:, :3], no distortion. Default: the raw
            image (K and D).

    Raises:
        ValueError: naming the field and its value: a zero image size or one that is not a uint32; K, P or D
            with the wrong number of values or non-finite ones; fx or fy not > 0 (an uncalibrated camera
            publishes K = 0); a last row of K that is not (0, 0, 1); a ROI outside the image; a binning that
            leaves no pixel.
    """
    width, height = uint_field("CameraInfo", "width", msg.width), uint_field("CameraInfo", "height", msg.height)
    if width <= 0 or height <= 0:
        raise ValueError(f"CameraInfo has image size {width}x{height}; width and height must be > 0")
    if rectified:
        K, D, model = _matrix(msg, "p", (3, 4))[:, :3].copy(), np.zeros(0), ""
        source = "P"
    else:
        K = _matrix(msg, "k", (3, 3))
        D = _values(msg, "d").copy()
        model = str(msg.distortion_model)
        source = "K"
    fx, fy = K[0, 0], K[1, 1]
    if not (fx > 0 and fy > 0):
        raise ValueError(
            f"CameraInfo {source} has fx={fx}, fy={fy} (K={K.reshape(-1).tolist()}); focal lengths must be > 0. "
            f"An uncalibrated camera publishes zeros: calibrate it (camera_calibration) or set intrinsics in "
            f"the parameters"
        )
    if not np.allclose(K[2], (0.0, 0.0, 1.0), rtol=0.0, atol=1e-9):
        raise ValueError(f"CameraInfo {source} has last row {K[2].tolist()}; a pinhole camera matrix ends in "
                         f"(0, 0, 1): the calibration is corrupt")

    roi = msg.roi
    roi_x, roi_y = uint_field("CameraInfo", "roi.x_offset", roi.x_offset), uint_field("CameraInfo", "roi.y_offset",
                                                                                        roi.y_offset)
    roi_w, roi_h = uint_field("CameraInfo", "roi.width", roi.width), uint_field("CameraInfo", "roi.height",
                                                                                 roi.height)
    if roi_w > 0 and roi_h > 0:
        if roi_x + roi_w > width or roi_y + roi_h > height:
            raise ValueError(
                f"CameraInfo roi (x_offset={roi_x}, y_offset={roi_y}, width={roi_w}, height={roi_h}) reaches past "
                f"the {width}x{height} image; fix the driver's ROI settings"
            )
        K[0, 2] -= float(roi_x)
        K[1, 2] -= float(roi_y)
        width, height = roi_w, roi_h
    bx = max(1, uint_field("CameraInfo", "binning_x", msg.binning_x))
    by = max(1, uint_field("CameraInfo", "binning_y", msg.binning_y))
    if bx > 1 or by > 1:
        if width // bx == 0 or height // by == 0:
            raise ValueError(f"CameraInfo binning_x={bx}, binning_y={by} leaves no pixel of the {width}x{height} "
                             f"image; fix the driver's binning settings")
        K[0, :] /= bx
        K[1, :] /= by
        width, height = width // bx, height // by
    return CameraIntrinsics(K, D, width, height, model)


def intrinsics_to_camera_info(intr: CameraIntrinsics, factory: MessageFactory, *, header: Any = None) -> Any:
    """Build a ``sensor_msgs/CameraInfo`` of ``factory``'s world: k = K, d = D, r = identity, P = [K | 0]."""
    P = np.zeros((3, 4))
    P[:, :3] = intr.K
    return factory.new(
        "sensor_msgs/msg/CameraInfo",
        header=make_header(factory, header),
        height=int(intr.height),
        width=int(intr.width),
        distortion_model=str(intr.distortion_model),
        d=float64_sequence(factory, intr.D),
        k=np.asarray(intr.K, dtype=np.float64).reshape(9).copy(),
        r=np.eye(3).reshape(9),
        p=P.reshape(12),
    )
