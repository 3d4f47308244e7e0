"""suites/test_nccl.py end to end against the simulated cluster: passes where healthy, each NCCL fault fails its check.
Shipped scenarios are read from the session's one suite run per scenario (shared with the fault matrix), judged by
the default profile merged with the scenario's; g5.48xlarge has no published floor, so its run sets test floors."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from pytest_gpucluster.profile import load_profile
from tests.reliability.suite_runs import SuiteRun
from tests.suite_cache import PASSED, SKIPPED, Results, SuiteSpec, custom

MODULE = "test_nccl"
ONE_CORRECT = "test_all_reduce_is_correct_on_one_node"
ONE_BW = "test_bus_bandwidth_on_one_node_meets_floor"
MULTI_CORRECT = "test_all_reduce_is_correct_across_nodes"
MULTI_EFA = "test_nccl_uses_efa_across_nodes"
MULTI_BW = "test_bus_bandwidth_across_nodes_meets_floor"
NODE_MULTI = "test_node_passes_nccl_across_nodes"
ALL = {ONE_CORRECT, ONE_BW, MULTI_CORRECT, MULTI_EFA, MULTI_BW, NODE_MULTI}


def _p5_floors_at_2g() -> dict[int, float]:
    """The floors the default profile sets for p5.48xlarge at 2 GB (1 node: NVLink-bound; 2 nodes: published runs)."""
    p5 = load_profile().for_instance("p5.48xlarge")
    assert p5 is not None, "the default profile has no p5.48xlarge entry"
    return {nodes: p5.nccl_floors[nodes][2 << 30] for nodes in (1, 2)}


P5_FLOORS = _p5_floors_at_2g()

# Test thresholds for what the default profile leaves unset (no published figure): floors for g5.48xlarge.
G5_PROFILE = """\
instances:
  g5.48xlarge:
    nccl:
      all_reduce_busbw_floor_gbs:
        1: {2G: 15}
        2: {2G: 10}
"""
G5_WITH_FLOORS = custom("g5-with-floors", "", f"suites/{MODULE}.py", extends="g5-single-efa", profile=G5_PROFILE)
# --gpucluster-partial: the same run shows that a partial run does not forgive the missing operator
# (tests/report/test_verdict_e2e.py reads it too)
NO_MPI_OPERATOR = custom("no-mpi-operator", "operators: {mpi_operator: false}\n", f"suites/{MODULE}.py",
                         extra=("--gpucluster-partial",))
# g4dn (T4, sm_75) with a per-family nccl-tests image built for it: a scenario image that holds the nccl-tests tools
# (declared images carry no GPU code list, so they run on every GPU) and the profile key that picks it for g4dn.
# --gpucluster-nccl-full on 4 p5 nodes (the nvlink-degraded scenario: its NVLink fault does not touch multi-node runs)
FULL = custom("nccl-full-4-nodes", "", f"suites/{MODULE}.py", extra=("--gpucluster-nccl-full",),
              extends="nvlink-degraded-node")
FULL_BW = "test_bus_bandwidth_over_every_efa_node_of_a_type"
SM75_IMAGE = "registry.example/nccl-tests-sm75:nccl2.27.5-tests2.16.4"
G4DN_OWN_IMAGE = custom("g4dn-own-nccl-image", f"""\
kubelet:
  images:
    "registry.example/nccl-tests-sm75:*":
      /opt/nccl-tests/build/all_reduce_perf: fake:all_reduce_perf
      /opt/amazon/openmpi/bin/mpirun: fake:mpirun
      /usr/sbin/sshd: fake:sshd
""", f"suites/{MODULE}.py", extends="g4dn-12xlarge", profile=f"families:\n  g4dn:\n    nccl: {{image: '{SM75_IMAGE}'}}\n")


@dataclass
class Case:
    test: str
    id: str
    outcome: str            # passed | failed | skipped
    message: str
    properties: dict[str, str]


def cases_of(run: Results) -> list[Case]:
    """The NCCL module's cases with their JUnit properties (the measurements)."""
    props = run.properties()
    return [Case(c.function, c.param, "failed" if c.outcome == "error" else c.outcome, c.message,
                 props.get((c.function, c.param), {})) for c in run.cases]


