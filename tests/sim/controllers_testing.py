"""Helpers for driving controllers against a Store in tests: run them as tasks, wait for conditions."""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator, Callable, Iterable, TypeVar

from pytest_gpucluster.sim.controllers.base import Controller, rfc3339
from pytest_gpucluster.sim.controllers.daemonsets import BEHAVIOUR_ANNOTATION

T = TypeVar("T")


class ControllerFailed(AssertionError):
    """A controller task died while a test was waiting on it."""


@contextlib.asynccontextmanager
async def running(controllers: Iterable[Controller]) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run controllers as tasks for the block; re-raise the first controller error at exit."""
    tasks = [asyncio.create_task(c.run(), name=c.name) for c in controllers]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise ControllerFailed(f"controller {task.get_name()} failed: {result!r}") from result


async def eventually(probe: Callable[[], T | None], *, timeout: float = 5.0, what: str = "condition",
                     tasks: Iterable[asyncio.Task[None]] = ()) -> T:
    """Poll `probe` on the loop until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    tasks = list(tasks)
    while True:
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise ControllerFailed(f"controller {task.get_name()} failed while waiting for {what}: "
                                       f"{task.exception()!r}") from task.exception()
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def find(store: Any, key: str, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Objects of `key` matching `predicate` (copies)."""
    items, _ = store.list(key)
    return [o for o in items if predicate(o)]


class FakeKubelet(Controller):
    """Stand-in for sim.kubelet in controller tests: bound pods become Running+Ready at once (not Ready
    with a behaviour annotation); pods with a `sim.test/exit` annotation finish with that exit code;
    deleted pods are finished at once."""

    name = "fake-kubelet"
    watches = ("pods",)

    async def reconcile(self) -> None:
        for pod in self.items("pods"):
            meta, status = pod["metadata"], pod.get("status") or {}
            if not pod["spec"].get("nodeName"):
                continue
            if meta.get("deletionTimestamp"):
                self.store.delete("pods", meta["namespace"], meta["name"], grace_seconds=0)
                continue
            if status.get("phase") in ("Running", "Succeeded", "Failed"):
                continue
            annotations = meta.get("annotations") or {}
            exit_code = annotations.get("sim.test/exit")
            ready = "False" if annotations.get(BEHAVIOUR_ANNOTATION) else "True"

            def run(obj: dict[str, Any], ready: str = ready, exit_code: str | None = exit_code) -> None:
                st = obj.setdefault("status", {})
                if exit_code is not None:
                    st["phase"] = "Succeeded" if exit_code == "0" else "Failed"
                    ready = "False"
                else:
                    st["phase"] = "Running"
                st["startTime"] = rfc3339()
                st["conditions"] = [{"type": "Ready", "status": ready, "lastTransitionTime": rfc3339()}]

            self.try_mutate("pods", meta["namespace"], meta["name"], run)
