"""torch.cuda of the fake torch: the pod's allocated GPUs as NVIDIA_VISIBLE_DEVICES exposes them."""
from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

# Creating a CUDA context on a device (the first tensor there) takes a while; modelled, see torch/__init__.py.
CONTEXT_S = 0.5
_started: set[int] = set()


class _DeviceProperties(NamedTuple):
    name: str
    major: int
    minor: int
    total_memory: int
    multi_processor_count: int
    uuid: str


# FP32 (non-tensor-core) peak throughput per GPU, FLOP/s, from NVIDIA's datasheets (H100 SXM5: 67 TFLOPS; H200 SXM:
# 67; A100: 19.5; L40S: 91.6; A10G/A10: 31.2; L4: 30.3); other GPUs: the A100's. What a queued matmul takes.
_FP32_FLOPS = {"H100": 67e12, "H200": 67e12, "A100": 19.5e12, "L40S": 91.6e12, "A10G": 31.2e12, "L4": 30.3e12}
_busy_until: dict[int, float] = {}       # device -> when the work queued on it so far is done (time.monotonic)


def enqueue(device: int, flop: float) -> None:
    """Queue `flop` of work on the device's stream: it finishes after the work already queued."""
    name = str(_get(device)["name"])
    rate = next((v for k, v in _FP32_FLOPS.items() if k in name.split()), 19.5e12)
    start = max(time.monotonic(), _busy_until.get(device, 0.0))
    _busy_until[device] = start + flop / rate


@functools.lru_cache(maxsize=1)
def _gpus() -> list[dict[str, Any]]:
    """The pod's GPUs, read once per process (the context file is written before the container starts)."""
    path = os.environ.get("GPUCLUSTER_SIM_CONTEXT")
    if not path or os.environ.get("NVIDIA_VISIBLE_DEVICES") in (None, "", "void", "none"):
        return []
    with open(path, encoding="utf-8") as fh:
        ctx = json.load(fh)
    if any(f.get("kind") in ("driver-unreachable", "nvlink-down") for f in ctx.get("faults", [])):
        return []      # nvlink-down: cudaGetDeviceCount fails with 802 until the fabric manager trains the fabric
    gpus = {g["index"]: g for g in ctx.get("node", {}).get("hardware", {}).get("gpus", [])}
    out = [gpus[i] for i in ctx.get("allocated", {}).get("gpus", []) if i in gpus]
    for f in ctx.get("faults", []):
        if f.get("kind") == "gpu-missing":
            hidden = int((f.get("params") or {}).get("gpu_index", max(gpus) if gpus else 0))
            out = [g for g in out if g["index"] != hidden]
    return out


def is_available() -> bool:
    return bool(_gpus())


def device_count() -> int:
    return len(_gpus())


def current_device() -> int:
    if not _gpus():
        raise RuntimeError("No CUDA GPUs are available")
    return 0


def _get(device: int) -> dict[str, Any]:
    gpus = _gpus()
    if not gpus:
        raise RuntimeError("No CUDA GPUs are available")
    if not 0 <= device < len(gpus):
        raise AssertionError("Invalid device id")
    return gpus[device]


def get_device_name(device: int = 0) -> str:
    return str(_get(device)["name"])


def get_device_capability(device: int = 0) -> tuple[int, int]:
    major, _, minor = str(_get(device)["compute_cap"]).partition(".")
    return int(major), int(minor or 0)


def get_device_properties(device: int = 0) -> _DeviceProperties:
    g = _get(device)
    major, minor = get_device_capability(device)
    return _DeviceProperties(g["name"], major, minor, int(g["memory_mib"]) * 1024 * 1024, 132, g["uuid"])


def synchronize(device: int | None = None) -> None:
    """Wait for the work queued on the device (the current one, 0, by default), without spending host CPU."""
    index = device or 0
    _get(index)
    remaining = _busy_until.get(index, 0.0) - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def _start(device: int) -> None:
    """The first CUDA work on `device`: pay the context creation, then the GPU is busy while this process lives (the
    marker fake/ctx.py mark_busy writes, which the fake nvidia-smi -q reads)."""
    gpu = _get(device)
    if device in _started:
        return
    time.sleep(CONTEXT_S)
    _started.add(device)
    path = os.environ.get("GPUCLUSTER_SIM_CONTEXT")
    if path:
        folder = Path(path).parent / ".gpu-busy"
        folder.mkdir(exist_ok=True)
        (folder / str(gpu["uuid"])).write_text(str(os.getpid()), encoding="ascii")


def _fabric_not_ready() -> bool:
    """An NVSwitch node whose fabric manager is stopped (sim fault `nvlink-down`)."""
    path = os.environ.get("GPUCLUSTER_SIM_CONTEXT")
    if not path:
        return False
    with open(path, encoding="utf-8") as fh:
        ctx = json.load(fh)
    return any(f.get("kind") == "nvlink-down" for f in ctx.get("faults", []))
