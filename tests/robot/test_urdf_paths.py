"""Mesh URIs of a URDF may not lead outside its package (gen3d_ros.robot.urdf_paths: UriResolver, URDFPathError).

Every "outside" target below is a valid STL mesh, so a resolver that let it through would load it and the test
would fail on the missing error, not pass by accident on a parse error.
"""

from __future__ import annotations

import os
from pathlib import Path

import open3d as o3d
import pytest

from gen3d_ros.robot.description import load_robot, resolve_robot_urdf
from gen3d_ros.robot.urdf import (
    URDFError,
    URDFPathError,
    example_robot_urdf,
    load_urdf,
    test_arm_urdf,
    urdf_package_root,
)


def _stl(path: Path) -> Path:
    """A 2 x 4 x 6 cm box as STL (12 triangles)."""
    mesh = o3d.geometry.TriangleMesh.create_box(0.02, 0.04, 0.06)
    mesh.compute_triangle_normals()
    path.parent.mkdir(parents=True, exist_ok=True)
    assert o3d.io.write_triangle_mesh(str(path), mesh)
    return path


def _urdf(path: Path, *uris: str) -> Path:
    """A URDF with one link per mesh URI."""
    links = "".join(f'<link name="l{i}"><visual><geometry><mesh filename="{uri}"/></geometry></visual></link>'
                    for i, uri in enumerate(uris))
    joints = "".join(f'<joint name="j{i}" type="fixed"><parent link="l0"/><child link="l{i}"/></joint>'
                     for i in range(1, len(uris)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<robot name="r">{links}{joints}</robot>')
    return path


@pytest.fixture()
def layout(tmp_path: Path) -> dict[str, Path]:
    """``ws/src/my_pkg`` (package.xml, urdf/, meshes/block.stl) and a valid mesh outside it, ``outside/secret.stl``."""
    pkg = tmp_path / "ws" / "src" / "my_pkg"
    (pkg / "urdf").mkdir(parents=True)
    (pkg / "package.xml").write_text("<package><name>my_pkg</name></package>")
    return {"pkg": pkg, "mesh": _stl(pkg / "meshes" / "block.stl"),
            "outside": _stl(tmp_path / "outside" / "secret.stl")}


# ---------------------------------------------------------------------------------------------------------------
# What is allowed


def test_meshes_inside_the_package_load_by_every_kind_of_uri(layout: dict[str, Path]):
    pkg, mesh = layout["pkg"], layout["mesh"]
    urdf = _urdf(pkg / "urdf" / "r.urdf", "package://my_pkg/meshes/block.stl", "../meshes/block.stl",
                 f"file://{mesh}", str(mesh), "package://my_pkg/urdf/../meshes/block.stl")
    robot = load_urdf(urdf)
    assert len(robot.visuals) == 5 and all(len(v.faces) == 12 for v in robot.visuals)
    assert urdf_package_root(urdf) == pkg.resolve()


def test_package_root_without_package_xml_is_above_urdf_folder_else_the_urdf_folder(tmp_path: Path):
    _stl(tmp_path / "robot" / "meshes" / "m.stl")
    in_urdf_folder = _urdf(tmp_path / "robot" / "urdf" / "r.urdf", "../meshes/m.stl")
    assert urdf_package_root(in_urdf_folder) == (tmp_path / "robot").resolve()
    assert len(load_urdf(in_urdf_folder).visuals) == 1
    elsewhere = _urdf(tmp_path / "robot" / "description" / "r.urdf", "../meshes/m.stl")
    assert urdf_package_root(elsewhere) == (tmp_path / "robot" / "description").resolve()
    with pytest.raises(URDFPathError, match="outside the URDF's package root"):
        load_urdf(elsewhere)
    assert len(load_urdf(elsewhere, allowed_roots=[tmp_path / "robot"]).visuals) == 1


def test_load_robot_resolves_names_and_paths_and_passes_the_mesh_folders_through(tmp_path: Path):
    assert resolve_robot_urdf("") == resolve_robot_urdf("test_arm") == test_arm_urdf()
    assert load_robot("test_arm").urdf_sha256 == load_urdf(test_arm_urdf()).urdf_sha256
    _stl(tmp_path / "robot" / "meshes" / "m.stl")
    elsewhere = _urdf(tmp_path / "robot" / "description" / "r.urdf", "../meshes/m.stl")
    with pytest.raises(URDFPathError, match="outside the URDF's package root"):
        load_robot(str(elsewhere))
    assert len(load_robot(str(elsewhere), allowed_roots=[tmp_path / "robot"]).visuals) == 1
    _stl(tmp_path / "meshes_here" / "m.stl")
    by_package = _urdf(tmp_path / "user" / "r.urdf", "package://far_pkg/m.stl")
    assert len(load_robot(str(by_package), package_dirs={"far_pkg": tmp_path / "meshes_here"}).visuals) == 1
    with pytest.raises(FileNotFoundError, match="URDF file not found"):
        load_robot(str(tmp_path / "missing.urdf"))


def test_sibling_packages_resolve_in_share_folders_and_through_the_ament_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    share = tmp_path / "install" / "share"
    _stl(share / "meshes_pkg" / "meshes" / "m.stl")
    urdf = _urdf(share / "robot_pkg" / "urdf" / "r.urdf", "package://meshes_pkg/meshes/m.stl")
    assert len(load_urdf(urdf).visuals) == 1
    # An isolated install elsewhere: found through AMENT_PREFIX_PATH's ament index only.
    prefix = tmp_path / "opt" / "other"
    _stl(prefix / "share" / "far_pkg" / "meshes" / "m.stl")
    far = _urdf(tmp_path / "user" / "r.urdf", "package://far_pkg/meshes/m.stl")
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match="package 'far_pkg' not found"):
        load_urdf(far)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    with pytest.raises(FileNotFoundError, match="package 'far_pkg' not found"):  # no ament index entry yet
        load_urdf(far)
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / "far_pkg"
    marker.parent.mkdir(parents=True)
    marker.touch()
    assert len(load_urdf(far).visuals) == 1


def test_colcon_symlink_install_links_into_the_source_package_load(tmp_path: Path):
    src = tmp_path / "ws" / "src" / "arm"
    (src / "package.xml").parent.mkdir(parents=True)
    (src / "package.xml").write_text("<package><name>arm</name></package>")
    _stl(src / "meshes" / "m.stl")
    _urdf(src / "urdf" / "arm.urdf", "package://arm/meshes/m.stl", "../meshes/m.stl")
    install = tmp_path / "ws" / "install" / "arm" / "share" / "arm"
    for rel in ("package.xml", "meshes/m.stl", "urdf/arm.urdf"):  # what --symlink-install creates
        (install / rel).parent.mkdir(parents=True, exist_ok=True)
        (install / rel).symlink_to(src / rel)
    robot = load_urdf(install / "urdf" / "arm.urdf")
    assert len(robot.visuals) == 2


def test_the_packaged_test_arm_and_example_robot_data_robots_still_load():
    arm = load_urdf(test_arm_urdf())
    assert len(arm.actuated_joints) == 5 and arm.visuals
    loaded = 0
    for name in ("panda", "ur5"):
        path = example_robot_urdf(name)
        if path is None:
            continue
        robot = load_urdf(path, geometry="collision")  # STL meshes: no COLLADA reader needed
        assert robot.visuals and all(len(v.faces) > 0 for v in robot.visuals), name
        assert any(v.source.startswith("package://example-robot-data/") for v in robot.visuals), name
        loaded += 1
    if loaded == 0:
        pytest.skip("example-robot-data is not installed: only the packaged test arm was checked")


# ---------------------------------------------------------------------------------------------------------------
# What is refused


@pytest.mark.parametrize("uri", ["package://../../etc/passwd", "package://../outside/secret.stl",
                                 "package://./meshes/block.stl", "package:///etc/passwd"])
def test_package_uris_whose_name_is_not_a_package_are_refused(layout: dict[str, Path], uri: str):
    urdf = _urdf(layout["pkg"] / "urdf" / "r.urdf", uri)
    with pytest.raises(URDFPathError, match="is not a package name") as info:
        load_urdf(urdf)
    assert str(urdf) in str(info.value) and uri in str(info.value)


def test_dotdot_out_of_a_package_is_refused_even_to_a_valid_mesh(layout: dict[str, Path]):
    pkg, outside = layout["pkg"], layout["outside"]
    escape = "package://my_pkg/../../../outside/secret.stl"
    assert (pkg / "../../../outside/secret.stl").resolve() == outside.resolve()  # it would load without the check
    urdf = _urdf(pkg / "urdf" / "r.urdf", escape)
    with pytest.raises(URDFPathError, match="outside package 'my_pkg'") as info:
        load_urdf(urdf)
    assert info.value.resolved == outside.resolve() and info.value.uri == escape
    assert info.value.roots == [pkg.resolve()]
    assert "its path leads out" in str(info.value) and "package_dirs={'my_pkg': folder}" in str(info.value)
    # package_dirs does not widen what a package:// URI may reach either
    with pytest.raises(URDFPathError):
        load_urdf(urdf, package_dirs={"my_pkg": pkg})
    etc = _urdf(pkg / "urdf" / "etc.urdf", "package://my_pkg/../../../../../../../../../../../../etc/passwd")
    with pytest.raises(URDFPathError, match="resolves to /etc/passwd"):
        load_urdf(etc)


def test_a_folder_named_like_the_package_outside_the_share_layout_is_not_a_package(tmp_path: Path):
    # Before: any folder above the URDF holding "etc" made package://etc/passwd read /etc/passwd.
    urdf = _urdf(tmp_path / "r.urdf", "package://etc/passwd")
    with pytest.raises(FileNotFoundError, match="package 'etc' not found"):
        load_urdf(urdf)


@pytest.mark.parametrize("kind", ["file_uri", "absolute", "relative"])
def test_paths_outside_the_urdf_package_are_refused_unless_allowed(layout: dict[str, Path], kind: str):
    outside = layout["outside"]
    uri = {"file_uri": f"file://{outside}", "absolute": str(outside),
           "relative": os.path.relpath(outside, layout["pkg"] / "urdf")}[kind]
    urdf = _urdf(layout["pkg"] / "urdf" / "r.urdf", uri)
    with pytest.raises(URDFPathError, match="outside the URDF's package root") as info:
        load_urdf(urdf)
    message = str(info.value)
    assert str(outside.resolve()) in message and str(layout["pkg"].resolve()) in message and "allowed_roots" in message
    assert len(load_urdf(urdf, allowed_roots=[outside.parent]).visuals) == 1


def test_system_files_by_file_uri_are_refused_before_they_are_opened(layout: dict[str, Path]):
    for uri in ("file:///etc/hostname", "file:///etc/passwd", "/etc/passwd", "file://otherhost/etc/passwd"):
        urdf = _urdf(layout["pkg"] / "urdf" / "r.urdf", uri)
        with pytest.raises(URDFPathError) as info:
            load_urdf(urdf)
        assert isinstance(info.value, URDFError) and uri in str(info.value)


def test_a_symlink_inside_the_package_that_points_outside_is_refused(layout: dict[str, Path]):
    pkg, outside = layout["pkg"], layout["outside"]
    (pkg / "meshes" / "inner.stl").symlink_to(pkg / "meshes" / "block.stl")  # inside: fine
    (pkg / "meshes" / "evil.stl").symlink_to(outside)
    (pkg / "meshes" / "evil_dir").symlink_to(outside.parent, target_is_directory=True)
    assert len(load_urdf(_urdf(pkg / "urdf" / "ok.urdf", "package://my_pkg/meshes/inner.stl")).visuals) == 1
    for uri in ("package://my_pkg/meshes/evil.stl", "../meshes/evil.stl", "package://my_pkg/meshes/evil_dir/secret.stl",
                f"file://{pkg}/meshes/evil.stl"):
        with pytest.raises(URDFPathError, match="a symbolic link on the way leads out") as info:
            load_urdf(_urdf(pkg / "urdf" / "r.urdf", uri))
        assert info.value.resolved == outside.resolve(), uri


def test_other_uri_schemes_are_refused_with_a_clear_error(layout: dict[str, Path]):
    urdf = _urdf(layout["pkg"] / "urdf" / "r.urdf", "http://example.com/mesh.stl")
    with pytest.raises(URDFError, match="unsupported URI scheme"):
        load_urdf(urdf)
