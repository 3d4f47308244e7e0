"""GPU visibility (marker gpu): nvidia-smi in a pod on every GPU node, GPU isolation, and a CUDA smoke check."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pytest

from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory, NodeInfo
from pytest_gpucluster.kube.probes import ProbeResult, ProbeSpec
from pytest_gpucluster.parsers import NvidiaSmiResult, ParseError, parse_nvidia_smi
from pytest_gpucluster.profile import Profile

pytestmark = pytest.mark.gpu

GPU = "nvidia.com/gpu"
QUERY_FIELDS = ("index", "name", "uuid", "pci.bus_id", "memory.total", "driver_version", "mig.mode.current",
                "ecc.errors.uncorrected.volatile.total")
TABLE_MARK = "---- gpucluster: nvidia-smi table ----"
# One pod per node: the CSV facts, then the table for the report; the exit code is the query's.
SMI_SCRIPT = (f"nvidia-smi --query-gpu={','.join(QUERY_FIELDS)} --format=csv; rc=$?; "
              f"echo '{TABLE_MARK}'; nvidia-smi; exit $rc")
ISOLATION_SCRIPT = ('echo "NVIDIA_VISIBLE_DEVICES=${NVIDIA_VISIBLE_DEVICES-<unset>}"; '
                    "nvidia-smi -L; echo \"nvidia-smi exit $?\"")
SMI_FLEET_KEY = "gpu-visibility/nvidia-smi"   # benchmarks/fleet_scale.py times this fleet
SMOKE_IMAGE_ENV = "GPUCLUSTER_CUDA_SMOKE_IMAGE"
SMOKE_SCRIPT = """
import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
n = torch.cuda.device_count()
props = torch.cuda.get_device_properties(0)
torch.cuda.synchronize()
print(f"CUDA-SMOKE ok devices={n} name={props.name} memory_mib={props.total_memory // (1024 * 1024)} "
      f"capability={props.major}.{props.minor} torch={torch.__version__}")
"""
# Tolerated on top of the profile's GPU taints so that visibility is judged even where taints are misconfigured
# (test_taints judges those); node-lifecycle taints are never tolerated.
LIFECYCLE_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/", "karpenter.sh/disrupted",
                            "ToBeDeletedByClusterAutoscaler", "DeletionCandidateOfClusterAutoscaler")

Fleet = Callable[[str, Mapping[str, ProbeSpec]], dict[str, ProbeResult]]


def node_tolerations(node: NodeInfo) -> list[dict[str, Any]]:
    out = []
    for taint in node.taints:
        if str(taint.get("key", "")).startswith(LIFECYCLE_TAINT_PREFIXES):
            continue
        tol = {"key": taint["key"], "operator": "Exists"}
        if taint.get("effect"):
            tol["effect"] = taint["effect"]
        out.append(tol)
    return out


def unstable_plugin_nodes(cluster: Cluster) -> set[str]:
    """Nodes whose NVIDIA device-plugin pod is not Ready or restarted: their GPUs come and go, and a probe
    pod asking for them could stay Pending until its deadline."""
    out = set()
    for ds in cluster.items("daemonsets.apps"):
        name = ds["metadata"]["name"]
        if "nvidia-device-plugin" not in name or "mps" in name:
            continue
        selector = ",".join(f"{k}={v}" for k, v in sorted(ds["spec"]["selector"].get("matchLabels", {}).items()))
        for pod in cluster.items("pods", ds["metadata"]["namespace"], label_selector=selector or None):
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])
            if not ready or any(cs.get("restartCount") for cs in statuses):
                out.add(str(pod.get("spec", {}).get("nodeName")))
    return out


def gpus_to_request(node: NodeInfo, cluster: Cluster, unstable: set[str] | None = None) -> int:
    """All the GPUs the node advertises now (requesting more than allocatable would never schedule);
    0 when its device plugin is unstable."""
    if unstable is not None and node.name in unstable:
        return 0
    alloc = (cluster.get("nodes", node.name).get("status") or {}).get("allocatable") or {}
    try:
        return int(str(alloc.get(GPU, "0")))
    except ValueError:
        return 0


def split_output(logs: str) -> tuple[str, str]:
    """(query CSV, table) of the nvidia-smi probe's log."""
    query, _, table = logs.partition(TABLE_MARK)
    return query.strip("\n"), table.strip("\n")


