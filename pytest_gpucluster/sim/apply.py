"""Server-side apply (`application/apply-patch+yaml`): field ownership per manager in metadata.managedFields.

What is modelled from upstream (k8s.io/apimachinery pkg/util/managedfields, sigs.k8s.io/structured-merge-diff):
- an apply creates the object when it is missing, else merges the applied configuration into the live object;
- the applied fields become the manager's set (FieldsV1: `f:<field>`, `k:{"<key>":...}` for list items merged by key,
  `v:<value>` for set-like lists, `.` for an item itself), stored as an `Apply` entry in managedFields;
- a field the manager applied before and now leaves out is removed, unless another manager owns it too;
- a field another *applier* owns with a different value is a 409 "Apply failed with N conflict(s)" with
  FieldManagerConflict causes, unless force=true, which takes the field over.
What is not: ownership by `Update` operations (create, replace, patch) is not recorded by this simulator, so an apply
never conflicts with a field set that way, and lists use the strategic-merge keys of patch.py as their list-map
keys (upstream reads listType/listMapKeys from the OpenAPI schema; the two agree for the fields those name).
"""
from __future__ import annotations

import copy
import json
from typing import Any

from .errors import ApiError, Invalid
from .patch import MERGE_PRIMITIVE_LISTS, _merge_key

Obj = dict[str, Any]
FieldSet = dict[str, Any]   # FieldsV1 as JSON: nested dicts, {} marks an owned leaf
Path = tuple[str, ...]
TRACKED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")
_MISSING = object()


def apply(live: Obj | None, applied: Obj, *, manager: str, force: bool, api_version: str, kind: str,
          now: str, subresource: str | None = None) -> Obj:
    """The object after `manager` applies `applied` to `live` (None: it does not exist yet). The main resource
    ignores an applied status, as its update does; the status subresource applies only that."""
    if not manager:
        raise Invalid('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply '
                      "patch", details={"kind": "PatchOptions", "group": "meta.k8s.io", "causes": [
                          {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch",
                           "field": "fieldManager"}]})
    if subresource == "status":
        config = {k: v for k, v in applied.items() if k in ("apiVersion", "kind", "metadata", "status")}
    else:
        config = {k: v for k, v in applied.items() if k != "status"}
    mine = field_set(config, kind)
    entry = {"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now,
             "fieldsType": "FieldsV1", "fieldsV1": mine}
    if live is None:
        obj = copy.deepcopy(config)
        obj.setdefault("metadata", {})["managedFields"] = [entry]
        return obj
    obj = copy.deepcopy(live)
    managers = [m for m in (obj.get("metadata") or {}).get("managedFields") or []
                if not (m.get("manager") == manager and m.get("operation") == "Apply")]
    previous = next((m.get("fieldsV1") or {} for m in (obj.get("metadata") or {}).get("managedFields") or []
                     if m.get("manager") == manager and m.get("operation") == "Apply"), {})
    wanted = leaves(mine)
    conflicts: list[tuple[str, Path]] = []
    for other in managers:
        if other.get("operation") != "Apply":
            continue
        for path in sorted(wanted & leaves(other.get("fieldsV1") or {})):
            if path[-1] != "." and value_at(obj, path) != value_at(config, path):
                conflicts.append((other.get("manager", ""), path))
    if conflicts and not force:
        raise conflict_error(conflicts)
    for name, path in conflicts:   # forced: the other applier loses the field
        for other in managers:
            if other.get("manager") == name and other.get("operation") == "Apply":
                other["fieldsV1"] = without(other.get("fieldsV1") or {}, path)
    others: set[Path] = set()
    for other in managers:
        others |= leaves(other.get("fieldsV1") or {})
    for path in sorted(leaves(previous) - wanted - others, key=lambda p: (len(p), p[-1] != ".")):
        remove(obj, path)   # list items before their fields: a field-less item could no longer be found by key
    obj = merge(obj, config, kind, "")
    kept = [m for m in managers if m.get("fieldsV1")]
    if previous == mine and obj == live:
        # nothing changed: the entry keeps its time, so a repeated apply writes nothing (upstream's
        # managedFieldsUpdater only stamps a manager's time when its operation changed the object)
        return obj
    obj.setdefault("metadata", {})["managedFields"] = [*kept, entry]
    return obj


# ----- field sets ------------------------------------------------------------------------------------------------
def field_set(obj: Obj, kind: str) -> FieldSet:
    """The FieldsV1 an apply of `obj` claims: everything it sets but identity (apiVersion, kind, name, namespace)."""
    out: FieldSet = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or value is None:
            continue
        if key == "metadata":
            meta = {k: v for k, v in (value or {}).items() if k in TRACKED_METADATA and v is not None}
            if meta:
                out["f:metadata"] = _children(meta, kind, "metadata")
            continue
        out[f"f:{key}"] = _child(value, key, kind, "")
    return out


def _children(obj: Obj, kind: str, parent: str) -> FieldSet:
    return {f"f:{k}": _child(v, k, kind, parent) for k, v in obj.items() if v is not None}


