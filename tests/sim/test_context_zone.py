"""The sim context carries each node's availability zone, and the fake NCCL reads it from there (issue 15)."""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.sim.scenario import load_scenario
from pytest_gpucluster.sim.tools.context import build_context, node_context
from pytest_gpucluster.sim.tools.fake import nccl as fake


def _rank(i: int, node: dict[str, Any]) -> Any:
    return fake.Rank(i, f"node-{i}", node, {"index": 0}, 25, i)


def test_node_context_carries_the_zone() -> None:
    scenario = load_scenario("gpu-nodes-two-azs")
    zones = {n.zone for n in scenario.gpu_nodes()}
    assert len(zones) == 2
    for node in scenario.gpu_nodes():
        assert node_context(scenario, node, [0], [])["zone"] == node.zone
        pod = {"metadata": {"namespace": "default", "name": "p", "uid": "u"}}
        assert build_context(scenario, pod, node, [0], [])["node"]["zone"] == node.zone


def test_fake_nccl_reads_the_zone_from_the_context() -> None:
    # Same address plan (10.0.0.x: one zone by IP), different context zones: the context wins.
    a = {"zone": "us-west-2a", "private_ip": "10.0.0.4"}
    b = {"zone": "us-west-2b", "private_ip": "10.0.0.5"}
    assert fake.crosses_zones([_rank(0, a), _rank(1, b)])
    assert not fake.crosses_zones([_rank(0, a), _rank(1, {**b, "zone": "us-west-2a"})])
    # A rank rebuilt without its zone (mpirun's per-host context today): the address plan decides for every rank,
    # so a zone-less rank never looks like a third zone.
    assert not fake.crosses_zones([_rank(0, a), _rank(1, {"private_ip": "10.0.0.5"})])
    assert fake.crosses_zones([_rank(0, {"private_ip": "10.0.0.4"}), _rank(1, {"private_ip": "10.0.64.5"})])
