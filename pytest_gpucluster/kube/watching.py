"""Waiting on the cluster: watches with deadlines (list, watch, resume, 410 relist) and expect/eventually/consistently."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import errors
from .client import Cluster

# Re-open the watch at least this often: bounds a silent stall; costs one request per period, not per object.
WATCH_PERIOD_S = 20


class DeadlineExceeded(AssertionError):
    """A condition did not become true before its deadline."""


@dataclass
class WatchState:
    """The current objects as seen by one watch, keyed by (namespace, name)."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    resource_version: str | None = None
    relists: int = 0
    reconnects: int = 0
    requests: int = 0

    def apply(self, etype: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if etype == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        if meta.get("resourceVersion"):
            self.resource_version = str(meta["resourceVersion"])

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {name: obj for (_, name), obj in self.objects.items()}


Handler = Callable[[str, dict[str, Any], WatchState], bool]


class Watcher:
    """One logical watch over a kind + selector. `run` returns True once `on_event` says done, False at the
    deadline. Cost: one list + one watch request per WATCH_PERIOD_S (plus relists after 410/drops)."""

    def __init__(self, cluster: Cluster, kind: str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None) -> None:
        self.cluster, self.kind, self.namespace = cluster, kind, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.state = WatchState()

    def _relist(self) -> None:
        items, rv = self.cluster.list(self.kind, self.namespace, label_selector=self.label_selector,
                                      field_selector=self.field_selector)
        self.state.requests += 1
        self.state.objects.clear()
        for item in items:
            self.state.apply("ADDED", item)
        self.state.resource_version = rv or self.state.resource_version

    def run(self, on_event: Handler, *, deadline: float, on_idle: Callable[[], bool | None] | None = None,
            window_s: float = WATCH_PERIOD_S) -> bool:
        """Feed events to on_event until it returns True (-> True) or the deadline (-> False). Between watch
        windows (every window_s at most) on_idle runs; if it returns True the wait ends (-> True)."""
        self._relist()
        if on_event("SYNC", {}, self.state):
            return True
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            period = int(max(1.0, min(window_s, remaining)))
            try:
                self.state.requests += 1
                for event in self.cluster.stream_watch(
                        self.kind, self.namespace, resource_version=self.state.resource_version,
                        label_selector=self.label_selector, field_selector=self.field_selector,
                        timeout_s=period):
                    etype, obj = event.get("type", ""), event.get("object") or {}
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            raise errors.Gone(obj.get("message", "resourceVersion too old"), status=410)
                        raise errors.ClusterError(f"watch {self.kind}: {obj.get('message', obj)}",
                                                  status=obj.get("code"))
                    if etype == "BOOKMARK":
                        rv = obj.get("metadata", {}).get("resourceVersion")
                        self.state.resource_version = str(rv) if rv else self.state.resource_version
                        continue
                    self.state.apply(etype, obj)
                    if on_event(etype, obj, self.state):
                        return True
                    if time.monotonic() >= deadline:
                        return False
            except errors.Gone:
                # Our resourceVersion was compacted away: list again and continue from the fresh one.
                self.state.relists += 1
                self._relist()
                if on_event("SYNC", {}, self.state):
                    return True
            except errors.Unreachable:
                # A dropped stream: resume from the last resourceVersion (the list above proved reachability).
                self.state.reconnects += 1
                if self.state.reconnects > 20:
                    raise
            if on_idle and on_idle():
                return True


def eventually(cluster: Cluster, kind: str, namespace: str | None, predicate: Callable[[dict[str, dict[str, Any]]], bool],
               *, timeout_s: float, description: str, label_selector: str | None = None,
               field_selector: str | None = None) -> dict[str, dict[str, Any]]:
    """Until a deadline: wait (watching) until predicate(objects by name) is true; returns those objects."""
    watcher = Watcher(cluster, kind, namespace, label_selector=label_selector, field_selector=field_selector)
    done = watcher.run(lambda _t, _o, state: predicate(state.by_name()), deadline=time.monotonic() + timeout_s)
    if not done:
        names = sorted(watcher.state.by_name())
        raise DeadlineExceeded(f"expected {description} within {timeout_s:.0f}s; observed {len(names)} "
                               f"{kind}: {', '.join(names[:10]) or 'none'}")
    return watcher.state.by_name()


def consistently(cluster: Cluster, kind: str, namespace: str | None, predicate: Callable[[dict[str, dict[str, Any]]], bool],
                 *, duration_s: float, description: str, label_selector: str | None = None) -> dict[str, dict[str, Any]]:
    """For a duration: predicate holds on every observed state; fails at the first violation."""
    violated: list[dict[str, dict[str, Any]]] = []

    def check(_t: str, _o: dict[str, Any], state: WatchState) -> bool:
        if not predicate(state.by_name()):
            violated.append(dict(state.by_name()))
            return True
        return False

    watcher = Watcher(cluster, kind, namespace, label_selector=label_selector)
    watcher.run(check, deadline=time.monotonic() + duration_s)
    if violated:
        raise AssertionError(f"expected {description} for {duration_s:.0f}s; violated with "
                             f"{sorted(violated[0])}")
    return watcher.state.by_name()


def settled(cluster: Cluster, kind: str, namespace: str | None = None, *, quiet_s: float, max_s: float,
            label_selector: str | None = None) -> bool:
    """Wait until no object of kind changed for quiet_s (at most max_s). True when it settled in time.
    For a cluster that has just started (the simulated one): device plugins still advertise resources."""
    last_change = [time.monotonic()]

    def on_event(etype: str, _obj: dict[str, Any], _state: WatchState) -> bool:
        if etype != "SYNC":
            last_change[0] = time.monotonic()
        return False

    def quiet() -> bool:
        return time.monotonic() - last_change[0] >= quiet_s

    watcher = Watcher(cluster, kind, namespace, label_selector=label_selector)
    return watcher.run(on_event, deadline=time.monotonic() + max_s, on_idle=quiet, window_s=quiet_s)
