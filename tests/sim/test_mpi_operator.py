"""MPI operator against a real Store: hostfile, service, workers, launcher Job, status and cleanup."""
from __future__ import annotations

import asyncio
from typing import Any

from pytest_gpucluster.sim import resources
from pytest_gpucluster.sim.controllers.base import get_condition
from pytest_gpucluster.sim.controllers.jobs import JobController
from pytest_gpucluster.sim.controllers.mpi_operator import MpiOperator
from pytest_gpucluster.sim.controllers.podgc import PodGarbageCollector
from pytest_gpucluster.sim.controllers.scheduler import Scheduler
from tests.sim.controllers_testing import FakeKubelet, eventually, find, running
from pytest_gpucluster.sim.store import Store


def world(*, with_crd: bool = True) -> tuple[Store, list[Any]]:
    store = Store()
    if with_crd:
        store.create("customresourcedefinitions.apiextensions.k8s.io", resources.crd_manifest("mpijobs.kubeflow.org"))
    for i in range(2):
        store.create("nodes", {"metadata": {"name": f"gpu-{i}"}, "spec": {}, "status": {
            "allocatable": {"cpu": "96", "memory": "1000Gi", "pods": "110", "nvidia.com/gpu": "8"},
            "conditions": [{"type": "Ready", "status": "True"}]}})
    return store, [Scheduler(store, None), JobController(store, None), MpiOperator(store, None),
                   FakeKubelet(store, None), PodGarbageCollector(store, None)]


