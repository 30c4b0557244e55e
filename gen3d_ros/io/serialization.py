"""The size of a message on the wire: CDR bytes, as DDS carries it and rosbag2 stores it.

(Not :func:`gen3d_ros.io.messages.message_bytes`, which views a message's ``data`` field as uint8.)
"""

from __future__ import annotations

from typing import Any

from gen3d_ros.io.messages import msgtype_of
from gen3d_ros.io.typestore import get_gen3d_typestore

#: CDR encapsulation header (representation identifier + options) in front of every serialized message
CDR_HEADER_BYTES = 4


def serialized_size(msg: Any, msgtype: str | None = None) -> int:
    """Bytes of ``msg`` serialized as CDR, the 4-byte encapsulation header included: what one message costs on a
    topic or in a bag. Equal to ``len(rclpy.serialization.serialize_message(msg))`` and to
    ``len(typestore.serialize_cdr(msg, msgtype))`` (tested).

    Args:
        msg: a message of either world (rclpy or rosbags), or its serialized bytes (their length is returned).
        msgtype: ``pkg/msg/Name``; default: the message's own type.

    Raises KeyError for a type the gen3d typestore (Jazzy + ``gen3d_ros/msg``) does not know.
    """
    if isinstance(msg, (bytes, bytearray)):
        return len(msg)
    if isinstance(msg, memoryview):
        return msg.nbytes
    typestore = get_gen3d_typestore()
    msgdef = typestore.get_msgdef(msgtype or msgtype_of(msg))
    # getsize_cdr walks the message as the serializer does, without writing it; it reads fields by name, so it
    # takes rclpy messages too (rosbags' serializer itself needs numpy arrays where rclpy has array.array).
    return CDR_HEADER_BYTES + msgdef.getsize_cdr(0, msg, typestore)
