"""The sim context a fake tool reads: node hardware, allocation, faults, overrides ($GPUCLUSTER_SIM_CONTEXT)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .fault import FIRST_GPU_NODE, FaultKind

ENV = "GPUCLUSTER_SIM_CONTEXT"


FAULTS = (
    FaultKind("gpu-missing", {"gpu_index": "the node's last GPU"}, FIRST_GPU_NODE,
              "every tool in a pod (nvidia-smi, torch, nccl-tests) sees one GPU fewer than allocatable says"),
)


def load() -> dict[str, Any]:
    """The context JSON of the current pod; an empty context (no GPUs, no EFA) when unset."""
    path = os.environ.get(ENV)
    if not path:
        return {"node": {"name": "localhost", "hardware": {}}, "allocated": {"gpus": [], "efa": []},
                "faults": [], "tool_output": {}, "tool_exit": {}, "workers": []}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def fault(ctx: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """Params of the first fault of `kind` that applies to this pod's node, or None."""
    for f in ctx.get("faults", []):
        if f.get("kind") == kind:
            return dict(f.get("params") or {})
    return None


def visible_gpus(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """GPUs the pod sees: the allocated ones, minus one hidden by a `gpu-missing` fault."""
    hw = ctx.get("node", {}).get("hardware", {})
    gpus = {g["index"]: g for g in hw.get("gpus", [])}
    allocated = [gpus[i] for i in ctx.get("allocated", {}).get("gpus", []) if i in gpus]
    missing = fault(ctx, "gpu-missing")
    if missing is not None:
        all_idx = sorted(gpus)
        hidden = int(missing.get("gpu_index", all_idx[-1] if all_idx else 0))
        allocated = [g for g in allocated if g["index"] != hidden]
    # inside a container the visible GPUs are enumerated from 0 again (bus ids and UUIDs stay)
    return [{**g, "index": i, "host_index": g["index"]} for i, g in enumerate(allocated)]


def replay(ctx: dict[str, Any], tool: str) -> int | None:
    """Print the scenario's real (recorded) output for `tool` verbatim instead of rendering one and return its exit
    code (the recorded one, else 0); None when the scenario gives none. Callers check this before any fault: what
    was recorded is what the node printed, faults and all."""
    path = ctx.get("tool_output", {}).get(tool)
    if not path:
        return None
    with open(path, encoding="utf-8", newline="") as fh:
        sys.stdout.write(fh.read())
    sys.stdout.flush()
    return int(ctx.get("tool_exit", {}).get(tool, 0))


def hostname(ctx: dict[str, Any]) -> str:
    return str(ctx.get("pod", {}).get("name") or ctx.get("node", {}).get("name") or "localhost")


def _busy_dir() -> Path | None:
    path = os.environ.get(ENV)
    return Path(path).parent / ".gpu-busy" if path else None


def mark_busy(gpu: dict[str, Any]) -> None:
    """This process keeps `gpu` busy (a CUDA load runs kernels on it) until it exits: what nvidia-smi -q then shows
    as performance state P0 with the Idle clocks event reason not active."""
    folder = _busy_dir()
    if folder is not None:
        folder.mkdir(exist_ok=True)
        (folder / str(gpu["uuid"])).write_text(str(os.getpid()), encoding="ascii")


def is_busy(gpu: dict[str, Any]) -> bool:
    """A process of this pod that marked `gpu` busy is still alive."""
    folder = _busy_dir()
    marker = folder / str(gpu["uuid"]) if folder is not None else None
    if marker is None or not marker.exists():
        return False
    try:
        os.kill(int(marker.read_text(encoding="ascii")), 0)
    except (OSError, ValueError):
        return False
    return True
