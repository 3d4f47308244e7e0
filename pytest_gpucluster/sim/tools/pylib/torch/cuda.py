"""torch.cuda of the fake torch: the pod's allocated GPUs as NVIDIA_VISIBLE_DEVICES exposes them."""
from __future__ import annotations

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


def _gpus() -> list[dict[str, Any]]:
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
    _get(device or 0)


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
