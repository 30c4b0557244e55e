"""URDF loading, torch forward kinematics and robot surface meshes (gen3d_ros.robot.{urdf,kinematics,meshes})."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.meshes import link_meshes, posed_mesh, sample_surface, triangle_areas_normals
from gen3d_ros.robot.urdf import (URDFError, example_robot_urdf, load_robot_npz, load_urdf, save_robot_npz,
                                  test_arm_urdf)

ARM_JOINTS = ["base_yaw", "shoulder", "elbow", "wrist_pitch", "wrist_roll"]

# A tree with every joint type: a branch, rpy origins, a continuous joint, a prismatic joint followed by a
# mimic of it (multiplier -2, offset 0.1), a fixed joint, named and inline materials and a scaled STL mesh.
ALL_JOINTS_URDF = """\
<?xml version="1.0"?>
<robot name="all_joints">
  <material name="teal"><color rgba="0 0.5 0.5 1"/></material>
  <link name="base"><visual><geometry><box size="0.2 0.2 0.1"/></geometry><material name="teal"/></visual></link>
  <link name="spinner">
    <visual><origin xyz="0 0 0.05" rpy="0.3 0 0"/><geometry><cylinder radius="0.03" length="0.1"/></geometry>
      <material name="red_inline"><color rgba="1 0 0 1"/></material></visual>
  </link>
  <link name="slider"><visual><geometry><sphere radius="0.02"/></geometry></visual></link>
  <link name="follower">
    <visual><origin xyz="0.01 0 0" rpy="0 0 1.0"/><geometry><mesh filename="parts/block.stl" scale="2 1 0.5"/>
      </geometry></visual>
  </link>
  <link name="arm"><visual><geometry><box size="0.05 0.05 0.3"/></geometry><material name="red_inline"/></visual>
  </link>
  <link name="tip"/>
  <joint name="spin" type="continuous">
    <parent link="base"/><child link="spinner"/><origin xyz="0.05 0 0.05" rpy="0.1 -0.2 0.3"/>
    <axis xyz="0 0.6 0.8"/>
  </joint>
  <joint name="slide" type="prismatic">
    <parent link="spinner"/><child link="slider"/><origin xyz="0 0 0.1" rpy="0 0.5 0"/><axis xyz="1 1 0"/>
    <limit lower="-0.05" upper="0.1" effort="1" velocity="1"/>
  </joint>
  <joint name="follow" type="prismatic">
    <parent link="slider"/><child link="follower"/><origin xyz="0 0.02 0" rpy="0 0 0"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/>
    <mimic joint="slide" multiplier="-2" offset="0.1"/>
  </joint>
  <joint name="lift" type="revolute">
    <parent link="base"/><child link="arm"/><origin xyz="-0.05 0.02 0.1" rpy="0.4 0.1 -0.7"/><axis xyz="1 0 0"/>
    <limit lower="-1.2" upper="0.9" effort="1" velocity="1"/>
  </joint>
  <joint name="tip_joint" type="fixed">
    <parent link="arm"/><child link="tip"/><origin xyz="0 0 0.3" rpy="0.2 0.3 0.4"/>
  </joint>
