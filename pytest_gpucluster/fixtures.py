"""The fixtures suites use (cluster, inventory, gpu_profile, run_probe, run_fleet) and node parametrization."""
from __future__ import annotations

import warnings
from typing import Callable, Mapping

import pytest

from .kube import errors, kubeconfig
from .kube.client import Cluster
from .kube.discovery import Inventory, TransitionWatch
from .kube.objects import NodeInfo
from .kube.plugins import Plugins, find_plugins
from .kube.probes import ProbeContext, ProbeResult, ProbeSpec
from .profile import Profile
from .session import SESSION_KEY, Session

NODE_PARAMS: dict[str, tuple[str, str]] = {
    # fixture name -> (Inventory attribute, words for the skip reason)
    "gpu_node": ("gpu_nodes", "GPU nodes"),
    "efa_node": ("efa_nodes", "EFA nodes"),
    "cpu_node": ("cpu_nodes", "CPU-only nodes"),
}


def _session(config: pytest.Config) -> Session:
    run = config.stash.get(SESSION_KEY, None)
    if run is None:
        raise pytest.UsageError("pytest-gpucluster fixtures need the gpucluster plugin (is it disabled with -p no:?)")
    return run


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize gpu_node / efa_node / cpu_node over the inventory, ids `name/instance-type`."""
    wanted = [name for name in NODE_PARAMS if name in metafunc.fixturenames]
    if not wanted:
        return
    run = _session(metafunc.config)
    try:
        inventory = run.discover_inventory()
    except (kubeconfig.KubeconfigError, errors.ClusterError) as exc:
        problem: str | None = f"gpucluster: cannot list nodes to parametrize {metafunc.function.__name__}: {exc}"
    else:
        problem = None
    if problem is not None:   # failed outside the except block: no "During handling of..." chain in the output
        pytest.fail(problem, pytrace=False)
    for name in wanted:
        attr, words = NODE_PARAMS[name]
        nodes: list[NodeInfo] = getattr(inventory, attr)
        if nodes:
            metafunc.parametrize(name, [pytest.param(n, marks=pytest.mark.skip(reason=in_transition(n.id, n.transition)))
                                        if n.transition else n for n in nodes], ids=[n.id for n in nodes])
        else:
            scope = f" matching {inventory.selector!r}" if inventory.selector else ""
            reason = f"no {words}{scope} in the cluster ({len(inventory.all_nodes)} nodes discovered)"
            bare = [n.id for n in inventory.gpu_nodes if n.efa_not_needed]
            if name == "efa_node" and bare:
                reason += (f"; {', '.join(bare[:4])}{' ...' if len(bare) > 4 else ''} have no EFA attached and the "
                           "profile does not require it for their type (efa_required)")
            metafunc.parametrize(name, [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
                                 ids=[f"no-{name.replace('_node', '')}-nodes"])


def in_transition(node_id: str, why: str) -> str:
    """The skip reason of a check on a node in transition (kube/objects.transition_of): not shown, never failed."""
    return (f"{node_id} is in transition ({why}): its checks are not shown; run again once it is Ready, uncordoned "
            "and initialised, or once it is replaced")


def nodes_of(request: pytest.FixtureRequest) -> list[NodeInfo]:
    """The nodes a test is about: its NodeInfo parameters and the members of group parameters (`.nodes`)."""
    params = getattr(getattr(request.node, "callspec", None), "params", {}) or {}
    out: list[NodeInfo] = []
    for value in params.values():
        members = value.nodes if isinstance(getattr(value, "nodes", None), tuple) else (value,)
        out.extend(m for m in members if isinstance(m, NodeInfo))
    return out


@pytest.fixture(autouse=True)
def _nodes_in_transition(request: pytest.FixtureRequest) -> None:
    """A check on a node that went into transition during the run (cordoned, disrupted, NotReady) is not shown with
    the reason, never failed. Runs after the module's probe fleets (function scope comes last), so what the fleets
    met on that node is judged as the node's transition."""
    nodes = nodes_of(request)
    if not nodes:
        return
    watch: TransitionWatch = request.getfixturevalue("node_transitions")
    moving = watch.of([n.name for n in nodes])
    if moving:
        pytest.skip("; ".join(in_transition(n.id, moving[n.name]) for n in nodes if n.name in moving))


@pytest.fixture(scope="session")
def node_transitions(cluster: Cluster, inventory: Inventory) -> TransitionWatch:
    """Which nodes are in transition now (one node list per second at most), written onto the inventory."""
    return TransitionWatch(cluster, inventory)


@pytest.fixture(scope="session")
def gpucluster_session(pytestconfig: pytest.Config) -> Session:
    """The per-run state (run id, namespace, options, profile)."""
    return _session(pytestconfig)


@pytest.fixture(scope="session")
def gpucluster_run(gpucluster_session: Session) -> Session:
    """The former name of `gpucluster_session`, kept one release for sites' own suites that request it."""
    warnings.warn(pytest.PytestDeprecationWarning(
        "the fixture gpucluster_run is now gpucluster_session (same object); gpucluster_run goes in the next release"))
    return gpucluster_session


@pytest.fixture(scope="session")
def cluster(gpucluster_session: Session) -> Cluster:
    """The connected cluster (starts the simulated one with --sim). Fails fast with the connection error."""
    try:
        return gpucluster_session.connect()
    except (kubeconfig.KubeconfigError, errors.ClusterError) as exc:
        problem = f"gpucluster: {exc}"
    pytest.fail(problem, pytrace=False)   # outside the except block: no exception chain in the output


@pytest.fixture(scope="session")
def inventory(gpucluster_session: Session, cluster: Cluster) -> Inventory:
    """GPU, EFA and CPU-only nodes (after --gpucluster-nodes / --gpucluster-sample)."""
    return gpucluster_session.discover_inventory()


@pytest.fixture(scope="session")
def device_plugins(cluster: Cluster, inventory: Inventory) -> Plugins:
    """The device-plugin DaemonSets and their pods, read once per session after they settled (up to 30 s for pods
    still starting; kube/plugins.py), shared by every suite that asks "is this node's plugin healthy"."""
    return find_plugins(cluster, [n for n in inventory.all_nodes if n.is_gpu])


@pytest.fixture(scope="session")
def gpu_profile(gpucluster_session: Session) -> Profile:
    """The effective acceptance profile; `.for_instance(itype)` is None for unknown instance types."""
    return gpucluster_session.profile


@pytest.fixture(scope="session")
def probe_context(gpucluster_session: Session, cluster: Cluster) -> ProbeContext:
    """Where probes go and how they are labelled (namespace, run id, default image, timeout, tolerations)."""
    return gpucluster_session.probe_context()


@pytest.fixture
def run_probe(gpucluster_session: Session, cluster: Cluster) -> Callable[[ProbeSpec], ProbeResult]:
    """Factory: run_probe(ProbeSpec(...)) -> ProbeResult, after the pod finished (or its deadline passed)."""
    return gpucluster_session.run_probe


@pytest.fixture(scope="session")
def run_fleet(gpucluster_session: Session,
              cluster: Cluster) -> Callable[[str, Mapping[str, ProbeSpec]], dict[str, ProbeResult]]:
    """Factory: run_fleet(key, {node: ProbeSpec}) -> {node: ProbeResult}; cached per key for the session."""
    def fleet(key: str, specs: Mapping[str, ProbeSpec]) -> dict[str, ProbeResult]:
        return gpucluster_session.run_fleet(key, dict(specs))
    return fleet
