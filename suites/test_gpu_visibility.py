"""GPU visibility (marker gpu): nvidia-smi in a pod on every GPU node, GPU isolation, and a CUDA smoke check.

Probe fleets run here; pytest_gpucluster/checks/gpu_visibility.py judges their output."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_gpucluster.checks import gpu_visibility as judge
from pytest_gpucluster.gather.gpu_visibility import (
    ISOLATION_SCRIPT,
    SAMPLE_COMMAND,
    SMI_SCRIPT,
    SMOKE_SCRIPT,
    parse_or_none,
    split_output,
)
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory
from pytest_gpucluster.kube.objects import MIG_RESOURCE_PREFIX, NodeInfo
from pytest_gpucluster.kube.placement import tolerations_for
from pytest_gpucluster.kube.plugins import Plugins
from pytest_gpucluster.kube.plugins import gpus_to_request as plugin_gpus
from pytest_gpucluster.kube.probes import ProbeResult, ProbeSpec
from pytest_gpucluster.options import DEFAULT_SMOKE_SAMPLE_IMAGE
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.session import Session
from pytest_gpucluster.suite import enforce

pytestmark = pytest.mark.gpu

SMI_FLEET_KEY = "gpu-visibility/nvidia-smi"   # benchmarks/fleet_scale.py times this fleet (and SMI_SCRIPT)
Fleet = Callable[[str, Mapping[str, ProbeSpec]], dict[str, ProbeResult]]


# -- gathering: one probe fleet per check, one pod per GPU node ----------------------------------------
@pytest.fixture(scope="module")
def gpus_to_request(inventory: Inventory, cluster: Cluster, device_plugins: Plugins) -> dict[str, int]:
    """Per GPU node, all the GPUs it advertises now; 0 where its device plugin is not healthy."""
    return plugin_gpus(cluster, device_plugins, [n.name for n in inventory.gpu_nodes])


def probe(name: str, node: NodeInfo, gpus: int, command: list[str], image: str | None = None,
          needs_cuda: bool = False) -> ProbeSpec:
    """A probe pinned to the node, tolerating its workload taints (the profile's GPU taints come with the run)."""
    return ProbeSpec(name=name, command=command, node=node.name, gpus=gpus, image=image,
                     tolerations=tolerations_for([node]), needs_cuda=needs_cuda)


@pytest.fixture(scope="module")
def smi_fleet(inventory: Inventory, gpus_to_request: dict[str, int], run_fleet: Fleet) -> dict[str, ProbeResult]:
    """ONE fleet: on every GPU node with allocatable GPUs, a pod taking all of them runs nvidia-smi."""
    return run_fleet(SMI_FLEET_KEY, {n.name: probe("nvidia-smi", n, gpus_to_request[n.name], ["sh", "-c", SMI_SCRIPT])
                                     for n in inventory.gpu_nodes if gpus_to_request[n.name] > 0})


def isolation_fleet(inventory: Inventory, gpus_to_request: dict[str, int], run_fleet: Fleet,
                    gpus: int) -> dict[str, ProbeResult]:
    return run_fleet(f"gpu-visibility/isolation-{gpus}", {
        n.name: probe(f"isolation-{gpus}gpu", n, gpus, ["sh", "-c", ISOLATION_SCRIPT])
        for n in inventory.gpu_nodes if gpus == 0 or gpus_to_request[n.name] >= gpus})


@pytest.fixture(scope="module")
def one_gpu_fleet(inventory: Inventory, gpus_to_request: dict[str, int], run_fleet: Fleet) -> dict[str, ProbeResult]:
    return isolation_fleet(inventory, gpus_to_request, run_fleet, 1)


@pytest.fixture(scope="module")
def no_gpu_fleet(inventory: Inventory, gpus_to_request: dict[str, int], run_fleet: Fleet) -> dict[str, ProbeResult]:
    return isolation_fleet(inventory, gpus_to_request, run_fleet, 0)


@pytest.fixture(scope="module")
def smoke_fleet(inventory: Inventory, gpus_to_request: dict[str, int], run_fleet: Fleet,
                gpucluster_session: Session) -> dict[str, ProbeResult]:
    """NVIDIA's vectorAdd sample on 1 GPU per node; with --gpucluster-smoke-image, a CUDA context through PyTorch."""
    torch = gpucluster_session.options.smoke_image
    command = ["python3", "-c", SMOKE_SCRIPT] if torch else SAMPLE_COMMAND
    return run_fleet("gpu-visibility/cuda-smoke", {
        n.name: probe("cuda-smoke", n, 1, command, torch or DEFAULT_SMOKE_SAMPLE_IMAGE, needs_cuda=True)
        for n in inventory.gpu_nodes if gpus_to_request[n.name] >= 1})


def attach_smi(node: NodeInfo, result: ProbeResult | None, evidence: Any) -> None:
    if result is None:
        return
    query, table = split_output(result.logs)
    evidence.attach(f"nvidia-smi on {node.name}", table or result.logs or "(no output)", kind="nvidia-smi")
    if query and table:
        evidence.attach(f"nvidia-smi --query-gpu on {node.name}", query, kind="nvidia-smi")
    evidence.fact("probe", result.describe())


# -- checks --------------------------------------------------------------------------------------------
def test_nvidia_smi_sees_every_gpu(gpu_node: NodeInfo, smi_fleet: dict[str, ProbeResult], gpu_profile: Profile,
                                   gpus_to_request: dict[str, int], evidence: Any) -> None:
    """In a pod taking all the node's GPUs: driver reachable; GPU count == allocatable == profile."""
    result = smi_fleet.get(gpu_node.name)
    attach_smi(gpu_node, result, evidence)
    enforce(judge.smi_sees_every_gpu(gpu_node.id, result, gpus_to_request[gpu_node.name],
                                           gpu_profile.for_instance(gpu_node.instance_type)), evidence)


def test_gpu_facts_match_profile(gpu_node: NodeInfo, smi_fleet: dict[str, ProbeResult], gpu_profile: Profile,
                                 cluster: Cluster, evidence: Any) -> None:
    """Per GPU: product and memory as the profile says, ECC on where required and no uncorrected ECC errors,
    MIG mode as the node's labels say."""
    result = smi_fleet.get(gpu_node.name)
    attach_smi(gpu_node, result, evidence)
    labels = cluster.get("nodes", gpu_node.name)["metadata"].get("labels") or {}
    mig_resources = any(k.startswith(MIG_RESOURCE_PREFIX) for k in gpu_node.allocatable)
    enforce(judge.gpu_facts(gpu_node.id, result, gpu_profile.for_instance(gpu_node.instance_type), labels,
                                  mig_resources), evidence)


def test_pod_with_one_gpu_sees_exactly_one(gpu_node: NodeInfo, one_gpu_fleet: dict[str, ProbeResult],
                                           evidence: Any) -> None:
    """A pod requesting 1 GPU sees exactly 1 (the device plugin hands out one device, the runtime exposes one)."""
    result = one_gpu_fleet.get(gpu_node.name)
    if result is not None:
        evidence.attach(f"nvidia-smi -L with 1 GPU on {gpu_node.name}", result.logs or "(no output)",
                        kind="nvidia-smi")
    enforce(judge.one_gpu(gpu_node.id, result), evidence)


def test_pod_without_gpu_sees_none(gpu_node: NodeInfo, no_gpu_fleet: dict[str, ProbeResult], evidence: Any) -> None:
    """A pod requesting no GPU sees none and holds no GPU device node: no NVIDIA_VISIBLE_DEVICES leakage from the image
    or the runtime."""
    result = no_gpu_fleet[gpu_node.name]
    evidence.attach(f"nvidia-smi -L and /dev/nvidia* without GPUs on {gpu_node.name}", result.logs or "(no output)",
                    kind="nvidia-smi")
    enforce(judge.no_gpu(gpu_node.id, result), evidence)


def test_cuda_smoke(gpu_node: NodeInfo, smoke_fleet: dict[str, ProbeResult], smi_fleet: dict[str, ProbeResult],
                    gpu_profile: Profile, gpucluster_session: Session, evidence: Any) -> None:
    """Beyond nvidia-smi: a CUDA kernel runs on 1 GPU (NVIDIA's vectorAdd sample; PyTorch with
    --gpucluster-smoke-image), on a driver the image's CUDA version supports."""
    result = smoke_fleet.get(gpu_node.name)
    if result is not None:
        evidence.attach(f"CUDA smoke on {gpu_node.name}", result.logs or "(no output)", kind="log")
    smi = smi_fleet.get(gpu_node.name)
    parsed = parse_or_none(split_output(smi.logs)[0]) if smi is not None else None
    image = gpucluster_session.options.smoke_image or DEFAULT_SMOKE_SAMPLE_IMAGE
    enforce(judge.cuda_smoke(gpu_node.id, result, torch=bool(gpucluster_session.options.smoke_image),
                                   driver=parsed.driver_version if parsed is not None else None,
                                   needs=gpu_profile.smoke_driver_minimum(image)), evidence)
