"""Karpenter NodePools as the suites read them: listing, the template, node classes, the probe clone."""
from __future__ import annotations

import copy
import hashlib
from typing import Any

import yaml

from pytest_gpucluster.kube import errors
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.objects import GPU_RESOURCE, INSTANCE_TYPE_LABEL
from pytest_gpucluster.kube.probes import RUN_LABEL, manifests_dir

NODEPOOLS = "nodepools.karpenter.sh"
PROBE_POOL_LABEL = "gpucluster.io/probe-pool"
NODECLASS_KINDS = {("karpenter.k8s.aws", "EC2NodeClass"): "ec2nodeclasses.karpenter.k8s.aws",
                   ("eks.amazonaws.com", "NodeClass"): "nodeclasses.eks.amazonaws.com"}


def template_spec(nodepool: dict[str, Any]) -> dict[str, Any]:
    return ((nodepool.get("spec") or {}).get("template") or {}).get("spec") or {}


def name_of(nodepool: dict[str, Any]) -> str:
    return str(nodepool["metadata"]["name"])


def nodepools(cluster: Cluster) -> list[dict[str, Any]] | None:
    """Every NodePool; None when the karpenter.sh API is absent (Karpenter / Auto Mode not installed)."""
    try:
        return cluster.items(NODEPOOLS)
    except errors.NotFound:
        return None


def taints_by_pool(cluster: Cluster) -> dict[str, list[dict[str, Any]]]:
    """NodePool name -> the taints its template declares (spec.template.spec.taints); {} without Karpenter."""
    return {name_of(np): list(template_spec(np).get("taints") or []) for np in nodepools(cluster) or []}


def nodeclass(cluster: Cluster, nodepool: dict[str, Any]) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
    """(nodeClassRef, the API kind it resolves to or None when unknown, the object or None when absent)."""
    ref = template_spec(nodepool).get("nodeClassRef") or {}
    kind = NODECLASS_KINDS.get((ref.get("group", ""), ref.get("kind", "")))
    if kind is None:
        return ref, None, None
    return ref, kind, cluster.get_or_none(kind, ref.get("name", ""))


def probe_nodepool(source: dict[str, Any], itype: str, gpus: int, run_id: str) -> tuple[dict[str, Any], str]:
    """fixtures/nodepool-probe.yaml filled from the GPU NodePool: its template, the type pinned, a run-unique label."""
    body = yaml.safe_load((manifests_dir() / "nodepool-probe.yaml").read_text())
    pool_id = hashlib.sha256(f"{run_id}/{itype}".encode()).hexdigest()[:10]
    meta, spec = body["metadata"], body["spec"]
    meta["name"] = f"gc-probe-{pool_id}"
    meta["labels"][RUN_LABEL] = run_id
    meta["annotations"]["gpucluster.io/cloned-from"] = source["metadata"]["name"]
    spec["limits"] = {GPU_RESOURCE: str(gpus)}
    template = spec["template"]
    template["metadata"]["labels"].update({RUN_LABEL: run_id, PROBE_POOL_LABEL: pool_id})
    src = copy.deepcopy(template_spec(source))
    reqs = [r for r in src.pop("requirements", []) or [] if r.get("key") != INSTANCE_TYPE_LABEL]
    reqs += [{"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [itype]},
             {"key": PROBE_POOL_LABEL, "operator": "In", "values": [pool_id]}]
    src.pop("expireAfter", None)
    template["spec"].update({**src, "requirements": reqs})
    labels = ((source.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    template["metadata"]["labels"] = {**labels, **template["metadata"]["labels"]}
    return body, pool_id