def mpijob(name: str, *, launcher_exit: str = "0", **run_policy: Any) -> dict[str, Any]:
    container = {"name": "nccl", "image": "public.ecr.aws/hpc-cloud/nccl-tests:latest"}
    return {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"slotsPerWorker": 8, "runPolicy": {"cleanPodPolicy": "Running", **run_policy},
                     "mpiReplicaSpecs": {
                         "Launcher": {"replicas": 1, "template": {
                             "metadata": {"annotations": {"sim.test/exit": launcher_exit}},
                             "spec": {"containers": [{**container, "command": ["mpirun", "all_reduce_perf"]}]}}},
                         "Worker": {"replicas": 2, "template": {"spec": {"containers": [{
                             **container, "command": ["/usr/sbin/sshd", "-De"],
                             "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}}}}}


def mpi_condition(store: Store, name: str, ctype: str) -> dict[str, Any] | None:
    jobs = find(store, "mpijobs.kubeflow.org", lambda j: j["metadata"]["name"] == name)
    return get_condition(jobs[0], ctype) if jobs else None


def test_mpijob_runs_workers_then_the_launcher_and_succeeds() -> None:
    async def run() -> None:
        store, controllers = world()
        async with running(controllers) as tasks:
            store.create("mpijobs.kubeflow.org", mpijob("nccl"))
            done = await eventually(lambda: mpi_condition(store, "nccl", "Succeeded"), what="Succeeded", tasks=tasks)
            assert done["reason"] == "MPIJobSucceeded" and done["message"] == "MPIJob default/nccl successfully completed."
            obj = store.get("mpijobs.kubeflow.org", "default", "nccl")
            assert get_condition(obj, "Created")["reason"] == "MPIJobCreated"
            assert obj["status"]["completionTime"] and obj["status"]["startTime"]
            config = store.get("configmaps", "default", "nccl-config")
            assert config["data"]["hostfile"] == ("nccl-worker-0.nccl.default.svc slots=8\n"
                                                  "nccl-worker-1.nccl.default.svc slots=8\n")
            assert store.get("services", "default", "nccl")["spec"]["clusterIP"] == "None"
            [launcher] = find(store, "pods", lambda p: p["metadata"]["labels"].get(
                "training.kubeflow.org/job-role") == "launcher")
            assert launcher["metadata"]["name"].startswith("nccl-launcher-")
            assert launcher["metadata"]["labels"]["training.kubeflow.org/job-name"] == "nccl"
            # cleanPodPolicy Running: the (sshd) workers are removed once the job is done
            await eventually(lambda: not find(store, "pods", lambda p: p["metadata"]["labels"].get(
                "training.kubeflow.org/job-role") == "worker"), what="workers cleaned up", tasks=tasks)

    asyncio.run(run())


def test_workers_are_labelled_for_the_kubelet_and_placed_one_per_node() -> None:
    async def run() -> None:
        store, controllers = world()
        async with running(controllers) as tasks:
            job = mpijob("place")
            job["spec"]["runPolicy"]["cleanPodPolicy"] = "None"
            store.create("mpijobs.kubeflow.org", job)
            await eventually(lambda: mpi_condition(store, "place", "Succeeded"), what="Succeeded", tasks=tasks)
            workers = sorted(find(store, "pods", lambda p: p["metadata"]["labels"].get(
                "training.kubeflow.org/job-role") == "worker"), key=lambda p: p["metadata"]["name"])
            assert [w["metadata"]["name"] for w in workers] == ["place-worker-0", "place-worker-1"]
            assert [w["metadata"]["labels"]["training.kubeflow.org/replica-index"] for w in workers] == ["0", "1"]
            assert {w["spec"]["nodeName"] for w in workers} == {"gpu-0", "gpu-1"}
            assert workers[0]["spec"]["hostname"] == "place-worker-0" and workers[0]["spec"]["subdomain"] == "place"
            assert workers[0]["metadata"]["labels"]["training.kubeflow.org/operator-name"] == "mpi-operator"

    asyncio.run(run())


def test_failed_launcher_fails_the_mpijob_and_ttl_removes_it() -> None:
    async def run() -> None:
        store, controllers = world()
        async with running(controllers) as tasks:
            store.create("mpijobs.kubeflow.org", mpijob("broken", launcher_exit="1", backoffLimit=0,
                                                        ttlSecondsAfterFinished=1))
            failed = await eventually(lambda: mpi_condition(store, "broken", "Failed"), what="Failed", tasks=tasks)
            assert failed["reason"] == "MPIJobFailed" and "BackoffLimitExceeded" in failed["message"]
            await eventually(lambda: not find(store, "mpijobs.kubeflow.org", lambda j: True), timeout=4,
                             what="MPIJob deleted after its TTL", tasks=tasks)
            await eventually(lambda: not find(store, "configmaps", lambda c: c["metadata"]["name"] == "broken-config"),
                             what="owned objects cascaded", tasks=tasks)

    asyncio.run(run())


def test_without_the_operator_crd_an_mpijob_is_left_alone() -> None:
    async def run() -> None:
        store, controllers = world(with_crd=False)
        async with running(controllers):
            store.create("mpijobs.kubeflow.org", mpijob("orphan"))  # the store itself does not gate on CRDs
            await asyncio.sleep(0.1)
            assert not find(store, "pods", lambda p: True)
            assert not find(store, "configmaps", lambda c: c["metadata"]["name"] == "orphan-config")

    asyncio.run(run())


def test_launcher_is_created_at_startup_by_default_even_before_workers_run() -> None:
    """Upstream default launcherCreationPolicy AtStartup: the launcher Job exists while no worker can schedule
    (kubeflow/mpi-operator mpi_job_controller.go: `LauncherCreationPolicyAtStartup || countReadyWorkerPods == len`)."""
    async def run() -> None:
        store, controllers = world()
        job = mpijob("race", backoffLimit=0)
        job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["metadata"]["annotations"] = {}   # stays Running
        job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["nodeSelector"] = {"nowhere": "true"}
        async with running(controllers) as tasks:
            store.create("mpijobs.kubeflow.org", job)
            launcher = await eventually(lambda: find(store, "jobs.batch", lambda j: j["metadata"]["name"] ==
                                                     "race-launcher"), what="launcher Job", tasks=tasks)
            assert launcher[0]["spec"]["backoffLimit"] == 0
            assert launcher[0]["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"   # replica default
            workers = find(store, "pods", lambda p: "worker" in p["metadata"]["name"])
            assert workers and not any((p.get("spec") or {}).get("nodeName") for p in workers)
    asyncio.run(run())


def test_wait_for_workers_ready_holds_the_launcher_and_the_replica_restart_policy_wins() -> None:
    async def run() -> None:
        store, controllers = world()
        job = mpijob("patient")
        job["spec"]["launcherCreationPolicy"] = "WaitForWorkersReady"
        job["spec"]["mpiReplicaSpecs"]["Launcher"]["restartPolicy"] = "Never"
        job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["restartPolicy"] = "OnFailure"
        job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["nodeSelector"] = {"nowhere": "true"}
        async with running(controllers) as tasks:
            store.create("mpijobs.kubeflow.org", job)
            await eventually(lambda: find(store, "pods", lambda p: "worker" in p["metadata"]["name"]), what="workers",
                             tasks=tasks)
            await asyncio.sleep(0.5)
            assert not find(store, "jobs.batch", lambda j: True)          # workers never Ready: no launcher
            for pod in find(store, "pods", lambda p: "worker" in p["metadata"]["name"]):
                store.mutate("pods", "default", pod["metadata"]["name"],
                             lambda p: p["spec"].pop("nodeSelector", None))
        store2, controllers2 = world()
        job2 = mpijob("patient")
        job2["spec"]["launcherCreationPolicy"] = "WaitForWorkersReady"
        job2["spec"]["mpiReplicaSpecs"]["Launcher"]["restartPolicy"] = "Never"
        job2["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["restartPolicy"] = "OnFailure"
        async with running(controllers2) as tasks:
            store2.create("mpijobs.kubeflow.org", job2)
            done = await eventually(lambda: mpi_condition(store2, "patient", "Succeeded"), what="Succeeded", tasks=tasks)
            assert done is not None
            launcher = store2.get("jobs.batch", "default", "patient-launcher")
            assert launcher["spec"]["template"]["spec"]["restartPolicy"] == "Never" and \
                launcher["spec"]["backoffLimit"] == 6                    # unset in runPolicy: the Job default
            crd = store2.get("customresourcedefinitions.apiextensions.k8s.io", None, "mpijobs.kubeflow.org")
            spec_props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            assert spec_props["launcherCreationPolicy"]["enum"] == ["AtStartup", "WaitForWorkersReady"]
    asyncio.run(run())


def test_the_nccl_manifest_waits_for_workers_where_the_crd_has_the_field_and_retries_boundedly_elsewhere() -> None:
    """fixtures/mpijob-nccl.yaml through kube/mpijob.py: WaitForWorkersReady with the v0.5+ CRD, else no such field
    and backoffLimit 3; the launcher pinned to the first node under test, the launcher replica restartPolicy Never."""
    from pytest_gpucluster.kube import mpijob
    from pytest_gpucluster.kube.discovery import NodeInfo

    nodes = [NodeInfo(f"gpu-{i}", "p5.48xlarge", {}, [], {"hugepages-2Mi": "0"}, {}, 8, 32, "gpu", None, {}, True)
             for i in range(2)]
    job = mpijob.render(nodes, name="j", namespace="ns", run_id="r", image="img", gpus=8, efa=32, max_size="1G",
                        deadline_s=60, tolerations=[])
    launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]
    terms = launcher["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["gpu-0"]
    assert launcher["restartPolicy"] == "Never" and "restartPolicy" not in launcher["template"]["spec"]
    assert "WaitForWorkersReady" in mpijob.fit_launcher_policy(job, True)
    assert job["spec"]["launcherCreationPolicy"] == "WaitForWorkersReady" and job["spec"]["runPolicy"]["backoffLimit"] == 0
    assert "retried up to 3 times" in mpijob.fit_launcher_policy(job, False)
    assert "launcherCreationPolicy" not in job["spec"] and job["spec"]["runPolicy"]["backoffLimit"] == 3
