"""The import rules of docs/ARCHITECTURE.md, checked on every module's real imports (``ast``, including imports
inside functions), and the function-length habit.

Nodes of the dependency graph are the subpackages of ``gen3d_ros`` (``completion``, ``robot``, ``sim``, ``io``,
...), with the training subpackages (``completion.training``, ``robot.training``) as nodes of their own, and the
top-level modules (``cli``, ``outputs``, ``checkpoints``, ...).
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gen3d_ros"
TRAINING = ("completion.training", "robot.training")
RUNTIME = ("completion", "robot", "pipeline", "io", "sparse", "geometry", "ros", "viz", "config", "outputs", "checkpoints",
           "devices")
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every absolute import of a module: (imported module or name, line)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _node(module: str) -> str:
    """``gen3d_ros.completion.training.gca`` -> ``completion.training``; ``gen3d_ros.io.pointfiles`` -> ``io``."""
    rel = module.split(".")[1:]
    if not rel:
        return "gen3d_ros"
    if len(rel) >= 2 and f"{rel[0]}.{rel[1]}" in TRAINING:
        return f"{rel[0]}.{rel[1]}"
    return rel[0]


def _internal_edges() -> dict[str, dict[str, list[str]]]:
    """node -> imported node -> ['module:line', ...] for imports between different nodes."""
    edges: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for module, path in MODULES.items():
        for target, line in _imports(path):
            if target in MODULES and _node(target) != _node(module):
                edges[_node(module)][_node(target)].append(f"{module}:{line}")
    return edges


def test_rclpy_is_imported_only_in_the_ros_layer() -> None:
    offenders = [f"{m}:{line} imports {t}" for m, p in MODULES.items() if _node(m) != "ros"
                 for t, line in _imports(p) if t.split(".")[0] in ("rclpy", "rcl_interfaces", "launch", "launch_ros")]
    assert offenders == []


@pytest.mark.parametrize("layer", RUNTIME)
def test_runtime_imports_no_training_and_no_simulator(layer: str) -> None:
    edges = _internal_edges()
    bad = {target: where for target, where in edges.get(layer, {}).items() if target in (*TRAINING, "sim")}
    assert bad == {}, f"runtime layer {layer!r} imports training or simulator code: {dict(bad)}"


def test_the_simulator_imports_no_training_code() -> None:
    edges = _internal_edges()
    assert {t: w for t, w in edges.get("sim", {}).items() if t in TRAINING} == {}


def test_no_import_cycles_between_layers() -> None:
    edges = _internal_edges()
    graph = {a: set(b) for a, b in edges.items()}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                cycles.append(" -> ".join([*path, nxt]))
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its smallest node
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert cycles == [], "\n".join(f"{c}  (e.g. {edges[c.split(' -> ')[0]][c.split(' -> ')[1]][:2]})" for c in cycles)


def test_no_import_cycles_between_modules() -> None:
    """Module-level imports only: an import inside a function runs after both modules exist."""
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            graph[module] |= {t for t in targets if t in MODULES and t != module}
    # a package __init__ importing its own modules is not a cycle with them
    cycles = []
    for a in graph:
        for b in graph[a]:
            if a in graph.get(b, ()) and not (b.startswith(a + ".") or a.startswith(b + ".")) and a < b:
                cycles.append(f"{a} <-> {b}")
    assert cycles == []


def test_functions_stay_short_or_say_why() -> None:
    """No function over 80 lines unless its first body line is a comment saying why."""
    long = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                first = node.body[0]
                body_start = (first.end_lineno if isinstance(first, ast.Expr) and isinstance(
                    getattr(first, "value", None), ast.Constant) else first.lineno - 1)
                reason = lines[body_start].strip().startswith("#") if body_start < len(lines) else False
                if length > MAX_FUNCTION_LINES and not reason:
                    long.append(f"{module}.{node.name} ({length} lines)")
    assert long == []


def test_the_checker_sees_real_edges() -> None:
    """A checker that finds nothing proves nothing: the known legal edges are there."""
    edges = _internal_edges()
    assert "sim" in edges["completion.training"]          # training reads the simulator
    assert "completion" in edges["sim"]                    # the simulator uses the runtime grid
    assert "pipeline" in edges["ros"] and "io" in edges["pipeline"]
