"""Unit tests of the simulated apiserver's store: CRUD, resourceVersions, selectors, watches, deletion."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pytest_gpucluster.sim import resources
from pytest_gpucluster.sim.errors import AlreadyExists, BadRequest, Conflict, Forbidden, Gone, Invalid, NotFound
from pytest_gpucluster.sim.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Store:
    return Store(clock=clock, history=50)


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {}, "status": {"capacity": {"cpu": "4"}}}


def pod(name: str, ns: str = "default", node_name: str | None = None, **labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec}


def test_create_fills_metadata_and_get_returns_copies(store: Store) -> None:
    created = store.create("nodes", node("n1"))
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] == "2027-01-15T08:00:00Z"
    assert int(meta["resourceVersion"]) == store.resource_version
    assert created["apiVersion"] == "v1" and created["kind"] == "Node"
    got = store.get("nodes", None, "n1")
    got["metadata"]["labels"]["x"] = "y"
    assert "x" not in store.get("nodes", None, "n1")["metadata"]["labels"]


def test_resource_versions_increase_globally(store: Store) -> None:
    rvs = [int(store.create("nodes", node(f"n{i}"))["metadata"]["resourceVersion"]) for i in range(3)]
    rvs.append(int(store.create("pods", pod("p"))["metadata"]["resourceVersion"]))
    assert rvs == sorted(rvs) and len(set(rvs)) == 4


def test_generate_name_and_already_exists(store: Store) -> None:
    a = store.create("pods", {"metadata": {"generateName": "probe-", "namespace": "default"},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}})
    assert a["metadata"]["name"].startswith("probe-") and len(a["metadata"]["name"]) == len("probe-") + 5
    store.create("nodes", node("n1"))
    with pytest.raises(AlreadyExists, match='nodes "n1" already exists'):
        store.create("nodes", node("n1"))


def test_invalid_and_missing_namespace(store: Store) -> None:
    with pytest.raises(Invalid, match="metadata.name"):
        store.create("nodes", node("Bad_Name"))
    with pytest.raises(Invalid, match="name or generateName is required"):
        store.create("nodes", {"metadata": {}})
    with pytest.raises(NotFound, match='namespaces "nope" not found'):
        store.create("pods", pod("p", ns="nope"))


def test_replace_with_stale_resource_version_conflicts(store: Store) -> None:
    first = store.create("nodes", node("n1"))
    first["metadata"]["labels"]["a"] = "1"
    store.replace("nodes", first)
    first["metadata"]["labels"]["a"] = "2"
    with pytest.raises(Conflict, match="the object has been modified"):
        store.replace("nodes", first)


def test_status_subresource_rules_and_generation(store: Store) -> None:
    created = store.create("nodepools.karpenter.sh", {"metadata": {"name": "gpu"}, "spec": {"weight": 1}})
    assert created["metadata"]["generation"] == 1
    created["status"] = {"resources": {"nodes": "3"}}
    created["spec"]["weight"] = 2
    updated = store.replace("nodepools.karpenter.sh", created)
    assert "status" not in updated and updated["metadata"]["generation"] == 2
    updated["status"] = {"resources": {"nodes": "3"}}
    updated["spec"]["weight"] = 9
    status_only = store.replace("nodepools.karpenter.sh", updated, subresource="status")
    assert status_only["status"] == {"resources": {"nodes": "3"}} and status_only["spec"]["weight"] == 2
    assert status_only["metadata"]["generation"] == 2


def test_noop_update_keeps_resource_version(store: Store) -> None:
    created = store.create("nodes", node("n1"))
    again = store.mutate("nodes", None, "n1", lambda o: None)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_label_selectors(store: Store) -> None:
    store.create("nodes", node("a", pool="gpu", zone="a"))
    store.create("nodes", node("b", pool="cpu", zone="b"))
    store.create("nodes", node("c", zone="c"))

    def names(sel: str) -> list[str]:
        return [o["metadata"]["name"] for o in store.list("nodes", label_selector=sel)[0]]

    assert names("pool=gpu") == ["a"]
    assert names("pool==gpu") == ["a"]
    assert names("pool!=gpu") == ["b", "c"]
    assert names("zone in (a,c)") == ["a", "c"]
    assert names("zone notin (a, c)") == ["b"]
    assert names("pool") == ["a", "b"]
    assert names("!pool") == ["c"]
    assert names("pool,zone in (b)") == ["b"]
    with pytest.raises(BadRequest):
        names("zone in (a")


def test_field_selectors(store: Store) -> None:
    store.create("nodes", node("n1"))
    store.create("pods", pod("p1", node_name="n1"))
    store.create("pods", pod("p2"))
    store.mutate("pods", "default", "p1", lambda o: o["status"].__setitem__("phase", "Running"))

    def names(sel: str) -> list[str]:
        return [o["metadata"]["name"] for o in store.list("pods", "default", field_selector=sel)[0]]

    assert names("spec.nodeName=n1") == ["p1"]
    assert names("spec.nodeName=") == ["p2"]
    assert names("status.phase!=Running") == ["p2"]
    assert names("metadata.name=p2,metadata.namespace=default") == ["p2"]
    with pytest.raises(BadRequest, match="field label not supported: spec.bogus"):
        names("spec.bogus=1")


def test_event_field_selectors_and_aggregation(store: Store, clock: Clock) -> None:
    p = store.create("pods", pod("p1"))
    store.record_event(p, "FailedScheduling", "0/1 nodes are available", type="Warning")
    clock.now += 5
    ev = store.record_event(p, "FailedScheduling", "0/1 nodes are available", type="Warning")
    assert ev["count"] == 2 and ev["lastTimestamp"] != ev["firstTimestamp"]
    items, _ = store.list("events", "default", field_selector="involvedObject.name=p1,reason=FailedScheduling")
    assert len(items) == 1 and items[0]["source"]["component"] == "default-scheduler"
    v1, _ = store.list("events.events.k8s.io", "default", field_selector="regarding.name=p1")
    assert v1[0]["note"] == "0/1 nodes are available" and v1[0]["deprecatedCount"] == 2


def collect(store: Store, n: int, **kw: Any) -> list[tuple[str, str]]:
    async def run() -> list[tuple[str, str]]:
        w = store.watch(**kw)
        out = []
        async for etype, obj in w:
            out.append((etype, obj["metadata"].get("name", "")))
            if len(out) == n:
                break
        w.close()
        return out
    return asyncio.run(asyncio.wait_for(run(), 2))


def test_watch_initial_state_then_resume_from_resource_version(store: Store) -> None:
    store.create("nodes", node("a"))
    rv = store.create("nodes", node("b"))["metadata"]["resourceVersion"]
    store.mutate("nodes", None, "a", lambda o: o["metadata"]["labels"].__setitem__("x", "1"))
    store.delete("nodes", None, "b")
    assert collect(store, 1, key="nodes", namespace=None) == [("ADDED", "a")]
    assert collect(store, 2, key="nodes", namespace=None, resource_version=rv) == [
        ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_selector_transitions_become_added_and_deleted(store: Store) -> None:
    rv = store.create("nodes", node("a"))["metadata"]["resourceVersion"]
    store.mutate("nodes", None, "a", lambda o: o["metadata"]["labels"].__setitem__("gpu", "yes"))
    store.mutate("nodes", None, "a", lambda o: o["metadata"]["labels"].pop("gpu"))
    assert collect(store, 2, key="nodes", namespace=None, resource_version=rv, label_selector="gpu") == [
        ("ADDED", "a"), ("DELETED", "a")]


def test_watch_too_old_resource_version_is_gone(store: Store) -> None:
    first = store.create("nodes", node("n0"))["metadata"]["resourceVersion"]
    for i in range(60):
        store.mutate("nodes", None, "n0", lambda o, i=i: o["metadata"]["labels"].__setitem__("i", str(i)))
    with pytest.raises(Gone, match="too old resource version"):
        store.watch("nodes", None, resource_version=first)


def test_watch_bookmarks_carry_current_resource_version(store: Store) -> None:
    async def run() -> tuple[str, dict[str, Any]]:
        w = store.watch("nodes", None, resource_version=str(store.resource_version), bookmarks=True,
                        bookmark_interval=0.05)
        out = await w.__anext__()
        w.close()
        return out
    etype, obj = asyncio.run(asyncio.wait_for(run(), 2))
    assert etype == "BOOKMARK" and obj["metadata"]["resourceVersion"] == str(store.resource_version)


def test_finalizers_hold_deletion_until_removed(store: Store) -> None:
    store.create("configmaps", {"metadata": {"name": "c", "namespace": "default", "finalizers": ["x/y"]}})
    held = store.delete("configmaps", "default", "c")
    assert held["metadata"]["deletionTimestamp"]
    assert store.get("configmaps", "default", "c")
    store.patch("configmaps", "default", "c", {"metadata": {"finalizers": None}})
    with pytest.raises(NotFound):
        store.get("configmaps", "default", "c")


def test_bound_pod_waits_for_kubelet_unbound_pod_goes_at_once(store: Store, clock: Clock) -> None:
    store.create("pods", pod("free"))
    store.delete("pods", "default", "free")
    with pytest.raises(NotFound):
        store.get("pods", "default", "free")
    store.create("pods", pod("bound", node_name="n1"))
    terminating = store.delete("pods", "default", "bound")
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 30
    assert terminating["metadata"]["deletionTimestamp"] == "2027-01-15T08:00:30Z"
    store.delete("pods", "default", "bound", grace_seconds=0)  # what the kubelet does
    with pytest.raises(NotFound):
        store.get("pods", "default", "bound")


def owned(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    p = pod(name)
    p["metadata"]["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                         "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                         "controller": True, "blockOwnerDeletion": True}]
    return p


def test_cascade_background_orphan_foreground(store: Store) -> None:
    job = store.create("jobs.batch", {"metadata": {"name": "j", "namespace": "default"}, "spec": {}})
    store.create("pods", owned("j-1", job))
    store.delete("jobs.batch", "default", "j", propagation="Background")
    assert store.list("pods", "default")[0] == []

    job = store.create("jobs.batch", {"metadata": {"name": "j", "namespace": "default"}, "spec": {}})
    store.create("pods", owned("j-2", job))
    store.delete("jobs.batch", "default", "j", propagation="Orphan")
    assert store.get("pods", "default", "j-2")["metadata"]["ownerReferences"] == []

    ds = store.create("daemonsets.apps", {"metadata": {"name": "d", "namespace": "default"}, "spec": {}})
    bound = owned("d-1", ds)
    bound["spec"]["nodeName"] = "n1"
    store.create("pods", bound)
    held = store.delete("daemonsets.apps", "default", "d", propagation="Foreground")
    assert "foregroundDeletion" in held["metadata"]["finalizers"]
    assert store.get("pods", "default", "d-1")["metadata"]["deletionTimestamp"]
    store.delete("pods", "default", "d-1", grace_seconds=0)
    with pytest.raises(NotFound):
        store.get("daemonsets.apps", "default", "d")


def test_namespace_deletion_cascades(store: Store) -> None:
    store.create("namespaces", {"metadata": {"name": "run"}})
    store.create("pods", pod("p", ns="run"))
    store.create("configmaps", {"metadata": {"name": "c", "namespace": "run"}})
    store.delete("namespaces", None, "run")
    with pytest.raises(NotFound):
        store.get("namespaces", None, "run")
    assert store.list("configmaps", "run")[0] == []

    store.create("namespaces", {"metadata": {"name": "slow"}})
    store.create("pods", pod("p", ns="slow", node_name="n1"))
    assert store.delete("namespaces", None, "slow")["status"]["phase"] == "Terminating"
    with pytest.raises(Forbidden, match="being terminated"):
        store.create("configmaps", {"metadata": {"name": "c", "namespace": "slow"}})
    store.delete("pods", "slow", "p", grace_seconds=0)
    with pytest.raises(NotFound):
        store.get("namespaces", None, "slow")


def test_merge_strategic_and_json_patches(store: Store) -> None:
    template = pod("t")["spec"]
    template["containers"].append({"name": "side", "image": "a:1", "env": [{"name": "A", "value": "1"}]})
    template["tolerations"] = [{"key": "a", "operator": "Exists"}]
    store.create("daemonsets.apps", {"metadata": {"name": "d", "namespace": "default"},
                                     "spec": {"template": {"spec": template}}})
    out = store.patch("daemonsets.apps", "default", "d", {"spec": {"template": {"spec": {"containers": [
        {"name": "side", "image": "a:2", "env": [{"name": "B", "value": "2"}]}]}}}}, "strategic")
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main", "side"]
    assert containers[1]["image"] == "a:2" and [e["name"] for e in containers[1]["env"]] == ["A", "B"]
    out = store.patch("daemonsets.apps", "default", "d", {"spec": {"template": {"spec": {"tolerations": [
        {"key": "b", "operator": "Exists"}]}}}}, "strategic")
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]  # replaced
    assert out["metadata"]["generation"] == 3
    store.create("pods", pod("p"))
    with pytest.raises(Invalid, match="pod updates may not change fields"):
        store.patch("pods", "default", "p", {"spec": {"restartPolicy": "Never"}}, "strategic")
    out = store.patch("pods", "default", "p", {"metadata": {"labels": {"x": "1"}}}, "merge")
    assert out["metadata"]["labels"] == {"x": "1"}
    out = store.patch("pods", "default", "p", [{"op": "add", "path": "/metadata/labels/y", "value": "2"},
                                               {"op": "remove", "path": "/metadata/labels/x"}], "json")
    assert out["metadata"]["labels"] == {"y": "2"}
    with pytest.raises(Invalid):
        store.patch("pods", "default", "p", [{"op": "test", "path": "/metadata/labels/y", "value": "3"}], "json")


def test_strategic_conditions_merge_by_type_on_status(store: Store) -> None:
    store.create("nodes", {"metadata": {"name": "n"}, "status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}]}})
    out = store.patch("nodes", None, "n", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                      "strategic", subresource="status")
    assert {c["type"]: c["status"] for c in out["status"]["conditions"]} == {"Ready": "True", "MemoryPressure": "False"}


def test_strategic_patch_rejected_for_custom_resources(store: Store) -> None:
    store.create("nodepools.karpenter.sh", {"metadata": {"name": "gpu"}, "spec": {}})
    from pytest_gpucluster.sim.errors import UnsupportedMediaType
    with pytest.raises(UnsupportedMediaType):
        store.patch("nodepools.karpenter.sh", None, "gpu", {"spec": {"weight": 1}}, "strategic")


def test_crd_manifests_cover_custom_keys(store: Store) -> None:
    for key in resources.CUSTOM_KEYS:
        store.create("customresourcedefinitions.apiextensions.k8s.io", resources.crd_manifest(key))
    assert store.crds() == {resources.crd_name(k) for k in resources.CUSTOM_KEYS}


def test_subscribers_see_commits(store: Store) -> None:
    seen: list[tuple[str, str, str]] = []
    unsubscribe = store.subscribe(lambda t, k, o: seen.append((t, k, o["metadata"]["name"])))
    store.create("nodes", node("n"))
    store.delete("nodes", None, "n")
    unsubscribe()
    store.create("nodes", node("m"))
    assert seen == [("ADDED", "nodes", "n"), ("DELETED", "nodes", "n")]
