"""``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` <-> numpy.

:func:`image_to_array` views ``msg.data`` (zero-copy for 8-bit images and little-endian 16/32-bit ones), honouring
``step`` row padding and ``is_bigendian``; it returns a read-only array. :func:`image_to_rgb` and
:func:`compressed_image_to_rgb` always return a fresh, writable, C-contiguous (H, W, 3) uint8 RGB array.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import cv2
import numpy as np

from gen3d_ros.io.messages import MessageFactory
from gen3d_ros.io.messages import make_header, message_bytes, uint8_sequence, uint_field

#: encoding -> (dtype, channels). Keys are the canonical ROS spellings (sensor_msgs/image_encodings.hpp).
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3), "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4), "bgra8": (np.dtype(np.uint8), 4),
    "rgb16": (np.dtype(np.uint16), 3), "bgr16": (np.dtype(np.uint16), 3),
    "rgba16": (np.dtype(np.uint16), 4), "bgra16": (np.dtype(np.uint16), 4),
    "mono8": (np.dtype(np.uint8), 1), "mono16": (np.dtype(np.uint16), 1),
    "8UC1": (np.dtype(np.uint8), 1), "8UC3": (np.dtype(np.uint8), 3), "8UC4": (np.dtype(np.uint8), 4),
    "16UC1": (np.dtype(np.uint16), 1), "32FC1": (np.dtype(np.float32), 1),
}
_CANONICAL = {name.lower(): name for name in ENCODINGS}
# Channel order of the colour encodings, for image_to_rgb. 8UC3/8UC4 follow OpenCV's BGR(A) order.
_BGR_ORDER = {"bgr8", "bgra8", "bgr16", "bgra16", "8UC3", "8UC4"}
_COMPRESSED_FORMATS = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}
#: Largest compressed image decoded by default: 2**27 pixels (e.g. 16384 x 8192; an 8K frame is 2**25). A few
#: hundred bytes of JPEG/PNG can claim 65535 x 65535 pixels, which would be decoded into 12 GB.
DEFAULT_MAX_PIXELS = 1 << 27


def _encoding(encoding: str) -> tuple[str, np.dtype, int]:
    canonical = _CANONICAL.get(str(encoding).lower())
    if canonical is None:
        raise ValueError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)} "
            f"(convert the image upstream, e.g. with image_proc, for Bayer/YUV encodings)"
        )
    dtype, channels = ENCODINGS[canonical]
    return canonical, dtype, channels


def image_to_array(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/Image`` (either world) as numpy, in the message's channel order and dtype.

    Returns:
        (H, W) for single-channel encodings (mono8, mono16, 8UC1, 16UC1, 32FC1), else (H, W, C) with C = 3 or 4
        in the encoding's order (bgr8 stays BGR). Native byte order; read-only; a view of ``msg.data`` when
        no byte swap is needed. 32FC1 depth is in the units of the publisher (metres by REP-118).

    Raises:
        ValueError: unsupported encoding; height, width or step not a uint32 or zero (an empty image); ``step``
            smaller than a row; ``len(data) != step * height``; ``data`` that is not bytes. Sizes are checked
            against ``len(data)`` before anything is allocated.
    """
    encoding, dtype, channels = _encoding(msg.encoding)
    height, width = uint_field("Image", "height", msg.height), uint_field("Image", "width", msg.width)
    step = uint_field("Image", "step", msg.step)
    if height == 0 or width == 0:
        raise ValueError(
            f"Image {encoding} has height={height} width={width}: an empty image holds no pixels; "
            f"the camera driver published a frame without data (drop it upstream)"
        )
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(
            f"Image {width}x{height} {encoding} has step={step} but a row needs {row_bytes} bytes "
            f"(width*channels*bytes = {width}*{channels}*{dtype.itemsize})"
        )
    buf = message_bytes(msg.data)
    if buf.size != step * height:
        raise ValueError(
            f"Image {width}x{height} {encoding} has {buf.size} data bytes but step*height = {step}*{height} = "
            f"{step * height}; the message is truncated or its size fields are wrong"
        )
    wire = dtype.newbyteorder(">" if bool(msg.is_bigendian) else "<") if dtype.itemsize > 1 else dtype
    out = np.ndarray((height, width, channels), dtype=wire, buffer=buf,
                     strides=(step, channels * dtype.itemsize, dtype.itemsize))
    out = out.astype(dtype, copy=False)  # byte swap only when the wire order is not native
    if channels == 1:
        out = out[..., 0]
    out.flags.writeable = False
    return out


