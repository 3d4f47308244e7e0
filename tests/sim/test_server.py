"""The simulated apiserver driven over HTTPS by the unmodified `kubernetes` Python client."""
from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from pytest_gpucluster.sim.launcher import SimCluster
from pytest_gpucluster.sim.server import FaultConfig



def status_of(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


def pod_manifest(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36",
                                                               "command": ["true"]}]}}


def test_version_and_discovery(api_client: client.ApiClient) -> None:
    version = client.VersionApi(api_client).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.32")
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert {"apps", "batch", "karpenter.sh", "karpenter.k8s.aws", "kubeflow.org", "nvidia.com",
            "apiextensions.k8s.io", "events.k8s.io", "rbac.authorization.k8s.io"} <= groups
    core_resources = {r.name for r in client.CoreV1Api(api_client).get_api_resources().resources}
    assert {"nodes", "pods", "pods/log", "pods/status", "events", "namespaces"} <= core_resources


def test_wrong_token_is_401(sim: SimCluster) -> None:
    cfg = client.Configuration()
    config.load_kube_config(str(sim.kubeconfig_path), client_configuration=cfg)
    cfg.refresh_api_key_hook = None  # the kubeconfig loader would put the real token back
    cfg.api_key = {"BearerToken": "Bearer not-the-token"}
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(client.ApiClient(cfg)).list_node()
    assert err.value.status == 401 and status_of(err.value)["reason"] == "Unauthorized"


def test_list_nodes_with_selectors(world: SimpleNamespace, core: client.CoreV1Api) -> None:
    names = [n.metadata.name for n in core.list_node().items]
    assert names == sorted([world.gpu_node, world.cpu_node])
    gpu = core.list_node(label_selector="node.kubernetes.io/instance-type in (p5.48xlarge)").items
    assert [n.metadata.name for n in gpu] == [world.gpu_node]
    assert gpu[0].status.allocatable["nvidia.com/gpu"] == "8"
    assert [n.metadata.name for n in core.list_node(field_selector=f"metadata.name={world.cpu_node}").items] == [world.cpu_node]
    pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={world.gpu_node},status.phase=Succeeded")
    assert [p.metadata.name for p in pods.items] == [world.log_pod]


def test_errors_are_status_bodies(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod_manifest("dup"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod_manifest("dup"))
    assert err.value.status == 409 and status_of(err.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("nope", "default")
    body = status_of(err.value)
    assert err.value.status == 404 and body["message"] == 'pods "nope" not found' and body["details"]["name"] == "nope"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod_manifest("Not_Valid"))
    assert err.value.status == 422 and status_of(err.value)["reason"] == "Invalid"
    with pytest.raises(ApiException) as err:
        core.list_pod_for_all_namespaces(field_selector="spec.bogus=1")
    assert err.value.status == 400


def test_replace_with_stale_resource_version_is_conflict(core: client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    cm.data = {"a": "2"}
    core.replace_namespaced_config_map("cfg", "default", cm)
    cm.data = {"a": "3"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cfg", "default", cm)
    assert err.value.status == 409 and status_of(err.value)["reason"] == "Conflict"


def test_patches_and_status_subresource(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod_manifest("patched", app="a"))
    out = core.patch_namespaced_pod("patched", "default", {"metadata": {"labels": {"extra": "1"}}})
    assert out.metadata.labels == {"app": "a", "extra": "1"}
    out = core.patch_namespaced_pod("patched", "default", [{"op": "replace", "path": "/metadata/labels/app",
                                                            "value": "b"}])
    assert out.metadata.labels["app"] == "b"
    out = core.patch_namespaced_pod_status("patched", "default", {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}})
    assert out.status.phase == "Running" and out.status.conditions[0].type == "Ready"
    ignored = core.patch_namespaced_pod("patched", "default", {"status": {"phase": "Failed"}})
    assert ignored.status.phase == "Running"


def test_custom_resources_and_crd_listing(api_client: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api_client)
    pools = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodepools")
    assert [p["metadata"]["name"] for p in pools["items"]] == ["gpu"]
    out = custom.patch_cluster_custom_object("karpenter.sh", "v1", "nodepools", "gpu",
                                             {"spec": {"limits": {"nvidia.com/gpu": "16"}}})
    assert out["spec"]["limits"] == {"nvidia.com/gpu": "16"} and out["metadata"]["generation"] == 2
    crds = client.ApiextensionsV1Api(api_client).list_custom_resource_definition()
    assert "nodeclaims.karpenter.sh" in {c.metadata.name for c in crds.items}


def test_watch_resumes_from_resource_version_and_ends_on_timeout(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "w1"}})
    core.delete_namespaced_config_map("w1", "default")
    events = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1)]
    assert events == [("ADDED", "w1"), ("DELETED", "w1")]


