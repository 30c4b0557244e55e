"""Launch files, without ``launch``/``launch_ros`` (no wheels here): they compile, define
``generate_launch_description``, and — run against recording stand-ins of the launch classes — start the nodes of
the stage registry with the generic ``stage_node`` executable that CMake installs from ``scripts/ros``, with a
``params_file`` argument defaulting to an existing ``config/`` file. (On a ROS 2 install, ``ros2 launch gen3d_ros
gen3d.launch.py`` is the real test.)"""

from __future__ import annotations

import ast
import os
import py_compile
import re
import runpy
import sys
import types
from pathlib import Path

import pytest
import yaml

from gen3d_ros.pipeline.registry import node_names
from ros_harness import REPO

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
STANDINS = {
    "launch": ["LaunchDescription"],
    "launch.actions": ["DeclareLaunchArgument", "IncludeLaunchDescription", "GroupAction", "LogInfo"],
    "launch.conditions": ["IfCondition", "UnlessCondition"],
    "launch.substitutions": ["LaunchConfiguration", "PathJoinSubstitution", "TextSubstitution"],
    "launch_ros.actions": ["Node"],
    "launch_ros.substitutions": ["FindPackageShare"],
}


class Recorded:
    """Stand-in of a launch class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __eq__(self, other):
        return type(self).__name__ == type(other).__name__ and (self.args, self.kwargs) == (other.args, other.kwargs)

    def __repr__(self):
        return f"{type(self).__name__}{self.args}{self.kwargs}"


@pytest.fixture
def launch_standins(monkeypatch):
    modules = {}
    for name, classes in STANDINS.items():
        module = types.ModuleType(name)
        for cls in classes:
            setattr(module, cls, type(cls, (Recorded,), {}))
        monkeypatch.setitem(sys.modules, name, module)
        modules[name] = module
    return modules


def cmake_installed_executables() -> set[str]:
    """Executables CMakeLists.txt installs: it globs scripts/ros/*_node into lib/gen3d_ros."""
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"file\(GLOB node_executables \"\$\{CMAKE_CURRENT_SOURCE_DIR\}/scripts/ros/\*_node\"\)", text), \
        "CMakeLists.txt no longer installs the scripts/ros/*_node programs"
    assert "install(PROGRAMS ${node_executables} DESTINATION lib/${PROJECT_NAME})" in text
    return {p.name for p in (REPO / "scripts" / "ros").glob("*_node") if p.stat().st_mode & 0o111}


def cmake_installed_dirs() -> set[str]:
    match = re.search(r"foreach\(dir ([^)]*)\)", (REPO / "CMakeLists.txt").read_text())
    return set(match.group(1).split()) if match else set()


def describe(path: Path) -> list:
    """The entries of the launch file's LaunchDescription (needs the ``launch_standins`` fixture)."""
    return list(runpy.run_path(str(path))["generate_launch_description"]().args[0])


def share_path(subst) -> Path:
    """``PathJoinSubstitution([FindPackageShare("gen3d_ros"), "config", X])`` -> REPO/config/X."""
    parts = subst.args[0]
    assert type(parts[0]).__name__ == "FindPackageShare" and parts[0].args == ("gen3d_ros",), subst
    return REPO.joinpath(*parts[1:])


def test_there_is_an_all_in_one_and_a_completion_launch_file():
    assert {p.name for p in LAUNCH_FILES} >= {"gen3d.launch.py", "completion.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_compiles_and_defines_generate_launch_description(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)
    functions = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_starts_installed_executables_with_an_existing_params_file(path, launch_standins):
    entries = describe(path)
    arguments = {e.args[0]: e for e in entries if type(e).__name__ == "DeclareLaunchArgument"}
    assert "params_file" in arguments
    default = share_path(arguments["params_file"].kwargs["default_value"])
    assert default.is_file(), f"{path.name}: default params file {default} does not exist"
    assert default.parent.name in cmake_installed_dirs(), "config/ is not installed by CMakeLists.txt"

    nodes = [e for e in entries if type(e).__name__ == "Node" and e.kwargs["package"] == "gen3d_ros"]
    assert nodes, f"{path.name} starts no gen3d_ros node"
    installed = cmake_installed_executables()
    for node in nodes:
        exe, name = node.kwargs["executable"], node.kwargs["name"]
        assert exe == "stage_node" and exe in installed, f"{exe} is not installed to lib/gen3d_ros by CMakeLists.txt"
        script = REPO / "scripts" / "ros" / exe
        assert script.is_file() and os.access(script, os.X_OK), f"{script} missing or not executable"
        assert "from gen3d_ros.ros.node_main import main" in script.read_text()
        assert name in node_names() and node.kwargs["arguments"][0] == name  # stage_node NODE --ros-args ...
        subst = launch_standins["launch.substitutions"]
        # the params file, then use_sim_time from its launch argument; every node under the namespace argument
        assert node.kwargs["parameters"] == [subst.LaunchConfiguration("params_file"),
                                             {"use_sim_time": subst.LaunchConfiguration("use_sim_time")}]
        assert node.kwargs["namespace"] == subst.LaunchConfiguration("namespace")
        assert {"namespace", "use_sim_time"} <= set(arguments)
        # the params file has a section for this node
        assert f"/**/{name}" in yaml.safe_load(default.read_text())
    rviz = [e for e in entries if type(e).__name__ == "Node" and e.kwargs["package"] == "rviz2"]
    for node in rviz:
        assert share_path(node.kwargs["arguments"][1]).is_file()


