"""Server-side apply in the simulated apiserver: ownership, removal of dropped fields, conflicts and force."""
from __future__ import annotations

from typing import Any

import pytest

from pytest_gpucluster.sim.apply import apply, field_set, path_text
from pytest_gpucluster.sim.errors import ApiError, Invalid


def pod(**labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "ns", **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}


def run(live: dict[str, Any] | None, applied: dict[str, Any], manager: str = "kubectl", *, force: bool = False,
        now: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return apply(live, applied, manager=manager, force=force, api_version="v1", kind="Pod", now=now)


def test_an_apply_creates_and_records_what_it_set() -> None:
    created = run(None, pod(app="x"))
    assert created["spec"] == {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    assert created["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1", "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"main"}': {".": {}, "f:name": {}, "f:image": {}}}}}}]


def test_fields_left_out_are_removed_unless_someone_else_owns_them() -> None:
    live = run(None, pod(app="x", tier="web"))
    live["spec"]["dnsPolicy"] = "ClusterFirst"      # defaulted by the server: owned by nobody, kept
    live = run(live, pod(app="x", tier="web", team="gpu"), "labeller")   # co-owns app and tier
    after = run(live, pod())
    assert after["metadata"]["labels"] == {"app": "x", "tier": "web", "team": "gpu"}
    after = run(after, pod(), "labeller")
    assert "labels" not in after["metadata"] and after["spec"]["dnsPolicy"] == "ClusterFirst"


def test_keyed_lists_merge_by_key_and_items_dropped_from_the_config_go() -> None:
    two = pod()
    two["spec"]["containers"].append({"name": "sidecar", "image": "envoy"})
    live = run(None, two)
    live["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    one = pod()
    one["spec"]["containers"][0]["image"] = "busybox:1.37"
    after = run(live, one)
    assert after["spec"]["containers"] == [{"name": "main", "image": "busybox:1.37",
                                            "terminationMessagePath": "/dev/termination-log"}]


def test_a_different_value_another_applier_owns_is_a_conflict_unless_forced() -> None:
    live = run(None, pod(app="x"), "ci")
    with pytest.raises(ApiError) as caught:
        run(live, pod(app="y"))
    err = caught.value
    assert (err.code, err.reason) == (409, "Conflict")
    assert err.message == 'Apply failed with 1 conflict: conflict with "ci": .metadata.labels.app'
    assert err.details["causes"] == [{"type": "FieldManagerConflict", "message": 'conflict with "ci"',
                                      "field": ".metadata.labels.app"}]
    forced = run(live, pod(app="y"), force=True)
    assert forced["metadata"]["labels"] == {"app": "y"}
    owners = {m["manager"]: m["fieldsV1"] for m in forced["metadata"]["managedFields"]}
    assert "f:labels" not in owners["ci"].get("f:metadata", {}) and owners["kubectl"]["f:metadata"]
    assert run(live, pod(app="x"))["metadata"]["labels"] == {"app": "x"}   # the same value: co-owned


def test_a_repeated_apply_changes_nothing_not_even_the_time() -> None:
    live = run(None, pod(app="x"))
    assert run(live, pod(app="x"), now="2026-06-01T00:00:00Z") == live


def test_set_lists_and_a_missing_field_manager() -> None:
    fs = field_set({"metadata": {"name": "p", "finalizers": ["a/b"]}, "spec": {"args": ["x"]}}, "Pod")
    assert fs == {"f:metadata": {"f:finalizers": {'v:"a/b"': {}}}, "f:spec": {"f:args": {}}}
    path = ("f:spec", "f:containers", 'k:{"name":"main"}', "f:image")
    assert path_text(path) == '.spec.containers[name="main"].image'
    with pytest.raises(Invalid, match="fieldManager: Required value: is required for apply patch"):
        run(None, pod(), "")
