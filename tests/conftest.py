"""Suite-wide settings.

torch runs single-threaded in tests: the sparse ops here are small, and with OpenMP threads on a 2-core
machine that also runs ROS 2 node processes, a spinning thread pool made one chain take 0.3 s to 29 s
(measured); with one thread it takes a steady 0.06 s. Child processes inherit OMP_NUM_THREADS.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch
except ImportError:  # pragma: no cover - torch is a hard dependency; keep collection errors readable
    torch = None
else:
    torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_hgca_bundle(tmp_path_factory):
    """``hgca.pt`` of the tiny hierarchy preset (coarse planned GCA + autoencoder + fine cGCA), trained once per
    session (~1 min on one core): the hGCA tests never depend on the committed demo model."""
    from gen3d_ros.completion.training.hierarchy import train_hierarchy

    out = tmp_path_factory.mktemp("hgca_tiny")
    train_hierarchy("tiny", out, progress=False, threads=1)
    return out / "hgca.pt"