def test_all_in_one_launch_file_starts_every_node_gen3d_run_knows(launch_standins):
    entries = describe(REPO / "launch" / "gen3d.launch.py")
    started = [e.kwargs["name"] for e in entries if type(e).__name__ == "Node" and e.kwargs["package"] == "gen3d_ros"]
    assert started == node_names()


def test_node_entry_points_exist():
    """``stage_node`` (any node by name) and the named executables of ``ros2 run gen3d_ros <node>``: a module with
    ``main`` and a console script each."""
    text = (REPO / "pyproject.toml").read_text()
    executables = {e for e in cmake_installed_executables() if (REPO / "scripts/ros" / e).exists()}
    assert "stage_node" in executables
    for exe in sorted(executables):
        module_name = "node_main" if exe == "stage_node" else exe
        assert exe == "stage_node" or exe in node_names(), f"scripts/ros/{exe} is no node of the registry"
        assert f"from gen3d_ros.ros.{module_name} import main" in (REPO / "scripts/ros" / exe).read_text()
        module = REPO / "gen3d_ros" / "ros" / f"{module_name}.py"
        assert module.is_file()
        assert "main" in {n.name for n in ast.parse(module.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert f'"gen3d_ros.ros.{module_name}:main"' in text, f"pyproject.toml has no console script for {exe}"


def expected_entries(standins: dict, nodes: list[str], params_file: str, params_description: str) -> list:
    """The LaunchDescription entries of ``nodes``, written out by hand."""
    subst, actions = standins["launch.substitutions"], standins["launch.actions"]
    Node = standins["launch_ros.actions"].Node
    share = standins["launch_ros.substitutions"].FindPackageShare("gen3d_ros")
    config = lambda name: subst.LaunchConfiguration(name)  # noqa: E731
    return [
        actions.DeclareLaunchArgument("params_file",
                                      default_value=subst.PathJoinSubstitution([share, "config", params_file]),
                                      description=params_description),
        actions.DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        actions.DeclareLaunchArgument("rviz", default_value="false",
                                      description="also start rviz2 with config/gen3d.rviz"),
        actions.DeclareLaunchArgument("namespace", default_value="",
                                      description="namespace of the nodes and their relative topics, e.g. car1"),
        actions.DeclareLaunchArgument("use_sim_time", default_value="false",
                                      description="use /clock (a bag played with --clock) instead of the system "
                                                  "clock"),
        actions.DeclareLaunchArgument("lifecycle", default_value="false", choices=["false", "true", "managed"],
                                      description="false: plain nodes; true: managed (lifecycle) nodes brought to "
                                                  "active at start; managed: managed nodes left unconfigured for a "
                                                  "lifecycle manager"),
        *(Node(package="gen3d_ros", executable="stage_node", name=name, namespace=config("namespace"),
               parameters=[config("params_file"), {"use_sim_time": config("use_sim_time")}],
               output="screen", emulate_tty=True,
               arguments=[name, "--lifecycle", config("lifecycle"), "--ros-args", "--log-level", config("log_level")])
          for name in nodes),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             parameters=[{"use_sim_time": config("use_sim_time")}],
             arguments=["-d", subst.PathJoinSubstitution([share, "config", "gen3d.rviz"])],
             condition=standins["launch.conditions"].IfCondition(config("rviz"))),
    ]


SINGLE_NODE_FILES = [p for p in LAUNCH_FILES if p.name != "gen3d.launch.py"]


@pytest.mark.parametrize("path", SINGLE_NODE_FILES, ids=lambda p: p.name)
def test_single_node_launch_file_starts_its_node_with_its_params_file(path, launch_standins):
    node = path.name.removesuffix(".launch.py") + "_node"
    expected = expected_entries(launch_standins, [node], f"{node}.yaml", f"ROS 2 params YAML with a '{node}' section")
    assert describe(path) == expected


def test_all_in_one_launch_file_entries(launch_standins):
    expected = expected_entries(launch_standins, node_names(), "gen3d.yaml",
                                "ROS 2 params YAML with a section per node")
    assert describe(REPO / "launch" / "gen3d.launch.py") == expected


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_share_one_builder(path):
    assert "from gen3d_ros.ros.launch_description import" in path.read_text()


def test_launch_builder_imports_without_launch(monkeypatch):
    import importlib

    for name in STANDINS:
        monkeypatch.setitem(sys.modules, name, None)  # any import of launch / launch_ros fails
    monkeypatch.delitem(sys.modules, "gen3d_ros.ros.launch_description", raising=False)
    module = importlib.import_module("gen3d_ros.ros.launch_description")
    assert callable(module.launch_description) and callable(module.node_launch_description)
