"""Root conftest: loads the plugin from a checkout when its pytest11 entry point is not installed (keep it tiny)."""
from __future__ import annotations

from importlib.metadata import entry_points

if not any(ep.value == "pytest_gpucluster.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["pytest_gpucluster.plugin"]