def _child(value: Any, field: str, kind: str, parent: str) -> FieldSet:
    if isinstance(value, dict):
        return _children(value, kind, field)
    if isinstance(value, list):
        key = _list_key(value, field, kind, parent)
        if key is not None:
            return {_item_key(item, key): {".": {}, **_children(item, kind, field)} for item in value}
        if field in MERGE_PRIMITIVE_LISTS:
            return {f"v:{json.dumps(item)}": {} for item in value}
    return {}   # a scalar, or an atomic list owned as a whole


def _list_key(items: list[Any], field: str, kind: str, parent: str) -> str | None:
    key = _merge_key(field, kind, parent)
    if key and all(isinstance(i, dict) and key in i for i in items):
        return key
    return None


def _item_key(item: Obj, key: str) -> str:
    return "k:" + json.dumps({key: item[key]}, separators=(",", ":"))


def leaves(fs: FieldSet, prefix: Path = ()) -> set[Path]:
    """Every owned node of a field set: leaves ({}) and list items (their `.`)."""
    out: set[Path] = set()
    for key, child in fs.items():
        path = (*prefix, key)
        if not child:
            out.add(path)
        else:
            out |= leaves(child, path)
    return out


def without(fs: FieldSet, path: Path) -> FieldSet:
    """`fs` less `path`, dropping the parents it leaves empty."""
    if not path or path[0] not in fs:
        return fs
    out = dict(fs)
    if len(path) == 1:
        del out[path[0]]
        return out
    rest = without(out[path[0]], path[1:])
    if rest:
        out[path[0]] = rest
    else:
        del out[path[0]]
    return out


def conflict_error(conflicts: list[tuple[str, Path]]) -> ApiError:
    """k8s.io/apimachinery pkg/util/managedfields/internal/conflict.go NewConflictError, for Apply managers."""
    causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": path_text(p)}
              for m, p in conflicts]
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        message = f'Apply failed with 1 conflict: conflict with "{manager}": {path_text(path)}'
    else:
        lines = []
        for manager in sorted({m for m, _ in conflicts}):
            lines.append(f'conflicts with "{manager}":')
            lines += [f"- {path_text(p)}" for m, p in conflicts if m == manager]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(message, code=409, reason="Conflict", details={"causes": causes})


def path_text(path: Path) -> str:
    """structured-merge-diff fieldpath.Path.String(): .spec.containers[name="main"].image"""
    text = ""
    for step in path:
        if step.startswith("f:"):
            text += "." + step[2:]
        elif step.startswith("k:"):
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(step[2:]).items()) + "]"
        elif step.startswith("v:"):
            text += f"[={step[2:]}]"
    return text


# ----- the object -------------------------------------------------------------------------------------------------
def _step(node: Any, step: str) -> Any:
    if step == ".":
        return node
    if step.startswith("f:"):
        return node.get(step[2:], _MISSING) if isinstance(node, dict) else _MISSING
    if step.startswith("k:") and isinstance(node, list):
        key = json.loads(step[2:])
        return next((i for i in node if isinstance(i, dict) and all(i.get(k) == v for k, v in key.items())), _MISSING)
    if step.startswith("v:") and isinstance(node, list):
        value = json.loads(step[2:])
        return value if value in node else _MISSING
    return _MISSING


def value_at(obj: Any, path: Path) -> Any:
    node = obj
    for step in path:
        node = _step(node, step)
        if node is _MISSING:
            return _MISSING
    return node


def remove(obj: Obj, path: Path) -> None:
    """Drop the field, list item or set member at `path`, and the maps and lists that leaves empty."""
    parents = [obj]
    for step in path[:-1]:
        node = _step(parents[-1], step)
        if node is _MISSING or node is parents[-1]:
            return
        parents.append(node)
    last = path[-1]
    target, holder = (parents[-1], parents[-2] if len(parents) > 1 else None) if last == "." else (parents[-1], None)
    if last == ".":
        if isinstance(holder, list) and target in holder:
            holder.remove(target)
    elif last.startswith("f:") and isinstance(target, dict):
        target.pop(last[2:], None)
    elif last.startswith("v:") and isinstance(target, list):
        value = json.loads(last[2:])
        while value in target:
            target.remove(value)
    for child, parent, step in reversed(list(zip(parents[1:], parents[:-1], path))):
        if child in ({}, []) and step.startswith("f:") and isinstance(parent, dict) and parent is not obj:
            parent.pop(step[2:], None)


def merge(live: Any, config: Any, kind: str, field: str, parent: str = "") -> Any:
    """The applied configuration over the live object: maps merge, keyed lists merge by key, set lists unite,
    anything else is replaced."""
    if isinstance(config, dict) and isinstance(live, dict):
        out = dict(live)
        for key, value in config.items():
            if value is None:
                continue
            out[key] = merge(live.get(key, _MISSING), value, kind, key, field) if key in live else \
                copy.deepcopy(value)
        return out
    if isinstance(config, list) and isinstance(live, list):
        key = _list_key(config, field, kind, parent)
        if key is not None and all(isinstance(i, dict) and key in i for i in live):
            out_list = list(live)
            for item in config:
                at = next((n for n, cur in enumerate(out_list) if cur.get(key) == item[key]), None)
                if at is None:
                    out_list.append(copy.deepcopy(item))
                else:
                    out_list[at] = merge(out_list[at], item, kind, field, parent)
            return out_list
        if field in MERGE_PRIMITIVE_LISTS:
            return list(live) + [copy.deepcopy(v) for v in config if v not in live]
    return copy.deepcopy(config)
