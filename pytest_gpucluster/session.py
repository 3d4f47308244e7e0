"""The state of one pytest session against one cluster (Session in config.stash[SESSION_KEY]): options, profile, lazy cluster connection, namespace, teardown."""
from __future__ import annotations

import datetime as dt
import secrets
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable

import pytest

from . import retry
from .sim_contract import child as sim_process
from .sim_contract.handoff import HandoffError, missing_sim_module, sim_extra_message
from .kube import cleanup, errors, kubeconfig
from .kube.client import Cluster
from .kube.discovery import Inventory, discover
from .kube.fleets import FleetRunner
from .kube.probes import MANAGED_BY, RUN_LABEL, ProbeContext, ProbeResult, ProbeSpec
from .kube.progress import QUIET, ProgressFactory
from .kube.watching import settled
from .options import RunOptions

from .profile import Profile, load_profile
from .sim_contract.child import SimProcess

def new_run_id(now: dt.datetime | None = None) -> str:
    """`YYYYmmdd-HHMMSS-<4 hex>` in UTC: sortable, and `gpucluster cleanup` reads the age from it."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class SigtermAsInterrupt:
    """While installed, SIGTERM raises KeyboardInterrupt in the main thread, so pytest unwinds and tears down."""

    def __init__(self, on_signal: Callable[[], None]) -> None:
        self.on_signal = on_signal
        self.previous: Any = None
        self.installed = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.on_signal()
        raise KeyboardInterrupt(f"received signal {signum} (SIGTERM): tearing down")

    def install(self) -> None:
        if self.installed or threading.current_thread() is not threading.main_thread():
            return
        self.previous = signal.signal(signal.SIGTERM, self._handler)
        self.installed = True

    def uninstall(self) -> None:
        if self.installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.previous or signal.SIG_DFL)
        self.installed = False


@dataclass
class Session:
    """Everything one pytest session knows about the cluster under test. Connects on first use only."""

    options: RunOptions
    profile: Profile
    run_id: str = field(default_factory=new_run_id)
    progress: ProgressFactory = QUIET
    interrupted: bool = False
    sim: SimProcess | None = None           # the simulated cluster's child process, when --sim started it
    server_version: str | None = None
    teardown_report: cleanup.TeardownReport | None = None
    _cluster: Cluster | None = None
    _inventory: Inventory | None = None
    _connect_error: BaseException | None = None
    _namespace_created: bool = False
    _workdir: Path | None = None
    _fleets: dict[str, dict[str, ProbeResult]] = field(default_factory=dict)
    _probe_seq: int = 0
    _torn_down: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock)
    on_connect: list[Callable[["Session"], None]] = field(default_factory=list)
    # bundle/replay.Replay when re-judging a recording (`gpucluster judge`): the cluster and AWS are answered
    # from the recorded run instead of a server; nothing is created, nothing is cleaned up
    replay: Any = None

    def __post_init__(self) -> None:
        self.namespace = self.options.namespace or f"gpucluster-{self.run_id}"
        self.sigterm = SigtermAsInterrupt(lambda: setattr(self, "interrupted", True))
        # Checked here, at configure: a usage error now ends pytest in one line (exit 4); at the first
        # connection it would be an error per test.
        if self.options.sim is not None and (missing := missing_sim_module()) is not None:
            raise pytest.UsageError(sim_extra_message("--sim", missing))

    # -- read-only views for the report (never trigger a connection) -----------------------------
    @property
    def connected(self) -> bool:
        return self._cluster is not None

    @property
    def cluster(self) -> Cluster | None:
        return self._cluster

    @property
    def inventory(self) -> Inventory | None:
        return self._inventory

    @property
    def sim_scenario(self) -> str | None:
        return getattr(self.sim, "scenario_name", None) or self.options.sim

    @property
    def aws_env(self) -> dict[str, str] | None:
        """The simulated cluster's AWS endpoint and credentials (from its hand-off folder) as the AWS_* names
        `aws.session.open_session(env=...)` takes; None against a real cluster (boto3's own chain) or a
        scenario without an AWS account. Never copied into os.environ."""
        aws = self.sim.handoff.aws if self.sim is not None else None
        return aws.as_env() if aws is not None else None

    @property
    def profile_path(self) -> str | None:
        return self.profile.path

    @property
    def profile_sha256(self) -> str:
        return self.profile.sha256

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"gpucluster-{self.run_id}-"))
        return self._workdir

    # -- connecting ------------------------------------------------------------------------------
    def connect(self) -> Cluster:
        """Connect once (starting the simulated cluster first with --sim); later calls reuse it. A failed
        connection is remembered so every later fixture fails at once with the same clear error."""
        with self._lock:
            if self._cluster is not None:
                return self._cluster
            if self._connect_error is not None:
                raise self._connect_error
            try:
                self._cluster = self._connect()
            except (errors.ClusterError, kubeconfig.KubeconfigError) as exc:
                self._connect_error = exc
                raise
            for hook in self.on_connect:
                hook(self)
            return self._cluster

    def _connect(self) -> Cluster:
        if self.replay is not None:
            cluster: Cluster = self.replay.cluster()
            self.server_version = str(cluster.version().get("gitVersion") or "") or None
            return cluster
        path, context = self.options.kubeconfig, self.options.context
        if self.options.sim is not None:
            self.sim = start_sim(self.options.sim, self.workdir / "sim")
            handoff = self.sim.handoff
            path, context = str(handoff.kubeconfig_path), None
            if handoff.profile_overlay:   # the scenario's expectations (seconds-sized budgets) under the user's
                self.profile = load_profile(self.options.profile, overlays=[
                    (f"scenario:{handoff.scenario_name}", handoff.profile_overlay)])
        cluster = Cluster.connect(path, context)
        version = cluster.version()
        self.server_version = str(version.get("gitVersion") or f"{version.get('major')}.{version.get('minor')}")
        self.sigterm.install()
        self._ensure_namespace(cluster)
        return cluster

    def _ensure_namespace(self, cluster: Cluster) -> None:
        if cluster.get_or_none("namespaces", self.namespace) is not None:
            return
        cluster.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": self.namespace, "labels": {MANAGED_BY[0]: MANAGED_BY[1], RUN_LABEL: self.run_id}}})
        self._namespace_created = True

    def discover_inventory(self) -> Inventory:
        with self._lock:
            if self._inventory is None:
                with self.progress("inventory") as bar:
                    bar.update(note="starting the simulated cluster" if self.options.sim else "connecting")
                    cluster = self.connect()
                    if self.options.sim is not None:
                        # A simulated cluster has just booted: let its device plugins finish advertising GPUs/EFA
                        # so the inventory is not a snapshot of the first second.
                        bar.update(note="waiting for the device plugins to advertise GPUs and EFA")
                        settled(cluster, "nodes", quiet_s=1.0, max_s=15.0)
                    bar.update(note="listing nodes")
                    inventory = discover(self.connect(), self.profile, selector=self.options.nodes,
                                         sample=self.options.sample)
                    bar.update(note=f"{len(inventory.all_nodes)} nodes, {inventory.total_gpu_nodes} GPU, "
                                    f"{inventory.total_efa_nodes} EFA")
                    self._inventory = inventory
            return self._inventory

    def check_connection(self) -> None:
        """Connect, read /version and list nodes once, then let go (the xdist controller's preflight: the
        workers connect for themselves). Raises the same KubeconfigError/ClusterError a connection would."""
        cluster = Cluster.connect(self.options.kubeconfig, self.options.context)
        try:
            cluster.version()
            cluster.items("nodes")
        finally:
            cluster.close()

    # -- probes ----------------------------------------------------------------------------------
    def probe_context(self) -> ProbeContext:
        return ProbeContext(namespace=self.namespace, run_id=self.run_id, cuda_image=self.options.cuda_image,
                            timeout_s=self.options.timeout_s, gpu_tolerations=self.profile.gpu_tolerations(),
                            unschedulable_grace_s=self.profile.unschedulable_grace_s,
                            keep=self.options.keep)

    def run_probe(self, spec: ProbeSpec) -> ProbeResult:
        with self._lock:
            self._probe_seq += 1
            key = f"probe-{self._probe_seq}-{spec.name}"
        runner = FleetRunner(self.connect(), self.probe_context(), progress=self.progress)
        node = spec.node or "any"
        return runner.run(key, {node: spec})[node]

    def run_fleet(self, key: str, specs: dict[str, ProbeSpec]) -> dict[str, ProbeResult]:
        """Cached per key for the session, so per-node tests share one fleet."""
        with self._lock:
            if key not in self._fleets:
                runner = FleetRunner(self.connect(), self.probe_context(), progress=self.progress)
                self._fleets[key] = runner.run(key, specs)
            return self._fleets[key]

    # -- the end ---------------------------------------------------------------------------------
    def teardown(self) -> cleanup.TeardownReport | None:
        """Delete what this run created (unless --gpucluster-keep), verify, stop the simulated cluster.
        Idempotent: the second call returns the first call's report."""
        if self._torn_down:
            return self.teardown_report
        self._torn_down = True
        try:
            if self._cluster is not None and not self.options.keep and self.replay is None:
                self.teardown_report = cleanup.teardown_run(
                    self._cluster, self.run_id, self.namespace, delete_namespace=self._namespace_created,
                    verify_timeout_s=5.0 if retry.zero_waits() else 60.0, progress=self.progress)
            return self.teardown_report
        finally:
            self.sigterm.uninstall()
            if self._cluster is not None:
                self._cluster.close()
            try:
                if self.sim is not None:   # SimStopError: a controller failed while the run used the cluster
                    sim, self.sim = self.sim, None
                    sim.stop()
            finally:
                if self._workdir is not None and not self.options.keep:
                    shutil.rmtree(self._workdir, ignore_errors=True)


def start_sim(scenario: str, workdir: Path) -> SimProcess:
    """Start the simulated cluster as a child process and read its hand-off folder (the plugin's only contact
    with sim/: a command line out, files back)."""
    missing = missing_sim_module()
    if missing is not None:
        raise pytest.UsageError(sim_extra_message("--sim", missing))
    try:
        return sim_process.start(scenario, workdir)
    except (sim_process.SimStartError, HandoffError) as exc:   # unknown scenario, file:line: key, ...
        raise errors.ClusterError(f"--sim {scenario}: cannot start the simulated cluster: {exc}") from exc


SESSION_KEY = pytest.StashKey[Session]()
