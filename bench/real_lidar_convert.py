"""Converts the real sweeps of bench/real_lidar.py to .npz (points, ring, ray origin), in a side environment.

Run by ``bench/real_lidar.py`` with the side Python that has ``ouster-sdk`` (Ouster pcaps) and ``pyarrow``
(KITTI parquet); needs numpy only otherwise. Not imported by gen3d_ros.

    python bench/real_lidar_convert.py ouster PCAP JSON OUT.npz
    python bench/real_lidar_convert.py kitti PARQUET OUT.npz

Each .npz: ``points`` (N, 3) float32 metres, sensor frame; ``ring`` (N,) int16 (Ouster: the beam's row of the
range image; KITTI: the laser's revolution in scan order); ``origin`` (N, 3) float32 metres, where the beam
leaves the sensor (Ouster: the LUT's beam origin; elsewhere the sensor origin); ``n_rings``.
"""

from __future__ import annotations

import sys

import numpy as np


def ouster(pcap: str, meta: str, out: str, max_scans: int = 6) -> None:
    """The scan with the most returns among the first ``max_scans`` of the pcap (XYZLut without extrinsics:
    the sensor frame). The beam origin and direction of each pixel from the LUT at two ranges."""
    from ouster.sdk import core, open_source

    src = open_source(pcap, meta=[meta])
    info = src.sensor_info[0]
    lut = core.XYZLut(info, use_extrinsics=False)
    best, seen = None, 0
    for frame in src:
        for scan in frame:
            if scan is None:
                continue
            rng = scan.field(core.ChanField.RANGE).astype(np.uint32)
            if best is None or (rng > 0).sum() > (best > 0).sum():
                best = rng.copy()
            seen += 1
        if seen >= max_scans:
            break
    if best is None:
        raise SystemExit(f"{pcap}: no scan")
    xyz = lut(best).astype(np.float64)
    direction = lut(best + 1000).astype(np.float64) - xyz  # metres per metre of range
    origin = xyz - direction * (best[..., None] / 1000.0)
    valid = best > 0
    rows = np.broadcast_to(np.arange(best.shape[0])[:, None], best.shape)
    np.savez_compressed(out,  # atomic: out is the caller's temporary, renamed into place
                        points=xyz[valid].astype(np.float32), ring=rows[valid].astype(np.int16),
                        origin=origin[valid].astype(np.float32), n_rings=best.shape[0],
                        sensor=f"{info.prod_line} {info.config.lidar_mode}")


def kitti(parquet: str, out: str) -> None:
    """A KITTI HDL-64E sweep stored by pointcloudset (x, y, z, i in scan order): each laser's revolution is a run
    of increasing azimuth; a wrap (azimuth jumping back by > 180 deg) starts the next laser."""
    import pyarrow.parquet as pq

    table = pq.read_table(parquet, columns=["x", "y", "z"])
    xyz = np.stack([table.column(c).to_numpy() for c in "xyz"], 1).astype(np.float64)
    az = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    ring = np.r_[0, np.cumsum(np.diff(az) < -180.0)]
    keep = np.linalg.norm(xyz, axis=1) > 0
    np.savez_compressed(out,  # atomic: out is the caller's temporary, renamed into place
                        points=xyz[keep].astype(np.float32), ring=ring[keep].astype(np.int16),
                        origin=np.zeros((keep.sum(), 3), np.float32), n_rings=int(ring.max()) + 1,
                        sensor="Velodyne HDL-64E (KITTI)")


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    {"ouster": ouster, "kitti": kitti}[kind](*rest)
