"""In-memory object store of the simulated apiserver: CRUD with resourceVersions, selectors, watches, finalizers and garbage collection."""
from __future__ import annotations

import asyncio
import builtins
import calendar
import collections
import random
import re
import time
import uuid
from typing import Any, AsyncIterator, Callable, Iterable

from . import resources
from .errors import AlreadyExists, BadRequest, Conflict, Forbidden, Gone, Invalid, NotFound
from .patch import apply_patch
from .resources import ResourceType
from .selectors import (matches_fields, matches_labels, parse_field_selector, parse_label_selector,
                        FieldRequirement, Requirement)

Obj = dict[str, Any]
Subscriber = Callable[[str, str, Obj], None]
Admission = Callable[[str, Obj], None]

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_NO_GENERATION = {"events", "configmaps", "secrets", "serviceaccounts", "namespaces", "nodes"}
_POD_MUTABLE_SPEC = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds",
                     "schedulingGates")


def fast_copy(value: Any) -> Any:
    """Deep copy of JSON-like data (dict/list/scalars), several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: fast_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fast_copy(v) for v in value]
    return value


def rfc3339(ts: float) -> str:
    """Whole-second RFC 3339 UTC, as the apiserver writes metav1.Time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _micro_time(ts: float) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds (events' eventTime)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def parse_rfc3339(text: str) -> float:
    return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))


class Watch:
    """One watch: an async iterator of (type, obj) with ADDED/MODIFIED/DELETED and optional BOOKMARK events."""

    def __init__(self, store: "Store", rtype: ResourceType, namespace: str | None, labels: list[Requirement],
                 fields: list[FieldRequirement], *, bookmarks: bool, bookmark_interval: float,
                 copy: bool) -> None:
        self.store, self.rtype, self.namespace = store, rtype, namespace
        self._labels, self._fields = labels, fields
        self._bookmarks, self._interval, self._copy = bookmarks, bookmark_interval, copy
        self._queue: collections.deque[tuple[str, Obj]] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self.closed = False

    def _match(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if not matches_labels(self._labels, obj):
            return False
        return not self._fields or matches_fields(self._fields, self.store._view(self.rtype, obj))

    def offer(self, etype: str, obj: Obj, old: Obj | None) -> None:
        """Called by the store after a commit (objects are in storage form, shared: never mutated)."""
        now, before = self._match(obj), self._match(old)
        if etype == "MODIFIED":
            if now and not before:
                etype = "ADDED"           # came into the selector's view
            elif before and not now:
                etype = "DELETED"         # left the selector's view
            elif not now:
                return
        elif not now:
            return
        self._queue.append((etype, obj))
        if self._wakeup is not None:
            self._wakeup.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store._unwatch(self)
            if self._wakeup is not None:
                self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[tuple[str, Obj]]:
        return self

    async def __anext__(self) -> tuple[str, Obj]:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._interval if self._bookmarks else None)
            except asyncio.TimeoutError:
                if not self._queue and not self.closed:
                    return "BOOKMARK", {"kind": self.rtype.kind, "apiVersion": self.rtype.api_version,
                                        "metadata": {"resourceVersion": str(self.store.resource_version)}}
        etype, obj = self._queue.popleft()
        out = self.store._view(self.rtype, obj)
        return etype, fast_copy(out) if self._copy and out is obj else out


