"""Resource type registry of the simulated apiserver: kinds, scopes, verbs, CRD manifests and discovery documents."""
from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
CLUSTER_VERBS = ALL_VERBS


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: `key` is `<plural>` for core v1, `<plural>.<group>` otherwise (the store's key)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    custom: bool = False                 # served only while its CRD object exists in the store
    storage: str = ""                    # key whose objects back this view ("" = itself)
    gc_default: str = "Background"       # propagation policy when a DELETE names none
    field_selectors: tuple[str, ...] = ()
    printer_columns: tuple[dict[str, Any], ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> str:
        return self.storage or self.key

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def supports_field(self, name: str) -> bool:
        return name in ("metadata.name", "metadata.namespace") or name in self.field_selectors


_POD_FIELDS = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
               "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")
_EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                 "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")
_EVENTS_K8S_FIELDS = ("regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                      "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath",
                      "reason", "reportingController", "type")


def _col(name: str, path: str, type_: str = "string", priority: int = 0) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": path, "priority": priority}


_AGE = _col("Age", ".metadata.creationTimestamp", "date")

_TYPES: list[ResourceType] = [
    ResourceType("", "v1", "namespaces", "Namespace", False, "namespace", ("ns",),
                 subresources=("status", "finalize"), field_selectors=("status.phase",)),
    ResourceType("", "v1", "nodes", "Node", False, "node", ("no",), subresources=("status", "proxy"),
                 field_selectors=("spec.unschedulable",)),
    ResourceType("", "v1", "pods", "Pod", True, "pod", ("po",), ("all",),
                 subresources=("status", "log", "eviction", "binding"), field_selectors=_POD_FIELDS),
    ResourceType("", "v1", "events", "Event", True, "event", ("ev",), field_selectors=_EVENT_FIELDS),
    ResourceType("", "v1", "services", "Service", True, "service", ("svc",), ("all",),
                 subresources=("status",), field_selectors=("spec.clusterIP", "spec.type")),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, "configmap", ("cm",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, "serviceaccount", ("sa",)),
    ResourceType("", "v1", "secrets", "Secret", True, "secret", field_selectors=("type",)),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, "daemonset", ("ds",), ("all",),
                 subresources=("status",)),
    ResourceType("batch", "v1", "jobs", "Job", True, "job", (), ("all",), subresources=("status",),
                 gc_default="Orphan", field_selectors=("status.successful",)),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, "event", ("ev",), storage="events",
                 field_selectors=_EVENTS_K8S_FIELDS),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, "role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, "rolebinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, "clusterrole"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False,
                 "clusterrolebinding"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, "lease"),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
                 False, "customresourcedefinition", ("crd", "crds"), ("api-extensions",),
                 subresources=("status",)),
    # Custom resources: served while their CRD exists (seed_store installs them per scenario).
    ResourceType("karpenter.sh", "v1", "nodepools", "NodePool", False, "nodepool", (), ("karpenter",),
                 subresources=("status",), custom=True, printer_columns=(
                     _col("NodeClass", ".spec.template.spec.nodeClassRef.name"),
                     _col("Nodes", ".status.resources.nodes"),
                     _col("Ready", '.status.conditions[?(@.type=="Ready")].status'), _AGE,
                     _col("Weight", ".spec.weight", "integer", 1),
                     _col("CPU", ".status.resources.cpu", "string", 1),
                     _col("Memory", ".status.resources.memory", "string", 1))),
    ResourceType("karpenter.sh", "v1", "nodeclaims", "NodeClaim", False, "nodeclaim", (), ("karpenter",),
                 subresources=("status",), custom=True, printer_columns=(
                     _col("Type", '.metadata.labels.node\\.kubernetes\\.io/instance-type'),
                     _col("Capacity", '.metadata.labels.karpenter\\.sh/capacity-type'),
                     _col("Zone", '.metadata.labels.topology\\.kubernetes\\.io/zone'),
                     _col("Node", ".status.nodeName"),
                     _col("Ready", '.status.conditions[?(@.type=="Ready")].status'), _AGE,
                     _col("ID", ".status.providerID", "string", 1),
                     _col("NodePool", '.metadata.labels.karpenter\\.sh/nodepool', "string", 1),
                     _col("NodeClass", ".spec.nodeClassRef.name", "string", 1))),
    ResourceType("karpenter.k8s.aws", "v1", "ec2nodeclasses", "EC2NodeClass", False, "ec2nodeclass",
                 ("ec2nc", "ec2ncs"), ("karpenter",), subresources=("status",), custom=True,
                 printer_columns=(_col("Ready", '.status.conditions[?(@.type=="Ready")].status'), _AGE,
                                  _col("Role", ".spec.role", "string", 1))),
    ResourceType("eks.amazonaws.com", "v1", "nodeclasses", "NodeClass", False, "nodeclass", (),
                 subresources=("status",), custom=True,
                 printer_columns=(_col("Ready", '.status.conditions[?(@.type=="Ready")].status'), _AGE)),
    ResourceType("kubeflow.org", "v2beta1", "mpijobs", "MPIJob", True, "mpijob", (), ("kubeflow",),
                 subresources=("status",), custom=True, printer_columns=(_AGE,)),
    ResourceType("nvidia.com", "v1", "clusterpolicies", "ClusterPolicy", False, "clusterpolicy", (),
                 subresources=("status",), custom=True,
                 printer_columns=(_col("Status", ".status.state"),
                                  _col("Age", ".metadata.creationTimestamp"))),
]

