"""`gpucluster cleanup` on leftovers of dead runs, and fleets that survive a flaky API server (429/5xx/drops)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from pytest_gpucluster import cli
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import discover
from pytest_gpucluster.kube.fleets import FleetRunner
from pytest_gpucluster.kube.probes import MANAGED_BY, RUN_LABEL, ProbeContext, ProbeSpec
from pytest_gpucluster.kube.watching import Watcher, consistently, eventually
from pytest_gpucluster.profile import load_profile
from pytest_gpucluster.session import new_run_id

launcher = pytest.importorskip("pytest_gpucluster.sim.launcher", reason="simulated cluster not available yet")

OLD_RUN = "20200101-000000-dead"


def labelled(kind: str, name: str, run_id: str, namespace: str | None = None) -> dict:
    meta: dict = {"name": name, "labels": {MANAGED_BY[0]: MANAGED_BY[1], RUN_LABEL: run_id}}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def test_cleanup_removes_only_dead_runs_and_dry_run_removes_nothing(sim: object,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = str(sim.kubeconfig_path)  # type: ignore[attr-defined]
    cluster = Cluster.connect(kubeconfig)
    fresh = new_run_id()
    cluster.create("namespaces", labelled("Namespace", f"gpucluster-{OLD_RUN}", OLD_RUN))
    cluster.create("configmaps", labelled("ConfigMap", "gc-old-hostfile", OLD_RUN, "default"), "default")
    cluster.create("namespaces", labelled("Namespace", f"gpucluster-{fresh}", fresh))

    assert cli.main(["cleanup", "--kubeconfig", kubeconfig, "--older-than", "2h", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would delete namespaces/gpucluster-{OLD_RUN} (run {OLD_RUN})" in out
    assert f"would delete configmaps/gc-old-hostfile in default (run {OLD_RUN})" in out
    assert fresh not in out
    assert cluster.get_or_none("namespaces", f"gpucluster-{OLD_RUN}") is not None

    assert cli.main(["cleanup", "--kubeconfig", kubeconfig, "--older-than", "2h"]) == 0
    out = capsys.readouterr().out
    assert f"deleted namespaces/gpucluster-{OLD_RUN}" in out
    eventually(cluster, "namespaces", None, lambda ns: f"gpucluster-{OLD_RUN}" not in ns, timeout_s=10,
               description="the dead run's namespace gone")
    assert cluster.get_or_none("configmaps", "gc-old-hostfile", "default") is None
    assert cluster.get_or_none("namespaces", f"gpucluster-{fresh}") is not None


def test_cleanup_with_nothing_to_do_and_with_a_bad_duration(sim: object, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = str(sim.kubeconfig_path)  # type: ignore[attr-defined]
    assert cli.main(["cleanup", "--kubeconfig", kubeconfig]) == 0
    assert "nothing managed by pytest-gpucluster older than 2h" in capsys.readouterr().out
    assert cli.main(["cleanup", "--kubeconfig", kubeconfig, "--older-than", "soon"]) == 2
    assert "not a duration: 'soon'" in capsys.readouterr().err


def test_consistently_fails_at_the_first_violation(sim: object) -> None:
    cluster = Cluster.connect(sim.kubeconfig_path)  # type: ignore[attr-defined]
    nodes = consistently(cluster, "nodes", None, lambda objs: len(objs) == 4, duration_s=1,
                         description="4 nodes")
    assert len(nodes) == 4
    with pytest.raises(AssertionError, match="expected exactly 3 nodes for 1s; violated"):
        consistently(cluster, "nodes", None, lambda objs: len(objs) == 3, duration_s=1,
                     description="exactly 3 nodes")


class StubCluster:
    """Just the two calls a Watcher makes, scripted: a 410 on the first watch, then one event."""

    def __init__(self) -> None:
        self.lists = 0
        self.watches: list[str | None] = []

    def list(self, kind: str, namespace: str | None, **_: object) -> tuple[list[dict], str]:
        self.lists += 1
        return [{"metadata": {"name": "n1", "resourceVersion": "10"}}], str(100 * self.lists)

    def stream_watch(self, kind: str, namespace: str | None, *, resource_version: str | None,
                     **_: object) -> Iterator[dict]:
        self.watches.append(resource_version)
        if len(self.watches) == 1:
            yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
        else:
            yield {"type": "ADDED", "object": {"metadata": {"name": "n2", "resourceVersion": "201"}}}


def test_watch_relists_after_410_gone_and_resumes_from_the_fresh_version() -> None:
    import time

    stub = StubCluster()
    watcher = Watcher(stub, "nodes")  # type: ignore[arg-type]
    done = watcher.run(lambda _t, _o, state: "n2" in state.by_name(), deadline=time.monotonic() + 5)
    assert done and watcher.state.relists == 1 and stub.lists == 2
    assert stub.watches == ["100", "200"]           # resumed from the relist's resourceVersion
    assert set(watcher.state.by_name()) == {"n1", "n2"} and watcher.state.resource_version == "201"


def test_fleet_survives_a_flaky_api_server(tmp_path: Path) -> None:
    with launcher.SimCluster("api-flaky", workdir=tmp_path) as sim:
        cluster = Cluster.connect(sim.kubeconfig_path)
        profile = load_profile()
        run_id = new_run_id()
        namespace = f"gpucluster-{run_id}"
        cluster.create("namespaces", labelled("Namespace", namespace, run_id))
        inventory = discover(cluster, profile)
        ctx = ProbeContext(namespace, run_id, "nvidia/cuda:13.0.2-runtime-ubuntu22.04", 60,
                           profile.gpu_tolerations())
        specs = {n.name: ProbeSpec("echo", ["sh", "-c", "echo ok"], node=n.name) for n in inventory.all_nodes}
        results = FleetRunner(cluster, ctx).run("flaky", specs)
        assert all(r.ok and "ok" in r.logs for r in results.values()), [r.describe() for r in results.values()]
        faults = sim.stats().get("faults", {})
        assert sum(faults.values()) > 0, f"no faults injected: {sim.stats()}"


def test_a_rejected_token_is_unauthorized_naming_the_server(sim: object, tmp_path: Path) -> None:
    import yaml

    from pytest_gpucluster.kube import errors

    config = yaml.safe_load(sim.kubeconfig_path.read_text())  # type: ignore[attr-defined]
    for user in config["users"]:
        user["user"] = {"token": "expired-token"}
    stale = tmp_path / "stale-kubeconfig"
    stale.write_text(yaml.safe_dump(config))
    with pytest.raises(errors.Unauthorized) as info:
        Cluster.connect(stale).items("nodes")
    assert sim.server_url in str(info.value) and "expired" in str(info.value)  # type: ignore[attr-defined]
