"""The batch/v1 Job controller: pods per parallelism/completions, backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished."""
from __future__ import annotations

import copy
from typing import Any

from pytest_gpucluster.sim.controllers.base import (
    Controller,
    get_condition,
    is_deleting,
    owner_reference,
    parse_rfc3339,
    random_suffix,
    rfc3339,
    set_condition,
)
from pytest_gpucluster.sim.controllers.daemonsets import pod_is_ready

BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"


def job_finished(job: dict[str, Any]) -> str | None:
    """"Complete" or "Failed" once the Job has that condition True."""
    for ctype in ("Complete", "Failed"):
        condition = get_condition(job, ctype)
        if condition and condition.get("status") == "True":
            return ctype
    return None


def build_job_pod(job: dict[str, Any]) -> dict[str, Any]:
    meta = job["metadata"]
    template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    labels = {**(tmeta.get("labels") or {}), "batch.kubernetes.io/controller-uid": meta["uid"],
              "batch.kubernetes.io/job-name": meta["name"], "controller-uid": meta["uid"], "job-name": meta["name"]}
    spec = template.get("spec") or {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{meta['name']}-{random_suffix()}", "namespace": meta["namespace"],
                         "labels": labels, "annotations": dict(tmeta.get("annotations") or {}),
                         "ownerReferences": [owner_reference(job)]},
            "spec": spec}


class JobController(Controller):
    """Runs Jobs to completion: NonIndexed completions, Never/OnFailure pods, deadlines and TTL cleanup."""

    name = "jobs"
    watches = ("jobs.batch", "pods")

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        if key == "jobs.batch":
            return True
        return any(r.get("kind") == "Job" for r in (obj.get("metadata") or {}).get("ownerReferences") or [])

    async def reconcile(self) -> None:
        pods_by_owner: dict[str, list[dict[str, Any]]] = {}
        for pod in self.items("pods"):
            for ref in pod["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "Job" and ref.get("controller"):
                    pods_by_owner.setdefault(ref.get("uid", ""), []).append(pod)
        now = self.clock()
        for job in self.items("jobs.batch"):
            if is_deleting(job):
                continue
            self._sync(job, pods_by_owner.get(job["metadata"]["uid"], []), now)

    def _sync(self, job: dict[str, Any], pods: list[dict[str, Any]], now: float) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        status = job.get("status") or {}
        finished = job_finished(job)
        if finished:
            self._expire(job, now)
            return
        if spec.get("suspend"):
            return
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        succeeded = phases.count("Succeeded")
        failed = phases.count("Failed")
        active = [p for p, ph in zip(pods, phases) if ph not in ("Succeeded", "Failed") and not is_deleting(p)]
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec.get("parallelism") or 1)
        backoff_limit = int(spec.get("backoffLimit", 6))
        start = parse_rfc3339(status.get("startTime")) or now
        deadline = spec.get("activeDeadlineSeconds")
        outcome: tuple[str, str, str] | None = None
        if succeeded >= completions:
            outcome = ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        elif failed > backoff_limit:
            outcome = ("Failed", "BackoffLimitExceeded", BACKOFF_MESSAGE)
        elif deadline is not None and now - start >= float(deadline):
            outcome = ("Failed", "DeadlineExceeded", DEADLINE_MESSAGE)
        elif deadline is not None:
            self.wake_in(start + float(deadline) - now)
        if outcome is None:
            missing = min(parallelism, completions - succeeded) - len(active)
            for _ in range(max(0, missing)):
                active.append(self.store.create("pods", build_job_pod(job)))
        else:
            for pod in active:
                self.try_delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
            if outcome[0] == "Failed":
                self.store.record_event(job, outcome[1], outcome[2], type="Warning", component="job-controller")
            else:
                self.store.record_event(job, "Completed", "Job completed", component="job-controller")
        new_status: dict[str, Any] = {
            "startTime": status.get("startTime") or rfc3339(start),
            "active": len(active) if outcome is None else 0,
            "ready": sum(1 for p in active if pod_is_ready(p)) if outcome is None else 0,
            "succeeded": succeeded, "failed": failed, "terminating": 0,
            "uncountedTerminatedPods": {},
        }
        for field in ("active", "succeeded", "failed"):
            if not new_status[field]:
                new_status.pop(field)

        def write(obj: dict[str, Any]) -> None:
            st = obj.setdefault("status", {})
            for field in ("active", "succeeded", "failed"):
                st.pop(field, None)
            st.update(new_status)
            if outcome is not None:
                conditions = st.setdefault("conditions", [])
                set_condition(conditions, outcome[0], "True", outcome[1], outcome[2], now=now,
                              extra={"lastProbeTime": rfc3339(now)})
                if outcome[0] == "Complete":
                    st["completionTime"] = rfc3339(now)

        current = {k: status.get(k) for k in new_status}
        if outcome is not None or current != new_status or any(k in status for k in ("active", "succeeded", "failed")
                                                                 if k not in new_status):
            self.try_mutate("jobs.batch", meta["namespace"], meta["name"], write, subresource="status")
        if outcome is not None:
            self.wake_in(0)

    def _expire(self, job: dict[str, Any], now: float) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        condition = get_condition(job, job_finished(job) or "Complete") or {}
        finished_at = parse_rfc3339(condition.get("lastTransitionTime")) or now
        if now - finished_at >= float(ttl):
            meta = job["metadata"]
            self.try_delete("jobs.batch", meta["namespace"], meta["name"], propagation="Background")
        else:
            self.wake_in(finished_at + float(ttl) - now)