REGISTRY: dict[str, ResourceType] = {t.key: t for t in _TYPES}
CUSTOM_KEYS: tuple[str, ...] = tuple(t.key for t in _TYPES if t.custom)


def lookup(key: str) -> ResourceType:
    """The registered type for a store key; KeyError names the known keys."""
    try:
        return REGISTRY[key]
    except KeyError:
        raise KeyError(f"unknown resource key {key!r}; known: {', '.join(sorted(REGISTRY))}") from None


def by_path(group: str, version: str, plural: str) -> ResourceType | None:
    """The type served at /api(s)/<group>/<version>/<plural>, or None."""
    t = REGISTRY.get(f"{plural}.{group}" if group else plural)
    if t is not None and t.version == version:
        return t
    return None


def crd_name(key: str) -> str:
    t = lookup(key)
    return f"{t.plural}.{t.group}"


def crd_manifest(key: str) -> dict[str, Any]:
    """A CustomResourceDefinition for a custom type, with a permissive schema and its printer columns."""
    t = lookup(key)
    if not t.custom:
        raise ValueError(f"{key} is a built-in type, not a custom resource")
    version: dict[str, Any] = {
        "name": t.version, "served": True, "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        "subresources": {"status": {}} if "status" in t.subresources else {},
    }
    if t.printer_columns:
        version["additionalPrinterColumns"] = [dict(c) for c in t.printer_columns]
    names: dict[str, Any] = {"plural": t.plural, "singular": t.singular, "kind": t.kind,
                             "listKind": t.list_kind}
    if t.short_names:
        names["shortNames"] = list(t.short_names)
    if t.categories:
        names["categories"] = list(t.categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name(key)},
        "spec": {"group": t.group, "names": names, "scope": "Namespaced" if t.namespaced else "Cluster",
                 "versions": [version]},
        "status": {"acceptedNames": names, "storedVersions": [t.version],
                   "conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                                   "message": "the initial names have been accepted"}]},
    }


def _resource_entries(t: ResourceType) -> list[dict[str, Any]]:
    verbs = list(ALL_VERBS)
    entry: dict[str, Any] = {"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
                             "kind": t.kind, "verbs": verbs}
    if t.short_names:
        entry["shortNames"] = list(t.short_names)
    if t.categories:
        entry["categories"] = list(t.categories)
    entries = [entry]
    for sub in t.subresources:
        sub_kind, sub_verbs = t.kind, ["get", "patch", "update"]
        if sub == "log":
            sub_kind, sub_verbs = "Pod", ["get"]
        elif sub == "eviction":
            sub_kind, sub_verbs = "Eviction", ["create"]
        elif sub == "binding":
            sub_kind, sub_verbs = "Binding", ["create"]
        elif sub == "proxy":
            sub_kind, sub_verbs = "NodeProxyOptions", ["get"]
        elif sub == "finalize":
            sub_verbs = ["update"]
        entries.append({"name": f"{t.plural}/{sub}", "singularName": "", "namespaced": t.namespaced,
                        "kind": sub_kind, "verbs": sub_verbs})
    return entries


def served_types(crds: Iterable[str]) -> list[ResourceType]:
    """Types currently served: every built-in plus the custom ones whose CRD name is in `crds`."""
    present = set(crds)
    return [t for t in _TYPES if not t.custom or f"{t.plural}.{t.group}" in present]


