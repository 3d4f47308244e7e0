"""The controller loop every simulated controller shares: level-triggered reconcile on store changes and timers."""
from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import string
import time
from typing import Any, Callable, Iterable

from pytest_gpucluster.sim.errors import Conflict, NotFound

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand.String alphabet (no vowels)


def rfc3339(ts: float | None = None) -> str:
    """Whole-second RFC 3339 UTC, as the apiserver writes timestamps."""
    moment = dt.datetime.fromtimestamp(time.time() if ts is None else ts, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def random_suffix(n: int = 5, rng: random.Random | None = None) -> str:
    """The 5-character suffix of generated names (`nvidia-device-plugin-daemonset-5884b`)."""
    pick = (rng or random).choice
    return "".join(pick(_SUFFIX_ALPHABET) for _ in range(n))


def owner_reference(owner: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": controller, "blockOwnerDeletion": True}


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner["metadata"].get("uid")
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def set_condition(conditions: list[dict[str, Any]], ctype: str, status: str, reason: str,
                  message: str = "", *, now: float | None = None, sort: bool = False,
                  extra: dict[str, Any] | None = None) -> bool:
    """Upsert a condition; lastTransitionTime moves only when the status changes. True if anything changed."""
    for condition in conditions:
        if condition.get("type") == ctype:
            changed = (condition.get("status") != status or condition.get("reason") != reason
                       or condition.get("message", "") != message)
            if condition.get("status") != status:
                condition["lastTransitionTime"] = rfc3339(now)
            condition.update({"status": status, "reason": reason, "message": message, **(extra or {})})
            return changed
    conditions.append({"type": ctype, "status": status, "reason": reason, "message": message,
                       "lastTransitionTime": rfc3339(now), **(extra or {})})
    if sort:
        conditions.sort(key=lambda c: c.get("type", ""))
    return True


def get_condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == ctype:
            return condition
    return None


def is_deleting(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


class Controller:
    """One simulated controller: `reconcile()` runs whenever a watched resource changes or a timer fires.

    Reconcile is level-triggered: it reads the store and converges it, writing only what differs,
    so the notifications its own writes cause end in one quiet pass. Errors propagate out of
    `run()` (the launcher records them); only the races every real controller expects
    (object deleted or changed under us) are handled where they can happen.
    """

    name = "controller"
    watches: tuple[str, ...] = ()

    def __init__(self, store: Any, scenario: Any) -> None:
        self.store = store
        self.scenario = scenario
        self._wake: asyncio.Event | None = None
        self._timers: dict[float, asyncio.TimerHandle] = {}    # by fire time rounded to 10 ms
        self._timers_limit = 64
        self.passes = 0

    def clock(self) -> float:
        return time.time()

    def _on_change(self, event_type: str, key: str, obj: dict[str, Any]) -> None:
        if self._wake is not None and key in self.watches and self.interested(event_type, key, obj):
            self._wake.set()

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        """Filter for store notifications of watched keys (default: all); `obj` is the stored object: read only."""
        return True

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def wake_in(self, seconds: float) -> None:
        """Run reconcile again after `seconds` (phase delays, backoffs, TTLs).

        Requests are rounded up to the next 10 ms and share that slot's timer (never early, at most
        10 ms late): a pass may ask again for every pod in backoff."""
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + max(0.0, seconds)) * 100) / 100
        existing = self._timers.get(slot)
        if existing is not None and not existing.cancelled() and existing.when() > loop.time():
            return
        if len(self._timers) >= self._timers_limit:
            now = loop.time()
            self._timers = {k: t for k, t in self._timers.items() if not t.cancelled() and t.when() > now}
            self._timers_limit = max(64, 2 * len(self._timers))
        self._timers[slot] = loop.call_at(slot, self.wake)

    async def setup(self) -> None:
        """Once before the first reconcile."""

    def teardown(self) -> None:
        """When run() ends (cancelled at stop, or failed)."""

    async def reconcile(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        self._wake = asyncio.Event()
        unsubscribe: Callable[[], None] = self.store.subscribe(self._on_change, copy=False)
        try:
            await self.setup()
            while True:
                self._wake.clear()
                self.passes += 1
                await self.reconcile()
                await self._wake.wait()
                await asyncio.sleep(0.001)  # let a burst of commits coalesce into one pass
        finally:
            unsubscribe()
            self.teardown()
            for timer in self._timers.values():
                timer.cancel()

    # -- store helpers that tolerate the expected races ------------------------------------
    def try_mutate(self, key: str, namespace: str | None, name: str, fn: Callable[[dict[str, Any]], None],
                   *, subresource: str | None = None) -> dict[str, Any] | None:
        """store.mutate, or None when the object is gone (deleted since we listed it)."""
        try:
            return self.store.mutate(key, namespace, name, fn, subresource=subresource)
        except NotFound:
            return None
        except Conflict:
            self.wake()  # re-read and retry on the next pass
            return None

    def try_delete(self, key: str, namespace: str | None, name: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return self.store.delete(key, namespace, name, **kwargs)
        except NotFound:
            return None

    def items(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """A snapshot of the stored objects WITHOUT copying: read them, never mutate them.

        The store replaces objects on every write instead of editing them, so the snapshot stays
        consistent while the controller writes.
        """
        objs = list(self.store.iter_objects(key))
        if namespace is not None:
            objs = [o for o in objs if o["metadata"].get("namespace") == namespace]
        return objs

    def has_crd(self, key: str) -> bool:
        """True while the CustomResourceDefinition of `key` (`mpijobs.kubeflow.org`) exists."""
        return key in self.store.crds()


def by_namespace_name(objs: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {((o["metadata"].get("namespace") or ""), o["metadata"]["name"]): o for o in objs}
