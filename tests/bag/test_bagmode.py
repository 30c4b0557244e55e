"""Bag mode: the completion stage over small synthetic bags (ground plane + a box, no sim module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from bagdata import T0_NS, cloud_msg, tree_fingerprint, write_cloud_bag
from gen3d_ros.bagmode import BagModeError, default_topic_map, run_bag, stage_from_params, stages_for_topics
from gen3d_ros.completion.processor import CompletionConfig
from gen3d_ros.io.messages import rosbags_factory, stamp_to_nanoseconds
from gen3d_ros.io.rosbag2 import BagReader, BagWriter, OutputExistsError, read_messages
from gen3d_ros.pipeline.completion import CompletionStage
from gen3d_ros.pipeline.registry import STAGES, resolve_topic, stage_entry
from gen3d_ros.outputs import OutputError

#: coarse and shallow: about 50 ms a cloud
FAST = dict(voxel_size=0.4, poisson_depth=6, roi_radius=12.0)
# where the completion node publishes at the root namespace (private names: /completion_node/...)
OUT = {name: resolve_topic(topic, "completion_node") for name, topic in stage_entry("completion").outputs.items()}
#: what a classical method writes per cloud; it has no coarse stage, so coarse_voxels stays empty
MESH_OUT = {name: topic for name, topic in OUT.items() if name != "coarse_voxels"}


def fast_stage() -> CompletionStage:
    return CompletionStage(CompletionConfig(**FAST))


def by_topic(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in read_messages(path):
        out.setdefault(m.topic, []).append(m)
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_run_bag_writes_one_mesh_per_cloud_with_the_input_stamps_and_frame(tmp_path: Path, storage: str) -> None:
    stamps = write_cloud_bag(tmp_path / "in", 3, storage=storage)
    report = run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False, storage=storage)
    assert report.stages["completion"].processed == 3
    assert report.stages["completion"].rejected == 0 and report.stages["completion"].failed == 0
    assert report.messages_in == {"/points": 3}
    assert report.messages_out == {OUT["mesh_marker"]: 3, OUT["completed_mesh"]: 3, OUT["completed_voxels"]: 3,
                                   OUT["coarse_voxels"]: 0}
    assert report.stages["completion"].mean_latency_ms > 0 and report.wall_time_s > 0
    with BagReader(tmp_path / "out") as bag:
        assert bag.storage == storage
        assert {t: i.msgtype for t, i in bag.topics.items()} == {
            "/completion_node/coarse_voxels": "sensor_msgs/msg/PointCloud2",
            "/completion_node/marker": "visualization_msgs/msg/Marker",
            "/completion_node/mesh": "gen3d_ros/msg/CompletedMesh",
            "/completion_node/voxels": "sensor_msgs/msg/PointCloud2",
        }
    topics = by_topic(tmp_path / "out")
    for topic in MESH_OUT.values():
        assert [m.log_time_ns for m in topics[topic]] == stamps
        assert [stamp_to_nanoseconds(m.msg.header.stamp) for m in topics[topic]] == stamps
        assert {m.msg.header.frame_id for m in topics[topic]} == {"lidar"}
    for m in topics["/completion_node/mesh"]:
        assert len(m.msg.mesh.triangles) > 100 and m.msg.model_id == "classical-poisson"
        vertices = np.array([[p.x, p.y, p.z] for p in m.msg.mesh.vertices])
        assert vertices[:, 2].min() == pytest.approx(-1.5, abs=0.3)  # the ground plane is in the mesh
    for m in topics["/completion_node/marker"]:
        assert m.msg.type == 11 and len(m.msg.points) % 3 == 0 and len(m.msg.points) > 300  # TRIANGLE_LIST


def test_malformed_cloud_is_counted_as_rejected_and_the_run_continues(tmp_path: Path) -> None:
    stamps = write_cloud_bag(tmp_path / "in", 4, malformed_at=1)
    report = run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False)
    stage = report.stages["completion"]
    assert (stage.processed, stage.rejected, stage.failed) == (3, 1, 0)
    assert "malformed PointCloud2" in stage.last_error
    meshes = by_topic(tmp_path / "out")["/completion_node/mesh"]
    assert [m.log_time_ns for m in meshes] == [stamps[0], stamps[2], stamps[3]]


def test_undeserialisable_message_is_counted_as_rejected(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "in") as out:
        out.write("/points", cloud_msg(0, T0_NS), T0_NS)
        out.write_raw("/points", b"\x00\x01\x00\x00\xff\xff", T0_NS + 1)
        out.write("/points", cloud_msg(1, T0_NS + 2), T0_NS + 2)
    report = run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False)
    stage = report.stages["completion"]
    assert (stage.processed, stage.rejected, stage.undecodable) == (2, 1, 1)
    assert report.messages_out["/completion_node/mesh"] == 2


def test_input_topic_is_autodetected_when_the_default_is_absent(tmp_path: Path, caplog) -> None:
    write_cloud_bag(tmp_path / "in", 1, topic="/velodyne_points")
    with caplog.at_level("INFO", logger="gen3d_ros.bagmode"):
        report = run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False)
    assert report.stages["completion"].inputs == {"cloud": "/velodyne_points"}
    assert "using /velodyne_points" in caplog.text
    assert report.messages_out["/completion_node/mesh"] == 1


def test_ambiguous_or_wrongly_typed_input_topic_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    f = rosbags_factory()
    default = resolve_topic(stage_entry("completion").inputs["cloud"], "completion_node")  # there, wrong type
    write_cloud_bag(tmp_path / "in", 1, topic="/a", extra=[("/b", cloud_msg(5, T0_NS), T0_NS),
                                                           (default, f.new("std_msgs/msg/Header"), T0_NS)])
    with pytest.raises(BagModeError, match="carries std_msgs/msg/Header"):
        run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False)
    with pytest.raises(BagModeError, match="choose one"):
        run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False,
                topic_map={("completion", "cloud"): "/missing"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    report = run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False,
                     topic_map={("completion", "cloud"): "/b"})
    assert report.messages_in == {"/b": 1}


def test_copy_inputs_copies_every_topic_byte_for_byte(tmp_path: Path) -> None:
    f = rosbags_factory()
    tf = f.new("tf2_msgs/msg/TFMessage", transforms=[f.new(
        "geometry_msgs/msg/TransformStamped", header=f.new("std_msgs/msg/Header", frame_id="world"),
        child_frame_id="lidar")])
    write_cloud_bag(tmp_path / "in", 2, extra=[("/tf", tf, T0_NS + 5)])
    report = run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], copy_inputs=True, progress=False)
    assert report.copied == {"/points": 2, "/tf": 1}
    src, dst = by_topic(tmp_path / "in"), by_topic(tmp_path / "out")
    for topic in ("/points", "/tf"):
        assert [(m.log_time_ns, m.raw) for m in dst[topic]] == [(m.log_time_ns, m.raw) for m in src[topic]]
    with BagReader(tmp_path / "in") as a, BagReader(tmp_path / "out") as b:
        for topic in ("/points", "/tf"):
            assert (b.topics[topic].msgtype, b.topics[topic].msgdef) == (a.topics[topic].msgtype,
                                                                         a.topics[topic].msgdef)


def test_limit_stops_after_n_input_clouds(tmp_path: Path) -> None:
    write_cloud_bag(tmp_path / "in", 4)
    report = run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], limit=2, progress=False)
    assert report.limit_reached and report.messages_in == {"/points": 2}
    assert report.messages_out["/completion_node/mesh"] == 2


def test_output_time_header_uses_the_input_header_stamp(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "in") as out:
        out.write("/points", cloud_msg(0, T0_NS), T0_NS + 123_456)  # received later than stamped
    run_bag(tmp_path / "in", tmp_path / "log", stages=[fast_stage()], progress=False)
    run_bag(tmp_path / "in", tmp_path / "hdr", stages=[fast_stage()], progress=False, output_time="header")
    assert by_topic(tmp_path / "log")["/completion_node/mesh"][0].log_time_ns == T0_NS + 123_456
    assert by_topic(tmp_path / "hdr")["/completion_node/mesh"][0].log_time_ns == T0_NS


def test_existing_output_is_refused_and_the_input_is_never_the_output(tmp_path: Path) -> None:
    write_cloud_bag(tmp_path / "in", 1)
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExistsError):
        run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False)
    assert list((tmp_path / "out").iterdir()) == []
    for bad in (tmp_path / "in", tmp_path / "in" / "nested"):
        with pytest.raises(BagModeError, match="input"):
            run_bag(tmp_path / "in", bad, stages=[fast_stage()], progress=False, force=True)
    # --force replaces only what gen3d_ros wrote: not the folder the user made, but a bag of ours
    with pytest.raises(OutputError, match="not written by gen3d_ros"):
        run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False, force=True)
    assert list((tmp_path / "out").iterdir()) == []
    (tmp_path / "out").rmdir()
    run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False)
    run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False, force=True)
    assert by_topic(tmp_path / "out")["/completion_node/mesh"]


def test_run_bag_leaves_the_input_bag_untouched(tmp_path: Path) -> None:
    write_cloud_bag(tmp_path / "in", 2, storage="sqlite3")
    before = tree_fingerprint(tmp_path / "in")
    run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], copy_inputs=True, progress=False)
    assert tree_fingerprint(tmp_path / "in") == before


def test_topics_and_config_come_from_completion_node_params() -> None:
    stage, topics = stage_from_params("completion", {"voxel_size": 0.3, "cloud_topic": "/velodyne_points",
                                                     "completed_mesh_topic": "/m", "input_qos": "reliable",
                                                     "worker": "process"})
    assert stage.processor.config.voxel_size == 0.3
    assert topics == {("completion", "cloud"): "/velodyne_points", ("completion", "completed_mesh"): "/m"}
    with pytest.raises(ValueError, match="vox_size"):
        stage_from_params("completion", {"vox_size": 0.3})
    with pytest.raises(BagModeError, match="unknown stage 'teleport'"):
        stage_from_params("teleport", {})


def test_default_topics_are_the_nodes_params_file_topics() -> None:
    """One definition (the stage registry) for bag mode and the live nodes: the topics of config/<node>.yaml."""
    for entry in STAGES:
        params_file = Path(__file__).resolve().parents[2] / "config" / f"{entry.node}.yaml"
        params = yaml.safe_load(params_file.read_text())[f"/**/{entry.node}"]["ros__parameters"]
        defaults = default_topic_map([entry.stage_class()])  # the class has name, inputs and outputs
        assert {name: params[f"{name}_topic"] for _, name in defaults} == entry.topics
        # resolved as rclpy resolves them for the node at the root namespace
        assert {name: topic for (_, name), topic in defaults.items()} == {
            name: resolve_topic(topic, entry.node) for name, topic in entry.topics.items()}


def test_stages_are_chosen_by_the_topic_types_of_the_bag() -> None:
    cloud, image, info = "sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
    joints = "sensor_msgs/msg/JointState"
    assert stages_for_topics({"/points": cloud, "/tf": "tf2_msgs/msg/TFMessage"}) == ["completion"]
    assert stages_for_topics({"/camera/image_raw": image, "/camera/camera_info": info}) == ["robot_pose"]
    # a JointState and a camera image are no goal: the action stage needs a goal on its default topic
    assert stages_for_topics({"/camera/image_raw": image, "/camera/camera_info": info, "/joint_states": joints}) \
        == ["robot_pose"]
    assert stages_for_topics({"/joint_states": joints, "/goal_keypoints": "geometry_msgs/msg/"
                              "PolygonStamped", "/points": cloud}) == ["completion", "action"]


def test_a_stage_outside_the_registry_needs_its_topics_in_the_topic_map(tmp_path: Path) -> None:
    from gen3d_ros.pipeline.base import Output, Stage

    class Echo(Stage):
        name = "echo"
        inputs = {"cloud": "sensor_msgs/msg/PointCloud2"}
        outputs = {"copy": "sensor_msgs/msg/PointCloud2"}

        def handle(self, input_name, msg, factory):
            return [Output("copy", msg)]

    write_cloud_bag(tmp_path / "in", 2)
    with pytest.raises(BagModeError, match=r"no topic for \[\('echo', 'cloud'\), \('echo', 'copy'\)\]"):
        run_bag(tmp_path / "in", tmp_path / "out", stages=[Echo()], progress=False)
    report = run_bag(tmp_path / "in", tmp_path / "out", stages=[Echo()], progress=False,
                     topic_map={("echo", "cloud"): "/points", ("echo", "copy"): "/echo"})
    assert report.messages_in == {"/points": 2} and report.messages_out == {"/echo": 2}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_hgca_coarse_voxels_are_written_with_each_cloud_before_its_mesh(tmp_path: Path, storage: str) -> None:
    from completion_fakes import FakeSceneCompleter

    stamps = write_cloud_bag(tmp_path / "in", 3, storage=storage)
    stage = CompletionStage(CompletionConfig(method="hgca", roi_radius=12.0), completer=FakeSceneCompleter())
    report = run_bag(tmp_path / "in", tmp_path / "out", stages=[stage], progress=False, storage=storage)
    assert report.stages["completion"].processed == 3
    assert report.messages_out == {topic: 3 for topic in OUT.values()}
    order = [(m.topic, m.log_time_ns) for m in read_messages(tmp_path / "out")]
    for stamp in stamps:  # same log time for all outputs of a cloud; the coarse one is first
        assert [t for t, s in order if s == stamp] == [OUT["coarse_voxels"], *MESH_OUT.values()]
    for m in read_messages(tmp_path / "out", [OUT["coarse_voxels"]]):
        assert stamp_to_nanoseconds(m.msg.header.stamp) == m.log_time_ns and m.msg.header.frame_id == "lidar"
        assert m.msg.width > 50


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip_keeps_the_offered_qos_of_the_live_node(tmp_path: Path, storage: str) -> None:
    """Outputs are recorded with the QoS the node offers (the latched Marker transient-local), so that a replay
    with ``ros2 bag play`` matches rviz's transient-local Marker subscription; copied inputs keep theirs."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    from gen3d_ros.io.rosbag2 import read_bag_info

    sensor = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE, QosTime(0, 0),
                 QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
    with BagWriter(tmp_path / "in", storage=storage) as out:
        out.add_topic("/points", "sensor_msgs/msg/PointCloud2", qos=[sensor])
        out.write("/points", cloud_msg(0, T0_NS), T0_NS)
    run_bag(tmp_path / "in", tmp_path / "out", stages=[fast_stage()], progress=False, copy_inputs=True,
            storage=storage)
    topics = read_bag_info(tmp_path / "out")["topics"]
    offered = {topic: [(q["reliability"], q["durability"], q["history"], q["depth"]) for q in t["qos"]]
               for topic, t in topics.items()}
    assert offered[OUT["mesh_marker"]] == [("reliable", "transient_local", "keep_last", 1)]
    for name in ("completed_mesh", "completed_voxels", "coarse_voxels"):
        assert offered[OUT[name]] == [("reliable", "volatile", "keep_last", 1)], name
    assert offered["/points"] == [("best_effort", "volatile", "keep_last", 5)]  # copied as recorded


