"""THE "device plugin healthy" definition (kube/plugins.py): recent restarts count, a restart at the node's boot does not."""
from __future__ import annotations

import datetime as dt
from typing import Any

from pytest_gpucluster.kube.plugins import Plugins, plugin_healthy, pod_state, recent_restarts

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc).timestamp()
DS = {"metadata": {"name": "nvdp", "namespace": "nvidia-device-plugin"}}
EFA_DS = {"metadata": {"name": "aws-efa-k8s-device-plugin-daemonset", "namespace": "kube-system"}}


def stamp(seconds_ago: float) -> str:
    return dt.datetime.fromtimestamp(NOW - seconds_ago, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def plugin(finished_ago: float, running_ago: float, restarts: int = 1) -> dict[str, Any]:
    """A Running, Ready plugin pod whose container restarted `restarts` times, the last ending `finished_ago`."""
    return {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"restartCount": restarts,
                                              "state": {"running": {"startedAt": stamp(running_ago)}},
                                              "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                                           "finishedAt": stamp(finished_ago)}}}]}}


def test_a_restart_at_the_nodes_boot_is_history() -> None:
    """Nodes Ready 3 minutes ago whose plugin restarted once at boot (fail-on-init-error) were called unhealthy: the
    restart is within the 10-minute window."""
    pod, ready = plugin(finished_ago=150, running_ago=140), NOW - 180
    assert recent_restarts(pod, NOW) == 1 and not plugin_healthy(pod, NOW)          # without the node's boot time
    assert recent_restarts(pod, NOW, ready_since=ready) == 0 and plugin_healthy(pod, NOW, ready)
    assert "(at the node's boot: history)" in pod_state(pod, NOW, ready)


def test_a_crash_loop_on_a_fresh_node_is_not_history() -> None:
    crashing = plugin(finished_ago=20, running_ago=10, restarts=4)     # back up 10 s ago: not stable
    assert not plugin_healthy(crashing, NOW, NOW - 180)


def test_a_restart_long_after_boot_counts() -> None:
    late = plugin(finished_ago=120, running_ago=110)                     # node Ready 2 h ago, restart 2 min ago
    assert not plugin_healthy(late, NOW, NOW - 7200)
    assert plugin_healthy(plugin(finished_ago=7000, running_ago=6990), NOW, NOW - 7200)   # outside the window


def test_the_host_plugin_is_decided_per_node_and_per_role() -> None:
    """Bottlerocket's NVIDIA variant runs the NVIDIA plugin on the host, not the EFA plugin; Auto Mode runs both; an
    AL2023 node beside them still needs its DaemonSet pod (it was decided once, from the first GPU node)."""
    plugins = Plugins(by_role={"nvidia": [DS], "efa": [EFA_DS]}, hosts={"br": "Bottlerocket", "auto": "EKS Auto Mode"},
                      pods={"nvidia-device-plugin/nvdp": [{**plugin(7000, 6990), "spec": {"nodeName": "al"}}]})
    assert plugins.host_plugin("nvidia", "br") == "Bottlerocket" and plugins.host_plugin("efa", "br") is None
    assert plugins.host_plugin("efa", "auto") == "EKS Auto Mode"
    assert plugins.healthy_on("nvidia", "br", NOW) and not plugins.healthy_on("efa", "br", NOW)
    assert plugins.healthy_on("nvidia", "al", NOW) and not plugins.healthy_on("nvidia", "other", NOW)
