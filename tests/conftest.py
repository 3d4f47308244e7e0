"""Project tests: retries without waits, pytester available, the plugin loaded in pytester runs, cached suite runs."""
from __future__ import annotations

import contextlib
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pytest_gpucluster import retry
from tests.reliability.suite_runs import SuiteRun
from tests.suite_cache import Prefetcher, Results, SuiteSpec, shared_root, specs_of, suite_run

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
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A simulated cluster of its own for the test (a running SimCluster: kubeconfig_path, store, ...), stopped
    after it: the scenario of the test's `sim_scenario` marker, healthy without one."""
    launcher = pytest.importorskip("pytest_gpucluster.sim.launcher", reason="the sim extra is not installed")
    marker = request.node.get_closest_marker("sim_scenario")
    scenario = marker.args[0] if marker and marker.args else "healthy"
    setup = marker.kwargs.get("setup") if marker else None
    (tmp_path / "sim").mkdir()
    cluster = launcher.SimCluster(scenario, workdir=tmp_path / "sim", setup=setup).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def plugin_args() -> list[str]:
    """Arguments that load the plugin in a pytester run whether or not its entry point is installed."""
    installed = any(ep.value == "pytest_gpucluster.plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "pytest_gpucluster.plugin"]


# Suite runs started ahead of their tests at once, over all xdist workers (0 turns it off). A run mostly waits on
# the simulated cluster (about a third of a core while it runs), so four of them beside two test processes keep
# two cores busy.
PREFETCH_RUNS = int(os.environ.get("GPUCLUSTER_TEST_PREFETCH", "4"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "suites(*runs): the suite runs (shipped scenario names or "
                                       "tests.suite_cache.SuiteSpec) a test reads; the session starts them early")
    config.addinivalue_line("markers", "sim_scenario(name, setup=None): the scenario (and store setup) the `sim` "
                                       "fixture starts for the test; healthy when absent")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read suite runs go last (otherwise in collection order): the other tests keep both processes
    busy while the runs are made in the background, and a test reading one then rarely waits for it."""
    items.sort(key=lambda item: bool(specs_of(item)))


@pytest.fixture(scope="session")
def suite_result(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], SuiteRun]:
    """suite_result(scenario): the whole suite's run against a shipped scenario, once per session across xdist
    workers; the same cache entries as tests/reliability/test_fault_matrix.py (whichever asks first runs it)."""
    shared = shared_root(tmp_path_factory)
    return lambda scenario: suite_run(shared, SuiteSpec(scenario))


@pytest.fixture(scope="session")
def custom_suite_result(tmp_path_factory: pytest.TempPathFactory) -> Callable[[SuiteSpec], SuiteRun]:
    """custom_suite_result(spec): a custom scenario's run (tests.suite_cache.custom), once per session for the
    same spec, shared by the tests and xdist workers that ask for it."""
    shared = shared_root(tmp_path_factory)
    return lambda spec: suite_run(shared, spec)


def _modules_of(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The suite modules a test file reads from a run: its MODULES, or its MODULE (e.g. "test_efa")."""
    module = request.module
    found = getattr(module, "MODULES", None) or ((getattr(module, "MODULE"),) if hasattr(module, "MODULE") else ())
    assert found, f"{module.__name__} uses shipped/custom_run without MODULE or MODULES naming its suite modules"
    return tuple(found)


@pytest.fixture
def shipped(request: pytest.FixtureRequest, suite_result: Callable[[str], SuiteRun]) -> Callable[[str], Results]:
    """shipped(scenario): the calling file's suite modules (MODULE / MODULES) in the session's run of a shipped
    scenario."""
    modules = _modules_of(request)
    return lambda scenario: Results(suite_result(scenario), *modules)


@pytest.fixture
def custom_run(request: pytest.FixtureRequest,
               custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> Callable[[SuiteSpec], Results]:
    """custom_run(spec): the calling file's suite modules in a custom scenario's run."""
    modules = _modules_of(request)
    return lambda spec: Results(custom_suite_result(spec), *modules)


@pytest.fixture(scope="session", autouse=True)
def _suite_runs_ahead(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Start the suite runs the collected tests read (tests.suite_cache.specs_of) in the background, so a test
    finds its run done or under way instead of starting it."""
    specs = list(dict.fromkeys(spec for item in request.session.items for spec in specs_of(item)))
    specs.sort(key=lambda spec: bool(spec.suite_paths()))   # whole-suite runs (the longest) first, then by first use
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    threads = -(-PREFETCH_RUNS // workers)
    if not specs or threads <= 0:
        yield
        return
    prefetcher = Prefetcher(shared_root(tmp_path_factory), specs, threads).start()
    yield
    prefetcher.close()
