"""Suite-wide wiring: the suites need the gpucluster plugin (fixtures, markers, node parametrization)."""
from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    # conftest hooks run before the plugin's own pytest_configure, so look for the plugin itself
    if not (manager.hasplugin("gpucluster") or manager.hasplugin("pytest_gpucluster.plugin")):
        raise pytest.UsageError(
            "the acceptance suites need the pytest-gpucluster plugin: install the package (pip install -e .) "
            "or run pytest from the checkout root, and do not disable it with -p no:gpucluster")
