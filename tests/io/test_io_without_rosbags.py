"""Mesh files are written where rosbags is absent (a GPU training host): only bag and message code needs it, and
it is imported where the typestore is built."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_a_mesh_file_is_written_without_rosbags(tmp_path: Path) -> None:
    path = tmp_path / "m.ply"
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "rosbags" or name.startswith("rosbags."):
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
        sys.meta_path.insert(0, Block())
        import numpy as np
        from gen3d_ros.completion.mesh import TriangleMesh
        from gen3d_ros.completion.udf_mesh import save_mesh
        v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
        save_mesh({str(path)!r}, TriangleMesh(v, np.array([[0, 1, 2]], np.int32), np.ones((3, 3), np.float32)))
        assert not any(m.startswith("rosbags") for m in sys.modules)
        print("written")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "written" in out.stdout
    assert path.stat().st_size > 100
