"""PNG previews of LiDAR sweeps and completed meshes, drawn with matplotlib only (no OpenGL needed).

Meshes are rasterised as filled triangles (``PolyCollection``) in painter's order: a bird's-eye view sorted
by height, and an orthographic 3-D view from behind and above the sensor sorted by depth, both coloured by height
and lit by a fixed light (Lambert shading) so that surfaces read as 3-D.

    save_preview("preview.png", [PreviewSweep("sweep 0", points, vertices, faces)], title="gen3d demo")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

#: colour map for heights
CMAP = "turbo"
_LIGHT = np.array([-0.35, 0.25, 0.9]) / np.linalg.norm([-0.35, 0.25, 0.9])


@dataclass
class PreviewSweep:
    """What one row of the preview shows, all in the sensor frame (metres, z up, sensor at the origin).

    points: (N, 3) input scan; vertices (V, 3) / faces (F, 3): the completed mesh; label: row title.
    """

    label: str
    points: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    stats: str = ""


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) unit normals of triangles ``faces`` (F, 3) int over ``vertices`` (V, 3); zeros for degenerate ones."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def shaded_colors(heights: np.ndarray, normals: np.ndarray, norm: object, cmap: object) -> np.ndarray:
    """RGBA per face: colour map of ``heights`` times a two-sided Lambert term (ambient 0.35)."""
    rgba = np.asarray(cmap(norm(heights)))
    shade = 0.35 + 0.65 * np.abs(normals @ _LIGHT)
    rgba[:, :3] *= shade[:, None]
    return rgba


def view_axes(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """(3, 3) rows: screen right, screen up and viewing direction of an orthographic camera placed at
    ``azimuth_deg`` (from +x towards +y) and ``elevation_deg`` above the horizon, looking at the origin."""
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    towards_camera = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    view = -towards_camera
    right = np.cross(view, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(right, view), view])


def _draw_scan_bev(ax: object, points: np.ndarray, extent: float, norm: object, cmap: object) -> object:
    order = np.argsort(points[:, 2])
    return ax.scatter(points[order, 0], points[order, 1], c=points[order, 2], s=1.2, cmap=cmap, norm=norm,
                      linewidths=0, rasterized=True)


def _draw_mesh_bev(ax: object, vertices: np.ndarray, faces: np.ndarray, norm: object, cmap: object) -> None:
    from matplotlib.collections import PolyCollection

    if len(faces) == 0:
        ax.text(0.5, 0.5, "empty mesh", transform=ax.transAxes, ha="center", va="center")
        return
    tri = vertices[faces]
    height = tri[:, :, 2].mean(1)
    order = np.argsort(height)
    colors = shaded_colors(height[order], face_normals(vertices, faces)[order], norm, cmap)
    ax.add_collection(PolyCollection(tri[order, :, :2], facecolors=colors, edgecolors=colors, linewidths=0.1,
                                     rasterized=True))


def _draw_mesh_3d(ax: object, vertices: np.ndarray, faces: np.ndarray, norm: object, cmap: object, *,
                  azimuth_deg: float = 200.0, elevation_deg: float = 40.0) -> None:
    """Orthographic view from behind-left of and above the sensor; triangles drawn far to near."""
    from matplotlib.collections import PolyCollection

    if len(faces) == 0:
        ax.text(0.5, 0.5, "empty mesh", transform=ax.transAxes, ha="center", va="center")
        return
    axes = view_axes(azimuth_deg, elevation_deg)
    screen = vertices @ axes.T  # (V, 3): right, up, depth
    depth = screen[faces, 2].mean(1)
    order = np.argsort(-depth)  # far first
    normals = face_normals(vertices, faces)[order]
    heights = vertices[faces[order], 2].mean(1)
    colors = shaded_colors(heights, normals, norm, cmap)
    ax.add_collection(PolyCollection(screen[faces[order], :2], facecolors=colors, edgecolors=colors,
                                     linewidths=0.1, rasterized=True))
    lo, hi = screen[:, :2].min(0), screen[:, :2].max(0)
    pad = 0.03 * (hi - lo)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    # the sensor and its axes (x forward red, y left green), 3 m long
    origin = np.zeros(3) @ axes.T
    for axis, color in ((np.array([3.0, 0, 0]), "red"), (np.array([0, 3.0, 0]), "green")):
        tip = axis @ axes.T
        ax.annotate("", xy=tip[:2], xytext=origin[:2],
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=1.8), zorder=6)
    ax.plot(*origin[:2], marker="o", color="black", markersize=5, markeredgecolor="white", zorder=7)
    ax.text(0.01, 0.99, "sensor: x forward (red), y left (green), 3 m", transform=ax.transAxes, fontsize=8.5,
            va="top", color="0.25")


def _sensor_marker(ax: object) -> None:
    ax.plot([0.0], [0.0], marker=(3, 0, -90), color="black", markersize=10, markeredgecolor="white", zorder=5)


def save_preview(path: str | Path, rows: Sequence[PreviewSweep], *, title: str = "", extent_m: float = 20.0,
                 z_range: tuple[float, float] | None = None, dpi: int = 100) -> Path:
    """Write a PNG with one row per :class:`PreviewSweep`: input scan (bird's-eye) | completed mesh (bird's-eye)
    | completed mesh (3-D view). ``extent_m``: half-width of the bird's-eye views; ``z_range``: height
    colour scale (default: 2nd-98th percentile of all points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    if not rows:
        raise ValueError("save_preview needs at least one row")
    if z_range is None:
        z_all = np.concatenate([r.points[:, 2] for r in rows if len(r.points)] or [np.zeros(1)])
        z_range = (float(np.percentile(z_all, 2)), float(np.percentile(z_all, 98)))
    norm = Normalize(*z_range)
    cmap = plt.get_cmap(CMAP)
    fig, axes = plt.subplots(len(rows), 3, figsize=(17, 5.6 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1.25]})
    for row, (ax_scan, ax_bev, ax_3d) in zip(rows, axes):
        n_pts, n_tri = len(row.points), len(row.faces)
        mappable = _draw_scan_bev(ax_scan, row.points, extent_m, norm, cmap)
        _draw_mesh_bev(ax_bev, row.vertices.astype(np.float64), row.faces, norm, cmap)
        _draw_mesh_3d(ax_3d, row.vertices.astype(np.float64), row.faces, norm, cmap)
        ax_scan.set_title(f"{row.label}: input scan, bird's-eye ({n_pts:,} points)", fontsize=11)
        ax_bev.set_title(f"{row.label}: completed mesh, bird's-eye ({n_tri:,} triangles)", fontsize=11)
        ax_3d.set_title(f"{row.label}: completed mesh, 3-D view from behind the sensor", fontsize=11)
        for ax in (ax_scan, ax_bev):
            ax.set_xlim(-extent_m, extent_m)
            ax.set_ylim(-extent_m, extent_m)
            ax.set_aspect("equal")
            ax.set_xlabel("x, forward [m]")
            ax.set_ylabel("y, left [m]")
            ax.grid(True, color="0.85", linewidth=0.5)
            ax.set_facecolor("0.97")
            _sensor_marker(ax)
        ax_3d.set_facecolor("0.97")
        if row.stats:
            ax_3d.text(0.01, 0.01, row.stats, transform=ax_3d.transAxes, fontsize=9, va="bottom",
                       bbox=dict(facecolor="white", alpha=0.8, edgecolor="0.8"))
        cbar = fig.colorbar(mappable, ax=ax_3d, fraction=0.035, pad=0.02)
        cbar.set_label("height z in the sensor frame [m]")
    if title:
        fig.suptitle(title, fontsize=14)
    fig.tight_layout()
    path = Path(path)
    from gen3d_ros.outputs import save_figure

    save_figure(fig, path, dpi=dpi)
    plt.close(fig)
    return path
