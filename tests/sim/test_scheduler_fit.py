"""Unit tests of the scheduler's pure decisions and kube-scheduler's FailedScheduling wording."""
from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from pytest_gpucluster.sim.controllers.fit import (
    NodeUsage,
    failed_scheduling_message,
    filter_node,
    pod_matches_node_affinity,
    toleration_tolerates,
)
from pytest_gpucluster.sim.controllers.quantity import QuantityError, parse_quantity, pod_requests

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def make_node(name: str = "n1", *, labels: dict[str, str] | None = None, taints: list[dict] | None = None,
              allocatable: dict[str, str] | None = None, ready: bool = True,
              unschedulable: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
        "status": {
            "allocatable": allocatable or {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def make_pod(*, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
             tolerations: list[dict] | None = None, node_selector: dict[str, str] | None = None,
             affinity_terms: list[dict] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {
        **({"requests": requests} if requests else {}), **({"limits": limits} if limits else {})}}]}
    if tolerations:
        spec["tolerations"] = tolerations
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity_terms is not None:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": affinity_terms}}}
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec, "status": {"phase": "Pending"}}


@pytest.mark.parametrize("text, expected", [
    ("100m", Fraction(1, 10)), ("2", Fraction(2)), ("16Gi", Fraction(16 * 2**30)), ("1e3", Fraction(1000)),
    ("1.5", Fraction(3, 2)), ("500M", Fraction(500 * 10**6)), (8, Fraction(8)),
])
def test_quantities_parse_exactly(text: Any, expected: Fraction) -> None:
    assert parse_quantity(text) == expected


def test_a_malformed_quantity_is_rejected_with_the_value() -> None:
    with pytest.raises(QuantityError, match="'12 GB'"):
        parse_quantity("12 GB")


def test_extended_resource_limits_default_the_requests_and_init_containers_take_the_max() -> None:
    pod = make_pod(requests={"cpu": "1"}, limits={"nvidia.com/gpu": "8"})
    pod["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "3"}}}]
    assert pod_requests(pod) == {"cpu": Fraction(3), "nvidia.com/gpu": Fraction(8)}


@pytest.mark.parametrize("toleration, tolerated", [
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, True),
    ({"key": "nvidia.com/gpu", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),
    ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}, True),
    ({"key": "nvidia.com/gpu", "value": "present"}, True),
    ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}, False),
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, False),
    ({"key": "gpu-workload", "operator": "Exists"}, False),
])
def test_tolerations_match_taints_like_the_api(toleration: dict, tolerated: bool) -> None:
    assert toleration_tolerates(toleration, GPU_TAINT) is tolerated


@pytest.mark.parametrize("expr, matches", [
    ({"key": "gpu", "operator": "In", "values": ["h100", "a100"]}, True),
    ({"key": "gpu", "operator": "NotIn", "values": ["h100"]}, False),
    ({"key": "absent", "operator": "NotIn", "values": ["x"]}, True),
    ({"key": "gpu", "operator": "Exists"}, True),
    ({"key": "gpu", "operator": "DoesNotExist"}, False),
    ({"key": "count", "operator": "Gt", "values": ["4"]}, True),
    ({"key": "count", "operator": "Lt", "values": ["4"]}, False),
    ({"key": "gpu", "operator": "Gt", "values": ["4"]}, False),  # not an integer label
])
def test_required_node_affinity_operators(expr: dict, matches: bool) -> None:
    node = make_node(labels={"gpu": "h100", "count": "8"})
    assert pod_matches_node_affinity(make_pod(affinity_terms=[{"matchExpressions": [expr]}]), node) is matches


