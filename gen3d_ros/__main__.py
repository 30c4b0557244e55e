"""``python -m gen3d_ros``: the ``gen3d`` command line (see :mod:`gen3d_ros.cli`)."""

import sys

from gen3d_ros.cli import main

if __name__ == "__main__":
    sys.exit(main())