def _to_uint8(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.uint16:  # full scale 65535 -> 255, rounded
        return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise ValueError(f"cannot convert {values.dtype} pixels to 8-bit colour")


def image_to_rgb(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/Image`` as (H, W, 3) uint8 RGB (fresh, writable, C-contiguous).

    bgr/bgra are reordered, alpha is dropped, mono is replicated to three channels, 16-bit images are scaled
    (65535 -> 255). 8UC3/8UC4 are taken to be BGR(A), OpenCV's order. Float images (32FC1 depth) are not colour
    images: use :func:`image_to_array` and a colour map.
    """
    encoding, dtype, channels = _encoding(msg.encoding)
    if dtype.kind == "f":
        raise ValueError(
            f"Image encoding {encoding} holds float values (depth), not colour; use image_to_array() "
            f"and map the values to colours yourself"
        )
    pixels = _to_uint8(image_to_array(msg))
    if channels == 1:
        rgb = np.repeat(pixels[..., None], 3, axis=2)
    elif encoding in _BGR_ORDER:
        rgb = pixels[..., 2::-1]
    else:
        rgb = pixels[..., :3]
    return np.array(rgb, dtype=np.uint8, order="C", copy=True)


def array_to_image(array: np.ndarray, encoding: str, factory: MessageFactory, *, header: Any = None) -> Any:
    """Build a ``sensor_msgs/Image`` of ``factory``'s world.

    Args:
        array: (H, W) or (H, W, 1) for single-channel encodings, (H, W, C) for C-channel ones, with exactly
            the encoding's dtype (uint8 for *8, uint16 for *16 and 16UC1, float32 for 32FC1).
        encoding: one of :data:`ENCODINGS` (case-insensitive; written in its canonical spelling).
        header: a ``std_msgs/Header`` of either world to copy (default: empty frame, stamp 0).

    Returns:
        A little-endian image with ``step = W * C * itemsize`` (no padding).
    """
    encoding, dtype, channels = _encoding(encoding)
    array = np.asarray(array)
    if channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    expected = "(H, W)" if channels == 1 else f"(H, W, {channels})"
    if (channels == 1 and array.ndim != 2) or (channels > 1 and (array.ndim != 3 or array.shape[2] != channels)):
        raise ValueError(f"encoding {encoding} needs an array of shape {expected}, got {array.shape}")
    if array.dtype.newbyteorder("=") != dtype:
        raise ValueError(
            f"encoding {encoding} needs dtype {dtype}, got {array.dtype}; convert explicitly, "
            f"e.g. array.astype(np.{dtype.name}), choosing the scaling you want"
        )
    height, width = array.shape[:2]
    data = np.ascontiguousarray(array.astype(dtype.newbyteorder("<"), copy=False))
    return factory.new(
        "sensor_msgs/msg/Image",
        header=make_header(factory, header),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * dtype.itemsize,
        data=uint8_sequence(factory, data),
    )


def compressed_image_to_rgb(msg: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A JPEG/PNG ``sensor_msgs/CompressedImage`` (either world) as (H, W, 3) uint8 RGB.

    Follows image_transport's ``format`` convention, e.g. ``"rgb8; jpeg compressed bgr8"``: the part after
    "compressed" names the channel order of the encoded pixels (bgr unless it says rgb; plain ``"jpeg"`` and
    ``"png"`` are bgr, as cv2 writes them). Grey images are replicated, alpha dropped, 16-bit PNG scaled to 8 bit.
    ``compressedDepth`` images are not colour images and are rejected.

    Args:
        max_pixels: refuse images whose header claims more pixels than this (read from the header, before
            decoding: a small corrupt or hostile file can claim gigapixels). Pillow, which reads the header,
            refuses more than 2 x 89 M pixels whatever this says.

    Raises:
        ValueError: empty or undecodable data, a compressedDepth format, more than ``max_pixels`` pixels.
    """
    fmt = str(msg.format)
    lowered = fmt.lower()
    if "compresseddepth" in lowered:
        raise ValueError(
            f"CompressedImage format {fmt!r} is a compressedDepth image (depth, with a 12-byte header), "
            f"not colour; decode it as depth instead"
        )
    buf = message_bytes(msg.data)
    if buf.size == 0:
        raise ValueError(f"CompressedImage (format {fmt!r}) has no data")
    undecodable = (f"cv2.imdecode could not decode {buf.size} bytes of CompressedImage with format {fmt!r}; "
                   f"expected JPEG or PNG data")
    width, height = _compressed_size(buf, undecodable)
    if width * height > max_pixels:
        raise ValueError(
            f"CompressedImage (format {fmt!r}, {buf.size} bytes) says it is {width}x{height} = {width * height} "
            f"pixels, more than max_pixels={max_pixels}: corrupt data, or pass a larger max_pixels"
        )
    try:
        decoded = cv2.imdecode(np.ascontiguousarray(buf), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ValueError(f"{undecodable}: {exc}") from exc
    if decoded is None or decoded.size == 0:
        raise ValueError(undecodable)
    stored_rgb = "compressed rgb" in lowered
    pixels = _to_uint8(decoded)
    if pixels.ndim == 2:
        rgb = np.repeat(pixels[..., None], 3, axis=2)
    elif pixels.shape[2] == 1:
        rgb = np.repeat(pixels, 3, axis=2)
    elif stored_rgb:
        rgb = pixels[..., :3]
    else:
        rgb = pixels[..., 2::-1]
    return np.array(rgb, dtype=np.uint8, order="C", copy=True)


def _compressed_size(buf: np.ndarray, undecodable: str) -> tuple[int, int]:
    """(width, height) from the image header alone (Pillow reads no pixel data in ``open``)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(buf.tobytes())) as image:
                width, height = image.size
    except Image.DecompressionBombError as exc:  # over Pillow's own hard limit (2 x 89 M pixels)
        raise ValueError(f"CompressedImage of {buf.size} bytes claims too many pixels: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for junk; none may escape as a crash
        raise ValueError(undecodable) from exc
    if width <= 0 or height <= 0:
        raise ValueError(f"{undecodable}: its header says {width}x{height} pixels")
    return int(width), int(height)


def rgb_to_compressed_image(
    rgb: np.ndarray,
    factory: MessageFactory,
    *,
    fmt: str = "jpeg",
    header: Any = None,
    quality: int = 90,
) -> Any:
    """Encode (H, W, 3) uint8 RGB as a ``sensor_msgs/CompressedImage`` of ``factory``'s world.

    Args:
        fmt: ``"jpeg"`` (or ``"jpg"``) or ``"png"``. The message's ``format`` is image_transport's
            ``"rgb8; jpeg compressed bgr8"`` / ``"rgb8; png compressed bgr8"``, which rviz2 and
            compressed_image_transport decode to the right colours.
        quality: JPEG quality 1..100 (ignored for PNG, which is lossless).
    """
    key = str(fmt).lower()
    if key not in _COMPRESSED_FORMATS:
        raise ValueError(f"fmt must be one of {sorted(_COMPRESSED_FORMATS)}, got {fmt!r}")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got shape {rgb.shape} dtype {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"cannot compress an empty image of shape {rgb.shape}")
    params: list[int] = []
    if _COMPRESSED_FORMATS[key] == ".jpg":
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, encoded = cv2.imencode(_COMPRESSED_FORMATS[key], np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ValueError(f"cv2.imencode failed to encode a {rgb.shape} image as {key}")
    name = "jpeg" if key in ("jpeg", "jpg") else "png"
    return factory.new(
        "sensor_msgs/msg/CompressedImage",
        header=make_header(factory, header),
        format=f"rgb8; {name} compressed bgr8",
        data=uint8_sequence(factory, encoded.reshape(-1), owned=True),
    )
