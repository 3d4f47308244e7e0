"""`python -m pytest_gpucluster.sim`: how the plugin starts the simulated cluster (a child process writing a hand-off folder)."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
