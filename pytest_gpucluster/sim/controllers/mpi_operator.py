"""The MPI operator (kubeflow.org/v2beta1 MPIJob): hostfile, headless Service, workers, launcher Job and MPIJob status.

As upstream v0.6 (kubeflow/mpi-operator@caa3c47f pkg/controller/mpi_job_controller.go): the launcher Job is created
at job start (launcherCreationPolicy AtStartup, the default) or, with `WaitForWorkersReady`, once every worker is
Ready; it is a batch/v1 Job whose backoffLimit is the MPIJob's runPolicy.backoffLimit (unset: the Job default, 6),
and whose pod restartPolicy is the Launcher replica's restartPolicy (default OnFailure; a template's own is
overridden with a Warning event, setRestartPolicy). The CRD the operator's install manifest ships (v0.5+) carries
launcherCreationPolicy in its schema; the sim serves that schema."""
from __future__ import annotations

import copy
from typing import Any

from pytest_gpucluster.sim.controllers.base import (
    Controller,
    get_condition,
    is_deleting,
    owner_reference,
    parse_rfc3339,
    rfc3339,
    set_condition,
)
from pytest_gpucluster.sim.controllers.daemonsets import pod_is_ready
from pytest_gpucluster.sim.controllers.jobs import job_finished
from pytest_gpucluster.sim.errors import AlreadyExists

MPIJOBS = "mpijobs.kubeflow.org"
JOB_NAME = "training.kubeflow.org/job-name"
JOB_ROLE = "training.kubeflow.org/job-role"
REPLICA_INDEX = "training.kubeflow.org/replica-index"
OPERATOR_NAME = "training.kubeflow.org/operator-name"
WAIT_FOR_WORKERS = "WaitForWorkersReady"
# deploy/v2beta1/mpi-operator.yaml (v0.5.0+): the parts of the MPIJob CRD schema a client checks for
CRD_SPEC_PROPERTIES = {
    "launcherCreationPolicy": {"type": "string", "enum": ["AtStartup", WAIT_FOR_WORKERS],
                               "description": "launcherCreationPolicy if WaitForWorkersReady, the launcher is created "
                                              "only after all workers are in Ready state. Defaults to AtStartup."},
    "runPolicy": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    "mpiReplicaSpecs": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    "slotsPerWorker": {"type": "integer"},
}


def role_labels(job_name: str, role: str, index: int | None = None) -> dict[str, str]:
    labels = {JOB_NAME: job_name, JOB_ROLE: role, OPERATOR_NAME: "mpi-operator"}
    if index is not None:
        labels[REPLICA_INDEX] = str(index)
    return labels


def hostfile(job: dict[str, Any]) -> str:
    """`<job>-worker-<i>.<job>.<ns>.svc slots=N`, one line per worker (OpenMPI syntax)."""
    meta, spec = job["metadata"], job.get("spec") or {}
    workers = int(((spec.get("mpiReplicaSpecs") or {}).get("Worker") or {}).get("replicas") or 0)
    slots = int(spec.get("slotsPerWorker") or 1)
    name, ns = meta["name"], meta["namespace"]
    return "".join(f"{name}-worker-{i}.{name}.{ns}.svc slots={slots}\n" for i in range(workers))