def parse_or_none(text: str) -> NvidiaSmiResult | None:
    try:
        return parse_nvidia_smi(text) if text.strip() else None
    except ParseError:
        return None


@dataclass
class SmiFleet:
    """The nvidia-smi fleet's results and how many GPUs each node's pod requested."""

    results: dict[str, ProbeResult]
    requested: dict[str, int]


@pytest.fixture(scope="module")
def smi_fleet(inventory: Inventory, cluster: Cluster, run_fleet: Fleet) -> SmiFleet:
    """ONE fleet: on every GPU node with allocatable GPUs, a pod taking all of them runs nvidia-smi."""
    specs = {}
    unstable = unstable_plugin_nodes(cluster)
    for node in inventory.gpu_nodes:
        count = gpus_to_request(node, cluster, unstable)
        if count > 0:
            specs[node.name] = ProbeSpec(name="nvidia-smi", command=["sh", "-c", SMI_SCRIPT], node=node.name,
                                         gpus=count, tolerations=node_tolerations(node))
    results = run_fleet(SMI_FLEET_KEY, specs)
    return SmiFleet(results, {name: spec.gpus for name, spec in specs.items()})


def no_gpus_to_probe(node: NodeInfo, *, judged_here: bool) -> None:
    """The node advertises no GPU, so no probe pod could take one. The count check fails on it; the checks that
    need a GPU in a pod skip (they cannot judge) and point at it."""
    text = (f"no stable {GPU} allocatable on {node.id}: no probe pod can get a GPU there; the device plugin has "
            "not registered the GPUs or is restarting (see test_device_plugins.py::test_nvidia_device_plugin_runs_on "
            "for this node)")
    if judged_here:
        pytest.fail(f"GPU count mismatch on {node.id}: expected the profile's GPUs allocatable, observed {text}.",
                    pytrace=False)
    pytest.skip(f"cannot judge: {text}; judged by test_nvidia_smi_sees_every_gpu")


def smi_of(node: NodeInfo, fleet: SmiFleet, evidence: Any, *, judged_here: bool
           ) -> tuple[ProbeResult, NvidiaSmiResult | None]:
    """The node's probe result and parsed query (no GPU allocatable: see no_gpus_to_probe)."""
    result = fleet.results.get(node.name)
    if result is None:
        no_gpus_to_probe(node, judged_here=judged_here)
        raise AssertionError("unreachable")   # no_gpus_to_probe always raises
    query, table = split_output(result.logs)
    evidence.attach(f"nvidia-smi on {node.name}", table or result.logs or "(no output)", kind="nvidia-smi")
    if query and table:
        evidence.attach(f"nvidia-smi --query-gpu on {node.name}", query, kind="nvidia-smi")
    evidence.fact("probe", result.describe())
    return result, parse_or_none(query)


