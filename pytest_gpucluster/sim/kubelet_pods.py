"""The simulated kubelet's view of a pod: containers, run state, and the pod status it reports."""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .controllers.base import rfc3339, set_condition

CONDITION_ORDER = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]


@dataclass
class Container:
    """What the kubelet knows about one container of a running pod."""

    name: str
    image: str
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    restarts: int = 0
    container_id: str = ""
    image_id: str = ""
    proc: asyncio.subprocess.Process | None = None

    def status(self) -> dict[str, Any]:
        out = {"name": self.name, "image": self.image, "imageID": self.image_id, "ready": self.ready,
               "started": self.started, "restartCount": self.restarts, "state": dict(self.state),
               "lastState": dict(self.last_state)}
        if self.container_id:
            out["containerID"] = self.container_id
        return out


@dataclass
class PodRun:
    """One pod the kubelet is running: its task, containers, allocation and sandbox."""

    uid: str
    namespace: str
    name: str
    node: str
    pod: dict[str, Any]
    containers: list[Container]
    init_containers: list[Container]
    scratch: Path
    gpus: list[int] = field(default_factory=list)
    efa: list[str] = field(default_factory=list)
    exposed: list[int] = field(default_factory=list)     # GPUs the runtime puts in the pod (given, or leaked)
    task: asyncio.Task[None] | None = None
    terminate: asyncio.Event = field(default_factory=asyncio.Event)
    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    done: bool = False


def requests_of(pod: dict[str, Any], resource: str) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        value = (res.get("limits") or {}).get(resource, (res.get("requests") or {}).get(resource, 0))
        try:
            total += int(value)
        except (TypeError, ValueError):
            continue
    return total


def digest(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def pod_ip(uid: str, host_ip: str) -> str:
    """A stable pod IP in the node's subnet (VPC CNI hands out secondary IPs of the node's subnet)."""
    octets = host_ip.split(".")
    last = int(digest(uid, 4), 16) % 250 + 4
    return ".".join(octets[:2] + [str((int(octets[2]) + 1) % 256), str(last)])


def status_writer(run: PodRun, host_ip: str, ip: str, now: float) -> Callable[[dict[str, Any]], None]:
    """A `store.mutate` callback writing phase, conditions, IPs and container statuses of `run`."""
    running = [c for c in run.containers if "running" in c.state]
    all_ready = bool(run.containers) and all(c.ready for c in run.containers)
    inits_done = all("terminated" in c.state and c.state["terminated"].get("exitCode") == 0
                     for c in run.init_containers)
    sandbox_ready = run.phase != "Pending" or any("waiting" not in c.state or
                                                  c.state["waiting"].get("reason") != "ContainerCreating"
                                                  for c in run.containers)
    terminal = run.phase in ("Succeeded", "Failed")

    def write(pod: dict[str, Any]) -> None:
        status = pod.setdefault("status", {})
        status["phase"] = run.phase
        status["hostIP"], status["hostIPs"] = host_ip, [{"ip": host_ip}]
        status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
        status.setdefault("startTime", rfc3339(now))
        status["containerStatuses"] = [c.status() for c in run.containers]
        if run.init_containers:
            status["initContainerStatuses"] = [c.status() for c in run.init_containers]
        for key, value in (("reason", run.reason), ("message", run.message)):
            if value:
                status[key] = value
        conditions = status.setdefault("conditions", [])
        set_condition(conditions, "PodReadyToStartContainers", "True" if sandbox_ready and not terminal
                      else "False", "", now=now)
        set_condition(conditions, "Initialized", "True" if inits_done else "False",
                      "" if inits_done else "ContainersNotInitialized", now=now)
        ready = all_ready and bool(running) and not terminal
        reason = "" if ready else ("PodCompleted" if terminal else "ContainersNotReady")
        set_condition(conditions, "Ready", "True" if ready else "False", reason, now=now)
        set_condition(conditions, "ContainersReady", "True" if ready else "False", reason, now=now)
        conditions.sort(key=lambda c: CONDITION_ORDER.index(c["type"]) if c["type"] in CONDITION_ORDER
                        else len(CONDITION_ORDER))
    return write
