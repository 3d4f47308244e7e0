"""The pytest11 entry point: options and ini keys, markers, report header, the Run in config.stash, teardown."""
from __future__ import annotations

import sys
from typing import Any, Generator

import pytest

from .kube.errors import ClusterError
from .kube.kubeconfig import KubeconfigError
from .kube.progress import ProgressFactory
from .options import add_options, resolve_options
from .profile import load_profile
from .run import RUN_KEY, Run

MARKERS = {
    "gpu": "GPU checks: device plugin, nvidia-smi in pods, GPU memory and product",
    "efa": "EFA checks: device plugin, fi_info in pods, EFA counts",
    "taints": "taint and toleration checks on GPU nodes",
    "karpenter": "Karpenter NodePools/NodeClaims checks",
    "nccl": "NCCL bus-bandwidth checks (nccl-tests through MPIJobs)",
    "aws": "checks against AWS APIs (EC2, quotas, capacity)",
    "costly": "launches nodes (costs money): runs only with --gpucluster-costly, or by default with --sim",
}
def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


class _TerminalWriter:
    """Writes progress through pytest's terminal reporter (looked up when used)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def write(self, content: str, **markup: bool) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write(content, **markup)
            reporter.flush()


def _stdout_is_tty() -> bool:
    stream = sys.__stdout__
    try:
        return bool(stream and stream.isatty())
    except ValueError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    opts = resolve_options(config)
    run = Run(options=opts, profile=load_profile(opts.profile))
    tty = _stdout_is_tty()
    run.progress = ProgressFactory(_TerminalWriter(config), tty=tty,
                                   enabled=tty or config.getoption("verbose") > 0)
    run.on_connect.append(lambda r: _point_pytest_kubernetes(config, r))
    config.stash[RUN_KEY] = run
    from . import fixtures
    from .report import plugin as report_plugin
    config.pluginmanager.register(fixtures, "gpucluster-fixtures")
    config.pluginmanager.register(report_plugin, "gpucluster-report")


def _point_pytest_kubernetes(config: pytest.Config, run: Run) -> None:
    """pytest-kubernetes' `k8s` fixture: external provider on a COPY of our kubeconfig (it deletes the file
    it is given when a test ends; the copy is rewritten before each test that uses `k8s`)."""
    if not hasattr(config.option, "k8s_kubeconfig_override") or run.cluster is None:
        return
    path = run.workdir / "k8s-kubeconfig.yaml"
    if not path.exists():
        run.cluster.write_kubeconfig(path)
    config.option.k8s_provider = "external"
    config.option.k8s_kubeconfig_override = str(path)
    config.option.k8s_provider_config = None


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return []
    opts = run.options
    target = (f"SIMULATED cluster (scenario {opts.sim})" if opts.sim is not None
              else f"cluster from {opts.kubeconfig or 'kubectl defaults'}{f' context {opts.context}' if opts.context else ''}")
    lines = [f"gpucluster: run {run.run_id} on {target}; namespace {run.namespace}; connects on first use",
             f"gpucluster: profile {run.profile.path} (sha256 {run.profile.sha256[:12]}); costly tests "
             f"{'on' if opts.costly_enabled else 'off (--gpucluster-costly)'}"]
    if opts.nodes or opts.sample:
        lines.append(f"gpucluster: node selection: selector {opts.nodes or '-'}, sample {opts.sample or 'all'} per type")
    return lines


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None or run.options.costly_enabled:
        return
    skip = pytest.mark.skip(reason="costly (launches nodes): enable with --gpucluster-costly (on with --sim)")
    for item in items:
        if item.get_closest_marker("costly"):
            item.add_marker(skip)


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """After collection: what the run covers (only when suite tests connected to a cluster)."""
    run = config.stash.get(RUN_KEY, None)
    if run is None or run.inventory is None:
        return []
    head = f"gpucluster: {run.server_version or '?'} at {run.cluster.server_url if run.cluster else '?'}"
    return [head] + [f"gpucluster: {line}" for line in run.inventory.summary_lines()]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if "k8s" not in getattr(item, "fixturenames", ()):
        return
    run = item.config.stash.get(RUN_KEY, None)
    if run is not None:
        run.connect()
        _point_pytest_kubernetes(item.config, run)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A cluster error (forbidden, unreachable, expired credentials...) already says what, where and the fix:
    report its message, not a traceback through the client and the retry machinery."""
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and report.failed and excinfo.errisinstance((ClusterError, KubeconfigError)):
        report.longrepr = f"{excinfo.typename}: {excinfo.value}"
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is None:
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        run.interrupted = True
    report = run.teardown()
    if report is not None and report.leftovers and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None or not (run.connected or run.teardown_report):
        return
    report = run.teardown_report
    if run.options.keep:
        terminalreporter.write_line(f"gpucluster: kept namespace {run.namespace} and everything labelled "
                                    f"gpucluster.io/run={run.run_id} (--gpucluster-keep)", yellow=True)
    elif report is not None:
        if report.leftovers:
            terminalreporter.write_line(f"gpucluster: TEARDOWN LEFT {len(report.leftovers)} OBJECTS BEHIND: "
                                        f"{', '.join(report.leftovers)}; run `gpucluster cleanup --older-than 0s`",
                                        red=True, bold=True)
        else:
            terminalreporter.write_line(f"gpucluster: teardown clean: nothing labelled gpucluster.io/run="
                                        f"{run.run_id} remains", green=True)
        for warning in report.warnings:
            terminalreporter.write_line(f"gpucluster: teardown warning: {warning}", yellow=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return
    run.teardown()   # idempotent: a no-op after pytest_sessionfinish, the safety net if it never ran
