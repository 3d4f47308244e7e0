"""The Kubernetes resources the suite touches: group, version, plural, scope, and their REST paths."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    group: str          # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def rbac_name(self) -> str:
        """`plural` or `plural.group`, as in `kubectl auth can-i`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


_ALL = [
    Resource("", "v1", "namespaces", "Namespace", False),
    Resource("", "v1", "nodes", "Node", False),
    Resource("", "v1", "pods", "Pod", True),
    Resource("", "v1", "events", "Event", True),
    Resource("", "v1", "configmaps", "ConfigMap", True),
    Resource("", "v1", "services", "Service", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True),
    Resource("batch", "v1", "jobs", "Job", True),
    Resource("karpenter.sh", "v1", "nodepools", "NodePool", False),
    Resource("karpenter.sh", "v1", "nodeclaims", "NodeClaim", False),
    Resource("karpenter.k8s.aws", "v1", "ec2nodeclasses", "EC2NodeClass", False),
    Resource("eks.amazonaws.com", "v1", "nodeclasses", "NodeClass", False),
    Resource("kubeflow.org", "v2beta1", "mpijobs", "MPIJob", True),
    Resource("nvidia.com", "v1", "clusterpolicies", "ClusterPolicy", False),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
]
RESOURCES: dict[str, Resource] = {}
for _r in _ALL:
    RESOURCES[_r.plural] = _r
    RESOURCES[_r.rbac_name] = _r
    RESOURCES[_r.kind] = _r


def resource(name: str) -> Resource:
    """Look up by plural (`pods`), `plural.group` (`nodepools.karpenter.sh`) or Kind (`NodePool`)."""
    try:
        return RESOURCES[name]
    except KeyError:
        raise KeyError(f"unknown resource {name!r}; known: {sorted({r.rbac_name for r in _ALL})}") from None


# Objects the suite may create (teardown and `gpucluster cleanup` sweep these by label).
CREATED_KINDS = ["mpijobs.kubeflow.org", "jobs.batch", "pods", "configmaps", "services",
                 "nodepools.karpenter.sh", "nodeclaims.karpenter.sh"]