def test_affinity_terms_are_ored_and_match_fields_select_the_node_name() -> None:
    node = make_node("gpu-1", labels={"zone": "a"})
    terms = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
             {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-1"]}]}]
    assert pod_matches_node_affinity(make_pod(affinity_terms=terms), node)
    assert not pod_matches_node_affinity(make_pod(affinity_terms=terms[:1]), node)
    assert not pod_matches_node_affinity(make_pod(affinity_terms=[{}]), node)


def test_node_selector_needs_every_label() -> None:
    node = make_node(labels={"a": "1", "b": "2"})
    assert pod_matches_node_affinity(make_pod(node_selector={"a": "1"}), node)
    assert not pod_matches_node_affinity(make_pod(node_selector={"a": "1", "c": "3"}), node)


def test_filters_stop_at_the_first_failing_plugin_in_kube_scheduler_order() -> None:
    node = make_node(taints=[GPU_TAINT], labels={})
    pod = make_pod(requests={"cpu": "64"}, node_selector={"x": "y"})
    assert filter_node(pod, node, NodeUsage({}, 0)) == [
        "node(s) had untolerated taint {nvidia.com/gpu: present}"]
    assert filter_node(make_pod(), make_node(unschedulable=True), NodeUsage({}, 0)) == [
        "node(s) were unschedulable"]
    assert filter_node(make_pod(), make_node(ready=False), NodeUsage({}, 0)) == [
        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]


def test_prefer_no_schedule_taints_do_not_block() -> None:
    node = make_node(taints=[{"key": "soft", "effect": "PreferNoSchedule"}])
    assert filter_node(make_pod(), node, NodeUsage({}, 0)) == []


def test_resource_fit_subtracts_bound_pods_and_reports_each_resource() -> None:
    node = make_node(allocatable={"cpu": "4", "memory": "8Gi", "pods": "2", "nvidia.com/gpu": "8",
                                  "vpc.amazonaws.com/efa": "32", "hugepages-2Mi": "5120Mi"})
    bound = make_pod(requests={"cpu": "3", "nvidia.com/gpu": "4"})
    usage = NodeUsage.of([bound])
    fits = make_pod(requests={"cpu": "1", "nvidia.com/gpu": "4", "vpc.amazonaws.com/efa": "32",
                              "hugepages-2Mi": "5Gi"})
    assert filter_node(fits, node, usage) == []
    too_big = make_pod(requests={"cpu": "1500m", "memory": "9Gi", "nvidia.com/gpu": "5",
                                 "hugepages-2Mi": "6Gi"})
    assert filter_node(too_big, node, usage) == [
        "Insufficient cpu", "Insufficient memory", "Insufficient hugepages-2Mi", "Insufficient nvidia.com/gpu"]
    usage.add(fits)
    assert filter_node(make_pod(), node, usage) == ["Too many pods"]


def test_terminated_pods_free_their_resources() -> None:
    done = make_pod(requests={"nvidia.com/gpu": "8"})
    done["status"]["phase"] = "Succeeded"
    node = make_node(allocatable={"cpu": "4", "memory": "8Gi", "pods": "110", "nvidia.com/gpu": "8"})
    assert filter_node(make_pod(limits={"nvidia.com/gpu": "8"}), node, NodeUsage.of([done])) == []


def test_a_node_without_the_extended_resource_is_insufficient() -> None:
    pod = make_pod(limits={"vpc.amazonaws.com/efa": "1"})
    assert filter_node(pod, make_node(), NodeUsage({}, 0)) == ["Insufficient vpc.amazonaws.com/efa"]


def test_failed_scheduling_message_matches_kube_scheduler() -> None:
    reasons = {
        "gpu-1": ["Insufficient nvidia.com/gpu"], "gpu-2": ["Insufficient nvidia.com/gpu"],
        "cpu-1": ["node(s) had untolerated taint {nvidia.com/gpu: present}"],
        "cpu-2": ["node(s) had untolerated taint {nvidia.com/gpu: present}"],
    }
    assert failed_scheduling_message(4, reasons) == (
        "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint "
        "{nvidia.com/gpu: present}. preemption: 0/4 nodes are available: 4 Preemption is not helpful "
        "for scheduling.")


def test_failed_scheduling_histogram_is_sorted_as_strings() -> None:
    reasons = {"a": ["node(s) didn't match Pod's node affinity/selector"],
               "b": ["node(s) didn't match Pod's node affinity/selector"],
               "c": ["node(s) didn't match Pod's node affinity/selector"],
               "d": ["node(s) didn't match Pod's node affinity/selector"],
               "e": ["Insufficient cpu", "Insufficient memory"]}
    assert failed_scheduling_message(5, reasons) == (
        "0/5 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 4 node(s) didn't match "
        "Pod's node affinity/selector. preemption: 0/5 nodes are available: 5 Preemption is not "
        "helpful for scheduling.")
    assert failed_scheduling_message(0, {}) == "no nodes available to schedule pods"