def api_versions() -> dict[str, Any]:
    """GET /api."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def api_group_list(crds: Iterable[str]) -> dict[str, Any]:
    """GET /apis: one APIGroup per served group, in registry order."""
    groups: dict[str, dict[str, Any]] = {}
    for t in served_types(crds):
        if not t.group:
            continue
        gv = {"groupVersion": t.api_version, "version": t.version}
        groups.setdefault(t.group, {"name": t.group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(groups.values())}


def api_group(group: str, crds: Iterable[str]) -> dict[str, Any] | None:
    """GET /apis/<group>, or None when not served."""
    for g in api_group_list(crds)["groups"]:
        if g["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **g}
    return None


def resource_list(group: str, version: str, crds: Iterable[str]) -> dict[str, Any] | None:
    """GET /api/v1 or /apis/<group>/<version>: the APIResourceList, or None when not served."""
    types = [t for t in served_types(crds) if t.group == group and t.version == version]
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for t in types:
        resources.extend(_resource_entries(t))
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}



# ----- Table output (kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io`) ----------------

def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def human_duration(seconds: float) -> str:
    """kubectl's duration.HumanDuration (what AGE columns show)."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y{d % 365}d"


def _age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    try:
        then = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "<invalid>"
    return human_duration(time.time() - then)


_FILTER = re.compile(r'^\[\?\(@\.([\w.]+)\s*==\s*"([^"]*)"\)\]$')


def jsonpath(obj: Any, path: str) -> Any:
    """The subset of JSONPath that CRD printer columns use: `.a.b`, escaped dots, `[n]`, `[?(@.k=="v")]`."""
    tokens = re.findall(r'\[\?\(@[^)]*\)\]|\[\d+\]|\.(?:[^.\[\\]|\\.)+', path)
    cur: Any = obj
    for tok in tokens:
        if cur is None:
            return None
        m = _FILTER.match(tok)
        if m:
            field_path, value = m.group(1), m.group(2)
            cur = next((item for item in cur or [] if isinstance(item, dict)
                        and str(jsonpath(item, "." + field_path)) == value), None)
        elif tok.startswith("["):
            idx = int(tok[1:-1])
            cur = cur[idx] if isinstance(cur, list) and idx < len(cur) else None
        else:
            key = tok[1:].replace("\\.", ".")
            cur = cur.get(key) if isinstance(cur, dict) else None
    return cur


