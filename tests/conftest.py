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