class Store:
    """The cluster state. Touched only from the sim's event loop (no locking)."""

    def __init__(self, clock: Callable[[], float] = time.time, *, history: int = 1000) -> None:
        self.clock = clock
        self.request_counts: collections.Counter[str] = collections.Counter()
        self.resource_version = 0
        self._history_size = history
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {t.storage_key: {} for t in
                                                                 resources.REGISTRY.values()}
        self._history: dict[str, collections.deque[tuple[int, str, Obj, Obj | None]]] = collections.defaultdict(
            collections.deque)
        self._compacted: dict[str, int] = collections.defaultdict(int)
        self._watches: dict[str, list[Watch]] = collections.defaultdict(list)
        self._subscribers: list[tuple[Subscriber, bool]] = []
        self._admission: list[Admission] = []
        self._dependents: dict[str, set[tuple[str, str, str]]] = collections.defaultdict(set)
        self._propagation: dict[str, str] = {}
        self._event_index: dict[tuple[str, ...], tuple[str, str]] = {}
        # Secondary indexes for controllers, kept by _commit/_remove: pods by spec.nodeName ("" = unbound)
        # and a change counter per storage key (what a controller caches a derived view against).
        self._pods_by_node: dict[str, dict[tuple[str, str], Obj]] = collections.defaultdict(dict)
        self._generations: collections.Counter[str] = collections.Counter()
        self._ns_objects: collections.Counter[str] = collections.Counter()   # namespace -> objects in it
        self._rng = random.Random()
        for ns in SYSTEM_NAMESPACES:
            self.create("namespaces", {"metadata": {"name": ns}})

    # ----- types and helpers -----------------------------------------------------------------
    def resource(self, key: str) -> ResourceType:
        return resources.lookup(key)

    def crds(self) -> set[str]:
        """Names (`<plural>.<group>`) of the CustomResourceDefinitions present."""
        return {name for (_, name) in self._objects["customresourcedefinitions.apiextensions.k8s.io"]}

    def add_admission(self, fn: Admission) -> Callable[[], None]:
        """Register a mutating admission hook fn(key, obj) run on every create (e.g. ExtendedResourceToleration)."""
        self._admission.append(fn)
        return lambda: self._admission.remove(fn)

    def _now(self) -> str:
        return rfc3339(self.clock())

    def _ns_name(self, t: ResourceType, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "") if t.namespaced else "", name

    def _find(self, t: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._objects[t.storage_key].get(self._ns_name(t, namespace, name))
        if obj is None:
            raise NotFound.of(t.plural, t.group, name)
        return obj

    def _view(self, t: ResourceType, obj: Obj) -> Obj:
        """Objects are stored in their storage form; events.k8s.io is a translated view of core events."""
        return core_to_events_v1(obj) if t.storage else obj

    # ----- reads --------------------------------------------------------------------------------
    def get(self, key: str, namespace: str | None, name: str) -> Obj:
        t = self.resource(key)
        return fast_copy(self._view(t, self._find(t, namespace, name)))

    def list(self, key: str, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[Obj], str]:
        t = self.resource(key)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, t.supports_field)
        items = []
        for (ns, _), obj in sorted(self._objects[t.storage_key].items()):
            if namespace and t.namespaced and ns != namespace:
                continue
            if not matches_labels(labels, obj):
                continue
            view = self._view(t, obj)  # field selectors of events.k8s.io name the translated fields
            if not fields or matches_fields(fields, view):
                items.append(fast_copy(view))
        return items, str(self.resource_version)

    def iter_objects(self, key: str) -> Iterable[Obj]:
        """Read-only iteration over stored objects (no copy; do not mutate) for controllers and stats."""
        return self._objects[self.resource(key).storage_key].values()

    def count(self, key: str) -> int:
        return len(self._objects[self.resource(key).storage_key])

    def exists(self, key: str, namespace: str | None, name: str) -> bool:
        t = self.resource(key)
        return self._ns_name(t, namespace, name) in self._objects[t.storage_key]

    def pods_on_node(self, node_name: str) -> Iterable[Obj]:
        """Read-only view of the stored pods whose spec.nodeName is `node_name` ("" for unbound pods)."""
        return self._pods_by_node.get(node_name, {}).values()

    def dependents(self, owner_uid: str, key: str) -> "builtins.list[Obj]":
        """Read-only: the stored `key` objects with an ownerReference to `owner_uid` (no scan of all objects)."""
        objs = self._objects[self.resource(key).storage_key]
        found = (objs.get((ns, name)) for (k, ns, name) in self._dependents.get(owner_uid, ()) if k == key)
        return [o for o in found if o is not None]

    def generation(self, key: str) -> int:
        """A counter that moves on every create, update or removal of a `key` object: cache derived views on it."""
        return self._generations[self.resource(key).storage_key]

    # ----- writes -------------------------------------------------------------------------------
    def create(self, key: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        t = self.resource(key)
        if t.storage:
            created = self.create(t.storage, events_v1_to_core(obj), dry_run=dry_run)
            return core_to_events_v1(created)
        obj = fast_copy(obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be an object")
        obj["apiVersion"], obj["kind"] = t.api_version, t.kind
        if t.namespaced:
            meta["namespace"] = ns = meta.get("namespace") or "default"
            nsobj = self._objects["namespaces"].get(("", ns))
            if nsobj is None:
                raise NotFound.of("namespaces", "", ns)
            if nsobj["metadata"].get("deletionTimestamp"):
                raise Forbidden(f'{t.plural} "{meta.get("name") or meta.get("generateName", "")}" is forbidden: '
                                f"unable to create new content in namespace {ns} because it is being terminated")
        else:
            meta.pop("namespace", None)
            ns = ""
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise Invalid.of(t.kind, "", [("metadata.name", "Required value: name or generateName is required")],
                                 t.group)
            for _ in range(20):
                meta["name"] = meta["generateName"] + "".join(self._rng.choice(_GEN_CHARS) for _ in range(5))
                if (ns, meta["name"]) not in self._objects[key]:
                    break
        self._validate_name(t, meta["name"])
        if (ns, meta["name"]) in self._objects[key]:
            raise AlreadyExists.of(t.plural, t.group, meta["name"])
        for hook in list(self._admission):
            hook(key, obj)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "uid"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self._now()
        if key not in _NO_GENERATION:
            meta["generation"] = 1
        _defaults(key, obj)
        if dry_run:
            return obj
        self._commit(t, "ADDED", obj, None)
        if key == "namespaces":
            self.create("serviceaccounts", {"metadata": {"name": "default", "namespace": meta["name"]}})
        return fast_copy(obj)

    def ensure(self, key: str, obj: Obj) -> Obj:
        """Create unless an object of that name exists (seeding helper); returns the stored object."""
        meta = obj.get("metadata") or {}
        try:
            return self.get(key, meta.get("namespace"), meta.get("name", ""))
        except NotFound:
            return self.create(key, obj)

    def replace(self, key: str, obj: Obj, *, subresource: str | None = None, dry_run: bool = False) -> Obj:
        t = self.resource(key)
        if t.storage:
            return core_to_events_v1(self.replace(t.storage, events_v1_to_core(obj), subresource=subresource,
                                                  dry_run=dry_run))
        meta = obj.get("metadata") or {}
        current = self._find(t, meta.get("namespace"), meta.get("name", ""))
        rv = meta.get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise Conflict.stale(t.plural, t.group, current["metadata"]["name"])
        return self._update(t, current, fast_copy(obj), subresource, dry_run=dry_run)

    def patch(self, key: str, namespace: str | None, name: str, patch: Any, patch_type: str = "merge", *,
              subresource: str | None = None, dry_run: bool = False) -> Obj:
        t = self.resource(key)
        current = self._find(t, namespace, name)
        view = self._view(t, current)
        candidate = apply_patch(fast_copy(view), patch, patch_type, kind=t.kind, custom=t.custom)
        if not isinstance(candidate, dict):
            raise BadRequest("patch result is not an object")
        rv = (candidate.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise Conflict.stale(t.plural, t.group, name)
        if t.storage:
            candidate = events_v1_to_core(candidate)
        result = self._update(t, current, candidate, subresource, dry_run=dry_run)
        return self._view(t, result)

    def mutate(self, key: str, namespace: str | None, name: str, fn: Callable[[Obj], None], *,
               subresource: str | None = None) -> Obj:
        """Read-modify-write for controllers: fn edits a copy in place; every field it changes is kept
        (spec and status alike) unless subresource="status" restricts it to status. No-op if unchanged."""
        t = self.resource(key)
        if t.storage:
            t = self.resource(t.storage)
        current = self._find(t, namespace, name)
        candidate = fast_copy(current)
        fn(candidate)
        return self._update(t, current, candidate, subresource or "*")

    def _update(self, t: ResourceType, current: Obj, candidate: Obj, subresource: str | None, *,
                dry_run: bool = False) -> Obj:
        cmeta = current["metadata"]
        nmeta = candidate.setdefault("metadata", {})
        if nmeta.get("name", cmeta["name"]) != cmeta["name"] or (
                t.namespaced and nmeta.get("namespace", cmeta.get("namespace")) != cmeta.get("namespace")):
            raise BadRequest(f"the name of the object ({nmeta.get('name')}) does not match the name on the URL "
                             f"({cmeta['name']})")
        has_status = "status" in t.subresources
        if subresource == "status":
            # stored objects are never edited in place, so the new version may share the old spec
            new = {k: v for k, v in current.items() if k != "status"}
            new["metadata"] = fast_copy(cmeta)
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
        else:
            new = candidate
            if subresource is None and has_status:  # the main resource ignores status, as in Kubernetes
                if "status" in current:
                    new["status"] = fast_copy(current["status"])
                else:
                    new.pop("status", None)
            for field in ("uid", "creationTimestamp", "name", "namespace", "generation"):
                if field in cmeta:
                    nmeta[field] = cmeta[field]
                else:
                    nmeta.pop(field, None)
            if subresource is None:  # deletionTimestamp only moves through delete()
                for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                    if field in cmeta:
                        nmeta[field] = cmeta[field]
                    else:
                        nmeta.pop(field, None)
            new["apiVersion"], new["kind"] = t.api_version, t.kind
        new["metadata"]["resourceVersion"] = cmeta["resourceVersion"]
        if new == current:
            return fast_copy(current)
        if t.key == "pods" and subresource is None:
            _check_pod_update(current, new)
        if "generation" in cmeta and _spec_of(new) != _spec_of(current):
            new["metadata"]["generation"] = cmeta["generation"] + 1
        if dry_run:
            return new
        if cmeta.get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._commit(t, "MODIFIED", new, current)
            self._remove(t, new)
            return fast_copy(new)
        self._commit(t, "MODIFIED", new, current)
        return fast_copy(new)

    # ----- deletion -----------------------------------------------------------------------------
    def delete(self, key: str, namespace: str | None, name: str, *, propagation: str = "Background",
               grace_seconds: int | None = None, preconditions: dict[str, str] | None = None,
               dry_run: bool = False) -> Obj:
        """Delete with Kubernetes semantics:
        - finalizers (or Foreground) keep the object with a deletionTimestamp until they are removed;
        - a pod bound to a node and not yet terminal gets deletionTimestamp = now + grace and stays until
          the kubelet calls delete(..., grace_seconds=0); unbound or terminal pods go at once;
        - a namespace turns Terminating, its contents are deleted, and it goes when empty;
        - ownerReferences cascade: Background deletes dependents, Orphan strips their ownerReference,
          Foreground removes the owner only after its dependents are gone."""
        t = self.resource(key)
        if t.storage:
            return core_to_events_v1(self.delete(t.storage, namespace, name, propagation=propagation,
                                                 grace_seconds=grace_seconds, dry_run=dry_run))
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise BadRequest(f"propagationPolicy: Unsupported value: \"{propagation}\": supported values: "
                             "\"Foreground\", \"Background\", \"Orphan\"")
        current = self._find(t, namespace, name)
        meta = current["metadata"]
        for field, value in (preconditions or {}).items():
            if value and meta.get(field) != value:
                raise Conflict(f"Precondition failed: {field} in precondition: {value}, {field} in object meta: "
                               f"{meta.get(field)}")
        if dry_run:
            return fast_copy(current)
        uid = meta["uid"]
        self._propagation[uid] = propagation
        new = fast_copy(current)
        nmeta = new["metadata"]
        finalizers = list(nmeta.get("finalizers") or [])
        if propagation == "Foreground" and self._dependents.get(uid) and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        grace = self._grace(t, current, grace_seconds)
        if key == "namespaces":
            return self._delete_namespace(t, current)
        if finalizers or grace:
            nmeta["finalizers"] = finalizers or nmeta.get("finalizers", [])
            if not nmeta["finalizers"]:
                nmeta.pop("finalizers")
            deadline = self.clock() + (grace or 0)
            if not nmeta.get("deletionTimestamp") or parse_rfc3339(nmeta["deletionTimestamp"]) > deadline:
                nmeta["deletionTimestamp"] = rfc3339(deadline)
                nmeta["deletionGracePeriodSeconds"] = grace or 0
            if new != current:
                self._commit(t, "MODIFIED", new, current)
            if propagation == "Foreground":
                self._cascade(uid, "Background")
                self._finish_foreground(uid, t.kind)
            elif propagation == "Orphan":
                self._cascade(uid, "Orphan")
            return fast_copy(self._objects[t.key].get(self._ns_name(t, namespace, name), new))
        self._remove(t, current)
        return fast_copy(current)

    def _grace(self, t: ResourceType, pod: Obj, grace_seconds: int | None) -> int:
        if t.key != "pods":
            return 0
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if grace_seconds is None:
            grace_seconds = spec.get("terminationGracePeriodSeconds", 30)
        return max(int(grace_seconds), 0)

    def _delete_namespace(self, t: ResourceType, current: Obj) -> Obj:
        name = current["metadata"]["name"]
        if not current["metadata"].get("deletionTimestamp"):
            new = fast_copy(current)
            new["metadata"]["deletionTimestamp"] = self._now()
            new.setdefault("status", {})["phase"] = "Terminating"
            self._commit(t, "MODIFIED", new, current)
            for rt in resources.REGISTRY.values():
                if not rt.namespaced or rt.storage:
                    continue
                for (ns, objname) in [k for k in self._objects[rt.key] if k[0] == name]:
                    if (ns, objname) in self._objects[rt.key]:
                        self.delete(rt.key, ns, objname)
        self._finish_namespace(name)
        return fast_copy(self._objects["namespaces"].get(("", name), current))

    def _finish_namespace(self, name: str) -> None:
        nsobj = self._objects["namespaces"].get(("", name))
        if nsobj is None or not nsobj["metadata"].get("deletionTimestamp"):
            return
        if self._ns_objects.get(name):
            return
        self._remove(self.resource("namespaces"), nsobj)

    def _remove(self, t: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        key = self._ns_name(t, meta.get("namespace"), meta["name"])
        current = self._objects[t.key].get(key)
        if current is None:
            return
        self.resource_version += 1
        gone = fast_copy(current)
        gone["metadata"]["resourceVersion"] = str(self.resource_version)
        del self._objects[t.key][key]
        self._index_owners(t.key, current, None)
        self._index_pods(t.key, key, current, None)
        self._record(t, "DELETED", gone, current)
        uid = meta["uid"]
        policy = self._propagation.pop(uid, "Background")
        self._cascade(uid, policy)
        for ref in meta.get("ownerReferences") or []:
            self._finish_foreground(ref.get("uid", ""), ref.get("kind"))
        if t.namespaced:
            self._finish_namespace(meta.get("namespace", ""))

    def _cascade(self, uid: str, policy: str) -> None:
        for (key, ns, name) in sorted(self._dependents.get(uid, ())):
            if (ns, name) not in self._objects[key]:
                continue
            if policy == "Orphan":
                self.mutate(key, ns or None, name, lambda o: o["metadata"].__setitem__(
                    "ownerReferences", [r for r in o["metadata"].get("ownerReferences", []) if r.get("uid") != uid]))
            elif not self._objects[key][(ns, name)]["metadata"].get("deletionTimestamp"):
                self.delete(key, ns or None, name, propagation="Background")

    def _finish_foreground(self, uid: str, kind: str | None = None) -> None:
        """The owner `uid` (of `kind`, when known: only objects of that kind are searched; every removal of an owned
        pod used to scan every stored object) lost its last dependent: drop its foregroundDeletion finalizer."""
        if not uid or self._dependents.get(uid):
            return
        for t_key, objs in self._objects.items():
            if kind and self.resource(t_key).kind != kind:
                continue
            for (ns, name), obj in list(objs.items()):
                if obj["metadata"]["uid"] == uid and "foregroundDeletion" in (obj["metadata"].get("finalizers") or []):
                    self.mutate(t_key, ns or None, name, lambda o: o["metadata"].__setitem__(
                        "finalizers", [f for f in o["metadata"]["finalizers"] if f != "foregroundDeletion"]))
                    return

    # ----- commit, history, watches -----------------------------------------------------------------
    def _commit(self, t: ResourceType, etype: str, obj: Obj, old: Obj | None) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        meta = obj["metadata"]
        ident = self._ns_name(t, meta.get("namespace"), meta["name"])
        self._objects[t.key][ident] = obj
        self._index_owners(t.key, old, obj)
        self._index_pods(t.key, ident, old, obj)
        self._record(t, etype, obj, old)

    def _index_pods(self, key: str, ident: tuple[str, str], old: Obj | None, new: Obj | None) -> None:
        self._generations[key] += 1
        if ident[0] and (old is None) != (new is None):       # a namespaced object came or went
            self._ns_objects[ident[0]] += 1 if old is None else -1
        if key != "pods":
            return
        if old is not None:
            before = (old.get("spec") or {}).get("nodeName") or ""
            bucket = self._pods_by_node.get(before)
            if bucket is not None:
                bucket.pop(ident, None)
                if not bucket:
                    del self._pods_by_node[before]
        if new is not None:
            self._pods_by_node[(new.get("spec") or {}).get("nodeName") or ""][ident] = new

    def _index_owners(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            meta = obj["metadata"]
            ident = (key, meta.get("namespace", ""), meta["name"])
            for ref in meta.get("ownerReferences") or []:
                uid = ref.get("uid", "")
                if add:
                    self._dependents[uid].add(ident)
                else:
                    self._dependents[uid].discard(ident)
                    if not self._dependents[uid]:
                        del self._dependents[uid]

    def _record(self, t: ResourceType, etype: str, obj: Obj, old: Obj | None) -> None:
        hist = self._history[t.key]
        hist.append((self.resource_version, etype, obj, old))
        while len(hist) > self._history_size:
            self._compacted[t.key] = hist.popleft()[0]
        views = [t.key] + [v.key for v in resources.REGISTRY.values() if v.storage == t.key]
        for view in views:
            for w in list(self._watches.get(view, ())):
                w.offer(etype, obj, old)
        for fn, copy in list(self._subscribers):
            fn(etype, t.key, fast_copy(obj) if copy else obj)

    def subscribe(self, fn: Subscriber, *, copy: bool = True) -> Callable[[], None]:
        """fn(event_type, key, obj) after each commit, on the loop; obj is the caller's copy, or with
        copy=False the stored object itself (read it, never mutate or keep it: one copy per commit and
        subscriber is most of a commit's cost when the subscriber only filters)."""
        entry = (fn, copy)
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    def watch(self, key: str, namespace: str | None, *, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              bookmarks: bool = False, bookmark_interval: float = 5.0, copy: bool = True) -> Watch:
        """Start a watch. resource_version None/""/"0": synthetic ADDED for the current objects, then changes.
        A later RV replays history after it, or raises Gone (410) when that history was compacted."""
        t = self.resource(key)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, t.supports_field)
        w = Watch(self, t, namespace if t.namespaced else None, labels, fields, bookmarks=bookmarks,
                  bookmark_interval=bookmark_interval, copy=copy)
        storage = t.storage_key
        if not resource_version or resource_version == "0":
            for obj in sorted(self._objects[storage].values(), key=lambda o: int(o["metadata"]["resourceVersion"])):
                if w._match(obj):
                    w._queue.append(("ADDED", obj))
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise BadRequest(f'invalid resource version "{resource_version}"') from None
            if since < self._compacted[storage]:
                raise Gone(f"too old resource version: {since} ({self._compacted[storage] + 1})")
            for rv, etype, obj, old in self._history[storage]:
                if rv > since:
                    w.offer(etype, obj, old)
        self._watches[t.key].append(w)
        return w

    def _unwatch(self, w: Watch) -> None:
        watches = self._watches.get(w.rtype.key, [])
        if w in watches:
            watches.remove(w)

    def watch_count(self) -> int:
        return sum(len(v) for v in self._watches.values())

    def _validate_name(self, t: ResourceType, name: str) -> None:
        pattern = _DNS_LABEL if t.key in ("namespaces", "services") else _DNS_SUBDOMAIN
        if len(name) > (63 if pattern is _DNS_LABEL else 253) or not pattern.match(name):
            what = "RFC 1123 label" if pattern is _DNS_LABEL else "RFC 1123 subdomain"
            raise Invalid.of(t.kind, name, [("metadata.name", f'Invalid value: "{name}": a lowercase {what} must '
                                             "consist of lower case alphanumeric characters, '-' or '.', and must "
                                             "start and end with an alphanumeric character")], t.group)

    # ----- events -----------------------------------------------------------------------------------
    def record_event(self, involved: Obj, reason: str, message: str, *, type: str = "Normal",
                     component: str = "default-scheduler", host: str | None = None) -> Obj:
        """A core v1 Event about `involved`; repeats (same object, reason, message, source) bump count.
        eventTime is set too, so both the core and the events.k8s.io views deserialize in typed clients."""
        meta = involved.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        ref = {"kind": involved.get("kind", ""), "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
               "uid": meta.get("uid", ""), "apiVersion": involved.get("apiVersion", ""),
               "resourceVersion": meta.get("resourceVersion", "")}
        if not ref["namespace"]:
            ref.pop("namespace")
        ident = (ref["kind"], ref.get("namespace", ""), ref["name"], ref["uid"], reason, message, component, type)
        now = self._now()
        existing = self._event_index.get(ident)
        if existing and existing in self._objects["events"]:
            def bump(ev: Obj) -> None:
                ev["count"] = int(ev.get("count") or 1) + 1
                ev["lastTimestamp"] = now
            return self.mutate("events", existing[0], existing[1], bump)
        source: Obj = {"component": component}
        if host:
            source["host"] = host
        ev = {"metadata": {"name": f"{ref['name']}.{time.time_ns():x}", "namespace": ns},
              "involvedObject": ref, "reason": reason, "message": message, "type": type, "source": source,
              "firstTimestamp": now, "lastTimestamp": now, "count": 1, "eventTime": _micro_time(self.clock()),
              "reportingComponent": component, "reportingInstance": host or ""}
        created = self.create("events", ev)
        self._event_index[ident] = (ns, created["metadata"]["name"])
        return created


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _check_pod_update(current: Obj, new: Obj) -> None:
    old_spec, new_spec = current.get("spec") or {}, new.get("spec") or {}
    strip = lambda s: {k: v for k, v in s.items() if k not in _POD_MUTABLE_SPEC and k != "containers"}  # noqa: E731
    images = lambda s: [{k: v for k, v in c.items() if k != "image"} for c in s.get("containers") or []]  # noqa: E731
    if strip(old_spec) != strip(new_spec) or images(old_spec) != images(new_spec):
        name = current["metadata"]["name"]
        raise Invalid.of("Pod", name, [("spec", "Forbidden: pod updates may not change fields other than "
                                        "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                                        "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to "
                                        "existing tolerations), `spec.terminationGracePeriodSeconds` (allow it "
                                        "to be set to 1 if it was previously negative)")])


def _defaults(key: str, obj: Obj) -> None:
    """The defaulting the apiserver does for the fields our clients read."""
    meta = obj["metadata"]
    if key == "namespaces":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {})["phase"] = "Active"
    elif key == "pods":
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            image = str(c.get("image", ""))
            c.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image.split("/")[-1]
                         else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", _qos_class(spec))
    elif key == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if spec.get("clusterIP") != "None":
            spec.setdefault("clusterIP", f"10.100.{random.randint(0, 255)}.{random.randint(1, 254)}")
    elif key == "jobs.batch":
        spec = obj.setdefault("spec", {})
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)


def _qos_class(spec: Obj) -> str:
    containers = spec.get("containers") or []
    if not containers:
        return "BestEffort"
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        any_set = any_set or bool(req) or bool(lim)
        for name in ("cpu", "memory"):
            if name not in lim or str(req.get(name, lim[name])) != str(lim[name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def core_to_events_v1(ev: Obj) -> Obj:
    """A core v1 Event rendered as events.k8s.io/v1."""
    out: Obj = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": ev["metadata"],
                "eventTime": ev.get("eventTime"), "reason": ev.get("reason"), "note": ev.get("message"),
                "type": ev.get("type"), "regarding": ev.get("involvedObject"),
                "reportingController": ev.get("reportingComponent") or (ev.get("source") or {}).get("component", ""),
                "reportingInstance": ev.get("reportingInstance") or (ev.get("source") or {}).get("host", ""),
                "deprecatedSource": ev.get("source") or {}, "deprecatedFirstTimestamp": ev.get("firstTimestamp"),
                "deprecatedLastTimestamp": ev.get("lastTimestamp"), "deprecatedCount": ev.get("count")}
    for field in ("action", "related", "series"):
        if ev.get(field) is not None:
            out[field] = ev[field]
    return out


def events_v1_to_core(ev: Obj) -> Obj:
    """An events.k8s.io/v1 Event stored as core v1."""
    out: Obj = {"apiVersion": "v1", "kind": "Event", "metadata": ev.get("metadata") or {},
                "involvedObject": ev.get("regarding") or {}, "reason": ev.get("reason"),
                "message": ev.get("note"), "type": ev.get("type"), "eventTime": ev.get("eventTime"),
                "source": ev.get("deprecatedSource") or {"component": ev.get("reportingController", "")},
                "reportingComponent": ev.get("reportingController", ""),
                "reportingInstance": ev.get("reportingInstance", ""),
                "firstTimestamp": ev.get("deprecatedFirstTimestamp"), "lastTimestamp": ev.get("deprecatedLastTimestamp"),
                "count": ev.get("deprecatedCount")}
    for field in ("action", "related", "series"):
        if ev.get(field) is not None:
            out[field] = ev[field]
    return out