</robot>
"""


def _write_block_stl(path: Path) -> np.ndarray:
    """A 2 x 4 x 6 cm box mesh as STL; returns its vertices (file units)."""
    mesh = o3d.geometry.TriangleMesh.create_box(0.02, 0.04, 0.06)
    mesh.compute_triangle_normals()
    path.parent.mkdir(parents=True, exist_ok=True)
    assert o3d.io.write_triangle_mesh(str(path), mesh)
    return np.asarray(mesh.vertices)


@pytest.fixture(scope="module")
def arm():
    return load_urdf(test_arm_urdf())


@pytest.fixture()
def all_joints_path(tmp_path: Path) -> Path:
    _write_block_stl(tmp_path / "parts" / "block.stl")
    path = tmp_path / "all_joints.urdf"
    path.write_text(ALL_JOINTS_URDF)
    return path


# ---------------------------------------------------------------------------------------------------------------
# An independent reference: parse the XML again and chain scipy rotations recursively over the tree.


def _reference_fk(urdf_path: Path, q: dict[str, float]) -> dict[str, np.ndarray]:
    """T_base_link of every link with numpy + scipy (extrinsic xyz rpy, rotation vectors), recursive from the root."""
    root_el = ET.parse(urdf_path).getroot()
    joints = {j.get("name"): j for j in root_el.findall("joint")}
    by_parent: dict[str, list[ET.Element]] = {}
    children = set()
    for j in joints.values():
        by_parent.setdefault(j.find("parent").get("link"), []).append(j)
        children.add(j.find("child").get("link"))
    root = next(l.get("name") for l in root_el.findall("link") if l.get("name") not in children)

    def value(j: ET.Element) -> float:
        mimic = j.find("mimic")
        if mimic is not None:
            leader = joints[mimic.get("joint")]
            return float(mimic.get("multiplier", 1)) * value(leader) + float(mimic.get("offset", 0))
        return q[j.get("name")]

    def transform(rot: Rotation, t: np.ndarray) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = rot.as_matrix(), t
        return T

    out = {root: np.eye(4)}

    def visit(link: str) -> None:
        for j in by_parent.get(link, []):
            o = j.find("origin")
            xyz = np.array([float(v) for v in (o.get("xyz", "0 0 0") if o is not None else "0 0 0").split()])
            rpy = [float(v) for v in (o.get("rpy", "0 0 0") if o is not None else "0 0 0").split()]
            origin = transform(Rotation.from_euler("xyz", rpy), xyz)
            motion = np.eye(4)
            if j.get("type") != "fixed":
                axis_el = j.find("axis")
                axis = np.array([float(v) for v in (axis_el.get("xyz") if axis_el is not None else "1 0 0").split()])
                axis /= np.linalg.norm(axis)
                if j.get("type") == "prismatic":
                    motion = transform(Rotation.identity(), axis * value(j))
                else:
                    motion = transform(Rotation.from_rotvec(axis * value(j)), np.zeros(3))
            child = j.find("child").get("link")
            out[child] = out[link] @ origin @ motion
            visit(child)

    visit(root)
    return out


@pytest.mark.parametrize("which", ["test_arm", "all_joints"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fk_matches_an_independent_numpy_implementation(which: str, dtype: torch.dtype, all_joints_path: Path):
    path = test_arm_urdf() if which == "test_arm" else all_joints_path
    fk = ForwardKinematics(load_urdf(path), dtype=dtype)
    q = fk.sample(16, torch.Generator().manual_seed(7))
    if which == "all_joints":  # the continuous joint well beyond ±pi too
        q[:, fk.joint_index("spin")] *= 3.0
    T = fk(q)
    assert T.shape == (16, len(fk.link_names), 4, 4) and T.dtype == dtype
    for b in range(len(q)):
        ref = _reference_fk(path, dict(zip(fk.joint_names, q[b].double().tolist())))
        assert set(ref) == set(fk.link_names)
        for link, T_ref in ref.items():
            np.testing.assert_allclose(T[b, fk.link_index(link)].double().numpy(), T_ref, atol=1e-5, err_msg=link)


@pytest.mark.parametrize("which", ["test_arm", "all_joints"])
def test_fk_gradients_pass_gradcheck_in_float64(which: str, all_joints_path: Path):
    path = test_arm_urdf() if which == "test_arm" else all_joints_path
    fk = ForwardKinematics(load_urdf(path), dtype=torch.float64)
    q = fk.sample(3, torch.Generator().manual_seed(1)).requires_grad_(True)
    assert torch.autograd.gradcheck(fk, (q,), eps=1e-6, atol=1e-6)
    # At q = 0 too, where sin/cos-based rotations must still have a gradient.
    q0 = torch.zeros(1, fk.num_joints, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fk, (q0,), eps=1e-6, atol=1e-6)


def test_mimic_joint_follows_its_leader(all_joints_path: Path):
    robot = load_urdf(all_joints_path)
    fk = ForwardKinematics(robot, dtype=torch.float64)
    assert fk.joint_names == ["spin", "slide", "lift"]  # URDF order, without the mimic and the fixed joint
    q = torch.zeros(3, dtype=torch.float64)
    q[fk.joint_index("slide")] = 0.04
    T = fk(q)
    T_slider_follower = torch.linalg.inv(T[fk.link_index("slider")]) @ T[fk.link_index("follower")]
    # origin (0, 0.02, 0), then -2 * 0.04 + 0.1 = 0.02 m along z.
    np.testing.assert_allclose(T_slider_follower[:3, 3].numpy(), [0.0, 0.02, 0.02], atol=1e-12)


def test_clamp_and_sample_respect_the_limits(arm, all_joints_path: Path):
    for robot in (arm, load_urdf(all_joints_path)):
        fk = ForwardKinematics(robot)
        samples = fk.sample(2000, torch.Generator().manual_seed(0))
        assert samples.shape == (2000, fk.num_joints)
        assert torch.all(samples >= fk.lower) and torch.all(samples <= fk.upper)
        # Uniform: each joint's samples spread over (nearly) its whole range.
        span = (samples.max(0).values - samples.min(0).values) / (fk.upper - fk.lower)
        assert torch.all(span > 0.98)
        wild = torch.randn(500, fk.num_joints, generator=torch.Generator().manual_seed(1)) * 10.0
        clamped = fk.clamp(wild)
        assert torch.all(clamped >= fk.lower - 1e-6) and torch.all(clamped <= fk.upper + 1e-6)
        inside = fk.sample(100, torch.Generator().manual_seed(2))
        # continuous joints are wrapped as remainder(q + pi, 2 pi) - pi, which rounds q by up to a float32 ulp of
        # 2 pi (4.8e-7): an absolute tolerance, not allclose's relative one (1e-5 |q| fails for q near 0)
        torch.testing.assert_close(fk.clamp(inside), inside, atol=1e-6, rtol=0)
    a = ForwardKinematics(arm).sample(5, torch.Generator().manual_seed(3))
    b = ForwardKinematics(arm).sample(5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_continuous_joints_wrap_to_the_same_pose(all_joints_path: Path):
    fk = ForwardKinematics(load_urdf(all_joints_path), dtype=torch.float64)
    q = torch.tensor([5.0, 0.03, 0.2], dtype=torch.float64)
    wrapped = fk.clamp(q)
    assert -math.pi <= wrapped[0] < math.pi
    assert torch.allclose(fk(wrapped), fk(q), atol=1e-12)


def test_fk_accepts_any_batch_shape_and_rejects_wrong_joint_counts(arm):
    fk = ForwardKinematics(arm)
    q = fk.sample(6).reshape(2, 3, 5)
    T = fk(q)
    assert T.shape == (2, 3, len(arm.links), 4, 4)
    # float32, batched vs single: the 4x4 products may round in another order (measured 6e-8 apart); entries are
    # rotations and translations of at most ~1 m, so 1e-6 absolute (allclose's 1e-8 + 1e-5 relative would fail on a
    # near-zero entry, e.g. a rotation entry that cancels to ~0)
    torch.testing.assert_close(T[1, 2], fk(q[1, 2]), atol=1e-6, rtol=0)
    assert torch.allclose(T[..., 0, :, :], torch.eye(4).expand(2, 3, 4, 4))  # the root is the base frame
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 5\]"):
        fk(torch.zeros(4))
    with pytest.raises(KeyError, match="no link 'nope'"):
        fk.link_index("nope")


# ---------------------------------------------------------------------------------------------------------------
# The test arm


def test_test_arm_is_a_five_joint_arm_of_distinct_saturated_colours(arm):
    assert arm.actuated_joints == ARM_JOINTS
    assert arm.root == "base_link" and arm.links[0] == "base_link"
    # Parents before children.
    for i, link in enumerate(arm.links[1:], start=1):
        assert arm.links.index(arm.parent_joint(link).parent) < i
    assert np.all(arm.lower < 0) and np.all(arm.upper > 0) and np.all(arm.upper - arm.lower < 2 * math.pi)
    assert arm.urdf_sha256 == hashlib.sha256(test_arm_urdf().read_bytes()).hexdigest()
    fk = ForwardKinematics(arm, dtype=torch.float64)
    vertices, _, rgb, _ = posed_mesh(arm, fk(torch.zeros(5, dtype=torch.float64)).numpy())
    height = vertices[:, 2].max() - vertices[:, 2].min()
    assert 0.6 <= height <= 0.8 and abs(vertices[:, 2].min()) < 1e-9
    # One main colour per visual link; no two links alike, none close to the white render background.
    main = {link: np.median(c, axis=0) for link, (_, _, c) in link_meshes(arm).items()}
    assert len(main) == 8  # every link but the frame-only tool_tip
    colours = np.array(list(main.values()))
    assert np.all(colours.min(axis=1) < 0.5)  # a saturated colour has a weak channel
    pairwise = np.linalg.norm(colours[:, None] - colours[None], axis=-1) + np.eye(len(colours))
    assert pairwise.min() > 0.2


def test_gripper_is_asymmetric_so_roll_is_observable(arm):
    fk = ForwardKinematics(arm, dtype=torch.float64)
    q = torch.zeros(5, dtype=torch.float64)
    q_rolled = q.clone()
    q_rolled[fk.joint_index("wrist_roll")] = math.pi  # only ±2.9 are reachable; the shape test is what matters
    hand = fk.link_index("hand")
    a = posed_mesh(arm, fk(q).numpy())
    b = posed_mesh(arm, fk(q_rolled).numpy())
    # Rolling by pi mirrors the gripper's vertices through the wrist axis; an asymmetric gripper doesn't map to
    # itself, so its point sets differ.
    grip = np.isin(a[3], [hand, fk.link_index("finger_left"), fk.link_index("finger_right")])
    pa, pb = np.round(a[0][grip], 6), np.round(b[0][grip], 6)
    assert set(map(tuple, pa)) != set(map(tuple, pb))


# ---------------------------------------------------------------------------------------------------------------
# Parsing details and errors


def test_geometry_materials_and_mesh_files_are_read_into_the_link_frame(all_joints_path: Path):
    robot = load_urdf(all_joints_path)
    assert robot.links == ["base", "spinner", "slider", "follower", "arm", "tip"]
    by_link = {v.link: v for v in robot.visuals}
    np.testing.assert_allclose(by_link["base"].rgba, [0, 0.5, 0.5, 1])  # robot-level named material
    np.testing.assert_allclose(by_link["spinner"].rgba, [1, 0, 0, 1])  # inline colour
    np.testing.assert_allclose(by_link["slider"].rgba, [0.6, 0.6, 0.6, 1])  # default grey
    np.testing.assert_allclose(by_link["arm"].rgba, [1, 0, 0, 1])  # named after its inline definition elsewhere
    np.testing.assert_allclose(np.ptp(by_link["base"].vertices, axis=0), [0.2, 0.2, 0.1], atol=1e-12)
    # Cylinder along the visual's z, rotated by rpy (0.3, 0, 0) and lifted 0.05: its axis ends are on that line.
    v = by_link["spinner"].vertices
    axis = Rotation.from_euler("xyz", [0.3, 0, 0]).as_matrix()[:, 2]
    along = (v - [0, 0, 0.05]) @ axis
    radial = np.linalg.norm((v - [0, 0, 0.05]) - along[:, None] * axis, axis=1)
    assert np.isclose(np.abs(along).max(), 0.05) and np.isclose(radial.max(), 0.03)
    # STL scaled by (2, 1, 0.5), then rotated by yaw 1.0 and shifted 0.01 in x.
    expected = _write_block_stl(all_joints_path.parent / "unused.stl") * [2.0, 1.0, 0.5]
    expected = expected @ Rotation.from_euler("z", 1.0).as_matrix().T + [0.01, 0, 0]
    got = by_link["follower"].vertices
    assert by_link["follower"].source == "parts/block.stl"
    # STL readers may or may not merge corners: compare the vertex sets both ways.
    assert cKDTree(expected).query(got)[0].max() < 1e-6 and cKDTree(got).query(expected)[0].max() < 1e-6
    joints = robot.joint_map()
    assert joints["follow"].mimic == ("slide", -2.0, 0.1)
    assert (joints["spin"].lower, joints["spin"].upper) == (-math.pi, math.pi)
    np.testing.assert_allclose(joints["slide"].axis, np.array([1, 1, 0]) / math.sqrt(2))


def test_package_uris_resolve_through_package_dirs(tmp_path: Path):
    _write_block_stl(tmp_path / "share" / "my_pkg" / "meshes" / "block.stl")
    urdf = tmp_path / "robot.urdf"
    urdf.write_text('<robot name="r"><link name="a"><visual><geometry>'
                    '<mesh filename="package://my_pkg/meshes/block.stl"/></geometry></visual></link></robot>')
    with pytest.raises(FileNotFoundError, match="package 'my_pkg' not found"):
        load_urdf(urdf)
    robot = load_urdf(urdf, package_dirs={"my_pkg": tmp_path / "share" / "my_pkg"})
    assert len(robot.visuals) == 1 and len(robot.visuals[0].faces) == 12


def test_missing_files_raise_errors_that_name_them(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="URDF file not found: .*nothing.urdf"):
        load_urdf(tmp_path / "nothing.urdf")
    urdf = tmp_path / "r.urdf"
    urdf.write_text('<robot name="r"><link name="a"><visual><geometry>'
                    '<mesh filename="meshes/gone.stl"/></geometry></visual></link></robot>')
    with pytest.raises(FileNotFoundError, match=r"mesh 'meshes/gone.stl' of link 'a' not found"):
        load_urdf(urdf)


@pytest.mark.parametrize(
    "body, message",
    [
        ('<link name="a"/><link name="b"', "malformed XML"),
        ('<link name="a"/><link name="b"/><joint name="j" type="ball"><parent link="a"/><child link="b"/></joint>',
         "unknown type 'ball'"),
        ('<link name="a"/><link name="b"/><joint name="j" type="floating"><parent link="a"/><child link="b"/>'
         "</joint>", "does not model"),
        ('<link name="a"/><link name="b"/>'
         '<joint name="j1" type="fixed"><parent link="a"/><child link="b"/></joint>'
         '<joint name="j2" type="fixed"><parent link="b"/><child link="a"/></joint>', "no root link"),
        ('<link name="a"/><link name="b"/><link name="c"/><link name="d"/>'
         '<joint name="j1" type="fixed"><parent link="a"/><child link="b"/></joint>'
         '<joint name="j2" type="fixed"><parent link="c"/><child link="d"/></joint>'
         '<joint name="j3" type="fixed"><parent link="d"/><child link="c"/></joint>', "not reachable"),
        ('<link name="a"/><link name="b"/>', "2 root links"),
        ('<link name="a"/><link name="b"/><joint name="j" type="fixed"><parent link="a"/><child link="x"/>'
         "</joint>", "child link 'x', which is not a <link>"),
        ('<link name="a"/><link name="b"/><joint name="j" type="revolute"><parent link="a"/><child link="b"/>'
         '<mimic joint="ghost"/><limit lower="0" upper="1"/></joint>', "mimics unknown joint 'ghost'"),
        ('<link name="a"/><link name="b"/><joint name="j" type="revolute"><parent link="a"/><child link="b"/>'
         "</joint>", "has no <limit>"),
    ],
)
def test_invalid_urdfs_raise_clear_errors(tmp_path: Path, body: str, message: str):
    urdf = tmp_path / "bad.urdf"
    urdf.write_text(f'<robot name="bad">{body}</robot>')
    with pytest.raises(URDFError, match=message):
        load_urdf(urdf)


# ---------------------------------------------------------------------------------------------------------------
# Meshes


def test_surface_samples_lie_on_their_links_and_are_area_weighted(arm):
    samples = sample_surface(arm, 20000, np.random.default_rng(0))
    meshes = link_meshes(arm)
    assert samples.points.shape == (20000, 3) and samples.link_index.dtype == np.int64
    np.testing.assert_allclose(np.linalg.norm(samples.normals, axis=1), 1.0, atol=1e-9)
    assert samples.colors.min() >= 0.0 and samples.colors.max() <= 1.0
    total_area = sum(triangle_areas_normals(v, f)[0].sum() for v, f, _ in meshes.values())
    for link, (v, f, rgb) in meshes.items():
        chosen = samples.link_index == arm.links.index(link)
        area_share = triangle_areas_normals(v, f)[0].sum() / total_area
        assert abs(chosen.mean() - area_share) < 0.015, link
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
        distance = scene.compute_distance(o3d.core.Tensor(samples.points[chosen].astype(np.float32))).numpy()
        assert distance.max() < 1e-5, link
        # Colours are those of the link's visuals.
        palette = np.unique(rgb, axis=0)
        nearest = np.abs(samples.colors[chosen][:, None] - palette[None]).sum(-1).min(axis=1)
        assert nearest.max() < 1e-9


def test_posed_mesh_applies_each_links_transform(arm):
    fk = ForwardKinematics(arm, dtype=torch.float64)
    T = fk(fk.sample(1, torch.Generator().manual_seed(5))[0]).numpy()
    vertices, faces, rgb, vertex_link = posed_mesh(arm, T)
    meshes = link_meshes(arm)
    assert len(vertices) == sum(len(v) for v, _, _ in meshes.values()) == len(rgb) == len(vertex_link)
    assert faces.max() < len(vertices) and faces.dtype == np.int64
    for link, (v, _, _) in meshes.items():
        i = arm.links.index(link)
        expected = v @ T[i, :3, :3].T + T[i, :3, 3]
        np.testing.assert_allclose(vertices[vertex_link == i], expected, atol=1e-12)
    with pytest.raises(ValueError, match="expected \\(9, 4, 4\\)"):
        posed_mesh(arm, T[:3])


# ---------------------------------------------------------------------------------------------------------------
# A loaded robot as plain arrays + JSON (save_robot_npz / load_robot_npz): what the benchmarks carry to machines
# without mesh readers, instead of a pickle


@pytest.mark.parametrize("which", ["test_arm", "all_joints"])
def test_robot_npz_round_trip_keeps_tree_joints_meshes_and_kinematics(tmp_path: Path, all_joints_path: Path,
                                                                     which: str):
    robot = load_urdf(test_arm_urdf()) if which == "test_arm" else load_urdf(all_joints_path)
    path = save_robot_npz(robot, tmp_path / "robot.npz")
    back = load_robot_npz(path)
    assert (back.name, back.root, back.links, back.urdf_sha256) == (robot.name, robot.root, robot.links,
                                                                    robot.urdf_sha256)
    assert back.source_path == robot.source_path and back.actuated_joints == robot.actuated_joints
    for a, b in zip(robot.joints, back.joints):
        assert (a.name, a.type, a.parent, a.child, a.mimic) == (b.name, b.type, b.parent, b.child, b.mimic)
        # origins, axes and limits go through JSON as float64 text: exact
        np.testing.assert_array_equal(a.origin, b.origin)
        np.testing.assert_array_equal(a.axis, b.axis)
        assert (a.lower, a.upper) == (b.lower, b.upper)
    assert len(back.visuals) == len(robot.visuals)
    for a, b in zip(robot.visuals, back.visuals):
        assert (a.link, a.source) == (b.link, b.source) and b.vertices.dtype == np.float64
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_array_equal(a.rgba, b.rgba)
        # stored as float32: rounding of at most half a float32 ulp, < 3e-8 m for coordinates under 1 m
        np.testing.assert_allclose(b.vertices, a.vertices, rtol=0, atol=np.abs(a.vertices).max() * 2.0**-24)
    q = ForwardKinematics(robot, dtype=torch.float64).sample(4, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(ForwardKinematics(back, dtype=torch.float64)(q).numpy(),
                                  ForwardKinematics(robot, dtype=torch.float64)(q).numpy())


def test_robot_npz_files_that_need_pickle_or_are_damaged_are_refused(tmp_path: Path):
    robot = load_urdf(test_arm_urdf())
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": "gen3d_ros.robot_model/1"}], dtype=object))
    with pytest.raises(URDFError, match="not a robot file written by save_robot_npz"):
        load_robot_npz(pickled)

    good = save_robot_npz(robot, tmp_path / "good.npz")
    with np.load(good, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))

    def write(name: str, **changes) -> Path:
        out = tmp_path / name
        np.savez(out, **{**arrays, **changes})
        return out

    with pytest.raises(URDFError, match="expected 'gen3d_ros.robot_model/1'"):
        load_robot_npz(write("other.npz", meta=np.array(json.dumps({**meta, "format": "something/2"}))))
    faces = arrays["v0_faces"].copy()
    faces[0, 0] = 10**6
    with pytest.raises(URDFError, match="visual 0 .* inconsistent arrays"):
        load_robot_npz(write("faces.npz", v0_faces=faces))
    cyclic = json.loads(json.dumps(meta))
    cyclic["joints"][0]["parent"] = cyclic["joints"][-1]["child"]  # the root becomes a child: no root left
    with pytest.raises(URDFError):
        load_robot_npz(write("cycle.npz", meta=np.array(json.dumps(cyclic))))
    with pytest.raises(FileNotFoundError):
        load_robot_npz(tmp_path / "missing.npz")


# ---------------------------------------------------------------------------------------------------------------
# Optional cross-checks against well-known packages (skipped where they are not installed)


def test_fk_matches_pytorch_kinematics(arm):
    pk = pytest.importorskip("pytorch_kinematics")
    from pytorch_kinematics.urdf_parser_py.xml_reflection import core as pk_xml

    pk_xml.on_error = lambda *args, **kwargs: None  # its parser warns about every unknown attribute
    robots = [test_arm_urdf()] + ([example_robot_urdf("panda")] if example_robot_urdf("panda") else [])
    for path in robots:
        chain = pk.build_chain_from_urdf(path.read_bytes()).to(dtype=torch.float64)
        fk = ForwardKinematics(load_urdf(path, geometry="collision"), dtype=torch.float64)
        q = fk.sample(8, torch.Generator().manual_seed(4))
        # pytorch-kinematics takes mimic joints as inputs of their own: feed them their leader's value.
        joints = load_urdf(path, geometry="collision").joint_map()
        columns = []
        for name in chain.get_joint_parameter_names():
            mimic = joints[name].mimic
            leader, m, o = mimic if mimic else (name, 1.0, 0.0)
            columns.append(m * q[:, fk.joint_index(leader)] + o)
        theirs = chain.forward_kinematics(torch.stack(columns, dim=-1))
        ours = fk(q)
        for link, transform in theirs.items():
            np.testing.assert_allclose(transform.get_matrix().numpy(), ours[:, fk.link_index(link)].numpy(),
                                       atol=1e-5, err_msg=f"{path.name}: {link}")


def test_example_robot_data_panda_loads_and_poses():
    path = example_robot_urdf("panda")
    if path is None:
        pytest.skip("example-robot-data is not installed (optional: pip install example-robot-data)")
    has_collada = importlib.util.find_spec("trimesh") and importlib.util.find_spec("collada")
    robot = load_urdf(path, geometry="visual" if has_collada else "collision")
    assert robot.name == "panda" and robot.root == "panda_link0"
    assert robot.actuated_joints == [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]
    assert robot.joint_map()["panda_finger_joint2"].mimic == ("panda_finger_joint1", 1.0, 0.0)
    meshes = link_meshes(robot)
    assert {f"panda_link{i}" for i in range(8)} <= set(meshes)
    fk = ForwardKinematics(robot, dtype=torch.float64)
    T = fk(torch.zeros(8, dtype=torch.float64)).numpy()  # q = 0 (joint 4's limits exclude it: neutral() differs)
    assert fk.neutral()[3] == pytest.approx(-0.0698)
    vertices = posed_mesh(robot, T)[0]
    # Panda at q = 0: link 7 at 0.333 + 0.316 + 0.384 m up and 0.088 m forward, the flange (link 8) 0.107 m below
    # it, pointing down; the robot is about 1.1 m tall.
    np.testing.assert_allclose(T[fk.link_index("panda_link7"), :3, 3], [0.088, 0.0, 1.033], atol=1e-9)
    np.testing.assert_allclose(T[fk.link_index("panda_link8"), :3, 3], [0.088, 0.0, 0.926], atol=1e-9)
    assert 1.0 < vertices[:, 2].max() < 1.2
    if has_collada:  # COLLADA materials give the vertex colours (Panda is white and dark grey)
        assert all(v.vertex_rgb is not None for v in robot.visuals)


def test_example_robot_urdf_is_none_or_a_file():
    path = example_robot_urdf("panda")
    assert path is None or (path.is_file() and path.suffix == ".urdf")
    if path is not None:
        with pytest.raises(FileNotFoundError, match="no robot 'no_such_robot'"):
            example_robot_urdf("no_such_robot")


def test_dae_without_pycollada_gives_an_actionable_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "m.dae").write_text("<COLLADA/>")
    urdf = tmp_path / "r.urdf"
    urdf.write_text('<robot name="r"><link name="a"><visual><geometry><mesh filename="m.dae"/></geometry>'
                    "</visual></link></robot>")
    import builtins

    real_import = builtins.__import__

    def no_collada(name, *args, **kwargs):
        if name == "collada":
            raise ImportError("No module named 'collada'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_collada)
    with pytest.raises(URDFError, match="needs (trimesh and )?pycollada"):
        load_urdf(urdf)
