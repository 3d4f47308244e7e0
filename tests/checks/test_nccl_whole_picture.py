"""A pass needs the whole picture (issue 23, NCCL): every network channel of every rank, a validation count, every
rank's provider, a peak below physics, and a log that is the job. Each case is a real capture from
tests/data/nccl-tests (SOURCES.md), edited only where said, into the shape nccl-tests / NCCL / aws-ofi-nccl print."""
from __future__ import annotations

import re
from pathlib import Path

from pytest_gpucluster.checks import Status
from pytest_gpucluster.checks.nccl import NcclRun, bandwidth, correctness, network
from pytest_gpucluster.profile import InstanceProfile, load_profile

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"
P4D_2 = "allreduce-p4d-eks-2node-nccl299-debug-info.txt"               # 16 ranks, 2 pods, 64 channels /GDRDMA
A100_1 = "allreduce-a100-80gb-x8-single-node-gcm-fixture.txt"           # 8 ranks on one host, #wrong, validated
A100_2_ONPREM = "allreduce-a100-80gb-2node-pairwise-gcm-fixture.txt"    # 16 ranks on 2 hosts, peak 182.8 GB/s
VALIDATION_OFF = "allreduce-a100-x8-single-node-validation-off-superbench.txt"   # -c 0: validation 0, N/A
NO_OOB_LINE = "allreduce-p4de-2node-srun-prefix.txt"                   # pasted without its closing lines
WORKER_1 = "nccl-tests-efa-16-worker-1:"


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def run_of(log: str, nodes: int, itype: str = "p4d.24xlarge", **kw: object) -> NcclRun:
    return NcclRun(f"run/{itype}", itype, nodes, 8, "all_reduce_perf -b 8 -e 2G -c 1", log=log, **kw).parse()  # type: ignore[arg-type]


def p4d() -> InstanceProfile:
    inst = load_profile().for_instance("p4d.24xlarge")
    assert inst is not None and inst.gdrdma
    return inst


# -- GPUDirect RDMA on one channel is not GPUDirect RDMA -------------------------------------------------------
def test_gpudirect_rdma_must_be_on_every_channel_of_every_rank() -> None:
    """The 2x p4d log with worker-1's 32 channels printed without /GDRDMA, as NCCL prints a network channel that
    does not use GPUDirect RDMA ('via NET/AWS Libfabric/1'): worker-0's 32 GDRDMA channels do not pass it."""
    log = "\n".join(line.replace("/GDRDMA", "") if WORKER_1 in line else line for line in sample(P4D_2).splitlines())
    verdict = network(run_of(log, 2), p4d())
    assert verdict.status is Status.FAIL and verdict.summary == "NCCL runs EFA without GPUDirect RDMA"
    assert "GPUDirect RDMA channels 32/64" in verdict.observed
    assert "without GPUDirect RDMA: nccl-tests-efa-16-worker-1 (32 of 32 channels)" in verdict.observed


def test_one_gdrdma_channel_among_many_fails_and_a_full_log_passes() -> None:
    lines, kept = [], False
    for line in sample(P4D_2).splitlines():
        if "/GDRDMA" in line and kept:
            line = line.replace("/GDRDMA", "")
        kept = kept or "/GDRDMA" in line
        lines.append(line)
    verdict = network(run_of("\n".join(lines), 2), p4d())
    assert verdict.status is Status.FAIL and "GPUDirect RDMA channels 1/64" in verdict.observed
    assert network(run_of(sample(P4D_2), 2), p4d()).ok


# -- correctness needs a validation count -------------------------------------------------------------------------
def test_a_run_without_validation_is_not_correct_but_not_shown() -> None:
    """superbench's run used -c 0: `validation: 0`, every error N/A."""
    verdict = correctness(run_of(sample(VALIDATION_OFF), 1))
    assert verdict.status is Status.NOT_SHOWN
    assert "no correctness evidence: the run did not validate its results (validation: 0" in verdict.message
    assert "-c 1" in verdict.message


def test_wrong_counts_printed_na_are_no_correctness_evidence() -> None:
    """The validated 8x A100 run rewritten as nccl-tests prints it with -c 0: `validation: 0` and `N/A` in each
    #wrong column (NVIDIA/nccl-tests src/util.cu: PRINT("  %7s  %6s  %6s    N/A", ...))."""
    log = sample(A100_1).replace("validation: 1", "validation: 0")
    log = re.sub(r"(?m)^(\s+\d+\s+\d+\s+float\s+sum\s+-1\s+\S+\s+\S+\s+\S+)\s+0(\s+\S+\s+\S+\s+\S+)\s+0$",
                 r"\1    N/A\2    N/A", log)
    assert log.count("N/A") >= 10
    verdict = correctness(run_of(log, 1))
    assert verdict.status is Status.NOT_SHOWN and "validation: 0" in verdict.message


