"""The pytest11 entry point: options and ini keys, markers, report header, the Session in config.stash, teardown."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Generator

import pytest

from .kube.errors import ClusterError
from .kube.kubeconfig import KubeconfigError
from .kube.progress import ProgressFactory, TerminalOut
from .options import add_options, run_options
from .profile import load_profile
from .session import SESSION_KEY, Session
from .packaged import collects_suites, suites_dir
from .sim_contract.child import SimStopError

MARKERS = {
    "gpu": "GPU checks: device plugin, nvidia-smi in pods, GPU memory and product",
    "efa": "EFA checks: device plugin, fi_info in pods, EFA counts",
    "taints": "taint and toleration checks on GPU nodes",
    "karpenter": "Karpenter NodePools/NodeClaims checks",
    "nccl": "NCCL bus-bandwidth checks (nccl-tests through MPIJobs)",
    "aws": "checks against AWS APIs (EC2, quotas, capacity)",
    "health": "GPU node health beyond nvidia-smi: DCGM diag, Xid, NVLink/fabric, ECC, PCIe, clocks, topology, uniformity",
    "costly": "launches nodes (costs money): runs only with --gpucluster-costly, or by default with --sim",
    "live_only(why)": "evidence a replay cannot reproduce (gpucluster judge shows the check as not shown, with why)",
}
def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _flush_terminal(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.flush()


def _terminal_column(config: pytest.Config) -> int:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return int(reporter._tw.width_of_current_line) if reporter is not None else 0


def _stdout_is_tty() -> bool:
    stream = sys.__stdout__
    try:
        return bool(stream and stream.isatty())
    except ValueError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    opts = run_options(config)
    run = Session(options=opts, profile=load_profile(opts.profile))
    tty = _stdout_is_tty()
    # A terminal gets one line rewritten in place; a CI log (no TTY) plain lines; -q silences both, and xdist
    # workers (their stdout is not the user's) never write.
    if config.getoption("verbose") >= 0 and not hasattr(config, "workerinput"):
        out = TerminalOut(lambda: _flush_terminal(config), lambda: _terminal_column(config))
        run.progress = ProgressFactory(out, tty=tty, enabled=True)
        config.add_cleanup(out.close)
    run.on_connect.append(lambda r: _point_pytest_kubernetes(config, r))
    config.stash[SESSION_KEY] = run
    from . import fixtures
    from .report import plugin as report_plugin
    config.pluginmanager.register(fixtures, "gpucluster-fixtures")
    config.pluginmanager.register(report_plugin, "gpucluster-report")
    _checkout_suites_by_default(config)
    preflight(config, run)


def _checkout_suites_by_default(config: pytest.Config) -> None:
    """`pytest --kubeconfig ~/.kube/config` in a checkout: while pytest looks for its rootdir our options are not
    registered yet, so it takes `~/.kube/config` for a test path, finds no ini file above it, and would collect the
    whole current directory (the project's own tests included). Collect the suites, as the checkout's testpaths
    say. (`--kubeconfig=PATH` avoids the detour.)"""
    if config.args_source is not pytest.Config.ArgsSource.INVOCATION_DIR or config.inipath is not None:
        return
    try:
        suites = suites_dir().resolve()
    except FileNotFoundError:
        return
    if suites.parent == Path(config.invocation_params.dir).resolve():
        config.args = [str(suites)]


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def preflight(config: pytest.Config, run: Session) -> None:
    """Before collection, for runs of the acceptance suites: what would otherwise be a wall of collection errors
    (missing or unreadable kubeconfig, unknown context, unreachable server, 401, 403 on listing nodes, unknown
    --sim scenario) ends the run here as ONE usage error line (exit 4). xdist workers connect for themselves;
    the controller only checks the connection."""
    if not collects_suites(config) or hasattr(config, "workerinput"):
        return
    distributed = config.getoption("numprocesses", None) not in (None, 0, "0")
    try:
        if not distributed:
            run.discover_inventory()
        elif run.options.sim is None:
            run.check_connection()
        return
    except (ClusterError, KubeconfigError) as exc:
        problem = f"gpucluster: {_one_line(exc)}"
    run.teardown()
    raise pytest.UsageError(problem)


def _point_pytest_kubernetes(config: pytest.Config, run: Session) -> None:
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
    run = config.stash.get(SESSION_KEY, None)
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
    run = config.stash.get(SESSION_KEY, None)
    if run is None or run.options.costly_enabled:
        return
    skip = pytest.mark.skip(reason="costly (launches nodes): enable with --gpucluster-costly (on with --sim)")
    for item in items:
        if item.get_closest_marker("costly"):
            item.add_marker(skip)


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """After collection: what the run covers (only when suite tests connected to a cluster)."""
    run = config.stash.get(SESSION_KEY, None)
    if run is None or run.inventory is None:
        return []
    head = f"gpucluster: {run.server_version or '?'} at {run.cluster.server_url if run.cluster else '?'}"
    return [head] + [f"gpucluster: {line}" for line in run.inventory.summary_lines()]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if "k8s" not in getattr(item, "fixturenames", ()):
        return
    run = item.config.stash.get(SESSION_KEY, None)
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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """Tear down first (the outermost wrapper), so the report's summary.json, its verdict and the exit code
    (report/collector.py, inside this wrapper) know what the teardown left behind."""
    run = session.config.stash.get(SESSION_KEY, None)
    stop_error: SimStopError | None = None
    if run is not None:
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            run.interrupted = True
        try:
            run.teardown()
        except SimStopError as exc:     # raised once the report is written: it still says what ran
            stop_error = exc
    yield
    report = run.teardown_report if run is not None else None
    if report is not None and report.leftovers and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED   # no report plugin to say so (an xdist worker)
    if stop_error is not None:
        raise stop_error


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(SESSION_KEY, None)
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
    run = config.stash.get(SESSION_KEY, None)
    if run is None:
        return
    run.teardown()   # idempotent: a no-op after pytest_sessionfinish, the safety net if it never ran
