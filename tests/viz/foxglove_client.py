"""A minimal Foxglove WebSocket client for the tests (``websockets`` + ``google.protobuf``): connect with the
Foxglove subprotocol, read the advertised channels, subscribe, take the first message and decode it with a protobuf
class built from the advertised schema, independently of the SDK's encoder."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Callable

import websockets

SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


def decoder(channel: dict):
    """A protobuf message class from an advertised channel's schema (a base64 FileDescriptorSet)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    assert channel["encoding"] == "protobuf" and channel["schemaEncoding"] == "protobuf"
    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


async def receive_one(port: int, topic: str, publish: Callable[[], object], timeout: float = 20.0,
                      again: bool = True) -> tuple[dict, bytes]:
    """``publish()`` (the channel exists once something was logged on it), connect, wait for ``topic``'s
    advertisement, subscribe, ``publish()`` again and return (channel, payload) of the first message."""
    publish()
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=SUBPROTOCOLS, max_size=None) as ws:
        assert ws.subprotocol in SUBPROTOCOLS
        channels: dict[str, dict] = {}
        seen_info = False
        async with asyncio.timeout(timeout):
            while topic not in channels:
                frame = await ws.recv()
                if isinstance(frame, str):
                    msg = json.loads(frame)
                    seen_info |= msg["op"] == "serverInfo"
                    if msg["op"] == "advertise":
                        channels.update({c["topic"]: c for c in msg["channels"]})
            assert seen_info
            channel = channels[topic]
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": channel["id"]}]}))
            if again:
                publish()
            while True:
                frame = await ws.recv()
                if isinstance(frame, bytes) and frame[0] == 0x01:  # message data
                    sub_id, _log_time = struct.unpack_from("<IQ", frame, 1)
                    assert sub_id == 7
                    return channel, frame[13:]
