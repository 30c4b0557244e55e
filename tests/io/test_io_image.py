"""Image / CompressedImage <-> numpy in both message worlds."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from gen3d_ros.io.image import (
    array_to_image,
    compressed_image_to_rgb,
    image_to_array,
    image_to_rgb,
    rgb_to_compressed_image,
)
from gen3d_ros.io.messages import rclpy_factory, rosbags_factory
from gen3d_ros.io.typestore import get_gen3d_typestore


@pytest.fixture(params=[rosbags_factory, rclpy_factory], ids=["rosbags", "rclpy"])
def factory(request):
    return request.param()


def raw_image(factory, encoding: str, data: bytes, *, height: int, width: int, step: int, bigendian: bool = False):
    payload = np.frombuffer(data, np.uint8).copy() if factory.name == "rosbags" else array.array("B", data)
    return factory.new("sensor_msgs/msg/Image", height=height, width=width, encoding=encoding,
                       is_bigendian=int(bigendian), step=step, data=payload)


RNG = np.random.default_rng(1)
ARRAYS = {
    "rgb8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "rgba8": RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    "bgra8": RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "mono16": RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    "16UC1": RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    "32FC1": RNG.uniform(0.2, 9.0, (5, 7)).astype(np.float32),
    "8UC1": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "8UC3": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
}


@pytest.mark.parametrize("encoding", list(ARRAYS))
def test_every_encoding_round_trips_exactly(factory, encoding):
    original = ARRAYS[encoding]
    msg = array_to_image(original, encoding, factory)
    channels = 1 if original.ndim == 2 else original.shape[2]
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * channels * original.dtype.itemsize and msg.is_bigendian == 0
    back = image_to_array(msg)
    assert back.dtype == original.dtype and back.shape == original.shape
    np.testing.assert_array_equal(back, original)


def test_rgb8_is_read_as_a_read_only_view_of_the_data(factory):
    msg = array_to_image(ARRAYS["rgb8"], "rgb8", factory)
    view = image_to_array(msg)
    data = np.frombuffer(msg.data, np.uint8) if factory.name == "rclpy" else msg.data
    assert np.shares_memory(view, data) and not view.flags.writeable


def test_step_row_padding_is_skipped(factory):
    pixels = ARRAYS["bgr8"]
    padded = b"".join(row.tobytes() + b"\xee" * 11 for row in pixels)
    msg = raw_image(factory, "bgr8", padded, height=5, width=7, step=7 * 3 + 11)
    np.testing.assert_array_equal(image_to_array(msg), pixels)
    np.testing.assert_array_equal(image_to_rgb(msg), pixels[..., ::-1])


@pytest.mark.parametrize(("encoding", "wire"), [("16UC1", ">u2"), ("mono16", ">u2"), ("32FC1", ">f4")])
def test_big_endian_16_and_32_bit_images_are_byte_swapped(factory, encoding, wire):
    values = ARRAYS[encoding]
    step = values.shape[1] * values.dtype.itemsize + 2  # plus row padding
    data = b"".join(row.astype(wire).tobytes() + b"\0\0" for row in values)
    back = image_to_array(raw_image(factory, encoding, data, height=5, width=7, step=step, bigendian=True))
    assert back.dtype == values.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, values)


def test_image_to_rgb_converts_each_encoding_to_rgb(factory):
    rgb = ARRAYS["rgb8"]
    cases = {
        "rgb8": rgb,
        "bgr8": np.ascontiguousarray(rgb[..., ::-1]),
        "rgba8": np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2),
        "bgra8": np.concatenate([rgb[..., ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2),
    }
    for encoding, pixels in cases.items():
        out = image_to_rgb(array_to_image(pixels, encoding, factory))
        assert out.dtype == np.uint8 and out.flags.c_contiguous and out.flags.writeable
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)

    mono = ARRAYS["mono8"]
    np.testing.assert_array_equal(image_to_rgb(array_to_image(mono, "mono8", factory)), np.stack([mono] * 3, -1))


def test_mono16_is_scaled_to_full_8_bit_range(factory):
    mono16 = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    out = image_to_rgb(array_to_image(mono16, "mono16", factory))
    assert out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]


def test_float_depth_is_not_converted_to_rgb(factory):
    with pytest.raises(ValueError, match="32FC1 holds float values"):
        image_to_rgb(array_to_image(ARRAYS["32FC1"], "32FC1", factory))


def test_unsupported_encoding_names_it_and_the_supported_ones(factory):
    msg = raw_image(factory, "bayer_rggb8", bytes(4), height=2, width=2, step=2)
    with pytest.raises(ValueError, match=r"'bayer_rggb8'.*supported: rgb8, bgr8"):
        image_to_array(msg)


def test_inconsistent_sizes_raise(factory):
    with pytest.raises(ValueError, match=r"has 20 data bytes but step\*height = 6\*4 = 24"):
        image_to_array(raw_image(factory, "rgb8", bytes(20), height=4, width=2, step=6))
    with pytest.raises(ValueError, match=r"step=5 but a row needs 6 bytes"):
        image_to_array(raw_image(factory, "rgb8", bytes(20), height=4, width=2, step=5))
    with pytest.raises(ValueError, match=r"needs dtype uint16, got uint8"):
        array_to_image(ARRAYS["mono8"], "16UC1", factory)
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\), got \(5, 7\)"):
        array_to_image(ARRAYS["mono8"], "rgb8", factory)


def test_image_survives_rosbags_cdr_serialization():
    store = get_gen3d_typestore()
    msg = array_to_image(ARRAYS["16UC1"], "16UC1", rosbags_factory())
    back = store.deserialize_cdr(store.serialize_cdr(msg, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(image_to_array(back), ARRAYS["16UC1"])


def smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w]
    return np.stack([u * 255 // (w - 1), v * 255 // (h - 1), np.full_like(u, 60)], axis=-1).astype(np.uint8)


def test_png_compressed_image_round_trips_losslessly(factory):
    rgb = smooth_rgb()
    msg = rgb_to_compressed_image(rgb, factory, fmt="png")
    assert msg.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(compressed_image_to_rgb(msg), rgb)


def test_jpeg_compressed_image_keeps_colours_in_rgb_order(factory):
    rgb = smooth_rgb()
    rgb[:16, :16] = (250, 10, 10)  # a red block must stay red, not turn blue
    msg = rgb_to_compressed_image(rgb, factory, fmt="jpeg", quality=95)
    assert msg.format == "rgb8; jpeg compressed bgr8"
    assert bytes(msg.data[:2]) == b"\xff\xd8"  # JPEG SOI marker
    out = compressed_image_to_rgb(msg)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 3.0
    assert out[4:12, 4:12, 0].mean() > 200 and out[4:12, 4:12, 2].mean() < 50


def test_compressed_rgb_order_from_format_string_is_honoured(factory):
    rgb = smooth_rgb()
    # A publisher that encoded RGB pixels as they are ("... compressed rgb8"): no channel swap on decode.
    ok, encoded = cv2.imencode(".png", rgb)
    assert ok
    data = encoded.reshape(-1) if factory.name == "rosbags" else array.array("B", encoded.tobytes())
    msg = factory.new("sensor_msgs/msg/CompressedImage", format="rgb8; png compressed rgb8", data=data)
    np.testing.assert_array_equal(compressed_image_to_rgb(msg), rgb)
    # Plain "png" (older image_transport): cv2's BGR order.
    msg_plain = factory.new("sensor_msgs/msg/CompressedImage", format="png", data=data)
    np.testing.assert_array_equal(compressed_image_to_rgb(msg_plain), rgb[..., ::-1])


def test_grey_png_is_replicated_to_three_channels(factory):
    grey = smooth_rgb()[..., 0]
    ok, encoded = cv2.imencode(".png", grey)
    data = encoded.reshape(-1) if factory.name == "rosbags" else array.array("B", encoded.tobytes())
    msg = factory.new("sensor_msgs/msg/CompressedImage", format="mono8; png compressed mono8", data=data)
    np.testing.assert_array_equal(compressed_image_to_rgb(msg), np.stack([grey] * 3, -1))


def test_bad_compressed_images_raise(factory):
    junk = np.arange(50, dtype=np.uint8)
    data = junk if factory.name == "rosbags" else array.array("B", junk.tobytes())
    with pytest.raises(ValueError, match=r"could not decode 50 bytes.*'jpeg'"):
        compressed_image_to_rgb(factory.new("sensor_msgs/msg/CompressedImage", format="jpeg", data=data))
    with pytest.raises(ValueError, match="compressedDepth"):
        compressed_image_to_rgb(factory.new("sensor_msgs/msg/CompressedImage",
                                            format="16UC1; compressedDepth png", data=data))
    with pytest.raises(ValueError, match=r"fmt must be one of"):
        rgb_to_compressed_image(smooth_rgb(), factory, fmt="webp")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        rgb_to_compressed_image(smooth_rgb().astype(np.float32), factory)


def test_image_message_does_not_alias_the_callers_array(factory):
    pixels = ARRAYS["mono8"].copy()
    msg = array_to_image(pixels, "mono8", factory)
    pixels[:] = 0
    np.testing.assert_array_equal(image_to_array(msg), ARRAYS["mono8"])


# ---------------------------------------------------------------------------------------------- malformed images


@pytest.mark.parametrize(
    ("height", "width", "step", "nbytes", "message"),
    [
        (0, 7, 21, 0, r"height=0 width=7: an empty image"),
        (5, 0, 0, 0, r"height=5 width=0: an empty image"),
        (-1, 7, 21, 21, r"Image has height=-1; it is a uint32"),
        (5, 2**32, 21, 105, r"Image has width=4294967296; it is a uint32"),
        (5, 7, 20, 100, r"step=20 but a row needs 21 bytes"),
        # a header claiming 4 G x 4 G pixels with 105 bytes of data: refused, nothing allocated
        (2**32 - 1, 2**30, 2**32 - 1, 105, r"has 105 data bytes but step\*height = 4294967295\*4294967295"),
    ],
    ids=["zero-height", "zero-width", "negative-height", "width-past-uint32", "step-too-small", "huge-claims"],
)
def test_malformed_image_sizes_raise_value_errors_naming_the_field(factory, height, width, step, nbytes, message):
    if factory.name == "rclpy" and not (0 <= height < 2**32 and 0 <= width < 2**32):
        pytest.skip("rclpy messages cannot hold values outside uint32 (their setters refuse them)")
    msg = raw_image(factory, "rgb8", bytes(nbytes), height=5, width=7, step=21)
    msg.height, msg.width, msg.step = height, width, step
    with pytest.raises(ValueError, match=message):
        image_to_array(msg)
    with pytest.raises(ValueError, match=message):
        image_to_rgb(msg)


def test_image_data_that_is_not_bytes_is_a_value_error():
    msg = raw_image(rosbags_factory(), "mono8", bytes(4), height=2, width=2, step=2)
    msg.data = [1, 2, 3, 256]
    with pytest.raises(ValueError, match=r"integers 0..255"):
        image_to_array(msg)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR claiming ``width x height`` RGB pixels and an IEND, but no image data (45 bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


def compressed(factory, data: bytes, fmt: str = "png"):
    payload = np.frombuffer(data, np.uint8).copy() if factory.name == "rosbags" else array.array("B", data)
    return factory.new("sensor_msgs/msg/CompressedImage", format=fmt, data=payload)


@pytest.mark.parametrize(
    ("side", "message"),
    [(12000, r"says it is 12000x12000 = 144000000 pixels, more than max_pixels=134217728"),
     (60000, r"CompressedImage of 45 bytes claims too many pixels: .*3600000000 pixels")],
    ids=["over-max-pixels", "over-pillow-limit"],
)
def test_compressed_image_claiming_huge_sizes_is_refused_before_decoding(factory, side, message):
    import tracemalloc

    msg = compressed(factory, png_claiming(side, side))  # 45 bytes that would decode into 0.4 to 10.8 GB
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            compressed_image_to_rgb(msg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_compressed_header_without_pixels_is_undecodable_not_a_crash(factory):
    with pytest.raises(ValueError, match=r"could not decode 45 bytes"):
        compressed_image_to_rgb(compressed(factory, png_claiming(40, 30)))
    with pytest.raises(ValueError, match=r"could not decode 8 bytes"):
        compressed_image_to_rgb(compressed(factory, b"\x89PNG\r\n\x1a\n"))


def test_max_pixels_applies_to_real_images(factory):
    msg = rgb_to_compressed_image(smooth_rgb(48, 64), factory, fmt="png")
    assert compressed_image_to_rgb(msg, max_pixels=48 * 64).shape == (48, 64, 3)
    with pytest.raises(ValueError, match=r"64x48 = 3072 pixels, more than max_pixels=3071"):
        compressed_image_to_rgb(msg, max_pixels=48 * 64 - 1)
