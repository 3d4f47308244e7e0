"""`python -m pytest_gpucluster.cli`: the `gpucluster` command without its console script."""
import sys

from . import main

sys.exit(main())
