"""What the node-health suite runs on each GPU node: images, the CUDA loads, the probe scripts and the probe spec
(mechanics only; the judges are in pytest_gpucluster/checks/, the RBAC and Pod Security needs in docs/node-health.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..checks.probe_output import section
from ..kube.objects import NodeInfo
from ..kube.placement import tolerations_for
from ..kube.probes import ProbeSpec

DCGM_IMAGE = "nvcr.io/nvidia/cloud-native/dcgm:4.2.3-1-ubuntu22.04"   # what GPU Operator v25.3 deploys
TORCH_IMAGE = "nvcr.io/nvidia/pytorch:25.01-py3"
DCGM_RUNTIME_S = {1: 120, 2: 600, 3: 2400, 4: 7200}   # on top of --gpucluster-timeout (DCGM guide: ~1 min, ~2-15 min, 30+ min)
LOAD_WAIT_S = 120      # default bound on the wait for the load to run on every GPU (profile health.load_start_s)

# The PyTorch load: a CUDA context and a matmul on each device, announced after the first synchronize on it, then
# kept busy until the probe stops it (LOAD_S bounds it if the probe cannot).
TORCH_LOAD = (
    "import os, time, torch\nn = torch.cuda.device_count()\nxs = []\nfor i in range(n):\n"
    "    x = torch.randn(4096, 4096, device=f'cuda:{i}')\n    x @ x\n    torch.cuda.synchronize(i)\n"
    "    print(f'CUDA-LOAD running device={i}', flush=True)\n    xs.append(x)\nt = time.time()\n"
    "while time.time() - t < float(os.environ.get('LOAD_S', '600')):\n    [x @ x for x in xs]\n"
    "    torch.cuda.synchronize()\nprint(f'CUDA-LOAD ok devices={n}')\n")


@dataclass(frozen=True)
class Load:
    """A CUDA load: the image that carries it, the command, and the grep -E pattern of its per-GPU running line."""

    image: str
    command: str
    mark: str
    env: dict[str, str] = field(default_factory=dict)


def loads(wait_s: int) -> dict[str, Load]:
    """The loads the profile's `health.load` chooses from. dcgmproftester is in the DCGM image the node pulls for
    `dcgmi diag` anyway (NVIDIA/DCGM docker/Dockerfile.ubuntu22.04 installs datacenter-gpu-manager-4-cuda12, whose
    package holds /usr/bin/dcgmproftester12: scripts/verify_package_contents); NGC PyTorch is about 20 GB, as large
    as Karpenter's default 20 GiB root volume. dcgmproftester: `--max-processes 0` (it loads only 4 GPUs at a time by
    default: dcgmproftester/Arguments.h), `-t 1007` the FP32 load NVIDIA/DCGM issue #239 ran in this image,
    `--no-dcgm-validation` the load without DCGM's metric checks, `-d` longer than the wait and the reads (the probe
    stops it); `stdbuf -oL` because its report lines go through a buffered stdout into a file. PyTorch: the NGC
    image, or --gpucluster-smoke-image."""
    return {
        "dcgmproftester": Load(DCGM_IMAGE, f"stdbuf -oL dcgmproftester12 --no-dcgm-validation -t 1007 --max-processes 0 "
                                           f"-d {wait_s + 120}", "^Worker [0-9]+:"),
        "pytorch": Load(TORCH_IMAGE, 'python3 -c "$LOAD_PY"', "CUDA-LOAD running device=[0-9]+",
                        {"LOAD_PY": TORCH_LOAD, "LOAD_S": str(wait_s + 120)}),
    }


def health_script(load: Load, wait_s: int) -> str:
    """Start the load, wait (at most `wait_s`) until it announces every GPU the pod holds, then read `nvidia-smi -q`,
    `nvlink -s`, `topo -m` and the host's versions while it runs; stop it (SIGKILL: dcgmproftester's workers die
    with their parent, PR_SET_PDEATHSIG) and print its output. Each section ends with `### rc=<exit code>`
    (checks/probe_output.section); the load's output gets a newline of its own, as dcgmproftester's error messages
    end without one (DcgmProfTester.cpp main)."""
    return (
        f'd=$(mktemp -d); {load.command} > "$d/load.out" 2>&1 & pid=$!; '
        "n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU '); t=0; r=0; "
        f'while [ "$t" -lt {wait_s} ]; do '
        f"r=$(grep -oE '{load.mark}' \"$d/load.out\" | sort -u | wc -l); "
        'if [ "$n" -gt 0 ] && [ "$r" -ge "$n" ]; then break; fi; '
        "kill -0 $pid 2>/dev/null || break; sleep 1; t=$((t+1)); done; "
        + "; ".join([section("load-wait", 'echo "gpus=$n running=$r waited_s=$t"'),
                     section("smi-q", "nvidia-smi -q 2>&1"),
                     section("nvlink", "nvidia-smi nvlink -s 2>&1"),
                     section("topo", "nvidia-smi topo -m 2>&1"),
                     section("host", 'echo "kernel=$(uname -r)"; '
                                     'echo "efa driver=$(cat /sys/module/efa/version 2>/dev/null)"'),
                     "kill -KILL $pid 2>/dev/null; wait $pid; rc=$?",
                     # the load's exit code closes its section
                     section("cuda", 'cat "$d/load.out"; echo; (exit $rc)'),
                     'rm -rf "$d"']))


# The kernel log with the clock needed to say how far back it reaches (`dmesg` prints seconds since boot).
HOSTLOG_SCRIPT = "; ".join([section("uptime", "cat /proc/uptime"), section("now", "date +%s"),
                            section("dmesg", "dmesg 2>&1")])


def health_spec(name: str, node: NodeInfo, command: str, **kw: Any) -> ProbeSpec:
    """A probe pinned to `node`, tolerating its workload taints, running `command` under sh."""
    return ProbeSpec(name=name, command=["sh", "-c", command], node=node.name, tolerations=tolerations_for([node]),
                     **kw)
