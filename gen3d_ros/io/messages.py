"""Two message worlds behind one small interface.

gen3d_ros builds and reads messages both as real rclpy message classes (nodes) and as rosbags typestore
dataclasses (bag mode, no middleware). Conversion code in ``io/`` reads messages by duck typing (same field
names in both worlds) and *creates* them through a :class:`MessageFactory`, so every converter works in both.

    factory = rosbags_factory()            # or rclpy_factory() inside a node
    header = factory.new("std_msgs/msg/Header", frame_id="lidar", stamp=factory.time(1.5))

Type names are the full ROS 2 form ``pkg/msg/Name``. Fields not given get ROS defaults (zeros, empty strings,
empty sequences, default-constructed nested messages). Neither factory imports rclpy itself: the rclpy world
imports the generated Python message modules (``sensor_msgs.msg`` …) only.
"""

from __future__ import annotations

import array
import importlib
from typing import Any, Protocol

import numpy as np

from gen3d_ros.io.typestore import get_gen3d_typestore

_NUMPY_OF_ROS = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


# Non-zero defaults declared in .msg files, which the rosbags typestore does not keep (rclpy does).
_MSG_DEFAULTS: dict[str, dict[str, Any]] = {"geometry_msgs/msg/Quaternion": {"w": 1.0}}


class MessageFactory(Protocol):
    """Creates messages of one world. ``name`` is ``"rclpy"`` or ``"rosbags"``."""

    name: str

    def new(self, msgtype: str, **fields: Any) -> Any:
        """A message of ``msgtype`` (``"sensor_msgs/msg/PointCloud2"``) with ``fields`` set, others default."""

    def time(self, seconds: float | int | None = None, *, sec: int = 0, nanosec: int = 0) -> Any:
        """A ``builtin_interfaces/msg/Time`` from float seconds, or from ``sec`` + ``nanosec``."""


def msgtype_of(msg: Any) -> str:
    """Full type name ``pkg/msg/Name`` of a message of either world."""
    name = getattr(msg, "__msgtype__", None)
    if isinstance(name, str):
        return name
    module = type(msg).__module__.split(".")  # e.g. sensor_msgs.msg._point_cloud2
    return f"{module[0]}/{module[1]}/{type(msg).__name__}"


def stamp_to_seconds(stamp: Any) -> float:
    """``builtin_interfaces/Time`` of either world -> float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_to_nanoseconds(stamp: Any) -> int:
    """``builtin_interfaces/Time`` of either world -> integer nanoseconds (exact)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _split_seconds(seconds: float | int | None, sec: int, nanosec: int) -> tuple[int, int]:
    if seconds is None:
        total = int(sec) * 1_000_000_000 + int(nanosec)
    elif isinstance(seconds, (int, np.integer)):
        total = int(seconds) * 1_000_000_000
    else:
        if not np.isfinite(seconds):
            raise ValueError(f"stamp must be finite seconds, got {seconds!r}")
        total = int(round(float(seconds) * 1e9))
    if total < 0:
        raise ValueError(f"ROS 2 Time cannot be negative, got {total} ns")
    return total // 1_000_000_000, total % 1_000_000_000


class RosbagsFactory:
    """Messages as rosbags typestore dataclasses (Jazzy + ``gen3d_ros/msg``)."""

    name = "rosbags"

    def __init__(self, typestore: Any = None) -> None:
        self.typestore = typestore if typestore is not None else get_gen3d_typestore()

    def new(self, msgtype: str, **fields: Any) -> Any:
        try:
            cls = self.typestore.types[msgtype]
            _, fielddefs = self.typestore.fielddefs[msgtype]
        except KeyError:
            raise KeyError(f"message type {msgtype!r} is not in the gen3d_ros typestore") from None
        names = {name for name, _ in fielddefs}
        unknown = set(fields) - names
        if unknown:
            raise TypeError(f"{msgtype} has no field(s) {sorted(unknown)}; fields are {sorted(names)}")
        values = {name: fields[name] if name in fields else self._default(desc) for name, desc in fielddefs}
        for name, value in _MSG_DEFAULTS.get(msgtype, {}).items():
            if name not in fields:
                values[name] = value
        return cls(**values)

    def time(self, seconds: float | int | None = None, *, sec: int = 0, nanosec: int = 0) -> Any:
        s, ns = _split_seconds(seconds, sec, nanosec)
        return self.new("builtin_interfaces/msg/Time", sec=s, nanosec=ns)

    def _default(self, desc: tuple) -> Any:
        from rosbags.typesys.store import Nodetype

        kind, detail = desc
        if kind == Nodetype.NAME:
            return self.new(detail)
        if kind == Nodetype.BASE:
            typename = detail[0]
            if typename == "string":
                return ""
            if typename == "bool":
                return False
            return 0.0 if typename.startswith("float") else 0
        (elem_kind, elem_detail), length = detail
        if kind == Nodetype.SEQUENCE:
            length = 0
        if elem_kind == Nodetype.BASE and elem_detail[0] in _NUMPY_OF_ROS:
            return np.zeros(length, dtype=_NUMPY_OF_ROS[elem_detail[0]])
        return [self._default((elem_kind, elem_detail)) for _ in range(length)]


