"""The NCCL judges (pytest_gpucluster/checks/nccl.py) on real published nccl-tests outputs (tests/data/nccl-tests)
and the default profile, and the MPIJob the suite renders (pytest_gpucluster/kube/mpijob.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_gpucluster.gather import nccl_evidence as nccl
from pytest_gpucluster.checks import Status
from pytest_gpucluster.checks.nccl import NcclRun, bandwidth, correctness, network
from pytest_gpucluster.evidence import Evidence
from pytest_gpucluster.kube import mpijob
from pytest_gpucluster.kube.discovery import NodeInfo
from pytest_gpucluster.profile import load_profile

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "nccl-tests"
PROFILE = load_profile()


def nccl_run(sample: str, itype: str, nodes: int, gpus: int = 8) -> NcclRun:
    return NcclRun(f"sample/{itype}", itype, nodes, gpus, "all_reduce_perf", log=(DATA / sample).read_text()).parse()


@pytest.mark.parametrize("sample,nodes", [("allreduce-p5-awsbatch-mpirun-prefix.txt", 1),     # 8 ranks: one node
                                          ("allreduce-eksgpuefa-indented-elided.txt", 2)])
def test_published_two_node_p5_results_meet_the_default_floors(sample: str, nodes: int) -> None:
    """Both captures are excerpts without their '# Rank' lines: the figures meet every floor, and the verdicts are
    NOT SHOWN because nothing in the excerpt says which nodes ran them."""
    evidence = Evidence()
    run = nccl_run(sample, "p5.48xlarge", nodes)
    assert correctness(run).status is Status.NOT_SHOWN
    verdict = bandwidth(run, PROFILE.for_instance("p5.48xlarge"))
    assert verdict.status is Status.NOT_SHOWN and "the log names no ranks" in verdict.message, verdict.message
    assert all(c.passed is not False for c in verdict.criteria)
    at_2g = next(c for c in verdict.criteria if c.name == "out-of-place busbw at 2G")
    assert at_2g.threshold == 399 and at_2g.value > 430 and at_2g.passed
    nccl.plot(run, PROFILE.for_instance("p5.48xlarge"), evidence)
    assert evidence.record.plots and "<svg" in evidence.record.plots[0].svg


def test_p4d_eks_log_proves_efa_with_gdrdma_and_records_versions() -> None:
    run = nccl_run("allreduce-p4d-eks-2node-nccl299-debug-info.txt", "p4d.24xlarge", 2)
    evidence = Evidence()
    nccl.record(run, evidence)
    assert network(run, PROFILE.for_instance("p4d.24xlarge")).ok
    assert evidence.record.versions["nccl"].startswith("2.9.9")
    old_stack = bandwidth(run, PROFILE.for_instance("p4d.24xlarge"))        # NCCL 2.9.9: 43.81 GB/s peak
    assert old_stack.status is Status.FAIL and "at 2G expected >= 70 GB/s" in old_stack.observed


def test_old_p4d_run_below_the_floor_names_sizes_and_ceiling() -> None:
    run = nccl_run("allreduce-p4d-eks-2node-nccl283-debug-info.txt", "p4d.24xlarge", 2)
    verdict = bandwidth(run, PROFILE.for_instance("p4d.24xlarge"))
    failure = verdict.message
    assert verdict.status is Status.FAIL
    assert "at 1G expected >= 69 GB/s, observed 32.71 GB/s" in failure
    assert "= 35% of the 93.8 GB/s ceiling (network per node 400 Gbps" in failure


def test_without_nccl_info_lines_the_network_path_is_unproven() -> None:
    run = nccl_run("allreduce-p5-awsbatch-mpirun-prefix.txt", "p5.48xlarge", 2)
    verdict = network(run, PROFILE.for_instance("p5.48xlarge"))
    assert not verdict.ok and "did not use EFA" in verdict.message and "transport unknown" in verdict.message


def test_infiniband_is_not_efa() -> None:
    run = nccl_run("nccl-debug-info-net-ib-nccl-docs-excerpt.txt", "p5.48xlarge", 2)
    verdict = network(run, PROFILE.for_instance("p5.48xlarge"))
    assert verdict.status is Status.FAIL and "produced no result" in verdict.message


def test_cuda_failure_without_a_table_fails_correctness_with_the_log_tail() -> None:
    run = nccl_run("allreduce-gh200-2node-cuda-busy-failure.txt", "p5.48xlarge", 2, gpus=4)
    verdict = correctness(run)
    assert not verdict.ok and "produced no result" in verdict.message and "Test failure" in verdict.message


def test_single_node_without_floor_is_recorded_and_skipped_with_the_profile_key() -> None:
    run = nccl_run("allreduce-a100-80gb-x8-single-node-gcm-fixture.txt", "g5.48xlarge", 1)   # g5: no floor yet
    verdict = bandwidth(run, PROFILE.for_instance("g5.48xlarge"))
    assert verdict.status is Status.NOT_SHOWN and "not judged" in verdict.message
    assert "instances.g5.48xlarge.nccl.all_reduce_busbw_floor_gbs.1" in verdict.message
    assert {c.name for c in verdict.criteria} >= {"peak out-of-place busbw"}


def test_mpijob_renders_from_the_fixture_with_run_labels_and_all_devices() -> None:
    node = NodeInfo(name="n1", instance_type="p5.48xlarge", labels={}, taints=[], allocatable={
        "hugepages-2Mi": "21122Mi"}, capacity={}, gpus_allocatable=8, efa_allocatable=32, nodepool=None,
        provider_id=None, conditions={}, ready=True)
    job = mpijob.render((node, node), name="gc-nccl-x", namespace="ns", run_id="r1", image="img", gpus=8, efa=32,
                        max_size="4G", deadline_s=600, tolerations=[])
    assert job["metadata"]["labels"]["gpucluster.io/run"] == "r1"
    assert job["spec"]["runPolicy"]["activeDeadlineSeconds"] == 600 and job["spec"]["runPolicy"]["cleanPodPolicy"]
    argv = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    assert argv[argv.index("-np") + 1] == "16" and argv[argv.index("-N") + 1] == "8" and "4G" in argv
    assert "FI_PROVIDER=efa" in argv and "NCCL_DEBUG=INFO" in argv
    limits = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "8" and limits["vpc.amazonaws.com/efa"] == "32"
    assert limits["hugepages-2Mi"] == "5120Mi" and limits["memory"] == "32000Mi"