def test_recorded_output_qos_is_what_the_node_offers() -> None:
    from gen3d_ros.bagmode import output_qos

    try:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

        from gen3d_ros.ros.stage_node import output_qos_profile
    except ImportError as exc:
        pytest.skip(f"rclpy cannot be imported: {exc}")
    for latched in (False, True):
        live, recorded = output_qos_profile(latched), output_qos(latched)
        assert recorded.depth == live.depth
        assert recorded.reliability.name == ReliabilityPolicy(live.reliability).name
        assert recorded.durability.name == DurabilityPolicy(live.durability).name
        assert recorded.history.name == HistoryPolicy(live.history).name


def test_time_range_and_remap_select_messages_and_rename_topics(tmp_path: Path) -> None:
    stamps = write_cloud_bag(tmp_path / "in", 5)  # one cloud every 0.1 s
    t0 = stamps[0] * 1e-9
    report = run_bag(tmp_path / "in", tmp_path / "rel", stages=[fast_stage()], progress=False,
                     start_s=0.1, end_s=0.3)
    assert report.messages_in == {"/points": 3}  # 0.1, 0.2 and 0.3 s: both ends included
    out = by_topic(tmp_path / "rel")[OUT["completed_mesh"]]
    assert [m.log_time_ns for m in out] == stamps[1:4]
    report = run_bag(tmp_path / "in", tmp_path / "abs", stages=[fast_stage()], progress=False, start_s=t0 + 0.35)
    assert report.messages_in == {"/points": 1}  # absolute Unix time: only the last cloud
    with pytest.raises(BagModeError, match="empty"):
        run_bag(tmp_path / "in", tmp_path / "x", stages=[fast_stage()], progress=False, start_s=0.3, end_s=0.1)
    with pytest.raises(BagModeError, match="holds no message"):
        run_bag(tmp_path / "in", tmp_path / "x", stages=[fast_stage()], progress=False, start_s=10.0)

    report = run_bag(tmp_path / "in", tmp_path / "ren", stages=[fast_stage()], progress=False, limit=1,
                     remap={OUT["completed_mesh"]: "/car1/mesh", "/points": "points"})
    assert report.messages_out["/car1/mesh"] == 1 and OUT["completed_mesh"] not in report.messages_out
    with BagReader(tmp_path / "ren") as bag:
        assert "/car1/mesh" in bag.topics and OUT["mesh_marker"] in bag.topics
    with pytest.raises(BagModeError, match="match no topic"):
        run_bag(tmp_path / "in", tmp_path / "x", stages=[fast_stage()], progress=False, remap={"/nope": "/a"})