class RclpyFactory:
    """Messages as the generated Python classes that rclpy publishes (``sensor_msgs.msg.PointCloud2`` …)."""

    name = "rclpy"

    def new(self, msgtype: str, **fields: Any) -> Any:
        return self.cls(msgtype)(**fields)

    def time(self, seconds: float | int | None = None, *, sec: int = 0, nanosec: int = 0) -> Any:
        s, ns = _split_seconds(seconds, sec, nanosec)
        return self.new("builtin_interfaces/msg/Time", sec=s, nanosec=ns)

    @staticmethod
    def cls(msgtype: str) -> type:
        """The generated class for ``pkg/msg/Name``; a clear error when that package is not built/installed."""
        try:
            package, kind, name = msgtype.split("/")
        except ValueError:
            raise ValueError(f"message type must look like 'pkg/msg/Name', got {msgtype!r}") from None
        try:
            module = importlib.import_module(f"{package}.{kind}")
        except ImportError as exc:
            hint = " (run `make interfaces` to build gen3d_ros/msg)" if package == "gen3d_ros" else ""
            raise ImportError(f"cannot import Python messages of {package!r}{hint}: {exc}") from exc
        try:
            return getattr(module, name)
        except AttributeError:
            raise KeyError(f"{package}.{kind} has no message {name!r}") from None


def rosbags_factory() -> RosbagsFactory:
    """Factory for the rosbags world (bag mode)."""
    return RosbagsFactory()


def rclpy_factory() -> RclpyFactory:
    """Factory for the rclpy world (nodes)."""
    return RclpyFactory()


def factory_for(msg: Any) -> MessageFactory:
    """The factory of the world ``msg`` belongs to, so outputs match inputs."""
    return RosbagsFactory() if hasattr(msg, "__msgtype__") else RclpyFactory()


# ------------------------------------------------------------------ field helpers shared by the io modules


def uint8_sequence(factory: MessageFactory, data: Any, *, owned: bool = False) -> Any:
    """Bytes-like ``data`` (bytes, numpy array, memoryview) as the uint8 sequence type of ``factory``'s world.

    rosbags: a numpy uint8 array, a copy unless ``owned`` (the caller hands over a fresh numpy array, which
    then becomes the message's data without copying); rclpy: ``array.array('B')`` (always a copy).
    """
    if factory.name == "rosbags":
        if isinstance(data, np.ndarray):
            flat = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
            return flat if owned else flat.copy()
        return np.frombuffer(data, dtype=np.uint8).copy()
    out = array.array("B")
    if isinstance(data, np.ndarray):
        data = memoryview(np.ascontiguousarray(data)).cast("B")
    out.frombytes(data)
    return out


def float64_sequence(factory: MessageFactory, values: Any) -> Any:
    """Float values as a ``float64[]`` sequence of ``factory``'s world (numpy for rosbags, array('d') for rclpy)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if factory.name == "rosbags":
        return values.copy()
    return array.array("d", values.tolist())


def make_header(factory: MessageFactory, header: Any = None, *, frame_id: str = "", stamp: Any = None) -> Any:
    """A ``std_msgs/Header`` of ``factory``'s world.

    ``header`` (of either world) is copied field by field; otherwise one is built from ``frame_id`` and
    ``stamp`` (a ``builtin_interfaces/Time`` of either world, or float/int seconds; default 0).
    """
    if header is not None:
        if frame_id or stamp is not None:
            raise ValueError("pass either header= or frame_id=/stamp=, not both")
        frame_id = str(header.frame_id)
        stamp = header.stamp
    if stamp is None:
        time = factory.time(0)
    elif isinstance(stamp, (int, float, np.integer, np.floating)):
        time = factory.time(float(stamp) if isinstance(stamp, (float, np.floating)) else int(stamp))
    else:
        time = factory.time(sec=int(stamp.sec), nanosec=int(stamp.nanosec))
    return factory.new("std_msgs/msg/Header", frame_id=str(frame_id), stamp=time)


def message_bytes(data: Any) -> np.ndarray:
    """``msg.data`` of either world (numpy uint8, array.array('B'), bytes, list) as a flat uint8 numpy view.

    A numpy array of another dtype gives its raw bytes. Raises ValueError for data that is not bytes: object
    arrays, text, lists with values outside 0..255.
    """
    if isinstance(data, np.ndarray):
        if data.dtype.hasobject:
            raise ValueError(f"message data must be bytes, got a numpy array of dtype {data.dtype}")
        flat = np.ascontiguousarray(data).reshape(-1)  # a copy only when ``data`` is not contiguous
        return flat if flat.dtype == np.uint8 else flat.view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        pass
    try:
        values = np.asarray(data)
        if values.size == 0:  # [] is float64 to numpy
            return np.zeros(0, np.uint8)
        if values.dtype.kind not in "iub" or values.min() < 0 or values.max() > 255:
            raise ValueError(f"values must be integers 0..255, got dtype {values.dtype}")
        return values.astype(np.uint8).reshape(-1)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"message data must be bytes or integers 0..255, got {type(data).__name__}: {exc}") from exc


def uint_field(where: str, name: str, value: Any, bits: int = 32) -> int:
    """``value`` of the unsigned integer field ``name`` as an int, or a ValueError naming ``where`` (the message
    type), the field and the value: rosbags dataclasses (and bad publishers) can hold any value."""
    limit = (1 << bits) - 1
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= limit:
        raise ValueError(f"{where} has {name}={value!r}; it is a uint{bits} (an integer 0..{limit}): "
                         f"fix the publisher or the bag")
    return int(value)
