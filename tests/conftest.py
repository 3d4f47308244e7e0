"""Project tests: retries without waits, pytester available, the plugin loaded in pytester runs."""
from __future__ import annotations

import contextlib
from importlib.metadata import entry_points

import pytest

from pytest_gpucluster import retry

# Import once, before pytester snapshots sys.modules: the simulated cluster's TLS setup (cryptography's
# Rust bindings) breaks when a pytester run re-imports these Python modules around the same native module.
with contextlib.suppress(ImportError):
    import cryptography.hazmat.primitives.asymmetric.ec  # noqa: F401
    import cryptography.hazmat.primitives.hashes  # noqa: F401
    import cryptography.hazmat.primitives.serialization  # noqa: F401
    import cryptography.x509  # noqa: F401
    import cryptography.x509.oid  # noqa: F401

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
