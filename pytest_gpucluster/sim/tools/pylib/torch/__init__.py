"""Fake `torch` for simulated pods: CUDA device queries answered from the pod's sim context."""
from __future__ import annotations

from . import cuda, distributed, version

__version__ = "2.5.1+cu124"
__all__ = ["cuda", "distributed", "version", "__version__"]
