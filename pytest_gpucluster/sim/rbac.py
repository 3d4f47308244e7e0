"""Optional RBAC of the simulated apiserver: the test identity's rules parsed from an RBAC manifest (deploy/rbac.yaml), checked per request."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import Forbidden

DEFAULT_USER = "system:serviceaccount:gpucluster:gpucluster"


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    resource_names: frozenset[str] = frozenset()
    non_resource_urls: frozenset[str] = frozenset()

    def allows(self, verb: str, group: str, resource: str, name: str | None) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.api_groups and group not in self.api_groups:
            return False
        base = resource.split("/", 1)[0]
        if not ("*" in self.resources or resource in self.resources or
                (base == resource and f"{base}/*" in self.resources) or
                ("/" in resource and f"*/{resource.split('/', 1)[1]}" in self.resources)):
            return False
        if self.resource_names and (name is None or name not in self.resource_names):
            return False
        return True


def _rules(doc: dict[str, Any]) -> list[Rule]:
    out = []
    for r in doc.get("rules") or []:
        out.append(Rule(frozenset(r.get("verbs") or ()), frozenset(r.get("apiGroups") or ()),
                        frozenset(r.get("resources") or ()), frozenset(r.get("resourceNames") or ()),
                        frozenset(r.get("nonResourceURLs") or ())))
    return out


@dataclass
class Authorizer:
    """Rules granted to one user: cluster-wide ones and per-namespace ones."""

    user: str
    cluster_rules: list[Rule] = field(default_factory=list)
    namespace_rules: dict[str, list[Rule]] = field(default_factory=dict)
    source: str = ""

    def allowed(self, verb: str, group: str, resource: str, namespace: str | None, name: str | None) -> bool:
        rules: Iterable[Rule] = self.cluster_rules
        if namespace:
            rules = [*self.cluster_rules, *self.namespace_rules.get(namespace, [])]
        return any(r.allows(verb, group, resource, name) for r in rules)

    def check(self, verb: str, group: str, resource: str, namespace: str | None, name: str | None) -> None:
        """Raise Forbidden with the apiserver's wording unless allowed."""
        if self.allowed(verb, group, resource, namespace, name):
            return
        plural, _, sub = resource.partition("/")
        what = f"{plural}.{group}" if group else plural
        target = f'{what} "{name}"' if name else what
        message = (f'{target} is forbidden: User "{self.user}" cannot {verb} resource "{plural}" in API group '
                   f'"{group}"')
        if sub:
            message = (f'{target} is forbidden: User "{self.user}" cannot {verb} resource "{plural}/{sub}" in '
                       f'API group "{group}"')
        message += f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        details: dict[str, Any] = {"kind": plural}
        if group:
            details["group"] = group
        if name:
            details["name"] = name
        raise Forbidden(message, details=details)


def load_authorizer(path: Path, user: str | None = None) -> Authorizer:
    """Parse Roles/ClusterRoles and their bindings from a multi-document manifest; the user is the first
    ServiceAccount subject bound (or `user` when given). Roles bound to other subjects are ignored."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read RBAC manifest {path}: {exc}") from exc
    roles: dict[tuple[str, str], list[Rule]] = {}
    for d in docs:
        kind, meta = d.get("kind"), d.get("metadata") or {}
        if kind == "ClusterRole":
            roles[("ClusterRole", meta.get("name", ""))] = _rules(d)
        elif kind == "Role":
            roles[(f"Role/{meta.get('namespace', 'default')}", meta.get("name", ""))] = _rules(d)
    bindings = [d for d in docs if d.get("kind") in ("RoleBinding", "ClusterRoleBinding")]
    if user is None:
        for b in bindings:
            for s in b.get("subjects") or []:
                if s.get("kind") == "ServiceAccount":
                    ns = s.get("namespace") or (b.get("metadata") or {}).get("namespace", "default")
                    user = f"system:serviceaccount:{ns}:{s.get('name')}"
                    break
                if s.get("kind") == "User":
                    user = s.get("name")
                    break
            if user:
                break
    auth = Authorizer(user or DEFAULT_USER, source=str(path))
    for b in bindings:
        bmeta = b.get("metadata") or {}
        bns = bmeta.get("namespace", "default")
        if not any(_subject_name(s, bns) == auth.user for s in b.get("subjects") or []):
            continue
        ref = b.get("roleRef") or {}
        key = ("ClusterRole", ref.get("name", "")) if ref.get("kind") == "ClusterRole" else (
            f"Role/{bns}", ref.get("name", ""))
        rules = roles.get(key, [])
        if b["kind"] == "ClusterRoleBinding":
            auth.cluster_rules.extend(rules)
        else:
            auth.namespace_rules.setdefault(bns, []).extend(rules)
    return auth


def _subject_name(subject: dict[str, Any], binding_ns: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f"system:serviceaccount:{subject.get('namespace') or binding_ns}:{subject.get('name')}"
    return str(subject.get("name"))
