"""Kubeflow MPIJobs (kubeflow.org/v2beta1): render fixtures/mpijob-nccl.yaml for a set of nodes, submit it,
wait for it to finish (one watch), and read the launcher's log; several jobs on disjoint nodes run at once."""
from __future__ import annotations

import copy
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import yaml

from . import errors
from .client import Cluster
from .discovery import NodeInfo
from .progress import QUIET, ProgressFactory
from .probes import EFA_RESOURCE, GPU_RESOURCE, HOSTNAME_LABEL, MANAGED_BY, RUN_LABEL, label_value, manifests_dir
from .quantity import quantity_or
from .watching import DeadlineExceeded, eventually

MPIJOB = "mpijobs.kubeflow.org"
MANIFEST = "mpijob-nccl.yaml"
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"
CRD = "customresourcedefinitions.apiextensions.k8s.io"
WAIT_FOR_WORKERS = "WaitForWorkersReady"
FALLBACK_BACKOFF_LIMIT = 3      # operator < v0.5 (no launcherCreationPolicy): bounded launcher retries instead
INSTALL_HINT = ("install the Kubeflow MPI operator (v2beta1): kubectl apply --server-side -f "
                "https://raw.githubusercontent.com/kubeflow/mpi-operator/v0.6.0/deploy/v2beta1/mpi-operator.yaml")


@lru_cache(maxsize=2)
def _template(path: str) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("kind") != "MPIJob":
        raise ValueError(f"{path}: expected a kubeflow.org/v2beta1 MPIJob manifest")
    return data


def _set_flag(argv: list[str], flag: str, value: str) -> None:
    """Set the value after `flag` (the last occurrence: the perf binary's flags follow mpirun's)."""
    idx = max(i for i, a in enumerate(argv) if a == flag)
    argv[idx + 1] = value


def hugepages_for(nodes: Sequence[NodeInfo], wanted: str) -> str | None:
    """The manifest's hugepages-2Mi request, lowered to what every node offers; None when one offers none."""
    offered = int(min(quantity_or(n.allocatable.get("hugepages-2Mi")) for n in nodes))
    if offered <= 0:
        return None
    return wanted if offered >= quantity_or(wanted) else f"{offered >> 20}Mi"


def job_name(instance_type: str, node_names: Sequence[str], run_id: str) -> str:
    """Deterministic per run and node set: gc-nccl-<instance type>-<hash>."""
    digest = hashlib.sha256(f"{run_id}/{'+'.join(node_names)}/{instance_type}".encode()).hexdigest()[:8]
    return f"gc-nccl-{label_value(instance_type.replace('.', '-')).lower()}-{digest}"[:52]


def render(nodes: Sequence[NodeInfo], *, name: str, namespace: str, run_id: str, image: str, gpus: int, efa: int,
           max_size: str, deadline_s: int, tolerations: list[dict[str, str]]) -> dict[str, Any]:
    """Fill fixtures/mpijob-nccl.yaml for `nodes` (values set as data, never spliced into text)."""
    job = copy.deepcopy(_template(str(manifests_dir() / MANIFEST)))
    meta = job["metadata"]
    meta["name"], meta["namespace"] = name, namespace
    run_labels = {MANAGED_BY[0]: MANAGED_BY[1], RUN_LABEL: run_id}
    meta["labels"].update(run_labels)
    spec = job["spec"]
    spec["slotsPerWorker"] = gpus
    spec["runPolicy"]["activeDeadlineSeconds"] = deadline_s
    launcher = spec["mpiReplicaSpecs"]["Launcher"]["template"]
    worker = spec["mpiReplicaSpecs"]["Worker"]
    worker["replicas"] = len(nodes)
    for template in (launcher, worker["template"]):
        template["metadata"]["labels"].update(run_labels)
        template["spec"]["tolerations"] = list(tolerations)
        for container in template["spec"]["containers"]:
            container["image"] = image
    argv = launcher["spec"]["containers"][0]["command"]
    _set_flag(argv, "-np", str(len(nodes) * gpus))
    _set_flag(argv, "-N", str(gpus))
    _set_flag(argv, "-e", max_size)
    wspec = worker["template"]["spec"]
    wspec["affinity"] = _on_nodes([n.name for n in nodes])
    launcher["spec"]["affinity"] = _on_nodes([nodes[0].name])     # mpirun on a node the job already holds
    resources = wspec["containers"][0]["resources"]
    hugepages = hugepages_for(nodes, str(resources["requests"].get("hugepages-2Mi", "0")))
    for part in (resources["requests"], resources["limits"]):
        part[GPU_RESOURCE], part[EFA_RESOURCE] = str(gpus), str(efa)
        if hugepages is None:
            part.pop("hugepages-2Mi", None)
        else:
            part["hugepages-2Mi"] = hugepages
    return job


