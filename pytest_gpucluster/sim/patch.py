"""Patch formats of the apiserver: JSON merge patch (RFC 7386), strategic merge patch for the fields we use, JSON patch (RFC 6902)."""
from __future__ import annotations

import copy
from typing import Any

from .errors import BadRequest, Invalid, UnsupportedMediaType

CONTENT_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
}

# Strategic merge: list fields merged by a key, as the Kubernetes Go types declare (patchMergeKey).
# Lists not named here (tolerations, taints, args, command, ...) are replaced, as in Kubernetes.
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "ports": "containerPort", "conditions": "type", "imagePullSecrets": "name",
    "ownerReferences": "uid", "addresses": "type", "hostAliases": "ip",
    "resourceClaims": "name", "readinessGates": "conditionType", "secrets": "name",
}
SERVICE_PORT_KEY = "port"
# Primitive lists with patchStrategy=merge (set union).
MERGE_PRIMITIVE_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, *, kind: str = "") -> Any:
    """Strategic merge for built-in kinds: merge-keyed lists, `$patch`, `$retainKeys`,
    `$deleteFromPrimitiveList/*` and `$setElementOrder/*` directives (the ones kubectl apply sends)."""
    return _smp_map(target if isinstance(target, dict) else {}, patch, kind, "")


def _merge_key(field: str, kind: str, parent: str) -> str | None:
    if field == "ports" and kind == "Service" and parent == "spec":
        return SERVICE_PORT_KEY
    return MERGE_KEYS.get(field)


def _smp_map(target: dict[str, Any], patch: Any, kind: str, parent: str) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = dict(target)
    retain = patch.get("$retainKeys")
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = set(map(str, value or []))
            result[field] = [v for v in result.get(field) or [] if str(v) not in drop]
            continue
        if value is None:
            result.pop(key, None)
            continue
        current = result.get(key)
        if isinstance(value, dict):
            merged = _smp_map(current if isinstance(current, dict) else {}, value, kind, key)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(current if isinstance(current, list) else [], value, key, kind, parent)
        else:
            result[key] = value
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(result[field], order, _merge_key(field, kind, parent))
    if isinstance(retain, list):
        keep = set(retain)
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _smp_list(current: list[Any], patch: list[Any], field: str, kind: str, parent: str) -> list[Any]:
    if field in MERGE_PRIMITIVE_LISTS:
        out = list(current)
        for v in patch:
            if v not in out:
                out.append(v)
        return out
    key = _merge_key(field, kind, parent)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return [item for item in copy.deepcopy(patch) if not (isinstance(item, dict) and "$patch" in item)]
    if any(item.get("$patch") == "replace" for item in patch):
        return [{k: v for k, v in item.items() if k != "$patch"} for item in patch
                if item.get("$patch") != "replace"]
    out = [copy.deepcopy(item) for item in current]
    for item in patch:
        if key not in item:
            raise BadRequest(f"map: {item} does not contain declared merge key: {key}")
        idx = next((i for i, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_smp_map({}, item, kind, field))
        else:
            out[idx] = _smp_map(out[idx], item, kind, field)
    return out


def _apply_order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [o.get(key) if key and isinstance(o, dict) else o for o in order]
    ranked = {w: i for i, w in enumerate(wanted)}
    return sorted(items, key=lambda it: ranked.get(ident(it), len(ranked)))


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise Invalid(f"the server rejected our request due to an error in our request: invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], op: dict[str, Any]) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(p)]
        elif isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            raise Invalid(f"the server rejected our request due to an error in our request: "
                          f"doc is missing path: \"{op.get('path')}\": missing value")
    return cur, parts[-1]


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 on a copy of `doc`; a failed `test` or a missing path is Invalid (422) like the apiserver."""
    if not isinstance(ops, list):
        raise BadRequest("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        try:
            if kind in ("move", "copy"):
                src_parent, src_key = _parent(doc, _pointer(op["from"]), op)
                value = src_parent[int(src_key)] if isinstance(src_parent, list) else src_parent[src_key]
                value = copy.deepcopy(value)
                if kind == "move":
                    doc = _remove(doc, _pointer(op["from"]), op)
                doc = _add(doc, _pointer(op["path"]), value, op)
            elif kind == "add":
                doc = _add(doc, _pointer(op["path"]), copy.deepcopy(op.get("value")), op)
            elif kind == "remove":
                doc = _remove(doc, _pointer(op["path"]), op)
            elif kind == "replace":
                doc = _remove(doc, _pointer(op["path"]), op)
                doc = _add(doc, _pointer(op["path"]), copy.deepcopy(op.get("value")), op)
            elif kind == "test":
                parts = _pointer(op["path"])
                cur = doc
                for p in parts:
                    cur = cur[int(p)] if isinstance(cur, list) else cur[p]
                if cur != op.get("value"):
                    raise Invalid(f"the server rejected our request due to an error in our request: "
                                  f"testing value {op['path']} failed")
            else:
                raise BadRequest(f"Unexpected kind: {kind}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise Invalid(f"the server rejected our request due to an error in our request: "
                          f"{kind} operation does not apply: doc is missing path: \"{op.get('path')}\" ({exc})") from exc
    return doc


def _add(doc: Any, parts: list[str], value: Any, op: dict[str, Any]) -> Any:
    if not parts:
        return value
    parent, key = _parent(doc, parts, op)
    if isinstance(parent, list):
        if key == "-":
            parent.append(value)
        else:
            idx = int(key)
            if idx > len(parent):
                raise IndexError(idx)
            parent.insert(idx, value)
    else:
        parent[key] = value
    return doc


def _remove(doc: Any, parts: list[str], op: dict[str, Any]) -> Any:
    parent, key = _parent(doc, parts, op)
    if isinstance(parent, list):
        parent.pop(int(key))
    else:
        del parent[key]
    return doc


def apply_patch(obj: dict[str, Any], patch: Any, patch_type: str, *, kind: str, custom: bool) -> dict[str, Any]:
    """Apply a patch of `patch_type` (merge | strategic | json) to a copy of obj."""
    if patch_type == "merge":
        if not isinstance(patch, dict):
            raise BadRequest("merge patch must be a JSON object")
        return merge_patch(obj, patch)
    if patch_type == "strategic":
        if custom:
            raise UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
        if not isinstance(patch, dict):
            raise BadRequest("strategic merge patch must be a JSON object")
        return strategic_merge_patch(obj, patch, kind=kind)
    if patch_type == "json":
        return json_patch(obj, patch)
    raise UnsupportedMediaType(f"unsupported patch type {patch_type!r}")
