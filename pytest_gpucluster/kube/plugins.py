"""Device-plugin DaemonSets and their pods, and the ONE definition of "this node's device plugin is healthy"."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

from . import watching
from .client import Cluster
from .objects import AUTO_MODE_LABEL, GPU_RESOURCE, container_statuses, phase, pod_ready, timestamp, waiting_reasons
from .quantity import allocatable
from .taints import selects, taint_text, tolerates

AUTO_MODE_NAME = "EKS Auto Mode"
SETTLE_TIMEOUT_S = 30.0   # plugin pods still starting get this long to become Ready or visibly fail
# A plugin container that restarted within this window is not healthy: a crash-looping plugin is briefly Running
# and Ready between crashes and its GPUs come and go with it. A restart long ago is history, not a fault.
RESTART_WINDOW_S = 600.0
# A restart at boot is normal on a fresh node: --fail-on-init-error defaults to true (NVIDIA/k8s-device-plugin@1b826acc
# cmd/nvidia-device-plugin/main.go), so a plugin that starts before the driver or toolkit is ready exits and the
# kubelet restarts it; the GPU Operator's plugin has no pod until NFD labels the node, then waits on its operands.
# A restart that ended within BOOT_MARGIN_S of the node's Ready transition is boot history, provided the container
# has run since for STABLE_S (a crash loop never stays up that long).
BOOT_MARGIN_S = 600.0
STABLE_S = 60.0


def plugin_role(ds: dict[str, Any]) -> str | None:
    """nvidia | gfd | efa | None from the DaemonSet's name (Helm `nvdp-nvidia-device-plugin`, static
    `nvidia-device-plugin-daemonset`, GPU Operator `nvidia-device-plugin-daemonset`, `aws-efa-k8s-device-plugin`)."""
    name = ds["metadata"]["name"]
    if "efa" in name and "device-plugin" in name:
        return "efa"
    if "gpu-feature-discovery" in name:
        return "gfd"
    if "nvidia-device-plugin" in name and "mps" not in name:
        return "nvidia"
    return None


def install_method(ds: dict[str, Any]) -> str:
    """How the NVIDIA device plugin was installed, from the DaemonSet's namespace and labels."""
    meta = ds["metadata"]
    labels = meta.get("labels") or {}
    if meta.get("namespace") == "gpu-operator" or labels.get("app.kubernetes.io/managed-by") == "gpu-operator":
        return "GPU Operator"
    if labels.get("app.kubernetes.io/managed-by") == "Helm" or labels.get("helm.sh/chart"):
        return f"Helm chart {labels.get('helm.sh/chart', '?')} (release {labels.get('app.kubernetes.io/instance', '?')})"
    return "static manifest"


def ds_ref(ds: dict[str, Any]) -> str:
    return f"{ds['metadata'].get('namespace')}/{ds['metadata']['name']}"


def ds_rollout(ds: dict[str, Any]) -> str:
    st = ds.get("status") or {}
    return (f"desired {st.get('desiredNumberScheduled', 0)}, ready {st.get('numberReady', 0)}, "
            f"available {st.get('numberAvailable', 0)}")


def ds_tolerations(ds: dict[str, Any]) -> list[dict[str, Any]]:
    return list((ds["spec"]["template"].get("spec") or {}).get("tolerations") or [])


def admits(ds: dict[str, Any], labels: Mapping[str, str], taints: Iterable[Mapping[str, Any]]) -> str | None:
    """Why the DaemonSet would not run a pod on a node with these labels and taints (None: it would): its
    nodeSelector / required node affinity, and the NoSchedule/NoExecute taints its pod template does not tolerate
    (the DaemonSet controller adds only node.kubernetes.io/* tolerations: pkg/controller/daemon/util)."""
    spec = (ds["spec"]["template"].get("spec") or {})
    if not selects(spec, labels):
        return "its nodeSelector/node affinity does not select the node's labels"
    missing = [taint_text(t) for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")
               and not tolerates(ds_tolerations(ds), t)]
    return f"does not tolerate {', '.join(missing)}" if missing else None