def _on_nodes(names: list[str]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": names}]}]}}}


def launcher_policy_served(cluster: Cluster) -> bool | None:
    """Whether the cluster's MPIJob CRD schema has spec.launcherCreationPolicy (mpi-operator >= v0.5.0); None when
    the CRD cannot be read (no permission) or its schema does not list spec's fields."""
    try:
        crd = cluster.get_or_none(CRD, MPIJOB)
    except errors.Forbidden:
        return None
    for version in ((crd or {}).get("spec") or {}).get("versions") or []:
        if version.get("name") == "v2beta1":
            spec = (((version.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties") or {}).get("spec")
            props = (spec or {}).get("properties")
            return None if props is None else "launcherCreationPolicy" in props
    return None


def fit_launcher_policy(job: dict[str, Any], served: bool | None) -> str:
    """WaitForWorkersReady where the operator has it; else no such field and a bounded launcher retry (the race
    with the workers then costs an attempt, not the run). Returns what was chosen, for the evidence."""
    spec = job["spec"]
    if served:
        spec["launcherCreationPolicy"] = WAIT_FOR_WORKERS
        return f"launcherCreationPolicy {WAIT_FOR_WORKERS}, backoffLimit {spec['runPolicy'].get('backoffLimit')}"
    spec.pop("launcherCreationPolicy", None)
    spec["runPolicy"]["backoffLimit"] = FALLBACK_BACKOFF_LIMIT
    why = "not readable" if served is None else "has no launcherCreationPolicy (mpi-operator < v0.5.0)"
    return f"MPIJob CRD schema {why}: launcher retried up to {FALLBACK_BACKOFF_LIMIT} times"


def launcher_command(job: dict[str, Any]) -> str:
    return " ".join(job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"])


@dataclass
class MpiJobRun:
    """What one MPIJob did: its launcher's log, and what went wrong ("" = Succeeded) with where to look."""

    name: str
    namespace: str
    log: str = ""
    outcome: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)   # worker pod (its hostname) -> the node it ran on


def served(cluster: Cluster, namespace: str) -> bool:
    """Whether the cluster serves kubeflow.org/v2beta1 MPIJobs (the MPI operator's CRD is installed)."""
    try:
        cluster.list(MPIJOB, namespace)
    except errors.NotFound:
        return False
    return True


def _finished(job: dict[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Succeeded", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _condition_text(job: dict[str, Any]) -> str:
    conds = (job.get("status") or {}).get("conditions") or []
    return "; ".join(f"{c.get('type')}={c.get('status')} ({c.get('reason', '')}: {c.get('message', '')})"
                     for c in conds) or "no status conditions (the MPI operator never reconciled the job)"


def _pending_workers(cluster: Cluster, namespace: str, name: str) -> str:
    """Why workers are not running: phases and the latest FailedScheduling message of each."""
    out = []
    for pod in cluster.items("pods", namespace, label_selector=f"{JOB_NAME_LABEL}={name}"):
        pname = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase", "Pending")
        events = [e for e in cluster.events_for(namespace, pname) if e.get("reason") == "FailedScheduling"]
        why = f": {events[-1].get('message')}" if events and phase == "Pending" else ""
        out.append(f"{pname} {phase}{why}")
    return "; ".join(out) or "no pods were created"


def run(cluster: Cluster, job: dict[str, Any], *, timeout_s: float) -> MpiJobRun:
    """Create the MPIJob, wait until it succeeds or fails (one watch on the run's jobs), read the launcher's log."""
    return run_all(cluster, [job], timeout_s=timeout_s)[job["metadata"]["name"]]


def _stage(job: dict[str, Any] | None) -> str:
    """How far an unfinished job got, for the progress line: its launcher runs, its workers start, or nothing yet."""
    conditions = {c.get("type"): c.get("status") for c in ((job or {}).get("status") or {}).get("conditions") or []}
    return "Running" if conditions.get("Running") == "True" else "Created" if conditions.get("Created") else "Pending"


def _job_nodes(job: dict[str, Any]) -> str:
    """The nodes a rendered job is pinned to (`a+b`), else its name."""
    try:
        terms = (job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["affinity"]["nodeAffinity"]
                 ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"])
        return "+".join(terms[0]["matchExpressions"][0]["values"]) or job["metadata"]["name"]
    except (KeyError, IndexError, TypeError):
        return str(job["metadata"]["name"])


def run_all(cluster: Cluster, jobs: Sequence[dict[str, Any]], *, timeout_s: float, progress: ProgressFactory = QUIET,
            what: str = "NCCL MPIJobs") -> dict[str, MpiJobRun]:
    """Create several MPIJobs at once (disjoint nodes), wait for all of them with one watch on the run's jobs,
    then read each launcher's log. Keyed by job name. `progress`/`what`: the run's progress line for this wait."""
    if not jobs:
        return {}
    meta = jobs[0]["metadata"]
    namespace, run_id = meta["namespace"], meta["labels"][RUN_LABEL]
    names = [j["metadata"]["name"] for j in jobs]
    served = launcher_policy_served(cluster)
    policies = {job["metadata"]["name"]: fit_launcher_policy(job, served) for job in jobs}
    final: dict[str, dict[str, Any]] = {}
    out: dict[str, MpiJobRun] = {n: MpiJobRun(n, namespace, facts={"mpijob": f"{namespace}/{n}",
                                                                   "launcher policy": policies[n]}) for n in names}
    nodes = {j["metadata"]["name"]: _job_nodes(j) for j in jobs}
    latest: list[dict[str, dict[str, Any]]] = [{}]     # the watch's last view (replaced, never edited: read by
                                                        # the progress line's thread)

    def snapshot() -> dict[str, Any]:
        seen = latest[0]
        left = {nodes[n]: _stage(seen.get(n)) for n in names if not _finished(seen.get(n) or {})}
        return {"done": len(names) - len(left), "pending": left, "counts": Counter(left.values())}

    def all_finished(seen: dict[str, dict[str, Any]]) -> bool:
        latest[0] = seen
        return all(n in seen and bool(_finished(seen[n])) for n in names)

    bar = progress(what, total=len(names))
    try:
        with bar:                        # creating the jobs is part of the wait a person sees
            bar.update(note="creating")
            for job in jobs:
                cluster.create(MPIJOB, job, namespace)
            bar.update(note="")
            bar.follow(snapshot)
            final = eventually(cluster, MPIJOB, namespace, all_finished,
                               timeout_s=timeout_s, description=f"MPIJob(s) {', '.join(names)} to succeed or fail",
                               label_selector=f"{RUN_LABEL}={run_id}")
    except DeadlineExceeded:
        for name in names:
            current = cluster.get_or_none(MPIJOB, name, namespace) or {}
            if _finished(current):
                final[name] = current
                continue
            out[name].outcome = (
                f"MPIJob {namespace}/{name} did not finish within {timeout_s:.0f}s: {_condition_text(current)}; "
                f"workers: {_pending_workers(cluster, namespace, name)} - check "
                f"`kubectl -n {namespace} describe mpijob {name}` and that the mpi-operator pods run")
    for name in names:
        if name in final:
            _collect(cluster, final[name], out[name])
    for pod, node in _scheduled(cluster, namespace).items():
        owner = next((n for n in names if pod.startswith(f"{n}-worker-")), None)
        if owner is not None:
            out[owner].workers[pod] = node
    return out


_ASSIGNED = re.compile(r"^Successfully assigned (\S+)/(\S+) to (\S+)$")


def _scheduled(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Pod -> node from the scheduler's `Scheduled` events ("Successfully assigned <ns>/<pod> to <node>",
    kube-scheduler's binding message). The workers are gone once the job ends (cleanPodPolicy Running), their
    events stay: they say where each rank's host ran, which the judges compare with the group's nodes."""
    out: dict[str, str] = {}
    for event in cluster.items("events", namespace, field_selector="reason=Scheduled"):
        if (m := _ASSIGNED.match(str(event.get("message") or ""))) and m.group(1) == namespace:
            out[m.group(2)] = m.group(3)
    return out


def _collect(cluster: Cluster, final: dict[str, Any], done: MpiJobRun) -> None:
    """The launcher's log and, unless the job succeeded, what went wrong."""
    name, namespace = done.name, done.namespace
    launchers = cluster.items("pods", namespace, label_selector=f"{JOB_NAME_LABEL}={name},{JOB_ROLE_LABEL}=launcher")
    launchers.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    pod = launchers[-1]["metadata"]["name"] if launchers else f"{name}-launcher"
    if launchers:
        done.facts["launcher_pod"] = f"{namespace}/{pod}"
        try:
            done.log = cluster.logs(pod, namespace)
        except errors.NotFound:
            done.log = ""
    for earlier in launchers[:-1]:     # retried launchers (bounded retry): their logs stay in the evidence
        ename = earlier["metadata"]["name"]
        try:
            done.facts[f"earlier launcher {ename}"] = cluster.logs(ename, namespace)[-2000:]
        except errors.NotFound:
            continue
    if _finished(final) != "Succeeded":
        done.outcome = (f"MPIJob {namespace}/{name} failed: {_condition_text(final)} - see "
                        f"`kubectl -n {namespace} logs {pod}`")
