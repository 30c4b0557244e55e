"""Data-parallel training under torchrun: two CPU ranks on gloo train the tiny GCA preset for a few steps.

DDP's guarantee is that every rank takes the same optimiser steps on averaged gradients, so the ranks end with
identical parameters (not BatchNorm running statistics: buffers are copied from rank 0 before each forward pass,
then updated by each rank's own batch); the parameters differ from the initial ones (training happened), the ranks
drew different scenes (their losses differ), and only rank 0 wrote a run folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent('''
    import sys
    from pathlib import Path

    import torch

    from gen3d_ros.completion.training import distributed, gca

    out = Path(sys.argv[1])
    context = distributed.init_from_environment("cpu")
    config = gca.make_config("tiny", {"iterations": 3, "val_every": 3, "val_samples": 1, "batch_size": 2,
                                      "buffer_size": 2, "log_every": 2, "threads": 1})
    torch.manual_seed(config.seed)
    initial = dict(gca.build_model(config).named_parameters())  # train() builds its model from the same seed
    model, summary = gca.train(config, out / f"rank{context.rank}", progress=False)
    final = {name: p.detach() for name, p in model.named_parameters()}
    torch.save({"initial": initial, "final": final, "losses": summary["history"]["loss"],
                "validated": bool(summary["final"]), "world_size": context.world_size},
               out / f"params{context.rank}.pt")
    distributed.shutdown()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_end_with_identical_trained_parameters_and_only_rank_0_writes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(tmp_path)]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"params{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    final0, final1 = ranks[0]["final"], ranks[1]["final"]
    assert final0.keys() == final1.keys()
    for name in final0:
        assert torch.equal(final0[name], final1[name]), f"{name} differs between the ranks"
    unchanged = [name for name, v in ranks[0]["initial"].items() if torch.equal(v.detach(), final0[name])]
    assert not unchanged, f"not trained: {unchanged}"
    # each rank drew its own scenes: the per-rank losses of the first step differ
    assert ranks[0]["losses"][0] != ranks[1]["losses"][0]
    assert len(ranks[0]["losses"]) == len(ranks[1]["losses"]) == 3
    # rank 0 validated and wrote its run folder; rank 1 did neither
    assert ranks[0]["validated"] and not ranks[1]["validated"]
    assert (tmp_path / "rank0" / "model.pt").is_file() and (tmp_path / "rank0" / "metrics.json").is_file()
    assert not (tmp_path / "rank1").exists()
