"""``.npy`` point clouds: a numeric (N, 3+) array or a structured array with x, y, z fields, read with numpy's
own header parser after the header's claim is checked against the file."""

from __future__ import annotations

import math
import struct
import tokenize
from pathlib import Path
from typing import Any

import numpy as np

from gen3d_ros.io.pointcloud2 import CloudArrays
from gen3d_ros.io.pointfiles.checks import PointFileError, check_count, extra_columns, finite_cloud

#: numpy's own limit on .npy header length (``max_header_size``).
_NPY_MAX_HEADER = 10000


def _npy_header(path: Path, stream: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """numpy's own header reader: (shape, fortran_order, dtype); ``stream`` is left at the start of the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            return fmt.read_array_header_1_0(stream)
        if version in ((2, 0), (3, 0)):
            # numpy reads the header's 4-byte length worth of bytes before it checks it against max_header_size
            # (10000): a damaged length would make it allocate up to 4 GB. Check it first.
            start = stream.tell()
            length = struct.unpack("<I", stream.read(4))[0]
            if length > _NPY_MAX_HEADER:
                raise ValueError(f"format {version[0]}.0 header says it is {length} bytes long; numpy allows "
                                 f"{_NPY_MAX_HEADER}")
            stream.seek(start)
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
            if version == (3, 0) and dtype.names:
                # 3.0 differs from 2.0 only in its UTF-8 header (numpy writes it for field names latin-1 cannot
                # spell); read_array_header_2_0 decodes latin-1, so undo that on the field names.
                dtype = np.dtype({"names": [n.encode("latin-1").decode("utf-8") for n in dtype.names],
                                  "formats": [dtype.fields[n][0] for n in dtype.names],
                                  "offsets": [dtype.fields[n][1] for n in dtype.names],
                                  "itemsize": dtype.itemsize})
            return shape, fortran, dtype
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except (ValueError, TypeError, SyntaxError, OverflowError, RecursionError, struct.error,
            tokenize.TokenError) as exc:
        # ValueError includes UnicodeError (a 3.0 header that is not UTF-8); TokenError escapes numpy's fallback
        # parser of old-style headers (numpy 2.4) when the header is damaged
        raise PointFileError(f".npy {path} has an unreadable header: {exc}") from exc


def read_npy(path: Path, max_points: int) -> CloudArrays:
    """The array at ``path`` (an existing file) as a cloud of at most ``max_points`` points (see ``read_points``)."""
    file_size = path.stat().st_size
    with open(path, "rb") as stream:
        shape, fortran, dtype = _npy_header(path, stream)
        offset = stream.tell()
        if dtype.hasobject or dtype.subdtype is not None:
            raise PointFileError(f".npy {path} holds dtype {dtype}; point clouds are numeric arrays (no objects, "
                                 f"no sub-array dtypes)")
        if any(not isinstance(dim, int) or dim < 0 for dim in shape):
            raise PointFileError(f".npy {path} header has shape {shape}: corrupt header")
        count = math.prod(shape)
        structured = dtype.names is not None
        if not structured and (len(shape) != 2 or shape[1] < 3 or dtype.kind not in "fiu"):
            raise PointFileError(
                f".npy {path} must hold a numeric (N, 3+) array, got shape {shape} dtype {dtype}"
            )
        if structured:
            bad = [a for a in "xyz" if a not in dtype.names or dtype[a].kind not in "fiu" or dtype[a].shape]
            if bad:
                raise PointFileError(
                    f".npy {path} is a structured array without numeric scalar {bad} fields; fields are "
                    f"{dtype.names}"
                )
        check_count(".npy", path, count if structured else shape[0], max_points)
        need, body = count * dtype.itemsize, file_size - offset
        if body < need:
            raise PointFileError(
                f".npy {path} header says shape {shape} of {dtype} = {need} bytes but the file has {body} bytes "
                f"after its header: truncated or corrupt"
            )
        flat = np.fromfile(stream, dtype=dtype, count=count)
    if flat.size != count:
        raise PointFileError(f".npy {path} changed while it was read")
    array = flat.reshape(shape, order="F" if fortran else "C")
    if structured:
        flat = array.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            points = np.stack([flat[a].astype(np.float32) for a in "xyz"], axis=1)
        fields = {name: np.array(flat[name], dtype=flat[name].dtype.newbyteorder("="))
                  for name in dtype.names if name not in ("x", "y", "z")}
        return finite_cloud(points, fields)
    return finite_cloud(array[:, :3], extra_columns(array.astype(dtype.newbyteorder("="), copy=False)))
