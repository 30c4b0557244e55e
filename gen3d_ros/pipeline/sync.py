"""Approximate time pairing of an image stream with its ``CameraInfo`` stream, by header stamp. No rclpy.

Drivers publish an image and its CameraInfo with the same stamp, but the two arrive in either order, and a stage
host (node worker, bag mode) delivers them one at a time. :class:`StampPairer` keeps the recent CameraInfos and at
most one image waiting for its CameraInfo, and pairs an image with the CameraInfo whose stamp is nearest, when it
is within ``tolerance_s``. Like ``message_filters``' ApproximateTime with two inputs, but latest-only: a newer
image replaces a waiting one (the stage works on the newest frame; the replaced one is counted as dropped).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from gen3d_ros.io.messages import stamp_to_nanoseconds


@dataclass
class Paired:
    """An image message and the CameraInfo paired with it; ``skew_s``: |image stamp - info stamp| seconds."""

    image: Any
    info: Any
    skew_s: float


class StampPairer:
    """Pairs images with CameraInfos by stamp. Feed with :meth:`add_image` / :meth:`add_info`; each returns a
    :class:`Paired` when a pair is complete, else None.

    ``tolerance_s``: largest stamp difference of a pair (seconds, >= 0). ``history``: CameraInfos kept.
    Counters: ``dropped`` (a waiting image replaced by a newer one), ``expired`` (a waiting image that can no
    longer be paired, because CameraInfos newer than its stamp + tolerance arrived and none was close).
    """

    def __init__(self, tolerance_s: float, history: int = 16) -> None:
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
        self.tolerance_ns = int(round(tolerance_s * 1e9))
        self._infos: deque[tuple[int, Any]] = deque(maxlen=max(1, int(history)))
        self._image: tuple[int, Any] | None = None
        self.dropped = 0
        self.expired = 0

    @property
    def waiting(self) -> bool:
        """Whether an image waits for its CameraInfo."""
        return self._image is not None

    def reset(self) -> None:
        """Forget every kept message (e.g. after time jumped backwards: a bag started again)."""
        self._infos.clear()
        self._image = None

    def add_info(self, info: Any) -> Paired | None:
        """Keep ``info``; the waiting image paired with it, if they now match."""
        stamp = stamp_to_nanoseconds(info.header.stamp)
        if self._infos and stamp < self._infos[-1][0] - self.tolerance_ns:
            self.reset()  # time went backwards (bag loop, sim reset): old infos would pair wrongly
        self._infos.append((stamp, info))
        if self._image is None:
            return None
        image_stamp, image = self._image
        pair = self._match(image_stamp, image)
        if pair is not None:
            self._image = None
        elif stamp > image_stamp + self.tolerance_ns:
            self._image = None  # infos arrive in stamp order: nothing closer will come
            self.expired += 1
        return pair

    def add_image(self, image: Any) -> Paired | None:
        """The pair of ``image`` with the nearest kept CameraInfo within tolerance; else None (the image waits,
        replacing an older waiting image)."""
        stamp = stamp_to_nanoseconds(image.header.stamp)
        pair = self._match(stamp, image)
        if pair is not None:
            return pair
        if self._image is not None:
            self.dropped += 1
        self._image = (stamp, image)
        return None

    def _match(self, stamp: int, image: Any) -> Paired | None:
        best = None
        for info_stamp, info in self._infos:
            skew = abs(info_stamp - stamp)
            if skew <= self.tolerance_ns and (best is None or skew < best[0]):
                best = (skew, info)
        if best is None:
            return None
        return Paired(image, best[1], best[0] * 1e-9)
