"""The safety rules hold for the whole code base, not only for the files someone remembered to fix:

- checkpoints are read only by ``gen3d_ros/checkpoints.py``, with ``weights_only=True``; nothing unpickles;
- every file is written through ``gen3d_ros/outputs.py`` (temp + rename, marker) or inside an
  ``atomic_path``/``atomic_folder`` block, so no command leaves a half-written file or replaces one in place.

The check parses the sources (``ast``), so comments and strings do not count and new code is covered as it lands.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPO / "gen3d_ros").rglob("*.py"), *(REPO / "bench").glob("*.py")])
#: method / function names that create or overwrite a file when called with a path
WRITERS = {"write_text", "write_bytes", "savefig", "tofile", "save", "savez", "savez_compressed",
           "write_triangle_mesh", "write_point_cloud", "imwrite", "dump"}
ATOMIC_BLOCKS = {"atomic_path", "atomic_folder"}


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _atomic_ranges(tree: ast.AST) -> list[tuple[int, int]]:
    ranges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            names = {_call_name(item.context_expr) for item in node.items if isinstance(item.context_expr, ast.Call)}
            if names & ATOMIC_BLOCKS:
                ranges.append((node.lineno, node.end_lineno or node.lineno))
    return ranges


def _is_open_for_writing(node: ast.Call) -> bool:
    if _call_name(node) != "open" or _dotted(node.func) not in ("open", "io.open"):
        return False
    mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax+")


def _from_outputs(tree: ast.AST) -> set[str]:
    """Names imported from gen3d_ros.outputs (its writers are the safe ones)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "gen3d_ros.outputs":
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def _violations(path: Path) -> list[str]:
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    lines = source.splitlines()
    rel = path.relative_to(REPO)
    safe_names = _from_outputs(tree)
    found = []
    ranges = _atomic_ranges(tree)
    inside = lambda line: any(a <= line <= b for a, b in ranges)  # noqa: E731
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name, dotted = _call_name(node), _dotted(node.func)
        if dotted in ("pickle.load", "pickle.loads", "cloudpickle.load", "dill.load"):
            found.append(f"{rel}:{node.lineno}: {dotted} (unpickling runs code from the file)")
        if dotted == "torch.load":
            only = {k.arg: k.value for k in node.keywords}
            safe = isinstance(only.get("weights_only"), ast.Constant) and only["weights_only"].value is True
            if rel.as_posix() != "gen3d_ros/checkpoints.py" or not safe:
                found.append(f"{rel}:{node.lineno}: torch.load outside checkpoints.load_checkpoint_file or without "
                             "weights_only=True")
        if rel.as_posix() == "gen3d_ros/outputs.py" or inside(node.lineno) or "# atomic:" in lines[node.lineno - 1]:
            continue  # "# atomic: <why>" marks a write into a temporary that is renamed into place elsewhere
        if (isinstance(node.func, ast.Name) and name in safe_names) or dotted.startswith("outputs."):
            continue
        if name == "dump" and dotted not in ("json.dump", "yaml.dump", "yaml.safe_dump", "pickle.dump"):
            continue
        if name in WRITERS or dotted == "torch.save" or _is_open_for_writing(node):
            found.append(f"{rel}:{node.lineno}: {dotted or name}(...) writes a file outside gen3d_ros.outputs")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_unsafe_load_and_no_in_place_write(path: Path) -> None:
    assert _violations(path) == []


def test_the_rule_catches_what_it_should(tmp_path: Path) -> None:
    """The checker itself finds each kind of violation (a checker that finds nothing proves nothing)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle, torch, json\n"
        "from pathlib import Path\n"
        "pickle.load(open('x', 'rb'))\n"
        "torch.load('m.pt', weights_only=False)\n"
        "Path('a').write_text('x')\n"
        "fig.savefig('p.png')\n"
        "json.dump({}, open('r.json', 'w'))\n"
        "with atomic_path('ok') as tmp:\n"
        "    tmp.write_text('fine')\n")
    global REPO
    saved = REPO
    REPO = tmp_path
    try:
        found = _violations(bad)
    finally:
        REPO = saved
    assert len([f for f in found if "pickle.load" in f]) == 1
    assert len([f for f in found if "torch.load" in f]) == 1
    assert any(":5:" in f for f in found) and any(":6:" in f for f in found) and any(":7:" in f for f in found)
    assert not any(":9:" in f for f in found)
