"""Suite-wide wiring: the suites need the gpucluster plugin (fixtures, markers, node parametrization)."""
from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("gpucluster-fixtures"):
        raise pytest.UsageError(
            "the acceptance suites need the pytest-gpucluster plugin: install the package (pip install -e .) "
            "or run pytest from the checkout root, and do not disable it with -p no:gpucluster")
