"""Property-based fuzzing of the Image, CompressedImage and CameraInfo converters (rosbags-world messages).

- ``Image``: valid images of every encoding (random size, row padding, byte order) decode to their pixels; then
  step, encoding, height, width, data and is_bigendian are mutated (boundary values, values past uint32,
  unknown or mis-cased encodings, truncated/extended/other-container data) and every case goes through
  :func:`harness.expect_clean_failure` with ``image_to_array`` and ``image_to_rgb``: a ValueError or a result
  whose shape and dtype agree with the message's fields, never another exception or a big allocation.
- ``CompressedImage``: small real PNG/JPEG files with flipped bits, truncations and rewritten size fields
  (a header claiming up to 65535 x 65535 pixels) decode or fail cleanly under ``max_pixels``.
- ``CameraInfo``: K, D, P with non-finite, zero, negative or huge entries and wrong lengths, sizes, ROI and
  binning: a ValueError naming the field, or intrinsics that are finite, positive and describe a non-empty image.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen3d_ros.io.camera_info import CameraIntrinsics, camera_info_to_intrinsics, intrinsics_to_camera_info
from gen3d_ros.io.image import ENCODINGS, compressed_image_to_rgb, image_to_array, image_to_rgb
from gen3d_ros.io.messages import message_bytes, rosbags_factory

from .harness import examples, expect_clean_failure

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FACTORY = rosbags_factory()
UINT32_EDGES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 2**16, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
NOT_UINT32 = [-1, -2**31, 2**32, 2**64, 1.5, float("nan"), "12", None]


# ---------------------------------------------------------------------------------------------- Image


@st.composite
def valid_images(draw: st.DrawFn) -> tuple[object, np.ndarray]:
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    dtype, channels = ENCODINGS[encoding]
    height, width = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == "f":
        pixels = rng.normal(scale=5.0, size=shape).astype(dtype)
    else:
        pixels = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)
    big = dtype.itemsize > 1 and draw(st.booleans())
    pad = draw(st.integers(0, 5))
    rows = pixels.astype(dtype.newbyteorder(">" if big else "<")).reshape(height, -1)
    data = b"".join(row.tobytes() + b"\xa5" * pad for row in rows)
    msg = FACTORY.new("sensor_msgs/msg/Image", height=height, width=width,
                      encoding=draw(st.sampled_from([encoding, encoding.upper(), encoding.lower()])),
                      is_bigendian=int(big), step=width * channels * dtype.itemsize + pad,
                      data=np.frombuffer(data, np.uint8).copy())
    return msg, pixels


def expected_rgb(encoding: str, pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if pixels.ndim == 2:
        return np.stack([pixels] * 3, axis=-1)
    bgr = encoding.lower() in ("bgr8", "bgra8", "bgr16", "bgra16", "8uc3", "8uc4")
    return pixels[..., 2::-1] if bgr else pixels[..., :3]


@settings(max_examples=examples(500), **SETTINGS)
@given(case=valid_images())
def test_valid_images_of_every_encoding_decode_to_their_pixels(case: tuple[object, np.ndarray]) -> None:
    msg, pixels = case
    out = expect_clean_failure("image.valid", image_to_array, msg, allowed=())
    assert out.dtype == pixels.dtype and out.dtype.isnative and not out.flags.writeable
    np.testing.assert_array_equal(out, pixels)
    if pixels.dtype.kind != "f":
        np.testing.assert_array_equal(expect_clean_failure("image.valid_rgb", image_to_rgb, msg, allowed=()),
                                      expected_rgb(str(msg.encoding), pixels))


@st.composite
def image_mutations(draw: st.DrawFn) -> list[tuple[str, object]]:
    sizes = st.one_of(st.sampled_from(UINT32_EDGES), st.integers(0, 40), st.sampled_from(NOT_UINT32))
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["height", "width", "step", "encoding", "truncate", "extend", "bigendian",
                                     "container"]))
        if kind in ("height", "width", "step"):
            out.append((kind, draw(sizes)))
        elif kind == "encoding":
            out.append((kind, draw(st.one_of(st.sampled_from(sorted(ENCODINGS)), st.sampled_from(
                ["", "bayer_rggb8", "yuv422", "16UC3", "32FC3", "64FC1", "rgb8 ", "RGB8", "mono 8"]),
                st.text(max_size=8)))))
        elif kind == "truncate":
            out.append((kind, draw(st.integers(0, 300))))
        elif kind == "extend":
            out.append((kind, draw(st.binary(min_size=1, max_size=16))))
        elif kind == "bigendian":
            out.append((kind, draw(st.sampled_from([0, 1, 2, 255, True, False]))))
        else:
            out.append((kind, draw(st.sampled_from(["bytes", "list", "empty_list", "bad_list", "object"]))))
    return out


def mutate_image(msg: object, changes: list[tuple[str, object]]) -> object:
    out = FACTORY.new("sensor_msgs/msg/Image", header=msg.header, height=msg.height, width=msg.width,
                      encoding=msg.encoding, is_bigendian=msg.is_bigendian, step=msg.step,
                      data=message_bytes(msg.data).copy())
    containers = [value for kind, value in changes if kind == "container"]
    for kind, value in changes:
        if kind in ("height", "width", "step", "encoding"):
            setattr(out, kind, value)
        elif kind == "truncate":
            out.data = out.data[:value].copy()
        elif kind == "extend":
            out.data = np.concatenate([out.data, np.frombuffer(value, np.uint8)])
        elif kind == "bigendian":
            out.is_bigendian = value
    if containers:  # last: the other changes edit the data as a numpy byte array
        raw = out.data
        out.data = {"bytes": raw.tobytes(), "list": raw.tolist(), "empty_list": [], "bad_list": raw.tolist() + [-1],
                    "object": raw.astype(object)}[containers[-1]]
    return out


@settings(max_examples=examples(900), **SETTINGS)
@given(case=valid_images(), changes=image_mutations())
def test_mutated_images_fail_cleanly_or_agree_with_their_fields(case: tuple[object, np.ndarray],
                                                                changes: list[tuple[str, object]]) -> None:
    msg = mutate_image(case[0], changes)
    out = expect_clean_failure("image.mutated", image_to_array, msg, allowed=(ValueError,))
    rgb = expect_clean_failure("image.mutated_rgb", image_to_rgb, msg, allowed=(ValueError,))
    if isinstance(out, ValueError):
        assert str(out)
        assert isinstance(rgb, ValueError)  # image_to_rgb reads through image_to_array
        return
    dtype, channels = ENCODINGS[next(name for name in ENCODINGS if name.lower() == str(msg.encoding).lower())]
    height, width = int(msg.height), int(msg.width)
    assert out.shape == ((height, width) if channels == 1 else (height, width, channels))
    assert out.dtype == dtype and out.dtype.isnative
    assert message_bytes(msg.data).size == int(msg.step) * height  # decoded from exactly what the fields say
    if dtype.kind == "f":
        assert isinstance(rgb, ValueError) and "float" in str(rgb)
    else:
        assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8 and rgb.flags.writeable
    if {kind for kind, _ in changes} == {"bigendian"}:  # only the byte-order flag changed
        swapped = bool(msg.is_bigendian) != bool(case[0].is_bigendian) and dtype.itemsize > 1
        np.testing.assert_array_equal(out, case[1].byteswap() if swapped else case[1])


# ---------------------------------------------------------------------------------------------- CompressedImage


def _png_ihdr_offset() -> int:
    return 8 + 8  # signature, then the IHDR chunk's length and type


def compressed_samples() -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, (6, 9, 3), dtype=np.uint8)
    out = {}
    for name, ext, image in [("png_rgb", ".png", pixels), ("png_grey", ".png", pixels[..., 0]),
                             ("png16", ".png", pixels.astype(np.uint16) * 257), ("jpeg", ".jpg", pixels)]:
        ok, encoded = cv2.imencode(ext, image)
        assert ok
        out[name] = encoded.tobytes()
    return out


SAMPLES = compressed_samples()
MAX_PIXELS = 1 << 20


def _set_png_size(data: bytearray, width: int, height: int) -> None:
    """Rewrite the IHDR size and its CRC, so the header is valid and claims ``width x height``."""
    at = _png_ihdr_offset()
    data[at:at + 8] = struct.pack(">II", width, height)
    data[at + 13:at + 17] = struct.pack(">I", zlib.crc32(bytes(data[at - 4:at + 13])))


@settings(max_examples=examples(300), **SETTINGS)
@given(name=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_damaged_compressed_images_decode_or_fail_cleanly(name: str, data: st.DataObject) -> None:
    raw = bytearray(SAMPLES[name])
    kind = data.draw(st.sampled_from(["flip", "truncate", "size", "garbage"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "size" and name.startswith("png"):
        _set_png_size(raw, data.draw(st.sampled_from([1, 9, 100, 4096, 65535])),
                      data.draw(st.sampled_from([1, 6, 100, 4096, 65535])))
    else:
        raw = bytearray(data.draw(st.binary(max_size=64)))
    fmt = "png" if name.startswith("png") else "jpeg"
    msg = FACTORY.new("sensor_msgs/msg/CompressedImage", format=fmt, data=np.frombuffer(bytes(raw), np.uint8).copy())
    out = expect_clean_failure("compressed_image", compressed_image_to_rgb, msg, max_pixels=MAX_PIXELS,
                               allowed=(ValueError,))
    if isinstance(out, np.ndarray):
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
        assert 0 < out.shape[0] * out.shape[1] <= MAX_PIXELS
    else:
        assert "CompressedImage" in str(out)


# ---------------------------------------------------------------------------------------------- CameraInfo

K = np.array([[525.0, 0.0, 319.5], [0.0, 520.0, 239.5], [0.0, 0.0, 1.0]])
D = np.array([0.1, -0.25, 0.001, -0.002, 0.05])
ODD_FLOATS = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e-300, 1e300, -525.0]


@st.composite
def info_mutations(draw: st.DrawFn) -> list[tuple[str, object, object]]:
    sizes = st.one_of(st.sampled_from(UINT32_EDGES), st.integers(0, 2000), st.sampled_from(NOT_UINT32))
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["k", "d", "p", "k_len", "d_len", "p_len", "width", "height", "roi",
                                     "binning_x", "binning_y", "model"]))
        if kind in ("k", "d", "p"):
            out.append((kind, draw(st.integers(0, 11)), draw(st.one_of(st.sampled_from(ODD_FLOATS),
                                                                        st.floats(allow_nan=True)))))
        elif kind.endswith("_len"):
            out.append((kind, draw(st.integers(0, 14)), None))
        elif kind in ("width", "height", "binning_x", "binning_y"):
            out.append((kind, draw(sizes), None))
        elif kind == "roi":
            out.append((kind, draw(st.sampled_from(["x_offset", "y_offset", "width", "height"])), draw(sizes)))
        else:
            out.append((kind, draw(st.sampled_from(["", "plumb_bob", "equidistant", "ünknown"])), None))
    return out


@settings(max_examples=examples(700), **SETTINGS)
@given(changes=info_mutations(), rectified=st.booleans())
def test_mutated_camera_info_fails_cleanly_or_gives_usable_intrinsics(changes: list[tuple[str, object, object]],
                                                                     rectified: bool) -> None:
    msg = intrinsics_to_camera_info(CameraIntrinsics(K, D, 640, 480, "plumb_bob"), FACTORY)
    for kind, a, b in changes:
        if kind in ("k", "d", "p"):
            values = np.array(getattr(msg, kind), dtype=np.float64)
            if values.size:
                values[a % values.size] = b
            setattr(msg, kind, values)
        elif kind.endswith("_len"):
            setattr(msg, kind[0], np.resize(np.array(getattr(msg, kind[0]), dtype=np.float64), a))
        elif kind in ("width", "height", "binning_x", "binning_y"):
            setattr(msg, kind, a)
        elif kind == "roi":
            setattr(msg.roi, a, b)
        else:
            msg.distortion_model = a
    out = expect_clean_failure("camera_info", camera_info_to_intrinsics, msg, rectified=rectified,
                               allowed=(ValueError,))
    if isinstance(out, ValueError):
        assert str(out).startswith("CameraInfo")  # names the message, then the field
        return
    assert np.isfinite(out.K).all() and out.fx > 0 and out.fy > 0
    np.testing.assert_allclose(out.K[2], [0, 0, 1], atol=1e-9)
    assert 0 < out.width <= int(msg.width) and 0 < out.height <= int(msg.height)
    assert np.isfinite(out.D).all()
    touched = {kind for kind, _, _ in changes}
    if not touched & {"k", "k_len", "p", "p_len", "roi", "binning_x", "binning_y"} and not rectified:
        np.testing.assert_array_equal(out.K, K)  # D, sizes, model changed: K as published
