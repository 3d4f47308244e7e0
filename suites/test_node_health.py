"""GPU node health beyond nvidia-smi (marker health): DCGM diagnostics, kernel-log Xids, CUDA on every GPU, NVLink and
fabric manager, ECC and memory-error history, PCIe links and clocks under load, topology and fleet uniformity; one test
per check per node.

Three fleets (one pod per GPU node each; what they run: pytest_gpucluster/gather/node_health.py): a pod with all the
node's GPUs starts a CUDA load (dcgmproftester from NVIDIA's DCGM image; PyTorch with `health.load: pytorch`), waits
until it runs on every GPU, and reads nvidia-smi's -q health sections, nvlink and topo under it (the cheap checks
share it); NVIDIA's DCGM image runs `dcgmi diag -r <health.dcgm_level> -j`; a PRIVILEGED pod reads the kernel log
through /dev/kmsg (needs a namespace whose Pod Security admission allows `privileged`; where the API refuses it, the
Xid check is not shown with the API's reason: docs/node-health.md). A node under the MIG mixed strategy advertises
no whole GPU: its GPU checks are not shown. Judges: checks/node_health.py, checks/dcgm.py, checks/kernel_log.py,
checks/fleet.py.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_gpucluster.checks import dcgm as dcgm_judge
from pytest_gpucluster.checks import fleet
from pytest_gpucluster.checks import kernel_log
from pytest_gpucluster.checks import node_health as judge
from pytest_gpucluster.checks.probe_output import not_run, split_sections
from pytest_gpucluster.kube import errors
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory
from pytest_gpucluster.kube.objects import NodeInfo
from pytest_gpucluster.gather.node_health import (DCGM_IMAGE, DCGM_RUNTIME_S, HOSTLOG_SCRIPT, LOAD_WAIT_S,
                                                  health_script, health_spec, loads)
from pytest_gpucluster.kube.plugins import Plugins, gpus_to_request
from pytest_gpucluster.kube.probes import ProbeResult, ProbeSpec
from pytest_gpucluster.parsers import ParseError, SmiLog, parse_smi_log
from pytest_gpucluster.parsers.dcgm_diag import parse_dcgm_diag
from pytest_gpucluster.parsers.nvlink import parse_nvlink
from pytest_gpucluster.parsers.topo import parse_topo
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.session import Session
from pytest_gpucluster.suite import enforce

pytestmark = pytest.mark.health

Fleet = Callable[[str, Mapping[str, ProbeSpec]], dict[str, ProbeResult]]


# -- gathering --------------------------------------------------------------------------------------------
def _inst(gpu_profile: Profile, node: NodeInfo) -> dict:
    inst = gpu_profile.for_instance(node.instance_type)
    return dict(inst.health) if inst else {}


@pytest.fixture(scope="module")
def gpus_held(inventory: Inventory, cluster: Cluster, device_plugins: Plugins) -> dict[str, int]:
    """All the GPUs each node advertises now (0 where its device plugin is not healthy)."""
    return gpus_to_request(cluster, device_plugins, [n.name for n in inventory.gpu_nodes])


@pytest.fixture(scope="module")
def health_fleet(inventory: Inventory, gpus_held: dict[str, int], run_fleet: Fleet, gpu_profile: Profile,
                 gpucluster_session: Session) -> dict[str, ProbeResult]:
    specs = {}
    for n in inventory.gpu_nodes:
        if gpus_held[n.name] <= 0:
            continue
        h = _inst(gpu_profile, n)
        wait_s = int(h.get("load_start_s") or LOAD_WAIT_S)
        load = loads(wait_s)[h.get("load") or "dcgmproftester"]
        smoke = gpucluster_session.options.smoke_image
        image = smoke if smoke and h.get("load") == "pytorch" else load.image
        specs[n.name] = health_spec("node-health", n, health_script(load, wait_s), gpus=gpus_held[n.name], image=image,
                                    env=dict(load.env), timeout_s=gpucluster_session.options.timeout_s + wait_s)
    return run_fleet("node-health/health", specs)


@pytest.fixture(scope="module")
def dcgm_fleet(inventory: Inventory, gpus_held: dict[str, int], run_fleet: Fleet, gpu_profile: Profile,
               gpucluster_session: Session) -> dict[str, tuple[ProbeResult, int]]:
    specs, levels = {}, {}
    for n in inventory.gpu_nodes:
        levels[n.name] = level = int(_inst(gpu_profile, n).get("dcgm_level") or 2)
        if gpus_held[n.name] > 0:
            specs[n.name] = health_spec("dcgm-diag", n, f"nv-hostengine >/dev/null 2>&1; dcgmi diag -r {level} -j",
                                        gpus=gpus_held[n.name], image=DCGM_IMAGE,
                                        timeout_s=gpucluster_session.options.timeout_s + DCGM_RUNTIME_S[level])
    return {k: (v, levels[k]) for k, v in run_fleet("node-health/dcgm", specs).items()}


@pytest.fixture(scope="module")
def hostlog_fleet(inventory: Inventory, run_fleet: Fleet) -> dict[str, ProbeResult] | str:
    """Kernel log per GPU node, or the API's reason it refused a privileged pod."""
    try:
        return run_fleet("node-health/hostlog", {
            n.name: health_spec("kernel-log", n, HOSTLOG_SCRIPT, privileged=True, host_paths={"/dev/kmsg": "/dev/kmsg"})
            for n in inventory.gpu_nodes})
    except errors.Forbidden as exc:
        return f"the cluster refused a privileged pod reading /dev/kmsg: {exc}"