def test_watch_sees_live_changes_and_bookmarks(world: SimpleNamespace, sim: SimCluster, core: client.CoreV1Api) -> None:
    rv = core.list_node().metadata.resource_version
    seen: list[str] = []
    w = watch.Watch()

    def label_later() -> None:
        time.sleep(0.3)
        core.patch_node(world.cpu_node, {"metadata": {"labels": {"watched": "yes"}}})
    threading.Thread(target=label_later).start()
    for event in w.stream(core.list_node, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=5):
        seen.append(event["type"])
        if event["type"] == "MODIFIED":
            assert event["object"].metadata.labels["watched"] == "yes"
            w.stop()
    assert seen[-1] == "MODIFIED" and "BOOKMARK" in seen


def test_watch_from_compacted_resource_version_is_410(world: SimpleNamespace, sim: SimCluster, core: client.CoreV1Api) -> None:
    def churn(store: Any) -> None:
        for i in range(store._history_size + 5):
            store.mutate("nodes", None, world.cpu_node, lambda o, i=i: o["metadata"]["labels"].__setitem__("churn", str(i)))
    old_rv = "1"
    sim.call(churn, sim.store)
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(core.list_node, resource_version=old_rv, timeout_seconds=2,
                                      _preload_content=False):
            pass
    assert err.value.status == 410


def test_pod_logs_tail_and_errors(world: SimpleNamespace, core: client.CoreV1Api) -> None:
    # kubernetes 36 returns str(bytes) for logs with preloaded content: read the raw response instead
    text = core.read_namespaced_pod_log(world.log_pod, "default", _preload_content=False).data.decode()
    assert text.splitlines()[0].startswith("GPU 0: NVIDIA H100 80GB HBM3") and len(text.splitlines()) == 8
    tail = core.read_namespaced_pod_log(world.log_pod, "default", tail_lines=2, _preload_content=False).data.decode()
    assert tail.splitlines()[0].startswith("GPU 6") and len(tail.splitlines()) == 2
    core.create_namespaced_pod("default", pod_manifest("waiting"))
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log("waiting", "default")
    assert err.value.status == 400 and "is waiting to start" in status_of(err.value)["message"]