def selector_string(ds: dict[str, Any]) -> str:
    labels = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def at_boot(cs: dict[str, Any], ready_since: float | None, now: float) -> bool:
    """The container's last restart was the node's boot: it ended within BOOT_MARGIN_S of the node's Ready
    transition and the container has been running for STABLE_S since."""
    finished = timestamp(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
    running = timestamp(((cs.get("state") or {}).get("running") or {}).get("startedAt"))
    return (ready_since is not None and finished is not None and running is not None
            and finished <= ready_since + BOOT_MARGIN_S and now - running >= STABLE_S)


def recent_restarts(pod: dict[str, Any], now: float | None = None, window_s: float = RESTART_WINDOW_S,
                    ready_since: float | None = None) -> int:
    """Restarts of containers whose last termination ended within `window_s` of `now`, other than a restart at the
    node's boot (`ready_since`: when the node turned Ready; see at_boot)."""
    now = time.time() if now is None else now
    count = 0
    for cs in container_statuses(pod):
        if not cs.get("restartCount"):
            continue
        finished = timestamp(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is None:      # restarted, but when is unknown: count it (cannot show it is old)
            count += int(cs["restartCount"])
        elif now - finished <= window_s and not at_boot(cs, ready_since, now):
            count += int(cs["restartCount"])
    return count


def plugin_healthy(pod: dict[str, Any], now: float | None = None, ready_since: float | None = None) -> bool:
    """THE definition used by every suite: Running, Ready now, no restart in the last RESTART_WINDOW_S but the one at
    the node's boot (`ready_since`: the node's Ready transition)."""
    return (phase(pod) == "Running" and pod_ready(pod)
            and recent_restarts(pod, now, ready_since=ready_since) == 0)


def pod_state(pod: dict[str, Any], now: float | None = None, ready_since: float | None = None) -> str:
    """`Running (ready)`, `Running (not ready, CrashLoopBackOff, 7 restarts, 2 in the last 10 min)`, `Pending` ..."""
    now = time.time() if now is None else now
    details = ["ready" if pod_ready(pod) else "not ready"]
    for cs in container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            details.append(waiting["reason"])
        if cs.get("restartCount"):
            boot = " (at the node's boot: history)" if at_boot(cs, ready_since, now) else ""
            details.append(f"{cs['restartCount']} restarts, {recent_restarts(pod, now, ready_since=ready_since)} in "
                           f"the last {RESTART_WINDOW_S / 60:.0f} min{boot}")
    return f"{phase(pod)} ({', '.join(details)})"


def settled(pod: dict[str, Any]) -> bool:
    """Ready, or in a state that will not change by itself soon (crash loop, image error, failed)."""
    if pod_ready(pod) or phase(pod) in ("Failed", "Succeeded"):
        return True
    return (any(reason not in (None, "ContainerCreating", "PodInitializing") for reason in waiting_reasons(pod))
            or any(cs.get("restartCount") for cs in container_statuses(pod)))


@dataclass
class Plugins:
    """The device-plugin DaemonSets of the cluster and their pods, read once, and which nodes' hosts run plugins."""

    by_role: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # DaemonSet ref -> its pods
    auto_mode: bool = False                                               # any GPU node is EKS Auto Mode
    hosts: dict[str, str] = field(default_factory=dict)   # node -> "EKS Auto Mode" | "Bottlerocket" (its OS)
    ready_since: dict[str, float] = field(default_factory=dict)   # node -> its Ready transition (boot restarts)

    def daemonsets(self, role: str) -> list[dict[str, Any]]:
        return self.by_role.get(role, [])

    def pods_on(self, ds: dict[str, Any], node: str) -> list[dict[str, Any]]:
        return [p for p in self.pods.get(ds_ref(ds), []) if (p.get("spec") or {}).get("nodeName") == node]

    def host_plugin(self, role: str, node: str) -> str | None:
        """Who runs the `role` plugin on the node's host, without a DaemonSet, decided per node (a cluster mixes
        AMIs): EKS Auto Mode runs the NVIDIA and EFA plugins; Bottlerocket's NVIDIA variants run the NVIDIA plugin
        (bottlerocket.dev settings.kubelet-device-plugins), the EFA plugin stays a DaemonSet."""
        host = self.hosts.get(node)
        if host == AUTO_MODE_NAME:
            return host if role in ("nvidia", "efa") else None
        return host if host is not None and role == "nvidia" else None

    def healthy_on(self, role: str, node: str, now: float | None = None) -> bool:
        """A healthy plugin pod of `role` on `node` (plugin_healthy); True where the node's host runs the plugin
        (host_plugin: judged by allocatable instead)."""
        if self.host_plugin(role, node) is not None:
            return True
        return any(plugin_healthy(p, now, self.ready_since.get(node))
                   for ds in self.daemonsets(role) for p in self.pods_on(ds, node))


def daemon_pods(cluster: Cluster, ds: dict[str, Any], settle_s: float = SETTLE_TIMEOUT_S) -> list[dict[str, Any]]:
    """The DaemonSet's pods once they settled (a node that just joined has its plugin pod still starting);
    after `settle_s`, whatever they are then."""
    namespace, selector = ds["metadata"]["namespace"], selector_string(ds) or None
    desired = int((ds.get("status") or {}).get("desiredNumberScheduled") or 0)
    try:
        pods = watching.eventually(cluster, "pods", namespace,
                                   lambda objs: len(objs) >= desired and all(settled(p) for p in objs.values()),
                                   timeout_s=settle_s, description=f"{ds_ref(ds)} pods settled",
                                   label_selector=selector)
        return list(pods.values())
    except watching.DeadlineExceeded:
        return cluster.items("pods", namespace, label_selector=selector)


class LabelledNode(Protocol):
    name: str
    labels: dict[str, str]
    ready_since: float | None
    os_image: str


def find_plugins(cluster: Cluster, gpu_nodes: Sequence[LabelledNode] = (), *, settle: bool = True) -> Plugins:
    """Every device-plugin DaemonSet with its pods (settled first when `settle`), and whether the GPU nodes are
    Auto Mode / Bottlerocket (plugins on the host)."""
    found = Plugins()
    for ds in cluster.items("daemonsets.apps"):
        role = plugin_role(ds)
        if role is None:
            continue
        found.pods[ds_ref(ds)] = (daemon_pods(cluster, ds) if settle else
                                  cluster.items("pods", ds["metadata"]["namespace"],
                                                label_selector=selector_string(ds) or None))
        found.by_role.setdefault(role, []).append(
            cluster.get("daemonsets.apps", ds["metadata"]["name"], ds["metadata"]["namespace"]) if settle else ds)
    found.ready_since = {n.name: n.ready_since for n in gpu_nodes if n.ready_since is not None}
    for n in gpu_nodes:
        if n.labels.get(AUTO_MODE_LABEL[0]) == AUTO_MODE_LABEL[1]:
            found.hosts[n.name] = AUTO_MODE_NAME
        elif "bottlerocket" in n.os_image.lower():     # `Bottlerocket OS 1.x (aws-k8s-1.32-nvidia)`
            found.hosts[n.name] = "Bottlerocket"
    found.auto_mode = AUTO_MODE_NAME in found.hosts.values()
    return found


def gpus_to_request(cluster: Cluster, plugins: Plugins, node_names: Iterable[str]) -> dict[str, int]:
    """Per node, all the GPUs it advertises now (asking for more than allocatable never schedules); 0 where its
    NVIDIA device plugin is not healthy (its GPUs come and go: a probe asking for them could stay Pending)."""
    return {name: allocatable(cluster.get("nodes", name), GPU_RESOURCE) if plugins.healthy_on("nvidia", name)
            else 0 for name in node_names}