def _no_probe(node: NodeInfo, what: str, evidence: Any) -> None:
    """Ends the test of a node that got no probe: not shown on a MIG mixed node (no whole GPU to request), failed
    otherwise."""
    if node.mig_devices:
        enforce(judge.mig_mixed(node.id, what, node.mig_devices), evidence)
    enforce(not_run(node.id, what, "no probe: the node has no allocatable GPU from a healthy device plugin "
                          "(see the device plugin suite)", None, "-"), evidence)


def _health(health_fleet: dict[str, ProbeResult], node: NodeInfo, evidence: Any) -> tuple[dict, SmiLog | None]:
    result = health_fleet.get(node.name)
    if result is None:
        _no_probe(node, "node-health", evidence)
    assert result is not None
    sections = split_sections(result.logs)
    evidence.fact("probe pod", result.describe())
    if "smi-q" not in sections:
        evidence.attach(f"node-health probe on {node.name}", result.logs or "(no output)", kind="log")
        enforce(not_run(node.id, "node-health", result.describe(), result.namespace, result.pod), evidence)
    text = sections["smi-q"][0]
    evidence.attach(f"nvidia-smi -q under load on {node.name}", text, kind="nvidia-smi")
    evidence.fact("load wait", sections.get("load-wait", ("not printed", 1))[0])
    try:
        health = parse_smi_log(text)
    except ParseError:
        return sections, None
    evidence.fact("node health (probe checks)", judge.summary_row({   # compact per-node row for the report
        "ecc": judge.ecc_memory(node.id, health), "pcie": judge.pcie(node.id, health, None, None),
        "clocks": judge.clocks(node.id, health)}))
    return sections, health


# -- checks -------------------------------------------------------------------------------------------------
def test_dcgm_diagnostics_pass(gpu_node: NodeInfo, dcgm_fleet: dict, health_fleet: dict, gpus_held: dict,
                               evidence: Any) -> None:
    """`dcgmi diag -r <level> -j` in NVIDIA's DCGM image: every test of the level ran and passed on every GPU."""
    if gpu_node.name not in dcgm_fleet:
        _no_probe(gpu_node, "DCGM", evidence)
    result, level = dcgm_fleet[gpu_node.name]
    evidence.attach(f"dcgmi diag -r {level} -j on {gpu_node.name}", result.logs or "(no output)", kind="log")
    t = result.timings
    duration = t["finished"] - t["started"] if "finished" in t and "started" in t else None
    parsed, problem = None, None
    try:
        parsed = parse_dcgm_diag(result.logs)
    except ParseError as exc:
        problem = f"{exc}; {result.describe()}"
    gpus = None
    if gpu_node.name in health_fleet:
        gpus = judge.gpus_seen((judge.smi_health_of(health_fleet[gpu_node.name].logs) or SmiLog()).gpus)
    enforce(dcgm_judge.dcgm(gpu_node.id, parsed, level, duration, result.exit_code or 0, problem,
                            gpus_held[gpu_node.name], gpus), evidence)