def test_bag_mode_uses_the_bags_tf_like_the_live_node(tmp_path: Path) -> None:
    """base_frame / target_frame in bag mode: transforms from the bag's /tf + /tf_static at each cloud's stamp
    (interpolated), outputs in the target frame; a cloud past the TF is dropped and counted."""
    from gen3d_ros.io.pointcloud2 import pointcloud2_to_arrays
    from gen3d_ros.io.transforms import tf_message, transform_stamped

    f = rosbags_factory()

    def tf(parent: str, child: str, t: int, x: float, z: float = 0.0) -> object:
        T = np.eye(4)
        T[:3, 3] = [x, 0.0, z]
        return tf_message([transform_stamped(T, f, parent_frame=parent, child_frame=child,
                                             stamp=f.time(sec=t // 10**9, nanosec=t % 10**9))], f)

    later = T0_NS + 200_000_000  # base_link drives 2 m along x in 0.2 s
    extra = [("/tf_static", tf("base_link", "lidar", 0, 0.0, 1.5), T0_NS),
             ("/tf", tf("odom", "base_link", T0_NS, 0.0), T0_NS), ("/tf", tf("odom", "base_link", later, 2.0), later)]
    stamps = write_cloud_bag(tmp_path / "in", 4, extra=extra)
    plain = run_bag(tmp_path / "in", tmp_path / "plain", stages=[fast_stage()], progress=False)
    report = run_bag(tmp_path / "in", tmp_path / "odom", stages=[fast_stage()], progress=False,
                     frames={"completion": {"base": "base_link", "target": "odom"}})
    assert plain.stages["completion"].processed == 4
    assert report.stages["completion"].processed == 3 and report.stages["completion"].tf_dropped == 1  # 0.3 s
    assert "without their transform" in report.format()
    before = by_topic(tmp_path / "plain")[OUT["completed_voxels"]]
    after = by_topic(tmp_path / "odom")[OUT["completed_voxels"]]
    assert [m.log_time_ns for m in after] == stamps[:3]
    for i, (a, b) in enumerate(zip(before, after)):
        assert b.msg.header.frame_id == "odom" and a.msg.header.frame_id == "lidar"
        shift = pointcloud2_to_arrays(b.msg).points - pointcloud2_to_arrays(a.msg).points
        np.testing.assert_allclose(shift, np.broadcast_to([i * 1.0, 0.0, 1.5], shift.shape), atol=1e-5)
