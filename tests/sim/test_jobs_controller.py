"""batch/v1 Job controller against a real Store: completion, backoff limit, deadline, TTL cleanup."""
from __future__ import annotations

import asyncio
from typing import Any

from pytest_gpucluster.sim.controllers.base import get_condition
from pytest_gpucluster.sim.controllers.jobs import JobController
from pytest_gpucluster.sim.controllers.podgc import PodGarbageCollector
from pytest_gpucluster.sim.controllers.scheduler import Scheduler
from tests.sim.controllers_testing import FakeKubelet, eventually, find, running
from pytest_gpucluster.sim.store import Store


def world() -> tuple[Store, list[Any]]:
    store = Store()
    store.create("nodes", {"metadata": {"name": "cpu-1"}, "spec": {}, "status": {
        "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True"}]}})
    return store, [Scheduler(store, None), JobController(store, None), FakeKubelet(store, None),
                   PodGarbageCollector(store, None)]


def job(name: str, *, exit_code: str | None = "0", **spec: Any) -> dict[str, Any]:
    annotations = {"sim.test/exit": exit_code} if exit_code is not None else {}
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {
        "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                     "spec": {"restartPolicy": "Never",
                              "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}]}},
        **spec}}


def condition(store: Store, name: str, ctype: str) -> dict[str, Any] | None:
    jobs = find(store, "jobs.batch", lambda j: j["metadata"]["name"] == name)
    return get_condition(jobs[0], ctype) if jobs else None


def test_job_completes_with_its_pods_labelled_and_owned() -> None:
    async def run() -> None:
        store, controllers = world()
        async with running(controllers) as tasks:
            store.create("jobs.batch", job("ok", completions=2, parallelism=1))
            done = await eventually(lambda: condition(store, "ok", "Complete"), what="Complete", tasks=tasks)
            assert done["status"] == "True"
            status = store.get("jobs.batch", "default", "ok")["status"]
            assert status["succeeded"] == 2 and "active" not in status and status["completionTime"]
            pods = find(store, "pods", lambda p: p["metadata"]["labels"].get("job-name") == "ok")
            assert len(pods) == 2 and all(p["metadata"]["name"].startswith("ok-") for p in pods)
            assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "Job"
            assert pods[0]["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "ok"

    asyncio.run(run())


def test_failures_beyond_the_backoff_limit_fail_the_job() -> None:
    async def run() -> None:
        store, controllers = world()
        async with running(controllers) as tasks:
            store.create("jobs.batch", job("bad", exit_code="1", backoffLimit=1))
            failed = await eventually(lambda: condition(store, "bad", "Failed"), what="Failed", tasks=tasks)
            assert failed["reason"] == "BackoffLimitExceeded"
            assert failed["message"] == "Job has reached the specified backoff limit"
            assert store.get("jobs.batch", "default", "bad")["status"]["failed"] == 2

    asyncio.run(run())


def test_active_deadline_fails_and_kills_the_running_pod() -> None:
    async def run() -> None:
        store, controllers = world()
        async with running(controllers) as tasks:
            store.create("jobs.batch", job("slow", exit_code=None, activeDeadlineSeconds=1))
            failed = await eventually(lambda: condition(store, "slow", "Failed"), timeout=4,
                                      what="DeadlineExceeded", tasks=tasks)
            assert failed["reason"] == "DeadlineExceeded"
            await eventually(lambda: not find(store, "pods", lambda p: True), what="pod killed", tasks=tasks)

    asyncio.run(run())


def test_ttl_after_finished_deletes_the_job_and_its_pods() -> None:
    async def run() -> None:
        store, controllers = world()
        async with running(controllers) as tasks:
            store.create("jobs.batch", job("short-lived", ttlSecondsAfterFinished=0))
            await eventually(lambda: not find(store, "jobs.batch", lambda j: True)
                             and not find(store, "pods", lambda p: True), what="job and pods gone", tasks=tasks)
            assert find(store, "events", lambda e: e["reason"] == "Completed")

    asyncio.run(run())