def test_nvidia_smi_sees_every_gpu(gpu_node: NodeInfo, smi_fleet: SmiFleet, gpu_profile: Profile,
                                   cluster: Cluster, evidence: Any) -> None:
    """In a pod taking all the node's GPUs: driver reachable; GPU count == allocatable == profile."""
    result, smi = smi_of(gpu_node, smi_fleet, evidence, judged_here=True)
    error = smi.error if smi is not None else None
    if error is None and not result.ok:
        table = parse_or_none(split_output(result.logs)[1])
        error = table.error if table is not None else None
    if error is not None:
        pytest.fail(f"NVIDIA driver unreachable on {gpu_node.id}: expected nvidia-smi to list the GPUs, observed "
                    f"`{error.message}` (exit code {result.exit_code}). On the node: `lsmod | grep nvidia`, "
                    "`dmesg | grep -iE 'nvrm|xid'`; a kernel update without a matching driver is the usual cause.",
                    pytrace=False)
    assert result.ok and smi is not None, (
        f"nvidia-smi did not run on {gpu_node.id}: expected exit code 0 with CSV output; observed "
        f"{result.describe()}; log starts {result.logs[:200]!r}. Check the image ({result.image}) and the pod's events.")
    inst = gpu_profile.for_instance(gpu_node.instance_type)
    expected = inst.gpus if inst is not None and inst.gpus else None
    requested = smi_fleet.requested[gpu_node.name]
    seen = len(smi.gpus)
    evidence.measure("GPUs seen by nvidia-smi", seen, "GPUs", threshold=expected if expected is not None else requested,
                     op="==", source=f"profile {gpu_node.instance_type} gpus" if expected is not None
                     else f"{GPU} allocatable (instance type not in the profile)")
    evidence.fact("driver version", smi.driver_version)
    problems = []
    if seen != requested:
        problems.append(f"allocatable {requested}, nvidia-smi saw {seen}")
    if expected is not None and expected != requested:
        problems.append(f"profile says {expected}, allocatable {requested}")
    if expected is not None and expected != seen and not problems:
        problems.append(f"profile says {expected}, nvidia-smi saw {seen}")
    if not problems:
        return
    buses = sorted(g.bus_id or "?" for g in smi.gpus)
    pytest.fail(f"GPU count mismatch on {gpu_node.id}: expected {expected if expected is not None else requested} "
                f"(profile), {'; '.join(problems)}; bus ids seen: {', '.join(buses) or 'none'}. Check "
                "`dmesg | grep -i xid` on the node (a GPU fallen off the bus) and the device plugin's health checks.",
                pytrace=False)


def test_gpu_facts_match_profile(gpu_node: NodeInfo, smi_fleet: SmiFleet, gpu_profile: Profile,
                                 cluster: Cluster, evidence: Any) -> None:
    """Per GPU: product and memory as the profile says, no uncorrected ECC errors, MIG mode as the node's labels say."""
    result, smi = smi_of(gpu_node, smi_fleet, evidence, judged_here=False)
    if smi is None or smi.error is not None or not smi.gpus:
        why = smi.error.message if smi is not None and smi.error is not None else result.describe()
        pytest.skip(f"cannot judge GPU facts on {gpu_node.id}: nvidia-smi gave none ({why}); judged by "
                    "test_nvidia_smi_sees_every_gpu")
    inst = gpu_profile.for_instance(gpu_node.instance_type)
    labels = cluster.get("nodes", gpu_node.name)["metadata"].get("labels") or {}
    mig_expected = "Enabled" if "-MIG-" in labels.get("nvidia.com/gpu.product", "") or any(
        k.startswith("nvidia.com/mig-") for k in gpu_node.allocatable) else "Disabled"
    problems = []
    for gpu in smi.gpus:
        where = f"GPU {gpu.index} ({gpu.bus_id})"
        if inst is not None and inst.gpu_product and not gpu.matches_product(inst.gpu_product):
            problems.append(f"{where} is {gpu.name!r}, profile expects {inst.gpu_product!r}")
        if gpu.memory_total_mib is not None and inst is not None and inst.gpu_memory_mib:
            evidence.measure(f"GPU {gpu.index} memory.total", gpu.memory_total_mib, "MiB",
                             threshold=inst.gpu_memory_mib * (1 - inst.gpu_memory_tolerance_pct / 100), op=">=",
                             source=f"profile {inst.instance_type} gpu_memory_mib {inst.gpu_memory_mib} "
                                    f"-{inst.gpu_memory_tolerance_pct}%")
            if not inst.gpu_memory_ok(gpu.memory_total_mib):
                problems.append(f"{where} has {gpu.memory_total_mib} MiB, profile expects {inst.gpu_memory_mib} MiB "
                                f"+-{inst.gpu_memory_tolerance_pct}%")
        if gpu.ecc_errors_uncorrected:
            problems.append(f"{where} reports {gpu.ecc_errors_uncorrected} uncorrected volatile ECC errors")
        if gpu.mig_mode is not None and gpu.mig_mode != mig_expected:
            problems.append(f"{where} MIG mode {gpu.mig_mode}, node labels imply {mig_expected}")
    evidence.measure("uncorrected ECC errors", sum(g.ecc_errors_uncorrected or 0 for g in smi.gpus), "errors",
                     threshold=0, op="==", source="any uncorrected error fails")
    assert not problems, (
        f"GPU facts wrong on {gpu_node.id}: " + "; ".join(problems)
        + ". Wrong product/memory: the node is not the instance type it claims or the profile is wrong; ECC "
        "errors: drain the node and run `nvidia-smi -q -d ECC,PAGE_RETIREMENT`; MIG: check `nvidia.com/mig.config`.")


