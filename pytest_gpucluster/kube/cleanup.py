"""Nothing left behind: per-run teardown by label with verification, and `gpucluster cleanup` for dead runs."""
from __future__ import annotations

from typing import Any

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import errors, kubeconfig
from .client import Cluster
from .objects import timestamp
from .probes import MANAGED_BY, RUN_LABEL
from .progress import QUIET, Progress, ProgressFactory
from .resources import CREATED_KINDS, resource
from .watching import DeadlineExceeded, eventually

RUN_ID_RE = re.compile(r"^(\d{8}-\d{6})-[0-9a-f]{4}$")
MANAGED_SELECTOR = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"


@dataclass
class TeardownReport:
    deleted: list[str] = field(default_factory=list)      # "kind/name" or "kind (collection)"
    leftovers: list[str] = field(default_factory=list)    # still there after the verification deadline
    warnings: list[str] = field(default_factory=list)     # could not check or delete (RBAC, missing CRDs)

    @property
    def clean(self) -> bool:
        return not self.leftovers


def run_selector(run_id: str) -> str:
    return f"{MANAGED_SELECTOR},{RUN_LABEL}={run_id}"


def _sweep_namespaced(cluster: Cluster, kind: str, namespace: str, selector: str, report: TeardownReport) -> None:
    try:
        if kind == "pods":
            cluster.delete_collection(kind, namespace, label_selector=selector, grace_seconds=0)
        else:
            cluster.delete_collection(kind, namespace, label_selector=selector)
        report.deleted.append(f"{kind} in {namespace} (by label)")
    except errors.NotFound:
        pass     # the kind's CRD is not installed: nothing of it can exist
    except errors.Forbidden as exc:
        report.warnings.append(str(exc))


def _sweep_cluster_scoped(cluster: Cluster, kind: str, selector: str, report: TeardownReport) -> None:
    try:
        for obj in cluster.items(kind, label_selector=selector):
            cluster.delete(kind, obj["metadata"]["name"])
            report.deleted.append(f"{kind}/{obj['metadata']['name']}")
    except errors.NotFound:
        pass
    except errors.Forbidden as exc:
        report.warnings.append(str(exc))


def teardown_run(cluster: Cluster, run_id: str, namespace: str, *, delete_namespace: bool,
                 verify_timeout_s: float = 60.0, progress: ProgressFactory = QUIET) -> TeardownReport:
    """Delete everything labelled with this run, then verify nothing with the run label remains."""
    with progress("teardown", total=2 * len(CREATED_KINDS)) as bar:
        return _teardown(cluster, run_id, namespace, delete_namespace, verify_timeout_s, bar)


def _teardown(cluster: Cluster, run_id: str, namespace: str, delete_namespace: bool, verify_timeout_s: float,
              bar: Progress) -> TeardownReport:
    report = TeardownReport()
    selector = run_selector(run_id)
    for i, kind in enumerate(CREATED_KINDS):
        bar.update(done=i, pending={kind: "deleting"})
        if resource(kind).namespaced:
            _sweep_namespaced(cluster, kind, namespace, selector, report)
        else:
            _sweep_cluster_scoped(cluster, kind, selector, report)
    if delete_namespace:
        cluster.delete("namespaces", namespace)
        report.deleted.append(f"namespaces/{namespace}")
    for i, kind in enumerate(CREATED_KINDS):
        bar.update(done=len(CREATED_KINDS) + i, pending={kind: "verifying gone"})
        res = resource(kind)
        try:
            eventually(cluster, kind, namespace if res.namespaced else None, lambda objs: not objs,
                       timeout_s=verify_timeout_s, description=f"no {kind} with label {RUN_LABEL}={run_id}",
                       label_selector=selector)
        except errors.NotFound:
            continue
        except errors.Forbidden as exc:
            report.warnings.append(f"cannot verify {kind}: {exc}")
        except DeadlineExceeded:
            left = cluster.items(kind, namespace if res.namespaced else None, label_selector=selector)
            report.leftovers += [f"{kind}/{o['metadata']['name']}" for o in left]
    bar.update(done=2 * len(CREATED_KINDS), pending={},
               note="clean" if report.clean else f"{len(report.leftovers)} left behind")
    return report


# -- gpucluster cleanup ------------------------------------------------------------------------------
def parse_duration(text: str) -> float:
    """`2h`, `90m`, `1d`, `45s`, `1h30m` -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r} (examples: 2h, 90m, 1d, 1h30m)")
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * scale[u] for n, u in parts)


def run_started(obj: dict[str, Any]) -> float | None:
    """When the run that created obj started: from its run-id label, else its creationTimestamp."""
    meta = obj.get("metadata", {})
    match = RUN_ID_RE.match((meta.get("labels") or {}).get(RUN_LABEL, ""))
    if match:
        return datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc).timestamp()
    return timestamp(meta.get("creationTimestamp"))


def find_leftovers(cluster: Cluster, older_than_s: float, now: float | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(kind, object) of everything managed by us whose run started before the cutoff."""
    cutoff = (now if now is not None else time.time()) - older_than_s
    found: list[tuple[str, dict[str, Any]]] = []
    for kind in ["namespaces", *CREATED_KINDS]:
        try:
            objs = cluster.items(kind, None, label_selector=MANAGED_SELECTOR)
        except errors.NotFound:
            continue
        for obj in objs:
            started = run_started(obj)
            if started is not None and started < cutoff:
                found.append((kind, obj))
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--older-than", default="2h", help="only runs that started longer ago (default 2h)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")


def run(args: argparse.Namespace) -> int:
    try:
        older = parse_duration(args.older_than)
        cluster = Cluster.connect(args.kubeconfig, args.context)
    except (ValueError, kubeconfig.KubeconfigError, errors.ClusterError) as exc:
        print(f"gpucluster cleanup: {exc}", file=sys.stderr)
        return 2
    try:
        leftovers = find_leftovers(cluster, older)
    except errors.ClusterError as exc:
        print(f"gpucluster cleanup: {exc}", file=sys.stderr)
        return 1
    if not leftovers:
        print(f"gpucluster cleanup: nothing managed by pytest-gpucluster older than {args.older_than}")
        return 0
    failed = 0
    for kind, obj in leftovers:
        meta = obj["metadata"]
        label = f"{kind}/{meta['name']}" + (f" in {meta['namespace']}" if meta.get("namespace") else "")
        run_id = (meta.get("labels") or {}).get(RUN_LABEL, "?")
        if args.dry_run:
            print(f"would delete {label} (run {run_id})")
            continue
        try:
            cluster.delete(kind, meta["name"], meta.get("namespace"))
            print(f"deleted {label} (run {run_id})")
        except errors.ClusterError as exc:
            failed += 1
            print(f"failed to delete {label}: {exc}", file=sys.stderr)
    return 1 if failed else 0