def test_no_xid_errors(gpu_node: NodeInfo, hostlog_fleet: Any, health_fleet: dict, gpu_profile: Profile,
                       evidence: Any) -> None:
    """No Xid in the kernel log that NVIDIA's Xid catalog resolves with a GPU reset, reboot or replacement."""
    window = _inst(gpu_profile, gpu_node).get("xid_window_h")
    health = judge.smi_health_of(health_fleet[gpu_node.name].logs) if gpu_node.name in health_fleet else None
    if isinstance(hostlog_fleet, str):
        enforce(kernel_log.xid(gpu_node.id, None, None, window, health, hostlog_fleet), evidence)
    result = hostlog_fleet[gpu_node.name]
    verdict, log = kernel_log.from_reader(gpu_node.id, split_sections(result.logs), window, health, not_run(
        gpu_node.id, "kernel-log", result.describe(), result.namespace, result.pod))
    if log is None:
        evidence.attach(f"kernel log reader on {gpu_node.name}", result.logs or "(no output)", kind="log")
    elif log.events:
        evidence.attach(f"Xid lines in the kernel log of {gpu_node.name}", "\n".join(e.line for e in log.events),
                        kind="log")
    enforce(verdict, evidence)


def test_cuda_usable_on_every_gpu(gpu_node: NodeInfo, health_fleet: dict, gpus_held: dict, evidence: Any) -> None:
    """The CUDA load ran on every GPU the pod held (a context and kernels on each), whatever the interconnect."""
    sections, health = _health(health_fleet, gpu_node, evidence)
    cuda, rc = sections.get("cuda", ("", 1))
    evidence.attach(f"CUDA load on {gpu_node.name}", cuda or "(no output)", kind="log")
    enforce(judge.cuda_usable(gpu_node.id, cuda, rc, gpus_held[gpu_node.name], health,
                              health_fleet[gpu_node.name].image), evidence)


def test_nvlink_and_fabric_ready(gpu_node: NodeInfo, health_fleet: dict, gpu_profile: Profile, evidence: Any) -> None:
    """NVSwitch types: every NVLink of every GPU up at speed, fabric state Completed where reported, CUDA starts."""
    sections, health = _health(health_fleet, gpu_node, evidence)
    h = _inst(gpu_profile, gpu_node)
    text, _ = sections.get("nvlink", ("", 1))
    evidence.attach(f"nvidia-smi nvlink -s on {gpu_node.name}", text or "(empty)", kind="log")
    enforce(judge.nvlink_fabric(gpu_node.id, h.get("nvlink_links"), h.get("nvlink_link_gbs"), parse_nvlink(text),
                                health, sections.get("cuda", ("", 1))[0]), evidence)


def test_ecc_and_row_remapping_clean(gpu_node: NodeInfo, health_fleet: dict, evidence: Any) -> None:
    """No uncorrectable ECC error since the last reset, no failed row remap, no replacement flag."""
    _, health = _health(health_fleet, gpu_node, evidence)
    enforce(judge.ecc_memory(gpu_node.id, health), evidence)


def test_memory_errors_pending_or_historic(gpu_node: NodeInfo, health_fleet: dict, evidence: Any) -> None:
    """No lifetime uncorrectable ECC count, no pending row remap or page retirement (history: advisory tier)."""
    _, health = _health(health_fleet, gpu_node, evidence)
    enforce(judge.memory_history(gpu_node.id, health), evidence)


def test_pcie_links_at_full_speed(gpu_node: NodeInfo, health_fleet: dict, gpu_profile: Profile, evidence: Any) -> None:
    """Every GPU's PCIe link at the profile's width, and generation on the GPUs read under load."""
    _, health = _health(health_fleet, gpu_node, evidence)
    h = _inst(gpu_profile, gpu_node)
    enforce(judge.pcie(gpu_node.id, health, h.get("pcie_gen"), h.get("pcie_width")), evidence)


