"""Reliability fixtures: a simulated cluster that outlives the pytest runs under test, and ways to look inside it."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pytest_gpucluster.sim import resources
from pytest_gpucluster.sim.launcher import SimCluster

MANAGED_BY = ("app.kubernetes.io/managed-by", "pytest-gpucluster")
RUN_LABEL = "gpucluster.io/run"


def labelled_objects(sim: SimCluster, run_id: str | None = None) -> list[str]:
    """`key/namespace/name` of every stored object carrying the run label (of run_id, or of any run)."""
    def scan() -> list[str]:
        assert sim.store is not None  # noqa: S101 - running
        found = []
        for key in resources.REGISTRY:
            if key == "events.events.k8s.io":      # a second view of core events
                continue
            for obj in sim.store.iter_objects(key):
                meta = obj.get("metadata", {})
                value = (meta.get("labels") or {}).get(RUN_LABEL)
                if value is not None and (run_id is None or value == run_id):
                    found.append(f"{key}/{meta.get('namespace') or '-'}/{meta['name']}")
        return sorted(found)
    return sim.call(scan)


def node_names(sim: SimCluster, instance_type: str) -> list[str]:
    """Names of the cluster's nodes of one instance type, sorted."""
    def scan() -> list[str]:
        assert sim.store is not None  # noqa: S101 - running
        return sorted(n["metadata"]["name"] for n in sim.store.iter_objects("nodes")
                      if (n["metadata"].get("labels") or {}).get("node.kubernetes.io/instance-type") == instance_type)
    return sim.call(scan)


class Arrival:
    """Set once the store commits an object of `key` with the run label matching `predicate` (store.subscribe)."""

    def __init__(self, sim: SimCluster, key: str, predicate: Callable[[str, dict], bool] | None = None) -> None:
        self.sim, self.key, self.event = sim, key, threading.Event()
        self.obj: dict | None = None
        self.predicate = predicate or (lambda etype, obj: etype == "ADDED")
        assert sim.store is not None  # noqa: S101 - running
        self._unsubscribe = sim.call(sim.store.subscribe, self._on_commit)

    def _on_commit(self, etype: str, key: str, obj: dict) -> None:
        labels = obj.get("metadata", {}).get("labels") or {}
        if key == self.key and RUN_LABEL in labels and not self.event.is_set() and self.predicate(etype, obj):
            self.obj = obj
            self.event.set()

    def wait(self, timeout_s: float) -> dict:
        try:
            if not self.event.wait(timeout_s):
                raise AssertionError(f"no {self.key} object with label {RUN_LABEL} appeared within {timeout_s:.0f} s")
            assert self.obj is not None  # noqa: S101 - set with the event
            return self.obj
        finally:
            self.sim.call(self._unsubscribe)


@pytest.fixture
def live_sim(tmp_path: Path) -> Iterator[SimCluster]:
    """A healthy simulated cluster in this process; pytest subprocesses reach it with --kubeconfig only."""
    workdir = tmp_path / "sim"
    workdir.mkdir()            # SimCluster does not create a given workdir itself
    sim = SimCluster("healthy", workdir=workdir).start()
    try:
        yield sim
    finally:
        sim.stop()


def sim_target(sim: SimCluster) -> list[str]:
    """Command-line arguments that point a pytest run at this (already running) simulated cluster."""
    return ["--kubeconfig", str(sim.kubeconfig_path)]


def summary_of(report_root: Path) -> dict[str, Any]:
    """summary.json of the one report folder under report_root (raises AssertionError when absent)."""
    import json
    found = sorted(report_root.glob("*/summary.json"))
    assert found, f"no report folder with summary.json under {report_root}: {sorted(report_root.rglob('*'))}"
    return dict(json.loads(found[-1].read_text()))