def test_pod_logs_follow_until_container_terminates(world: SimpleNamespace, sim: SimCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod_manifest("follow"))
    world.write_log(sim, "default", "follow", "main", "line 1\n")

    def finish() -> None:
        time.sleep(0.3)
        world.write_log(sim, "default", "follow", "main", "line 2\n")
        time.sleep(0.2)
        core.patch_namespaced_pod_status("follow", "default", {"status": {"phase": "Succeeded", "containerStatuses": [
            {"name": "main", "ready": False, "restartCount": 0, "image": "busybox", "imageID": "",
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}})
    threading.Thread(target=finish).start()
    resp = core.read_namespaced_pod_log("follow", "default", follow=True, _preload_content=False)
    assert resp.data.decode() == "line 1\nline 2\n"


def test_delete_cascades_and_namespace_deletion(api_client: client.ApiClient, core: client.CoreV1Api) -> None:
    batch = client.BatchV1Api(api_client)
    core.create_namespace({"metadata": {"name": "run-1"}})
    job = batch.create_namespaced_job("run-1", {"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job.metadata.uid, "controller": True}
    for name in ("j-a", "j-b"):
        manifest = pod_manifest(name)
        manifest["metadata"]["ownerReferences"] = [owner]
        core.create_namespaced_pod("run-1", manifest)
    batch.delete_namespaced_job("j", "run-1")  # batch/v1 default: orphan the pods, as Kubernetes does
    assert sorted(p.metadata.name for p in core.list_namespaced_pod("run-1").items) == ["j-a", "j-b"]
    core.create_namespaced_config_map("run-1", {"metadata": {"name": "c"}})
    core.delete_namespace("run-1")
    with pytest.raises(ApiException) as err:
        core.read_namespace("run-1")
    assert err.value.status == 404
    assert core.list_namespaced_pod("run-1").items == []


def test_events_in_both_apis(world: SimpleNamespace, api_client: client.ApiClient, core: client.CoreV1Api) -> None:
    ev = core.list_namespaced_event("default", field_selector=f"involvedObject.name={world.log_pod}").items
    assert ev[0].reason == "Scheduled" and ev[0].source.component == "default-scheduler"
    v1 = client.EventsV1Api(api_client).list_namespaced_event("default", field_selector=f"regarding.name={world.log_pod}")
    assert v1.items[0].note.startswith("Successfully assigned")


def test_request_counts_per_verb_and_resource(sim: SimCluster, core: client.CoreV1Api) -> None:
    before = sim.stats()["requests"].get("list nodes", 0)
    core.list_node()
    core.list_node()
    stats = sim.stats()
    assert stats["requests"]["list nodes"] == before + 2 and stats["nodes"] == 2
    assert stats["requests_total"] >= sum(v for k, v in stats["requests"].items() if k.startswith("list "))


RBAC_YAML = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: gpucluster, namespace: gpucluster}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gpucluster-reader}
rules:
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["karpenter.sh"]
  resources: ["nodepools", "nodeclaims"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: gpucluster-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gpucluster-reader}
subjects:
- {kind: ServiceAccount, name: gpucluster, namespace: gpucluster}
"""


def test_rbac_restricts_the_test_identity(tmp_path: Path) -> None:
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(RBAC_YAML)
    with SimCluster(None, rbac=manifest) as sim:
        api = config.new_client_from_config(str(sim.kubeconfig_path))
        core = client.CoreV1Api(api)
        assert core.list_node().items == []
        client.CustomObjectsApi(api).list_cluster_custom_object("karpenter.sh", "v1", "nodepools")
        with pytest.raises(ApiException) as err:
            core.list_namespaced_pod("x")
        assert err.value.status == 403
        assert status_of(err.value)["message"] == (
            'pods is forbidden: User "system:serviceaccount:gpucluster:gpucluster" cannot list resource "pods" '
            'in API group "" in the namespace "x"')
        with pytest.raises(ApiException) as err:
            client.BatchV1Api(api).create_namespaced_job("x", {"metadata": {"name": "j"}})
        assert 'cannot create resource "jobs" in API group "batch"' in status_of(err.value)["message"]


def test_flaky_api_injects_429_500_503_and_drops(tmp_path: Path) -> None:
    faults = FaultConfig(error_rate=0.5, seed=7, kinds=[429, 500, 503, "drop"], retry_after_seconds=2)
    with SimCluster(None, faults=faults) as sim:
        ctx = ssl.create_default_context(cafile=None)
        ctx.load_verify_locations(cadata=sim._ca_pem.decode())
        token = sim._token
        seen: dict[str, int] = {}
        for _ in range(60):
            conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=5)
            try:
                conn.request("GET", "/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                body = resp.read()
                seen[str(resp.status)] = seen.get(str(resp.status), 0) + 1
                if resp.status == 429:
                    assert resp.getheader("Retry-After") == "2"
                    assert json.loads(body)["reason"] == "TooManyRequests"
            except (http.client.RemoteDisconnected, ConnectionResetError):
                seen["drop"] = seen.get("drop", 0) + 1
            finally:
                conn.close()
        assert set(seen) == {"200", "429", "500", "503", "drop"}
        assert 15 <= seen["200"] <= 45
        assert sum(sim.stats()["faults"].values()) == 60 - seen["200"]