# -- isolation -----------------------------------------------------------------------------------------
def listed_gpus(logs: str) -> tuple[list[str], str | None, str]:
    """(GPU lines of `nvidia-smi -L`, NVIDIA_VISIBLE_DEVICES as the pod saw it, nvidia-smi's own output)."""
    env, own = None, []
    for line in logs.splitlines():
        if line.startswith("NVIDIA_VISIBLE_DEVICES="):
            env = line.split("=", 1)[1]
        elif not line.startswith("nvidia-smi exit "):
            own.append(line)
    text = "\n".join(own)
    parsed = parse_or_none(text)
    gpus = [f"GPU {g.index}: {g.name} ({g.uuid})" for g in parsed.gpus] if parsed is not None else []
    return gpus, env, text


def isolation_fleet(inventory: Inventory, cluster: Cluster, run_fleet: Fleet, gpus: int) -> dict[str, ProbeResult]:
    unstable = unstable_plugin_nodes(cluster) if gpus else set()
    specs = {n.name: ProbeSpec(name=f"isolation-{gpus}gpu", command=["sh", "-c", ISOLATION_SCRIPT], node=n.name,
                               gpus=gpus, tolerations=node_tolerations(n))
             for n in inventory.gpu_nodes if gpus == 0 or gpus_to_request(n, cluster, unstable) >= gpus}
    return run_fleet(f"gpu-visibility/isolation-{gpus}", specs)


@pytest.fixture(scope="module")
def one_gpu_fleet(inventory: Inventory, cluster: Cluster, run_fleet: Fleet) -> dict[str, ProbeResult]:
    return isolation_fleet(inventory, cluster, run_fleet, 1)


@pytest.fixture(scope="module")
def no_gpu_fleet(inventory: Inventory, cluster: Cluster, run_fleet: Fleet) -> dict[str, ProbeResult]:
    return isolation_fleet(inventory, cluster, run_fleet, 0)


def test_pod_with_one_gpu_sees_exactly_one(gpu_node: NodeInfo, one_gpu_fleet: dict[str, ProbeResult],
                                           evidence: Any) -> None:
    """A pod requesting 1 GPU sees exactly 1 (the device plugin hands out one device, the runtime exposes one)."""
    result = one_gpu_fleet.get(gpu_node.name)
    if result is None:
        no_gpus_to_probe(gpu_node, judged_here=False)
        return
    gpus, env, text = listed_gpus(result.logs)
    parsed = parse_or_none(text)
    if parsed is not None and parsed.error is not None and parsed.error.category == "driver_unreachable":
        pytest.skip(f"cannot judge isolation on {gpu_node.id}: {parsed.error.message}; judged by "
                    "test_nvidia_smi_sees_every_gpu")
    evidence.attach(f"nvidia-smi -L with 1 GPU on {gpu_node.name}", result.logs or "(no output)", kind="nvidia-smi")
    evidence.fact("NVIDIA_VISIBLE_DEVICES", env)
    evidence.measure("GPUs visible with 1 requested", len(gpus), "GPUs", threshold=1, op="==",
                     source="a pod sees exactly what it requested")
    assert result.ok and len(gpus) == 1, (
        f"GPU isolation broken on {gpu_node.id}: a pod requesting 1 {GPU} should see exactly 1 GPU; observed "
        f"{len(gpus)} ({'; '.join(gpus) or text.strip()[:160] or result.describe()}), NVIDIA_VISIBLE_DEVICES={env}. "
        "More than 1: the device plugin's deviceListStrategy/the container runtime expose all GPUs; none: the "
        "driver or the allocated device is broken (`dmesg | grep -i xid`).")


