"""The image catalog through the real kubectl (issue 14): on `gpucluster sim --scenario healthy` a container holds
only its image's tools; nvidia-smi only where the NVIDIA runtime injects it; unknown images get a shell and
coreutils; the NVIDIA_VISIBLE_DEVICES leak of the upstream defaults (gpu-isolation-leak) and its hardened fix
(healthy)."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from pytest_gpucluster.sim.launcher import SimCluster
from pytest_gpucluster.sim.tools.images import CATALOG, UNKNOWN, lookup

KUBECTL = shutil.which("kubectl")
CUDA = "nvidia/cuda:13.0.2-runtime-ubuntu22.04"
NCCL = "public.ecr.aws/hpc-cloud/nccl-tests:latest"
SAMPLE = "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04"
# `command -v` prints the path or nothing (exit 1): one line per tool, `tool=<path or nothing>`
FIND = 'for t in {tools}; do echo "$t=$(command -v $t)"; done; test -x /opt/nccl-tests/build/all_reduce_perf && ' \
       'echo all_reduce_perf=/opt/nccl-tests/build/all_reduce_perf; true'
GPU_OVERRIDES = ('{"spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}], '
                 '"nodeSelector": {"node.kubernetes.io/instance-type": "p5.48xlarge"}, "containers": [{"name": "%s", '
                 '"image": "%s", "command": ["sh", "-c", %s], "resources": {"limits": {"nvidia.com/gpu": "%d"}}}]}}')


def kubectl(sim: SimCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run([KUBECTL, "--kubeconfig", str(sim.kubeconfig_path), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def run_pod(sim: SimCluster, name: str, image: str, script: str, gpus: int | None = None) -> str:
    """`kubectl run` a pod to completion (on a p5 node when `gpus` is given) and return its log."""
    import json
    args = ["run", name, f"--image={image}", "--restart=Never"]
    if gpus is not None:
        args.append("--overrides=" + GPU_OVERRIDES % (name, image, json.dumps(script), gpus))
    args += ["--command", "--", "sh", "-c", script]
    created = kubectl(sim, *args)
    assert created.returncode == 0, created.stderr
    waited = kubectl(sim, "wait", "--for=jsonpath={.status.phase}=Succeeded", f"pod/{name}", "--timeout=60s",
                     timeout=90)
    assert waited.returncode == 0, (waited.stderr, kubectl(sim, "get", "pod", name, "-o", "yaml").stdout)
    return kubectl(sim, "logs", name).stdout


def found(log: str) -> dict[str, str]:
    """tool -> its path inside the image ("" when absent). The sim's image roots are host directories, so a path
    prints as <image root>/usr/bin/x: the part from the first of the image's own top directories is kept."""
    out = {}
    for line in log.splitlines():
        if "=" in line:
            tool, path = line.split("=", 1)
            cut = min((path.find(f"/{top}/") for top in ("usr", "opt", "bin", "sbin") if f"/{top}/" in path),
                      default=-1)
            out[tool] = path[cut:] if cut >= 0 else path
    return out


pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    with SimCluster("healthy", workdir=tmp_path_factory.mktemp("healthy")) as cluster:
        yield cluster


def test_cuda_runtime_image_with_a_gpu_has_nvidia_smi_but_no_fi_info_or_python3(healthy: SimCluster) -> None:
    tools = found(run_pod(healthy, "cuda-gpu", CUDA, FIND.format(tools="nvidia-smi fi_info python3 mpirun"), gpus=1))
    assert tools["nvidia-smi"] == "/usr/bin/nvidia-smi"          # injected by the NVIDIA runtime
    assert tools["fi_info"] == tools["python3"] == tools["mpirun"] == "" and "all_reduce_perf" not in tools


def test_busybox_has_no_nvidia_smi_and_a_missing_tool_is_not_found_127(healthy: SimCluster) -> None:
    log = run_pod(healthy, "bb", "busybox:1.36", 'command -v nvidia-smi; echo "rc=$?"; nvidia-smi; echo "rc=$?"')
    assert log.splitlines()[0] != "rc=0" and log.splitlines()[1:] == ["sh: 1: nvidia-smi: not found", "rc=127"], log


