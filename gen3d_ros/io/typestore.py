"""The rosbags typestore for ROS 2 Jazzy, with the package's own interfaces from ``msg/`` registered.

Bag mode serialises messages with this store, so it needs no ROS build at all; rosbags computes the same
RIHS01 type hashes as rclpy, so bags it writes replay in rviz2 / Foxglove.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

PACKAGE_NAME = "gen3d_ros"


def msg_dir() -> Path:
    """Folder holding the package's ``*.msg`` files: ``msg/`` of the source tree, else the installed copy."""
    source = Path(__file__).resolve().parents[2] / "msg"
    if source.is_dir() and any(source.glob("*.msg")):
        return source
    installed = Path(str(resources.files(PACKAGE_NAME) / "msg"))
    if installed.is_dir():
        return installed
    raise FileNotFoundError(f"gen3d_ros message definitions not found in {source} or {installed}")


def own_message_types() -> dict[str, str]:
    """``{"gen3d_ros/msg/Name": definition text}`` for every file in :func:`msg_dir`."""
    return {
        f"{PACKAGE_NAME}/msg/{path.stem}": path.read_text(encoding="utf-8")
        for path in sorted(msg_dir().glob("*.msg"))
    }


@functools.cache
def get_gen3d_typestore() -> Typestore:
    """Jazzy typestore plus ``gen3d_ros/msg/*``. Cached: the store is immutable after registration."""
    # rosbags is imported here, not at module level: writing a mesh file (io/pointfiles -> io/messages) must work
    # where rosbags is absent, e.g. a GPU training host (a GPU run lost its autoencoder's last step to this)
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for name, text in own_message_types().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
