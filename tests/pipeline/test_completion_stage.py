"""The completion stage's outputs: coarse voxels first (emitted while the mesh is still being made), a Marker
within its triangle budget, the full mesh in CompletedMesh with or without colours. In-process, rosbags world,
on the hGCA test double (``completion_fakes``) or the classical method."""

from __future__ import annotations

import time

import numpy as np
import pytest

from completion_fakes import (COARSE_VOXEL, ORIGIN, FakeSceneCompleter, NonStreamingCompleter, grid_mesh)
from gen3d_ros.completion.mesh import height_colors
from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor
from gen3d_ros.io.mesh_msgs import shape_mesh_to_arrays
from gen3d_ros.io.messages import make_header, rosbags_factory, stamp_to_nanoseconds
from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2, pointcloud2_to_arrays
from gen3d_ros.io.typestore import get_gen3d_typestore
from gen3d_ros.pipeline.completion import CompletionStage

FINAL = ["mesh_marker", "completed_mesh", "completed_voxels"]
STAMP_NS = 1_700_000_000_123_456_789


def ground_points(n: int = 4000, seed: int = 0) -> np.ndarray:
    """(n, 3) float32 points of a slightly noisy ground plane 1.5 m below the sensor, ±8 m."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-8.0, 8.0, (n, 2))
    return np.c_[xy, -1.5 + 0.02 * rng.normal(size=n)].astype(np.float32)


@pytest.fixture
def factory():
    return rosbags_factory()


@pytest.fixture
def cloud(factory):
    return arrays_to_pointcloud2(ground_points(), factory,
                                 header=make_header(factory, frame_id="lidar", stamp=factory.time(sec=1_700_000_000,
                                                                                                  nanosec=123_456_789)))


def hgca_stage(completer, **config) -> CompletionStage:
    return CompletionStage(CompletionConfig(method="hgca", **config), completer=completer)


def test_coarse_voxels_are_emitted_while_the_mesh_is_still_being_made(factory, cloud) -> None:
    stage = hgca_stage(FakeSceneCompleter(delay_s=0.5))
    emitted: list[tuple[str, float, object]] = []
    start = time.perf_counter()
    outputs = stage.process("cloud", cloud, factory,
                            emit=lambda o: emitted.append((o.name, time.perf_counter() - start, o.msg)))
    done = time.perf_counter() - start
    assert [name for name, _, _ in emitted] == ["coarse_voxels"]
    assert [o.name for o in outputs] == FINAL  # the early output is not returned again
    assert done - emitted[0][1] >= 0.5  # handed out before the 0.5 s "fine stage" ran
    coarse = emitted[0][2]
    assert coarse.header.frame_id == "lidar" and stamp_to_nanoseconds(coarse.header.stamp) == STAMP_NS
    cells = np.unique(np.floor((ground_points() - ORIGIN) / COARSE_VOXEL), axis=0)
    centres = pointcloud2_to_arrays(coarse).points
    assert len(centres) == len(cells) > 100
    np.testing.assert_allclose(np.sort(centres[:, 0]), np.sort(ORIGIN[0] + (cells[:, 0] + 0.5) * COARSE_VOXEL),
                               atol=1e-5)
    assert stage.stats.processed == 1 and stage.stats.failed == 0
    assert 0.0 < stage.stats.extra["coarse_output_ms"] < stage.stats.last_latency_ms - 400.0
    assert stage.stats.extra["to_coarse_ms"] < stage.stats.extra["coarse_output_ms"]


def test_without_a_sink_the_coarse_voxels_come_first_in_the_returned_outputs(factory, cloud) -> None:
    outputs = hgca_stage(FakeSceneCompleter()).process("cloud", cloud, factory)
    assert [o.name for o in outputs] == ["coarse_voxels", *FINAL]
    assert {stamp_to_nanoseconds(o.msg.header.stamp) for o in outputs} == {STAMP_NS}


def test_a_failure_after_the_coarse_output_counts_the_frame_failed_and_keeps_the_coarse_output(factory, cloud):
    stage = hgca_stage(FakeSceneCompleter(fail_after_coarse=True))
    emitted: list = []
    assert stage.process("cloud", cloud, factory, emit=emitted.append) == []
    assert [o.name for o in emitted] == ["coarse_voxels"]
    assert (stage.stats.processed, stage.stats.failed, stage.stats.rejected) == (0, 1, 0)
    assert "the fine stage failed" in stage.stats.last_error
    # bag mode (no sink): the coarse output is what the frame produced
    assert [o.name for o in stage.process("cloud", cloud, factory)] == ["coarse_voxels"]
    assert stage.stats.failed == 2


def test_a_completer_without_on_coarse_still_gives_the_coarse_voxels_first(factory, cloud) -> None:
    stage = hgca_stage(NonStreamingCompleter(delay_s=0.2))
    emitted: list = []
    outputs = stage.process("cloud", cloud, factory, emit=emitted.append)
    assert [o.name for o in emitted] == ["coarse_voxels"] and [o.name for o in outputs] == FINAL
    assert stage.stats.extra["to_coarse_ms"] >= 200.0  # after the whole completion: it could not stream


def test_a_completer_is_refused_for_a_classical_method() -> None:
    with pytest.raises(ValueError, match="classical-poisson"):
        CompletionProcessor(CompletionConfig(), completer=FakeSceneCompleter())


@pytest.mark.parametrize("marker_colors", [True, False])
def test_marker_is_decimated_to_its_budget_and_completed_mesh_keeps_the_full_mesh(factory, cloud, marker_colors):
    full = grid_mesh(80)  # 12482 triangles
    stage = hgca_stage(FakeSceneCompleter(mesh_n=80), marker_max_triangles=2000, marker_colors=marker_colors)
    outputs = {o.name: o.msg for o in stage.process("cloud", cloud, factory)}
    marker, completed = outputs["mesh_marker"], outputs["completed_mesh"]
    assert 0.7 * 2000 * 3 <= len(marker.points) <= 2000 * 3 and len(marker.points) % 3 == 0
    assert len(marker.colors) == (len(marker.points) if marker_colors else 0)
    assert len(completed.mesh.triangles) == len(full.faces) == 12482
    assert stage.stats.extra["marker_triangles"] == len(marker.points) // 3
    assert stage.stats.extra["decimate_ms"] > 0


def test_no_budget_puts_the_whole_mesh_in_the_marker(factory, cloud) -> None:
    stage = hgca_stage(FakeSceneCompleter(mesh_n=40), marker_max_triangles=0)
    outputs = {o.name: o.msg for o in stage.process("cloud", cloud, factory)}
    assert len(outputs["mesh_marker"].points) == 3 * len(grid_mesh(40).faces)


@pytest.mark.parametrize("mesh_colors", [False, True])
def test_completed_mesh_round_trips_through_cdr_with_or_without_colours(factory, cloud, mesh_colors) -> None:
    typestore = get_gen3d_typestore()
    stage = hgca_stage(FakeSceneCompleter(mesh_n=30), mesh_colors=mesh_colors)
    completed = {o.name: o.msg for o in stage.process("cloud", cloud, factory)}["completed_mesh"]
    back = typestore.deserialize_cdr(typestore.serialize_cdr(completed, "gen3d_ros/msg/CompletedMesh"),
                                     "gen3d_ros/msg/CompletedMesh")
    vertices, faces = shape_mesh_to_arrays(back.mesh)
    full = grid_mesh(30)
    np.testing.assert_array_equal(vertices, full.vertices.astype(np.float64))  # float32 -> float64: exact
    np.testing.assert_array_equal(faces, full.faces)
    if mesh_colors:
        rgba = np.array([[c.r, c.g, c.b, c.a] for c in back.vertex_colors], np.float32)
        np.testing.assert_array_equal(rgba[:, :3], height_colors(full.vertices))
        assert (rgba[:, 3] == 1.0).all()
    else:
        assert len(back.vertex_colors) == 0
    assert back.model_id == "hgca:fake" and back.header.frame_id == "lidar"
    assert stamp_to_nanoseconds(back.header.stamp) == STAMP_NS


def test_classical_meshes_are_decimated_for_the_marker_too(factory, cloud) -> None:
    stage = CompletionStage(CompletionConfig(poisson_depth=7, marker_max_triangles=1500))
    outputs = [o.name for o in stage.process("cloud", cloud, factory)]
    assert outputs == FINAL  # no coarse stage, no coarse output
    assert stage.stats.extra["mesh_triangles"] > 5000 and 1000 <= stage.stats.extra["marker_triangles"] <= 1500