class MpiOperator(Controller):
    """Reconciles MPIJobs while the scenario installs the MPI operator (its CRD is present)."""

    name = "mpi-operator"
    watches = (MPIJOBS, "pods", "jobs.batch")

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        if key == MPIJOBS:
            return True
        return JOB_NAME in ((obj.get("metadata") or {}).get("labels") or {})

    async def reconcile(self) -> None:
        if MPIJOBS not in self.store.crds():
            return
        self._serve_crd_schema()
        now = self.clock()
        pods = [p for p in self.items("pods") if JOB_NAME in (p["metadata"].get("labels") or {})]
        for job in self.items(MPIJOBS):
            if is_deleting(job):
                continue
            ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
            mine = [p for p in pods if p["metadata"]["namespace"] == ns and p["metadata"]["labels"][JOB_NAME] == name]
            self._sync(job, mine, now)

    def _serve_crd_schema(self) -> None:
        """The CRD as the operator's v0.5+ install manifest has it (launcherCreationPolicy in spec's schema)."""
        if getattr(self, "_schema_served", False):
            return
        self._schema_served = True

        def write(crd: dict[str, Any]) -> None:
            for version in (crd.get("spec") or {}).get("versions") or []:
                version["schema"] = {"openAPIV3Schema": {"type": "object", "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                    "spec": {"type": "object", "properties": dict(CRD_SPEC_PROPERTIES)},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}
        self.try_mutate("customresourcedefinitions.apiextensions.k8s.io", None, MPIJOBS, write)

    def _ensure(self, key: str, obj: dict[str, Any]) -> None:
        try:
            self.store.create(key, obj)
        except AlreadyExists:
            pass

    def _sync(self, job: dict[str, Any], pods: list[dict[str, Any]], now: float) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        run_policy = spec.get("runPolicy") or {}
        status = job.get("status") or {}
        finished = self._finished(job)
        if finished:
            self._after_finish(job, pods, run_policy, now)
            return
        owner = [owner_reference(job)]
        if not get_condition(job, "Created"):
            self._ensure("configmaps", {"metadata": {"name": f"{name}-config", "namespace": ns,
                                                     "labels": {"app": name}, "ownerReferences": owner},
                                        "data": {"hostfile": hostfile(job), "discover_hosts.sh":
                                                 "#!/bin/sh\n" + "".join(f"echo {h.split()[0]}\n"
                                                                        for h in hostfile(job).splitlines())}})
            self._ensure("services", {"metadata": {"name": name, "namespace": ns, "labels": {"app": name},
                                                   "ownerReferences": owner},
                                      "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                                               "selector": {JOB_NAME: name, JOB_ROLE: "worker"}}})
            self._ensure("secrets", {"metadata": {"name": f"{name}-ssh", "namespace": ns, "ownerReferences": owner},
                                     "type": "kubernetes.io/ssh-auth",
                                     "data": {"ssh-privatekey": "c2ltdWxhdGVk", "ssh-publickey": "c2ltdWxhdGVk"}})
        replicas = spec.get("mpiReplicaSpecs") or {}
        worker_spec = replicas.get("Worker") or {}
        count = int(worker_spec.get("replicas") or 0)
        workers = {p["metadata"]["name"]: p for p in pods if p["metadata"]["labels"].get(JOB_ROLE) == "worker"}
        for i in range(count):
            pod_name = f"{name}-worker-{i}"
            if pod_name not in workers:
                workers[pod_name] = self.store.create("pods", self._pod(job, worker_spec, pod_name, "worker", i))
        start = parse_rfc3339(status.get("startTime")) or now
        deadline = run_policy.get("activeDeadlineSeconds")
        if deadline is not None and now - start >= float(deadline):
            self._finish(job, "Failed", "DeadlineExceeded",
                         f"MPIJob {ns}/{name} has failed because it has been running longer than its active "
                         "deadline", now)
            return
        if deadline is not None:
            self.wake_in(start + float(deadline) - now)
        all_ready = all(pod_is_ready(p) for p in workers.values()) and len(workers) >= count
        failed_worker = next((p for p in workers.values() if (p.get("status") or {}).get("phase") == "Failed"), None)
        launcher_job = self._launcher_job(job)
        at_startup = spec.get("launcherCreationPolicy", "AtStartup") != WAIT_FOR_WORKERS
        if launcher_job is None and (at_startup or all_ready):
            launcher_job = self._create_launcher(job, replicas.get("Launcher") or {}, run_policy)
        launcher_pods = [p for p in pods if p["metadata"]["labels"].get(JOB_ROLE) == "launcher"]
        conditions = [dict(c) for c in status.get("conditions") or []]
        set_condition(conditions, "Created", "True", "MPIJobCreated", f"MPIJob {ns}/{name} is created.", now=now)
        launcher_running = any((p.get("status") or {}).get("phase") == "Running" for p in launcher_pods)
        if launcher_running and all_ready:
            set_condition(conditions, "Running", "True", "MPIJobRunning", f"MPIJob {ns}/{name} is running.",
                          now=now)
        new_status = {"conditions": conditions, "startTime": status.get("startTime") or rfc3339(start),
                      "replicaStatuses": self._replica_statuses(workers.values(), launcher_pods)}
        self._write(job, new_status)
        outcome = job_finished(launcher_job) if launcher_job is not None else None
        if outcome == "Complete":
            self._finish(job, "Succeeded", "MPIJobSucceeded", f"MPIJob {ns}/{name} successfully completed.", now)
        elif outcome == "Failed" and launcher_job is not None:
            failed = get_condition(launcher_job, "Failed") or {}
            self._finish(job, "Failed", "MPIJobFailed",
                         f"MPIJob {ns}/{name} has failed: launcher {failed.get('reason', 'Failed')}: "
                         f"{failed.get('message', '')}".rstrip(": "), now)
        elif failed_worker is not None:
            self._finish(job, "Failed", "MPIJobFailed",
                         f"MPIJob {ns}/{name} has failed: worker pod {failed_worker['metadata']['name']} failed",
                         now)

    def _pod(self, job: dict[str, Any], replica: dict[str, Any], pod_name: str, role: str, index: int) -> dict[str, Any]:
        meta = job["metadata"]
        template = copy.deepcopy(replica.get("template") or {})
        tmeta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        spec.setdefault("hostname", pod_name)
        spec.setdefault("subdomain", meta["name"])
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": meta["namespace"],
                             "labels": {**(tmeta.get("labels") or {}), **role_labels(meta["name"], role, index)},
                             "annotations": dict(tmeta.get("annotations") or {}),
                             "ownerReferences": [owner_reference(job)]},
                "spec": spec}

    def _launcher_job(self, job: dict[str, Any]) -> dict[str, Any] | None:
        meta = job["metadata"]
        for candidate in self.items("jobs.batch", meta["namespace"]):
            if candidate["metadata"]["name"] == f"{meta['name']}-launcher":
                return candidate
        return None

    def _create_launcher(self, job: dict[str, Any], launcher: dict[str, Any],
                         run_policy: dict[str, Any]) -> dict[str, Any]:
        """v2beta1 runs the launcher as a batch/v1 Job `<job>-launcher` (its pod `<job>-launcher-xxxxx`)."""
        meta = job["metadata"]
        template = copy.deepcopy(launcher.get("template") or {})
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), **role_labels(meta["name"], "launcher", 0)}
        pod_spec = template.setdefault("spec", {})
        if pod_spec.get("restartPolicy"):
            self.store.record_event(job, "SetPodTemplateRestartPolicy", "Restart policy in pod template "
                                    "overridden by restart policy in replica spec", type="Warning",
                                    component="mpi-job-controller")
        policy = launcher.get("restartPolicy") or "OnFailure"          # DefaultLauncherRestartPolicy
        pod_spec["restartPolicy"] = "Never" if policy == "ExitCode" else policy
        pod_spec["hostname"], pod_spec["subdomain"] = f"{meta['name']}-launcher", meta["name"]
        spec: dict[str, Any] = {"template": template}
        if run_policy.get("backoffLimit") is not None:              # nil: the Job's own default (6)
            spec["backoffLimit"] = int(run_policy["backoffLimit"])
        if run_policy.get("activeDeadlineSeconds") is not None:
            spec["activeDeadlineSeconds"] = run_policy["activeDeadlineSeconds"]
        return self.store.create("jobs.batch", {
            "metadata": {"name": f"{meta['name']}-launcher", "namespace": meta["namespace"],
                         "labels": role_labels(meta["name"], "launcher"),
                         "ownerReferences": [owner_reference(job)]},
            "spec": spec})

    @staticmethod
    def _replica_statuses(workers: Any, launchers: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for role, pods in (("Launcher", launchers), ("Worker", list(workers))):
            counts = {"active": 0, "succeeded": 0, "failed": 0}
            for pod in pods:
                phase = (pod.get("status") or {}).get("phase")
                key = {"Succeeded": "succeeded", "Failed": "failed"}.get(phase or "", "active")
                counts[key] += 1
            out[role] = {k: v for k, v in counts.items() if v}
        return out

    def _write(self, job: dict[str, Any], new_status: dict[str, Any]) -> None:
        status = job.get("status") or {}
        if all(status.get(k) == v for k, v in new_status.items()):
            return
        self.try_mutate(MPIJOBS, job["metadata"]["namespace"], job["metadata"]["name"],
                        lambda obj: obj.setdefault("status", {}).update(new_status), subresource="status")

    @staticmethod
    def _finished(job: dict[str, Any]) -> str | None:
        for ctype in ("Succeeded", "Failed"):
            condition = get_condition(job, ctype)
            if condition and condition.get("status") == "True":
                return ctype
        return None

    def _finish(self, job: dict[str, Any], ctype: str, reason: str, message: str, now: float) -> None:
        def write(obj: dict[str, Any]) -> None:
            status = obj.setdefault("status", {})
            conditions = status.setdefault("conditions", [])
            if get_condition(obj, "Running"):
                set_condition(conditions, "Running", "False", reason, message, now=now)
            set_condition(conditions, ctype, "True", reason, message, now=now)
            status["completionTime"] = rfc3339(now)

        updated = self.try_mutate(MPIJOBS, job["metadata"]["namespace"], job["metadata"]["name"], write,
                                  subresource="status")
        if updated is not None:
            self.store.record_event(updated, reason, message, type="Normal" if ctype == "Succeeded" else "Warning",
                                    component="mpi-job-controller")
        self.wake_in(0)

    def _after_finish(self, job: dict[str, Any], pods: list[dict[str, Any]], run_policy: dict[str, Any],
                      now: float) -> None:
        """cleanPodPolicy (Running: running workers go; All: every pod; None: keep) and ttlSecondsAfterFinished."""
        policy = run_policy.get("cleanPodPolicy") or "None"
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            if is_deleting(pod) or policy == "None":
                continue
            if policy == "All" or (policy == "Running" and phase not in ("Succeeded", "Failed")):
                self.try_delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        ttl = run_policy.get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        done = parse_rfc3339((job.get("status") or {}).get("completionTime")) or now
        if now - done >= float(ttl):
            self.try_delete(MPIJOBS, job["metadata"]["namespace"], job["metadata"]["name"])
        else:
            self.wake_in(done + float(ttl) - now)
