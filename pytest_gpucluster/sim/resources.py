"""Resource type registry of the simulated apiserver: kinds, scopes, verbs, CRD manifests and discovery documents."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

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


def wants_table(accept: str) -> bool:
    """kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` (then plain JSON as fallback)."""
    return False


def to_table(t: ResourceType, items: list[dict[str, Any]], rv: str) -> dict[str, Any]:
    raise NotImplementedError
