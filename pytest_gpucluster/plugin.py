"""The pytest11 entry point: options and ini keys, markers, report header, the Run in config.stash, teardown."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Generator

import pytest

from .kube.errors import ClusterError
from .kube.kubeconfig import KubeconfigError
from .kube.progress import ProgressFactory
from .profile import load_profile
from .run import DEFAULT_CUDA_IMAGE, DEFAULT_NCCL_IMAGE, DEFAULT_SCENARIO, DEFAULT_TIMEOUT_S, RUN_KEY, Run, RunOptions

MARKERS = {
    "gpu": "GPU checks: device plugin, nvidia-smi in pods, GPU memory and product",
    "efa": "EFA checks: device plugin, fi_info in pods, EFA counts",
    "taints": "taint and toleration checks on GPU nodes",
    "karpenter": "Karpenter NodePools/NodeClaims checks",
    "nccl": "NCCL bus-bandwidth checks (nccl-tests through MPIJobs)",
    "aws": "checks against AWS APIs (EC2, quotas, capacity)",
    "costly": "launches nodes (costs money): runs only with --gpucluster-costly, or by default with --sim",
}
# Fixtures that need the cluster: an item using one makes the run a suite run (connect, parametrize).
CLUSTER_FIXTURES = frozenset({"cluster", "inventory", "run_probe", "run_fleet", "gpu_node", "efa_node", "cpu_node",
                              "gpucluster_run", "probe_context", "k8s"})

# (flag, ini/dest name, argparse kwargs, ini type, help)
OPTIONS: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("--kubeconfig", "gpucluster_kubeconfig", {"metavar": "PATH"}, "string",
     "kubeconfig file (default like kubectl: $KUBECONFIG paths, ~/.kube/config, then in-cluster service account)"),
    ("--context", "gpucluster_context", {"metavar": "NAME"}, "string", "kubeconfig context (default: current-context)"),
    ("--sim", "gpucluster_sim", {"nargs": "?", "const": DEFAULT_SCENARIO, "metavar": "SCENARIO"}, "string",
     f"run against the simulated EKS GPU cluster (scenario name or YAML file; default {DEFAULT_SCENARIO}). "
     "Write --sim=NAME when a test path follows."),
    ("--gpucluster-profile", "gpucluster_profile", {"metavar": "FILE"}, "string",
     "acceptance profile YAML, deep-merged over the default profile"),
    ("--gpucluster-namespace", "gpucluster_namespace", {"metavar": "NAME"}, "string",
     "namespace for probe pods (default: a fresh gpucluster-<run-id>, deleted at the end)"),
    ("--gpucluster-keep", "gpucluster_keep", {"action": "store_true", "default": None}, "bool",
     "keep everything the run created (for debugging); `gpucluster cleanup` removes it later"),
    ("--gpucluster-cuda-image", "gpucluster_cuda_image", {"metavar": "IMAGE"}, "string",
     f"image for GPU probe pods (default {DEFAULT_CUDA_IMAGE})"),
    ("--gpucluster-nccl-image", "gpucluster_nccl_image", {"metavar": "IMAGE"}, "string",
     f"image for nccl-tests (default {DEFAULT_NCCL_IMAGE})"),
    ("--gpucluster-timeout", "gpucluster_timeout", {"metavar": "SECONDS"}, "string",
     f"deadline for each probe pod, image pull included (default {DEFAULT_TIMEOUT_S:.0f})"),
    ("--gpucluster-costly", "gpucluster_costly", {"action": "store_true", "default": None}, "bool",
     "also run tests marked costly (they launch nodes); on by default with --sim"),
    ("--gpucluster-nodes", "gpucluster_nodes", {"metavar": "SELECTOR"}, "string",
     "only check nodes matching this label selector (e.g. karpenter.sh/nodepool=gpu)"),
    ("--gpucluster-sample", "gpucluster_sample", {"metavar": "N"}, "string",
     "check a deterministic sample of N nodes per instance type (large clusters)"),
    ("--gpucluster-nccl-nodes", "gpucluster_nccl_nodes", {"metavar": "N"}, "string",
     "nodes per multi-node NCCL all-reduce (MPIJob workers; default 2)"),
    ("--gpucluster-nccl-every-node", "gpucluster_nccl_every_node", {"action": "store_true", "default": None}, "bool",
     "run the single-node NCCL test on every GPU node (default: one node per instance type)"),
    ("--gpucluster-smoke-image", "gpucluster_smoke_image", {"metavar": "IMAGE"}, "string",
     "image with python3 + PyTorch for the CUDA smoke check (default: the CUDA image; skipped if it has no torch)"),
]


def _optional_module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if exc.name and name.startswith(exc.name):   # the module itself is missing: fine, it lands later
            return None
        raise


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpucluster", "GPU cluster acceptance (pytest-gpucluster)")
    for flag, name, kwargs, ini_type, help_text in OPTIONS:
        group.addoption(flag, dest=name, help=help_text, **kwargs)
        parser.addini(name, help=f"default for {flag}: {help_text}", type=ini_type)  # type: ignore[arg-type]
    aws_options = _optional_module("pytest_gpucluster.aws.options")
    if aws_options is not None:
        aws_options.add_aws_options(group)
    report_options = _optional_module("pytest_gpucluster.report.options")
    if report_options is not None:
        report_options.add_report_options(group)


def _value(config: pytest.Config, name: str) -> Any:
    value = config.getoption(name)
    if value is None:
        ini = config.getini(name)
        value = ini if ini not in ("", None, []) else None
    return value


def _number(config: pytest.Config, name: str, flag: str, cast: type, minimum: float) -> Any:
    raw = _value(config, name)
    if raw is None:
        return None
    try:
        value = cast(raw)
    except ValueError:
        raise pytest.UsageError(f"{flag} must be a number, given: {raw!r}") from None
    if value < minimum:
        raise pytest.UsageError(f"{flag} must be at least {minimum:g}, given: {raw!r}")
    return value


def _looks_like_test_path(value: str) -> bool:
    return value.endswith(".py") or "::" in value or Path(value).is_dir()


def resolve_options(config: pytest.Config) -> RunOptions:
    """Command line > ini > default, validated (UsageError names the option and the bad value)."""
    sim = _value(config, "gpucluster_sim")
    if isinstance(sim, str) and _looks_like_test_path(sim):
        # `pytest --sim suites/`: argparse gave the path to --sim. Give it back to pytest.
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            config.args = [sim]
        else:
            config.args.append(sim)
        sim = DEFAULT_SCENARIO
    timeout = _number(config, "gpucluster_timeout", "--gpucluster-timeout", float, 1)
    opts = RunOptions(
        kubeconfig=_value(config, "gpucluster_kubeconfig"), context=_value(config, "gpucluster_context"),
        sim=sim, profile=_value(config, "gpucluster_profile"), namespace=_value(config, "gpucluster_namespace"),
        keep=bool(_value(config, "gpucluster_keep")),
        cuda_image=_value(config, "gpucluster_cuda_image") or DEFAULT_CUDA_IMAGE,
        nccl_image=_value(config, "gpucluster_nccl_image") or DEFAULT_NCCL_IMAGE,
        timeout_s=timeout if timeout is not None else DEFAULT_TIMEOUT_S,
        costly=bool(_value(config, "gpucluster_costly")), nodes=_value(config, "gpucluster_nodes"),
        sample=_number(config, "gpucluster_sample", "--gpucluster-sample", int, 1))
    if opts.sim is not None and opts.kubeconfig and config.getoption("gpucluster_kubeconfig"):
        raise pytest.UsageError("--sim and --kubeconfig are exclusive: the simulated cluster has its own kubeconfig")
    return opts


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
    config.pluginmanager.register(fixtures, "gpucluster-fixtures")
    report_plugin = _optional_module("pytest_gpucluster.report.plugin")
    if report_plugin is not None:
        config.pluginmanager.register(report_plugin, "gpucluster-report")
    else:
        from . import evidence
        config.pluginmanager.register(evidence, "gpucluster-evidence")


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