def test_clocks_not_throttled(gpu_node: NodeInfo, health_fleet: dict, evidence: Any) -> None:
    """Under load: no hardware slowdown, thermal or power-brake clock event on the GPUs read busy."""
    _, health = _health(health_fleet, gpu_node, evidence)
    enforce(judge.clocks(gpu_node.id, health), evidence)


def test_power_limit_as_profiled(gpu_node: NodeInfo, health_fleet: dict, gpu_profile: Profile, evidence: Any) -> None:
    """Every GPU's power limit at the profile's `power_limit_w`, else at the product default."""
    _, health = _health(health_fleet, gpu_node, evidence)
    enforce(judge.power_limit(gpu_node.id, health, _inst(gpu_profile, gpu_node).get("power_limit_w")), evidence)


def test_persistence_mode_enabled(gpu_node: NodeInfo, health_fleet: dict, evidence: Any) -> None:
    """Persistence mode Enabled on every GPU (advisory tier: a DCGM warning, not a blocker)."""
    _, health = _health(health_fleet, gpu_node, evidence)
    enforce(judge.persistence_mode(gpu_node.id, health), evidence)


def test_topology_matches_profile(gpu_node: NodeInfo, health_fleet: dict, gpu_profile: Profile, evidence: Any) -> None:
    """`nvidia-smi topo -m`: the profile's GPU count, every GPU pair connected as the profile says (NV18 on p5)."""
    sections, _ = _health(health_fleet, gpu_node, evidence)
    text, _ = sections.get("topo", ("", 1))
    evidence.attach(f"nvidia-smi topo -m on {gpu_node.name}", text or "(empty)", kind="log")
    try:
        topo = parse_topo(text)
    except ParseError:
        topo = None
    inst = gpu_profile.for_instance(gpu_node.instance_type)
    enforce(judge.topology(gpu_node.id, topo, _inst(gpu_profile, gpu_node).get("gpu_gpu_link"),
                           inst.gpus if inst else 0), evidence)


@pytest.fixture(scope="module")
def fleet_versions(health_fleet: dict[str, ProbeResult]) -> dict[str, dict[str, str]]:
    """Every probed node's versions, parsed once: each node's uniformity checks compare it with all the others of
    its type (parsing them per check made the module quadratic in the node count)."""
    return {name: fleet.versions_of(judge.smi_health_of(result.logs),
                                    split_sections(result.logs).get("host", ("", 0))[0])
            for name, result in health_fleet.items()}


def _same_type(fleet_versions: dict[str, dict[str, str]], inventory: Inventory,
               node: NodeInfo) -> dict[str, dict[str, str]]:
    return {n.name: fleet_versions[n.name] for n in inventory.gpu_nodes
            if n.instance_type == node.instance_type and n.name in fleet_versions}


def test_fleet_versions_uniform(gpu_node: NodeInfo, fleet_versions: dict, inventory: Inventory, evidence: Any) -> None:
    """Driver, CUDA, kernel and EFA driver the same as on most nodes of the same instance type."""
    if gpu_node.name not in fleet_versions:
        _no_probe(gpu_node, "node-health", evidence)
    enforce(fleet.uniformity(gpu_node.id, gpu_node.name, gpu_node.instance_type,
                             _same_type(fleet_versions, inventory, gpu_node)), evidence)


def test_fleet_vbios_uniform(gpu_node: NodeInfo, fleet_versions: dict, inventory: Inventory, evidence: Any) -> None:
    """VBIOS the same as on most nodes of the same instance type (AWS host firmware: advisory tier)."""
    if gpu_node.name not in fleet_versions:
        _no_probe(gpu_node, "node-health", evidence)
    enforce(fleet.uniformity(gpu_node.id, gpu_node.name, gpu_node.instance_type,
                             _same_type(fleet_versions, inventory, gpu_node), keys=fleet.FIRMWARE_KEYS), evidence)
