"""Scenario files: every shipped one loads; validation errors name file, line and key; node expansion."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pytest_gpucluster.sim.hardware import instance_type
from pytest_gpucluster.sim.scenario import ScenarioError, list_scenarios, load_scenario

REQUIRED = {"healthy", "auto-mode", "g5-single-efa", "gpu-missing", "driver-unreachable", "device-plugin-not-ready",
            "taint-missing", "efa-absent", "efa-plugin-untolerated", "nccl-socket-fallback", "nccl-wrong-results",
            "nccl-low-bandwidth", "karpenter-slow", "karpenter-no-capacity", "api-flaky", "aws-sg-no-self-rule",
            "aws-no-efa-support", "aws-missing-discovery-tags", "efa-allocatable-low"}


def test_every_required_scenario_ships_with_a_one_line_description() -> None:
    listed = dict(list_scenarios())
    assert REQUIRED <= set(listed)
    assert all(desc and "\n" not in desc for desc in listed.values())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_shipped_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name and scenario.expand_nodes()
    fault_kinds = {f.kind for f in scenario.faults}
    if name not in ("healthy", "auto-mode", "g5-single-efa", "api-flaky"):
        assert name in fault_kinds                   # fault scenarios are healthy plus their fault
    else:
        assert not fault_kinds


def test_healthy_matches_the_issue() -> None:
    s = load_scenario("healthy")
    gpu = s.gpu_nodes()
    assert [n.instance.name for n in gpu] == ["p5.48xlarge"] * 2
    assert all([t.key for t in n.taints] == ["nvidia.com/gpu"] for n in gpu)
    assert len(s.expand_nodes()) == 4
    pool = next(p for p in s.nodepools if p.name == "gpu").manifest(s.cluster)
    types = next(r for r in pool["spec"]["template"]["spec"]["requirements"]
                 if r["key"] == "node.kubernetes.io/instance-type")["values"]
    assert {"p5.48xlarge", "g5.48xlarge"} <= set(types)
    assert s.operators.mpi_operator and s.operators.efa_device_plugin.tolerates_gpu_taint


def test_auto_mode_uses_eks_apis_and_the_gpu_workload_taint() -> None:
    s = load_scenario("auto-mode")
    assert s.cluster.auto_mode and s.operators.nvidia_device_plugin == "none"
    assert s.nodeclasses[0].manifest(s.cluster)["apiVersion"] == "eks.amazonaws.com/v1"
    assert s.nodepools[0].manifest(s.cluster)["spec"]["template"]["spec"]["nodeClassRef"]["group"] == "eks.amazonaws.com"
    assert {t.key for n in s.gpu_nodes() for t in n.taints} == {"gpu-workload"}


def test_node_names_and_provider_ids_look_like_eks_and_are_deterministic() -> None:
    a, b = load_scenario("healthy").expand_nodes(), load_scenario("healthy").expand_nodes()
    assert [n.name for n in a] == [n.name for n in b]
    for node in a:
        assert re.fullmatch(r"ip-10-0-\d+-\d+\.us-west-2\.compute\.internal", node.name)
        assert re.fullmatch(r"aws:///us-west-2a/i-[0-9a-f]{17}", node.provider_id)
        assert node.name == "ip-" + node.private_ip.replace(".", "-") + ".us-west-2.compute.internal"


def test_scale_scenarios_expand_quickly_with_unique_nodes() -> None:
    start = time.perf_counter()
    s = load_scenario("scale-1000")
    nodes = s.expand_nodes()
    assert time.perf_counter() - start < 3.0
    assert len(s.gpu_nodes()) == 1000 and len({n.name for n in nodes}) == len(nodes)
    assert len(load_scenario("healthy", overrides={"gpu_nodes": 10}).gpu_nodes()) == 10


def test_faults_resolve_to_nodes() -> None:
    s = load_scenario("gpu-missing")
    target = s.gpu_nodes()[1].name
    assert s.fault_nodes(s.faults[0]) == [target]
    assert [f.kind for f in s.faults_on_node(target)] == ["gpu-missing"]
    assert s.faults_on_node(s.gpu_nodes()[0].name) == []
    assert s.has_fault("gpu-missing") and s.faults_for("gpu-missing")[0].params == {"gpu_index": 3}
    wide = load_scenario("nccl-low-bandwidth")
    assert all(wide.faults_on_node(n.name) for n in wide.expand_nodes())    # cluster-wide fault


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("body, line, key, words", [
    ("description: x\nnodes:\n  - instance_type: p5.48xlarge\n    cuont: 2\n", 4, "nodes.0.cuont", "unknown key"),
    ("description: x\nclustr: {}\n", 2, "clustr", "unknown key"),
    ("description: x\noperators:\n  nvidia_device_plugin: helmx\n", 3, "operators.nvidia_device_plugin", "helm"),
    ("description: x\nnodes:\n  - instance_type: p9.huge\n", 3, "nodes.0.instance_type", "unknown instance type"),
    ("description: x\nfaults:\n  - kind: gpu-missing\n    gpu_idx: 1\n", 4, "faults.0.gpu_idx", "no parameter"),
    ("description: x\nfaults:\n  - kind: gpu-gone\n", 3, "faults.0.kind", "unknown fault kind"),
    ("description: x\nnodes:\n  - instance_type: m5.large\n    count: two\n", 4, "nodes.0.count", "integer"),
    ("description: x\napi:\n  kinds: [429, 418]\n", 3, "api.kinds", "429, 500, 503 and drop"),
    ("description: x\nnodes:\n  - {instance_type: m5.large}\nfaults:\n  - {kind: efa-absent, nodes: [7]}\n",
     None, "faults", "does not have"),
    ("nodes: []\n", 1, "Scenario", "missing required key 'description'"),
])
def test_validation_errors_name_file_line_and_key(tmp_path: Path, body: str, line: int | None, key: str,
                                                  words: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert err.value.source == str(path) and err.value.key == key and words in err.value.message
    if line is not None:
        assert err.value.line == line
        assert str(err.value).startswith(f"{path}:{line}: {key}: ")


def test_extends_reports_errors_in_the_child_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "extends: healthy\ndescription: child\nkarpenter:\n  lunch: 3\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml:4: karpenter\.lunch: unknown key"):
        load_scenario(path)


def test_unknown_scenario_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match="shipped scenarios: .*healthy"):
        load_scenario("no-such-scenario")


def test_tool_output_paths_must_exist(tmp_path: Path) -> None:
    path = _write(tmp_path, "description: x\nnodes:\n  - instance_type: p5.48xlarge\n"
                            "    tool_output: {nvidia-smi: missing.txt}\n")
    with pytest.raises(ScenarioError, match="file not found: missing.txt"):
        load_scenario(path)


@pytest.mark.parametrize("name, gpus, efa, rdma, memory", [
    ("p5.48xlarge", 8, 32, True, 81559), ("p4d.24xlarge", 8, 4, True, 40960), ("p5en.48xlarge", 8, 16, True, 143771),
    ("g5.48xlarge", 8, 1, False, 23028), ("g4dn.xlarge", 1, 0, False, 15360), ("g4dn.metal", 8, 1, False, 15360),
    ("g6e.48xlarge", 8, 4, False, 46068),
])
def test_hardware_catalog(name: str, gpus: int, efa: int, rdma: bool, memory: int) -> None:
    it = instance_type(name)
    assert (it.gpus, it.efa, it.gpudirect_rdma) == (gpus, efa, rdma)
    assert it.gpu_model is not None and it.gpu_model.memory_mib == memory
    assert len(it.efa_domains()) == efa and len(set(it.gpu_bus_ids())) == gpus


def test_gfd_product_label_form() -> None:
    model = instance_type("p5.48xlarge").gpu_model
    assert model is not None and model.gfd_product == "NVIDIA-H100-80GB-HBM3"
