"""Label and field selectors: parsing with the apiserver's error wording, and matching against objects."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import BadRequest

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str                       # = != in notin exists !exists
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # != and notin match objects without the label, as in Kubernetes
        return not present or labels[self.key] not in self.values


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _check_key(key: str, selector: str) -> str:
    if not _LABEL_KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise BadRequest(f"unable to parse requirement: invalid label key \"{key}\": name part must consist "
                         "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                         f"alphanumeric character (selector {selector!r})")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise BadRequest(f"unable to parse requirement: values[0]: Invalid value: \"{value}\": a valid label "
                         "must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                         "must start and end with an alphanumeric character")
    return value


_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def parse_label_selector(selector: str | None) -> list[Requirement]:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h`; BadRequest with the offending text otherwise."""
    if not selector or not selector.strip():
        return []
    reqs: list[Requirement] = []
    for part in _split_top(selector):
        m = _SET_RE.match(part)
        if m:
            values = tuple(_check_value(v.strip()) for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(_check_key(m.group(1), selector), m.group(2), values))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            reqs.append(Requirement(_check_key(key.strip(), selector), "!=", (_check_value(value.strip()),)))
        elif "==" in part or "=" in part:
            key, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            reqs.append(Requirement(_check_key(key.strip(), selector), "=", (_check_value(value.strip()),)))
        elif part.startswith("!"):
            reqs.append(Requirement(_check_key(part[1:].strip(), selector), "!exists"))
        elif " " in part or "(" in part or ")" in part:
            raise BadRequest(f"unable to parse requirement: found '{part}', expected: in, notin, =, ==, !=, "
                             "gt, lt")
        else:
            reqs.append(Requirement(_check_key(part, selector), "exists"))
    return reqs


def label_selector_from_dict(selector: dict[str, Any] | None) -> list[Requirement]:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as requirements; None/{} matches everything."""
    reqs: list[Requirement] = []
    if not selector:
        return reqs
    for k, v in (selector.get("matchLabels") or {}).items():
        reqs.append(Requirement(k, "=", (str(v),)))
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append(Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ())))
    return reqs


def matches_labels(reqs: list[Requirement], obj: dict[str, Any]) -> bool:
    if not reqs:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str                       # = or !=
    value: str


def parse_field_selector(selector: str | None, supports: Callable[[str], bool]) -> list[FieldRequirement]:
    """Parse `spec.nodeName=x,status.phase!=Running`; fields the type does not index are a BadRequest."""
    if not selector or not selector.strip():
        return []
    reqs: list[FieldRequirement] = []
    for part in _split_top(selector):
        if "!=" in part:
            name, value, op = *part.split("!=", 1), "!="
        elif "==" in part:
            name, value, op = *part.split("==", 1), "="
        elif "=" in part:
            name, value, op = *part.split("=", 1), "="
        else:
            raise BadRequest(f"invalid selector: '{selector}'; can't understand '{part}'")
        name = name.strip()
        if not supports(name):
            raise BadRequest(f"field label not supported: {name}")
        reqs.append(FieldRequirement(name, op, value.strip()))
    return reqs


_FIELD_DEFAULTS = {"spec.unschedulable": "false", "spec.hostNetwork": "false"}


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string the apiserver compares for a field path (missing -> "", bools lower-case)."""
    if path == "source":  # core Event's `source` field selector means source.component
        path = "source.component"
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return _FIELD_DEFAULTS.get(path, "")
        cur = cur.get(part)
        if cur is None:
            return _FIELD_DEFAULTS.get(path, "")
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def matches_fields(reqs: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    for r in reqs:
        equal = field_value(obj, r.field) == r.value
        if equal != (r.op == "="):
            return False
    return True