def test_nccl_tests_image_has_fi_info_all_reduce_perf_and_mpirun(healthy: SimCluster) -> None:
    tools = found(run_pod(healthy, "nccl", NCCL, FIND.format(tools="fi_info mpirun sshd python3 nvidia-smi")))
    assert tools["fi_info"] == "/opt/amazon/efa/bin/fi_info" and tools["mpirun"] == "/opt/amazon/openmpi/bin/mpirun"
    assert tools["all_reduce_perf"] == "/opt/nccl-tests/build/all_reduce_perf" and tools["sshd"] == "/usr/sbin/sshd"
    assert tools["python3"] == "/usr/bin/python3" and tools["nvidia-smi"] == ""   # CPU node: nothing injected


def test_an_image_not_in_the_catalog_is_a_shell_and_coreutils_and_its_own_command_is_a_start_error(
        healthy: SimCluster) -> None:
    log = run_pod(healthy, "unknown", "example.com/team/trainer:1", 'echo "ls=$(command -v ls)"; python3; echo "rc=$?"')
    assert found(log)["ls"] == "/usr/bin/ls" and log.splitlines()[1:] == ["sh: 1: python3: not found", "rc=127"], log
    made = kubectl(healthy, "run", "own", "--image=example.com/team/trainer:1", "--restart=Never", "--command", "--",
                   "train.py")
    assert made.returncode == 0, made.stderr
    waited = kubectl(healthy, "wait", "--for=jsonpath={.status.phase}=Failed", "pod/own", "--timeout=60s", timeout=90)
    assert waited.returncode == 0, waited.stderr
    state = kubectl(healthy, "get", "pod", "own", "-o", "jsonpath={.status.containerStatuses[0].state.terminated}")
    assert '"reason":"StartError"' in state.stdout and 'exec: \\"train.py\\": executable file not found in $PATH' \
        in state.stdout.replace('\\\\', '\\'), state.stdout


def test_cuda_sample_runs_vector_add_by_its_own_cmd(healthy: SimCluster) -> None:
    log = run_pod(healthy, "vadd", SAMPLE, "/cuda-samples/vectorAdd", gpus=1)
    assert log.splitlines()[-2:] == ["Test PASSED", "Done"]


def test_a_pod_without_gpus_on_a_hardened_gpu_node_sees_none(healthy: SimCluster) -> None:
    log = run_pod(healthy, "nogpu", CUDA, 'echo "nvd=$NVIDIA_VISIBLE_DEVICES"; nvidia-smi -L; echo "rc=$?"', gpus=0)
    assert log.splitlines() == ["nvd=all", "sh: 1: nvidia-smi: not found", "rc=127"], log


def test_the_upstream_defaults_leak_every_gpu_into_a_pod_without_gpus(tmp_path_factory: pytest.TempPathFactory) -> None:
    with SimCluster("gpu-isolation-leak", workdir=tmp_path_factory.mktemp("leak")) as leak:
        log = run_pod(leak, "leak", CUDA, "nvidia-smi -L", gpus=0)
        assert len([line for line in log.splitlines() if line.startswith("GPU ")]) == 8, log
        privileged_ok = run_pod(leak, "one", CUDA, "nvidia-smi -L", gpus=1)
        assert len(privileged_ok.splitlines()) == 1


def test_every_catalog_entry_cites_its_source_and_lookup_falls_back_to_unknown() -> None:
    assert all(image.source and image.patterns for image in CATALOG)
    assert lookup(CUDA).key == "cuda" and lookup(NCCL).key == "nccl-tests" and lookup("busybox").key == "busybox"
    assert lookup("nvcr.io/nvidia/cloud-native/dcgm:4.2.3-1-ubuntu22.04").key == "dcgm"
    assert lookup("ghcr.io/acme/app:1") is UNKNOWN