@pytest.fixture
def shipped(suite_result: Callable[[str], SuiteRun]) -> Callable[[str], tuple[list[Case], Results]]:
    def get(scenario: str) -> tuple[list[Case], Results]:
        run = Results(suite_result(scenario), MODULE)
        return cases_of(run), run
    return get


def outcomes(cases: list[Case]) -> dict[str, set[str]]:
    """Outcomes per test function; the whole-type run (off without --gpucluster-nccl-full) is left out."""
    out: dict[str, set[str]] = {}
    for case in cases:
        if case.test != FULL_BW:
            out.setdefault(case.test, set()).add(case.outcome)
    return out


def value(case: Case, name: str) -> float:
    return float(case.properties[name].split()[0])


def check_every_nccl_check_passes(cases: list[Case], run: Results, itype: str) -> None:
    assert outcomes(cases) == {name: {PASSED} for name in ALL}, run
    for case in cases:  # ids name the node(s) and the instance type
        assert case.id.endswith(f"/{itype}") and case.id.count("/") == 1, case.id
    cases = [c for c in cases if c.test != FULL_BW]
    multi = next(c for c in cases if c.test == MULTI_BW)
    assert len(multi.id.split("/")[0].split("+")) == 2
    # plausible numbers: at or above the floor, far below the profile's implausibility ceiling
    peak = value(multi, "peak out-of-place busbw")
    assert value(multi, "out-of-place busbw at 2G") <= peak < 1000
    assert "pass" in multi.properties["out-of-place busbw at 2G"]
    if "peak busbw plausible" in multi.properties:      # the profile's busbw_ceiling_gbs, where it sets one
        assert "pass" in multi.properties["peak busbw plausible"]
    assert 0 < value(multi, "peak busbw / physical ceiling") <= 100


@pytest.mark.parametrize("scenario", ["healthy", "auto-mode", "api-flaky", "nccl-margin-above-floor"])
def test_every_nccl_check_passes(shipped: Callable[[str], tuple[list[Case], Results]], scenario: str) -> None:
    cases, run = shipped(scenario)
    check_every_nccl_check_passes(cases, run, "p5.48xlarge")


