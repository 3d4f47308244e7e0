"""What the node-health suite runs on each GPU node: images, the probe scripts and the probe spec (mechanics only;
the judges are in pytest_gpucluster/checks/node_health.py, the RBAC and Pod Security needs in docs/node-health.md)."""
from __future__ import annotations

from typing import Any

from .discovery import NodeInfo
from .placement import tolerations_for
from .probes import ProbeSpec

DCGM_IMAGE = "nvcr.io/nvidia/cloud-native/dcgm:4.2.3-1-ubuntu22.04"   # what GPU Operator v25.3 deploys
# The CUDA load needs python3 + PyTorch: --gpucluster-smoke-image when given, else NVIDIA's NGC PyTorch image.
TORCH_IMAGE = "nvcr.io/nvidia/pytorch:25.01-py3"
DCGM_RUNTIME_S = {1: 120, 2: 600, 3: 2400, 4: 7200}   # on top of --gpucluster-timeout (DCGM guide: ~1 min, ~2-15 min, 30+ min)
LOAD = ("import time, torch\ntorch.randn(1, device='cuda:0')\nn = torch.cuda.device_count()\n"
        "xs = [torch.randn(4096, 4096, device=f'cuda:{i}') for i in range(n)]\nt = time.time()\n"
        "while time.time() - t < 8:\n    [x @ x for x in xs]\n    torch.cuda.synchronize()\n"
        "print(f'CUDA-LOAD ok devices={n}')\n")
HEALTH_SCRIPT = (
    "python3 -c \"$LOAD\" > /tmp/cuda.out 2>&1 & pid=$!; sleep 4; "
    "echo '### smi-q'; nvidia-smi -q 2>&1; echo \"### rc=$?\"; "
    "echo '### nvlink'; nvidia-smi nvlink -s 2>&1; echo \"### rc=$?\"; "
    "echo '### topo'; nvidia-smi topo -m 2>&1; echo \"### rc=$?\"; "
    "echo '### host'; echo \"kernel=$(uname -r)\"; echo \"efa driver=$(cat /sys/module/efa/version 2>/dev/null)\"; "
    "echo '### rc=0'; wait $pid; rc=$?; echo '### cuda'; cat /tmp/cuda.out; echo \"### rc=$rc\"")
HOSTLOG_SCRIPT = "echo '### uptime'; cat /proc/uptime; echo \"### rc=$?\"; echo '### dmesg'; dmesg 2>&1; echo \"### rc=$?\""


def health_spec(name: str, node: NodeInfo, command: str, **kw: Any) -> ProbeSpec:
    """A probe pinned to `node`, tolerating its workload taints, running `command` under sh."""
    return ProbeSpec(name=name, command=["sh", "-c", command], node=node.name, tolerations=tolerations_for([node]),
                     **kw)