def _node_status(o: dict[str, Any]) -> str:
    ready = next((c for c in (o.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    text = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    return text + (",SchedulingDisabled" if (o.get("spec") or {}).get("unschedulable") else "")


def _node_roles(o: dict[str, Any]) -> str:
    labels = (o.get("metadata") or {}).get("labels") or {}
    roles = sorted({k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")} |
                   ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set()))
    return ",".join(r for r in roles if r) or "<none>"


def _node_ip(o: dict[str, Any], kind: str) -> str:
    for a in (o.get("status") or {}).get("addresses") or []:
        if a.get("type") == kind:
            return str(a.get("address"))
    return "<none>"


def _pod_status(o: dict[str, Any]) -> tuple[str, str, int]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    total = len(spec.get("containers") or [])
    reason = status.get("reason") or status.get("phase") or "Pending"
    ready = restarts = 0
    for cs in status.get("containerStatuses") or []:
        restarts += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated"):
            term = state["terminated"]
            reason = term.get("reason") or (f"Signal:{term['signal']}" if term.get("signal")
                                            else f"ExitCode:{term.get('exitCode', 0)}")
        elif state.get("running") and cs.get("ready"):
            ready += 1
    if status.get("phase") == "Running" and reason == "Completed" and ready:
        reason = "Running"
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return f"{ready}/{total}", reason, restarts


def _ports(o: dict[str, Any]) -> str:
    ports = (o.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


Column = tuple[str, str, int, Callable[[dict[str, Any]], Any]]   # name, type, priority, cell


def _c(name: str, fn: Callable[[dict[str, Any]], Any], type_: str = "string", priority: int = 0) -> Column:
    return name, type_, priority, fn


_AGE_COL = _c("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))
_BUILTIN_COLUMNS: dict[str, list[Column]] = {
    "nodes": [_c("Status", _node_status), _c("Roles", _node_roles), _AGE_COL,
              _c("Version", lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")),
              _c("Internal-IP", lambda o: _node_ip(o, "InternalIP"), priority=1),
              _c("External-IP", lambda o: _node_ip(o, "ExternalIP"), priority=1),
              _c("OS-Image", lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("osImage", ""), priority=1),
              _c("Kernel-Version", lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kernelVersion", ""),
                 priority=1),
              _c("Container-Runtime", lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get(
                  "containerRuntimeVersion", ""), priority=1)],
    "pods": [_c("Ready", lambda o: _pod_status(o)[0]), _c("Status", lambda o: _pod_status(o)[1]),
             _c("Restarts", lambda o: _pod_status(o)[2], "integer"), _AGE_COL,
             _c("IP", lambda o: (o.get("status") or {}).get("podIP") or "<none>", priority=1),
             _c("Node", lambda o: (o.get("spec") or {}).get("nodeName") or "<none>", priority=1),
             _c("Nominated Node", lambda o: (o.get("status") or {}).get("nominatedNodeName") or "<none>", priority=1),
             _c("Readiness Gates", lambda o: "<none>", priority=1)],
    "namespaces": [_c("Status", lambda o: (o.get("status") or {}).get("phase", "")), _AGE_COL],
    "events": [_c("Last Seen", lambda o: _age(o.get("lastTimestamp") or o.get("eventTime")
                                             or o["metadata"].get("creationTimestamp"))),
               _c("Type", lambda o: o.get("type", "")), _c("Reason", lambda o: o.get("reason", "")),
               _c("Object", lambda o: f"{str((o.get('involvedObject') or {}).get('kind', '')).lower()}/"
                                      f"{(o.get('involvedObject') or {}).get('name', '')}"),
               _c("Message", lambda o: str(o.get("message", "")).strip()),
               _c("Source", lambda o: (o.get("source") or {}).get("component", ""), priority=1),
               _c("Count", lambda o: o.get("count") or 1, "integer", 1)],
    "services": [_c("Type", lambda o: (o.get("spec") or {}).get("type", "ClusterIP")),
                 _c("Cluster-IP", lambda o: (o.get("spec") or {}).get("clusterIP", "<none>")),
                 _c("External-IP", lambda o: "<none>"), _c("Port(s)", _ports), _AGE_COL],
    "configmaps": [_c("Data", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}), "integer"),
                   _AGE_COL],
    "secrets": [_c("Type", lambda o: o.get("type", "Opaque")), _c("Data", lambda o: len(o.get("data") or {}),
                                                                 "integer"), _AGE_COL],
    "serviceaccounts": [_c("Secrets", lambda o: len(o.get("secrets") or []), "integer"), _AGE_COL],
    "daemonsets.apps": [
        _c(title, (lambda f: lambda o: int((o.get("status") or {}).get(f) or 0))(f), "integer")
        for title, f in (("Desired", "desiredNumberScheduled"), ("Current", "currentNumberScheduled"),
                         ("Ready", "numberReady"), ("Up-to-date", "updatedNumberScheduled"),
                         ("Available", "numberAvailable"))] + [
        _c("Node Selector", lambda o: ",".join(f"{k}={v}" for k, v in (((o.get("spec") or {}).get("template") or {})
                                                                       .get("spec") or {}).get("nodeSelector", {}).items())
           or "<none>"), _AGE_COL],
    "jobs.batch": [_c("Status", lambda o: next((c["type"] for c in (o.get("status") or {}).get("conditions") or []
                                                if c.get("status") == "True" and c.get("type") in
                                                ("Complete", "Failed", "Suspended")), "Running")),
                   _c("Completions", lambda o: f"{(o.get('status') or {}).get('succeeded', 0)}/"
                                               f"{(o.get('spec') or {}).get('completions', 1)}"), _AGE_COL],
    "customresourcedefinitions.apiextensions.k8s.io": [
        _c("Created At", lambda o: o["metadata"].get("creationTimestamp", ""), "date")],
}


def _columns(t: ResourceType) -> list[Column]:
    if t.key in _BUILTIN_COLUMNS:
        return _BUILTIN_COLUMNS[t.key]
    if t.storage in _BUILTIN_COLUMNS:
        return _BUILTIN_COLUMNS[t.storage]
    if t.printer_columns:
        cols: list[Column] = []
        for pc in t.printer_columns:
            path, type_ = pc["jsonPath"], pc["type"]
            if type_ == "date":
                cols.append(_c(pc["name"], (lambda p: lambda o: _age(jsonpath(o, p)))(path), "date", pc["priority"]))
            else:
                cols.append(_c(pc["name"], (lambda p: lambda o: _cell(jsonpath(o, p)))(path), type_, pc["priority"]))
        return cols
    return [_AGE_COL]


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        import json
        return json.dumps(value, separators=(",", ":"))
    return value


def to_table(t: ResourceType, items: list[dict[str, Any]], rv: str, include: str = "Metadata") -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `items` with the columns kubectl prints for this type."""
    cols = _columns(t)
    defs = [{"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a "
             "namespace.", "priority": 0}]
    defs += [{"name": n, "type": ty, "format": "", "description": "", "priority": pr} for n, ty, pr, _ in cols]
    rows = []
    for o in items:
        if include == "Object":
            row_obj: Any = o
        elif include == "None":
            row_obj = None
        else:
            row_obj = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
        row: dict[str, Any] = {"cells": [o["metadata"]["name"]] + [fn(o) for _, _, _, fn in cols]}
        if row_obj is not None:
            row["object"] = row_obj
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
            "columnDefinitions": defs, "rows": rows}