@pytest.mark.suites(G5_WITH_FLOORS)
def test_every_nccl_check_passes_on_g5_with_floors(custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> None:
    """g5-single-efa (one EFA, no GPUDirect RDMA) judged against floors a g5 owner would set from a baseline."""
    run = Results(custom_suite_result(G5_WITH_FLOORS), MODULE)
    check_every_nccl_check_passes(cases_of(run), run, "g5.48xlarge")


@pytest.mark.suites("healthy")
def test_healthy_p5_numbers_are_plausible(shipped: Callable[[str], tuple[list[Case], Results]]) -> None:
    """2x p5.48xlarge: published 443.72 GB/s at 2 GB (aws-samples nccl-tests README); 8x H100 in one node ~480."""
    cases, run = shipped("healthy")
    by_test = {c.test: c for c in cases}
    assert 400 <= value(by_test[MULTI_BW], "out-of-place busbw at 2G") <= 500, run
    assert 430 <= value(by_test[ONE_BW], "out-of-place busbw at 2G") <= 600, run


@pytest.mark.parametrize("scenario, failing, messages", [
    ("nccl-socket-fallback", {MULTI_EFA, MULTI_BW},
     ["did not use EFA", "observed transport socket (socket on 16 process(es)", "networks ['Socket']", "FI_PROVIDER=efa"]),
    ("nccl-wrong-results", {ONE_CORRECT, ONE_BW, MULTI_CORRECT, MULTI_BW},
     ["all_reduce results are wrong", "#wrong > 0", "Out of bounds values: ", "Test failure",
      "not judged: the run's results are wrong"]),
    ("nccl-low-bandwidth", {ONE_BW, MULTI_BW},
     ["bus bandwidth below the profile floor", f"at 2G expected >= {P5_FLOORS[2]:g} GB/s, observed",
      f"at 2G expected >= {P5_FLOORS[1]:g} GB/s, observed", "of the 750.0 GB/s ceiling (network per node 3200 Gbps"]),
    ("nccl-margin-below-floor", {MULTI_BW},      # 0.85x the published run: 5-8% below the floors, nothing else
     ["bus bandwidth below the profile floor", "at 1G expected >= 393 GB/s, observed",
      f"at 2G expected >= {P5_FLOORS[2]:g} GB/s, observed", "% of the floor)"]),
])
def test_fault_fails_its_checks(shipped: Callable[[str], tuple[list[Case], Results]], scenario: str,
                                failing: set[str], messages: list[str]) -> None:
    cases, run = shipped(scenario)
    seen = outcomes(cases)
    assert {name for name, o in seen.items() if "failed" in o} == failing, run
    # two nodes, one failing pair: no good partner to re-test with, so each node's own result is not attributable
    assert seen.pop(NODE_MULTI) == {SKIPPED}, run
    assert all(o == {PASSED} for name, o in seen.items() if name not in failing), run
    failures = "\n".join(c.message for c in cases if c.outcome == "failed")
    for message in messages:
        assert message in failures, f"{message!r} not in:\n{failures}"


@pytest.mark.suites(NO_MPI_OPERATOR)
def test_without_mpi_operator_multi_node_skips_with_install_hint(
        custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> None:
    run = Results(custom_suite_result(NO_MPI_OPERATOR), MODULE)
    cases = cases_of(run)
    seen = outcomes(cases)
    assert seen == {ONE_CORRECT: {PASSED}, ONE_BW: {PASSED}, MULTI_CORRECT: {SKIPPED},
                    MULTI_EFA: {SKIPPED}, MULTI_BW: {SKIPPED}, NODE_MULTI: {SKIPPED}}, run
    for case in cases:
        if case.outcome == SKIPPED:
            assert "the MPI operator is not installed (no mpijobs.kubeflow.org/v2beta1 API)" in case.message
            assert "kubeflow/mpi-operator" in case.message


def run_suite(pytester: pytest.Pytester, plugin_args: list[str], *args: str) -> tuple[list[Case], str]:
    """Run the suite in a subprocess against a cluster given by args; outcomes per test id from its JUnit XML."""
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(str(Path(__file__).resolve().parents[2] / "suites" / "test_nccl.py"),
                                           "-p", "no:cacheprovider", "--gpucluster-no-report", "-rA",
                                           f"--junitxml={junit}", *plugin_args, *args)
    text = result.stdout.str() + result.stderr.str()
    assert junit.exists(), text
    cases = []
    for tc in ET.parse(junit).getroot().iter("testcase"):
        match = re.match(r"(test_\w+)\[(.*)\]$", tc.get("name", ""))
        assert match, tc.get("name")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "failed", "skipped": "skipped"}[tag]
                message = (el.get("message") or "") + "\n" + (el.text or "")
        cases.append(Case(match.group(1), match.group(2), outcome, message, {}))
    return cases, text


def test_nothing_from_the_run_remains(pytester: pytest.Pytester, plugin_args: list[str],
                                      tmp_path: Path) -> None:
    """Against a cluster that outlives the run (as a real one does): MPIJob, launcher Job, workers, hostfile
    ConfigMap, Service, ssh Secret and probe pods are all gone after the run, and so is its namespace."""
    launcher = pytest.importorskip("pytest_gpucluster.sim.launcher")
    from pytest_gpucluster.kube.client import Cluster
    from pytest_gpucluster.kube.watching import eventually

    with launcher.SimCluster("healthy", workdir=tmp_path) as sim:
        cluster = Cluster.connect(sim.kubeconfig_path)
        try:
            eventually(cluster, "nodes", None, lambda nodes: sum(
                int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", "0")) for n in nodes.values()) == 16,
                timeout_s=30, description="16 GPUs allocatable")
            cases, text = run_suite(pytester, plugin_args, f"--kubeconfig={sim.kubeconfig_path}")
            assert {c.test for c in cases if c.outcome != "skipped"} == ALL, text
            run_id = re.search(r"nothing labelled gpucluster.io/run=(\S+) remains", text)
            assert run_id, text
            namespaces = [n["metadata"]["name"] for n in cluster.items("namespaces")]
            assert not [n for n in namespaces if n.startswith("gpucluster-")], namespaces
            left = {kind: [f"{o['metadata'].get('namespace')}/{o['metadata']['name']}"
                           for o in cluster.items(kind) if o["metadata"].get("namespace", "").startswith("gpucluster-")
                           or (o["metadata"].get("labels") or {}).get("gpucluster.io/run") == run_id.group(1)]
                    for kind in ("pods", "jobs.batch", "mpijobs.kubeflow.org", "configmaps", "services")}
            assert left == {kind: [] for kind in left}
        finally:
            cluster.close()


@pytest.mark.suites(G4DN_OWN_IMAGE)
def test_a_family_with_its_own_nccl_image_runs_nccl_where_the_default_image_cannot(
        custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> None:
    """g4dn-12xlarge is NOT SHOWN with AWS's image (no sm_75 kernels); with families.g4dn.nccl.image set, both runs
    use that image, and correctness and the network path are judged (bandwidth: no published g4dn floor)."""
    run = Results(custom_suite_result(G4DN_OWN_IMAGE), MODULE)
    cases = cases_of(run)
    assert outcomes(cases) == {ONE_CORRECT: {PASSED}, ONE_BW: {SKIPPED}, MULTI_CORRECT: {PASSED}, MULTI_EFA: {PASSED},
                               MULTI_BW: {SKIPPED}, NODE_MULTI: {PASSED}}, run
    assert all("no floor" in c.message for c in cases if c.outcome == SKIPPED and c.test != FULL_BW)
    summary = (run.report_folder() / "summary.json").read_text()
    assert f'"image": "{SM75_IMAGE}"' in summary and "nccl-tests:cuda12.8.1" not in summary


@pytest.mark.suites(FULL)
def test_the_whole_type_all_reduce_is_judged_against_its_ceiling(custom_suite_result: Callable[[SuiteSpec], SuiteRun]
                                                                 ) -> None:
    """One all-reduce over the 4 p5 nodes of the zone: no published 4-node floor, so the floor is not shown, but the
    peak is judged against the 4-node ceiling (400 x 4/3 x 31/32 = 516.7 GB/s) and stays below it."""
    run = Results(custom_suite_result(FULL), MODULE)
    (full,) = [c for c in cases_of(run) if c.test == FULL_BW]
    assert full.outcome == SKIPPED and "no floor for 4 node(s)" in full.message, full
    assert full.id.count("+") == 3
    assert "pass" in full.properties["peak busbw / physical ceiling"] and 0 < value(full, "peak busbw / physical ceiling") <= 100


def _node_results(run: Results) -> dict[str, dict[str, object]]:
    """summary.json's entries of the per-node multi-node test, by node."""
    import json
    summary = json.loads((run.report_folder() / "summary.json").read_text())
    out: dict[str, dict[str, object]] = {}

    def walk(obj: object) -> None:
        if isinstance(obj, dict):
            if f"::{NODE_MULTI}[" in str(obj.get("nodeid", "")):
                out[str(obj["nodeid"]).split("[", 1)[1].split("/", 1)[0]] = obj
                return
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)
    walk(summary)
    return out


@pytest.mark.suites("nic-degraded-node")
def test_the_degraded_nic_is_named_and_its_first_partner_cleared(
        shipped: Callable[[str], tuple[list[Case], Results]]) -> None:
    cases, run = shipped("nic-degraded-node")
    own = {c.id.split("/")[0]: c for c in cases if c.test == NODE_MULTI}
    assert {n for n, c in own.items() if c.outcome == "failed"} == {"p5-slow-7"}, run
    assert "fails with every partner" in own["p5-slow-7"].message
    results = _node_results(run)
    partner = next(n for n in own if n.startswith("ip-10-0-39-66"))
    facts = str(results[partner])
    assert "'localisation': 'cleared'" in facts and "round 1 with p5-slow-7: fail" in facts
    assert "extra rounds node-minutes" in facts and "'rounds': 3" in facts


@pytest.mark.suites("efa-sg-no-self-rule-zone")
def test_a_zone_where_every_pair_fails_is_not_attributable_to_one_node(
        shipped: Callable[[str], tuple[list[Case], Results]]) -> None:
    cases, run = shipped("efa-sg-no-self-rule-zone")
    own = [c for c in cases if c.test == NODE_MULTI]
    assert len(own) == 4 and all(c.outcome == SKIPPED and "not attributable to one node" in c.message
                                 for c in own), run
