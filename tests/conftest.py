"""Project tests: retries without waits, pytester available, and a shared simulated-cluster helper."""
from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from pytest_gpucluster import retry

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True, scope="session")
def _retry_without_waits() -> None:
    """Every retry policy keeps its attempt count but never sleeps in the project's tests."""
    retry.set_test_mode(True)


@pytest.fixture
def plugin_args() -> list[str]:
    """Arguments that load the plugin in a pytester run whether or not its entry point is installed."""
    installed = any(ep.value == "pytest_gpucluster.plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "pytest_gpucluster.plugin"]