def test_pod_without_gpu_sees_none(gpu_node: NodeInfo, no_gpu_fleet: dict[str, ProbeResult], evidence: Any) -> None:
    """A pod requesting no GPU sees none: no NVIDIA_VISIBLE_DEVICES leakage from the image or the runtime."""
    result = no_gpu_fleet[gpu_node.name]
    gpus, env, text = listed_gpus(result.logs)
    evidence.attach(f"nvidia-smi -L without GPUs on {gpu_node.name}", result.logs or "(no output)", kind="nvidia-smi")
    evidence.fact("NVIDIA_VISIBLE_DEVICES", env)
    evidence.measure("GPUs visible with none requested", len(gpus), "GPUs", threshold=0, op="==",
                     source="a pod without a GPU request must not see any GPU")
    assert result.phase == "Succeeded", (
        f"The no-GPU probe did not run on {gpu_node.id}: expected it to finish; observed {result.describe()}.")
    assert not gpus, (
        f"GPU leak on {gpu_node.id}: a pod requesting no {GPU} should see no GPU; observed {len(gpus)} "
        f"({'; '.join(gpus)}), NVIDIA_VISIBLE_DEVICES={env}. The image sets NVIDIA_VISIBLE_DEVICES=all and the "
        "nvidia runtime honours it: set the device plugin's `deviceListStrategy: volume-mounts` and "
        "`accept-nvidia-visible-devices-envvar-when-unprivileged = false` in the container toolkit config.")


# -- CUDA smoke ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_fleet(inventory: Inventory, cluster: Cluster, run_fleet: Fleet,
                pytestconfig: pytest.Config) -> dict[str, ProbeResult]:
    image = (pytestconfig.getoption("gpucluster_smoke_image", default=None) or pytestconfig.getini("gpucluster_smoke_image")
             or os.environ.get(SMOKE_IMAGE_ENV) or None)
    unstable = unstable_plugin_nodes(cluster)
    specs = {n.name: ProbeSpec(name="cuda-smoke", command=["python3", "-c", SMOKE_SCRIPT], node=n.name, gpus=1,
                               image=image, tolerations=node_tolerations(n))
             for n in inventory.gpu_nodes if gpus_to_request(n, cluster, unstable) >= 1}
    return run_fleet("gpu-visibility/cuda-smoke", specs)


def test_cuda_smoke(gpu_node: NodeInfo, smoke_fleet: dict[str, ProbeResult], evidence: Any) -> None:
    """Beyond nvidia-smi: a CUDA context through PyTorch on 1 GPU (image: $GPUCLUSTER_CUDA_SMOKE_IMAGE)."""
    result = smoke_fleet.get(gpu_node.name)
    if result is None:
        no_gpus_to_probe(gpu_node, judged_here=False)
        return
    evidence.attach(f"CUDA smoke on {gpu_node.name}", result.logs or "(no output)", kind="log")
    missing = ("No module named 'torch'" in result.logs or "python3: not found" in result.logs
               or result.exit_code == 127 or result.reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"))
    if missing:
        pytest.skip(f"CUDA smoke check needs an image with python3 and PyTorch; {result.image} has none "
                    f"({result.describe()}). Opt in with --gpucluster-smoke-image=nvcr.io/nvidia/pytorch:25.01-py3")
    assert result.ok and "CUDA-SMOKE ok" in result.logs, (
        f"CUDA unusable on {gpu_node.id}: expected `CUDA-SMOKE ok` from PyTorch on 1 GPU; observed "
        f"{result.describe()}; last output {result.logs.strip()[-300:]!r}. nvidia-smi can work while CUDA cannot: "
        "check the driver/CUDA compatibility (`nvidia-smi` CUDA Version >= the image's) and `dmesg | grep -i xid`.")