def test_a_table_without_its_out_of_bounds_line_is_not_shown() -> None:
    """The 2x p4de table as pasted: every #wrong 0, but no closing '# Out of bounds values' line (the test did not
    finish, or the log is cut), and no '# Rank' lines either."""
    verdict = correctness(run_of(sample(NO_OOB_LINE), 2, "p4de.24xlarge"))
    assert verdict.status is Status.NOT_SHOWN
    assert "no '# Out of bounds values' line" in verdict.message and "the log names no ranks" in verdict.message


def test_the_old_error_column_counts_through_its_out_of_bounds_line() -> None:
    """nccl-tests before its NCCL 2.13 resync printed a maximum deviation (5e-07) and counted out-of-tolerance sizes
    in 'Out of bounds values': with that line and validation on, the run is checked."""
    verdict = correctness(run_of(sample(P4D_2), 2))
    assert verdict.ok, verdict.message
    assert "no size deviated beyond its tolerance" in verdict.observed


# -- the provider of every rank -----------------------------------------------------------------------------------
def test_libfabric_without_a_selected_provider_is_not_efa() -> None:
    log = "\n".join(line for line in sample(P4D_2).splitlines() if "Selected Provider" not in line)
    verdict = network(run_of(log, 2), p4d())
    assert verdict.status is Status.FAIL and verdict.summary == "NCCL did not use EFA"
    assert "observed transport unknown (unknown on 16 process(es)" in verdict.message


def test_one_rank_on_the_tcp_provider_makes_the_run_socket() -> None:
    """aws-ofi-nccl prints 'Selected Provider is <libfabric provider>' once per process (src/nccl_ofi_net.c):
    rank 9's process on tcp, the 15 others on efa."""
    log = "\n".join(line.replace("Provider is efa", "Provider is tcp") if line.startswith("[1,9]<stdout>") else line
                    for line in sample(P4D_2).splitlines())
    verdict = network(run_of(log, 2), p4d())
    assert verdict.status is Status.FAIL
    assert "observed transport socket (efa on 15 process(es), socket on 1 process(es) " \
           "(nccl-tests-efa-16-worker-1:26))" in verdict.message


# -- beyond physics -----------------------------------------------------------------------------------------------
def test_a_peak_beyond_the_physical_ceiling_for_the_node_count_fails_with_its_derivation() -> None:
    """A 2-node A100 run on an on-prem network (182.8 GB/s) judged as 2x p4d.24xlarge, whose 4x100 Gbps EFA
    caps a 2-node all-reduce at 93.75 GB/s: 195% of what the NICs can carry is a broken measurement."""
    verdict = bandwidth(run_of(sample(A100_2_ONPREM), 2), p4d())
    assert verdict.status is Status.FAIL and verdict.summary == "bus bandwidth beyond the physical ceiling"
    assert "<= 93.8 GB/s, the physical ceiling for 2 node(s) x 8 GPUs of p4d.24xlarge (network per node " \
           "400 Gbps x N/(N-1) x (n-1)/n, N=2, n=16" in verdict.expected
    assert "peak 182.8 GB/s = 195% of what these links can carry" in verdict.observed
    share = next(c for c in verdict.criteria if c.name == "peak busbw / physical ceiling")
    assert (share.threshold, share.op, share.passed) == (100.0, "<=", False)


# -- the log is the job -------------------------------------------------------------------------------------------
def test_a_one_node_log_is_not_a_two_node_run() -> None:
    """8 ranks on one host judged as the 2-node job it was launched as: every judge fails, naming the ranks."""
    run = run_of(sample(A100_1), 2, "p4de.24xlarge")
    inst = load_profile().for_instance("p4de.24xlarge")
    for verdict in (correctness(run), network(run, inst), bandwidth(run, inst)):
        assert verdict.status is Status.FAIL and verdict.summary == "all_reduce_perf did not run the job"
        assert "the log shows 8 ranks; the job is 2 node(s) x 8 GPUs = 16" in verdict.observed


def test_the_hosts_of_the_ranks_must_be_the_nodes_of_the_run() -> None:
    """16 ranks, but both pods on one node (the pods' hostnames map to the nodes they ran on)."""
    both_on_a = {"nccl-tests-efa-16-worker-0": "ip-a", "nccl-tests-efa-16-worker-1": "ip-a"}
    run = run_of(sample(P4D_2), 2, node_names=("ip-a", "ip-b"), hosts=both_on_a)
    verdict = correctness(run)
    assert verdict.status is Status.FAIL and "no rank on node(s) ip-b" in verdict.observed
    stranger = run_of(sample(P4D_2), 2, node_names=("ip-a", "ip-b"), hosts={"nccl-tests-efa-16-worker-0": "ip-a"})
    observed = network(stranger, p4d()).observed
    assert "ranks on host(s) that are not the job's pods: nccl-tests-efa-16-worker-1" in observed
    right = {"nccl-tests-efa-16-worker-0": "ip-a", "nccl-tests-efa-16-worker-1": "ip-b"}
    assert network(run_of(sample(P4D_2), 2, node_names=("ip-a", "ip-b"), hosts=right), p4d()).ok
