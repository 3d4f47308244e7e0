"""The NCCL judges on plain data: real nccl-tests outputs (tests/data/nccl-tests), real NCCL WARN lines, and
hand-made instance profiles. Every failure shape says expected, observed and the fix."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pytest_gpucluster.checks import Status
from pytest_gpucluster.checks.nccl import (
    NcclRun, classify_warnings, bandwidth, correctness, network, max_bytes, physical_ceiling, size_arg,
    warnings_text,
)
from pytest_gpucluster.checks.nccl_nodes import NodeGroup, efa_missing, multi_node_groups, single_node_targets, waves
from pytest_gpucluster.kube.discovery import NodeInfo
from pytest_gpucluster.parsers import parse_nccl
from pytest_gpucluster.profile import InstanceProfile, load_profile

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"
ONE_NODE = "allreduce-a100-80gb-x8-single-node-gcm-fixture.txt"       # 8x A100 80GB, 32M..1G, peak 231.72
P5_TWO_NODES = "allreduce-p5-awsbatch-mpirun-prefix.txt"              # no NCCL INFO lines
P4D_EFA_GDRDMA = "allreduce-p4d-eks-2node-nccl299-debug-info.txt"
P4D_OLD_LOW = "allreduce-p4d-eks-2node-nccl283-debug-info.txt"        # 32.71 GB/s at 1G
EFA_NO_CHANNELS = "allreduce-karpenter-eks-efa-elided.txt"            # provider efa, no channel lines
NO_TABLE = "allreduce-gh200-2node-cuda-busy-failure.txt"
NO_NET_PLUGIN = "nccl-warn-failed-to-initialize-any-net-plugin-docs.txt"

# aws-ofi-nccl 1.16.2 giving up in a pod without an EFA provider, NCCL going on without it (Socket across pods):
# gnosia93/training-on-eks@a8bcb517117dac4ab6acfce1c3392461ccdb4772:chapter/c7-training-optimization-nccl.md
# lines 20-40, verbatim.
OFI_GAVE_UP_G6E = """\
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/OFI Initializing aws-ofi-nccl 1.16.2
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/OFI Using Libfabric version 2.1
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/OFI Using CUDA driver version 13000 with runtime 12090
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/OFI Configuring AWS-specific options
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/OFI Setting provider_filter to efa
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/OFI Internode latency set at 75.0 us
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/OFI No eligible providers were found

[2025-12-28 16:04:25] llama-3-8b-node-0-0:152:386 [0] int nccl_net_ofi_create_plugin(nccl_net_ofi_plugin_t**):259 NCCL WARN NET/OFI Unable to find a protocol that worked.  Failing initialization.

[2025-12-28 16:04:25] llama-3-8b-node-0-0:152:386 [0] int nccl_net_ofi_create_plugin(nccl_net_ofi_plugin_t**):352 NCCL WARN NET/OFI aws-ofi-nccl initialization failed

[2025-12-28 16:04:25] llama-3-8b-node-0-0:152:386 [0] ncclResult_t nccl_net_ofi_init_v6(ncclDebugLogger_t):166 NCCL WARN NET/OFI Initializing plugin failed
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NCCL_SOCKET_IFNAME set by environment to ^docker0,lo
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/IB : No device found.
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/IB : Using [RO]; OOB eth0:10.0.4.51<0>
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NCCL_SOCKET_IFNAME set by environment to ^docker0,lo
llama-3-8b-node-0-0:152:386 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.4.51<0>
llama-3-8b-node-0-0:152:386 [0] NCCL INFO Initialized NET plugin Socket
llama-3-8b-node-0-0:152:386 [0] NCCL INFO Assigned NET plugin Socket to comm
llama-3-8b-node-0-0:152:386 [0] NCCL INFO Using network Socket
"""
# The same give-up on a p4d.24xlarge (aws/aws-ofi-nccl issue #889, second comment; CloudWatch columns dropped).
OFI_GAVE_UP_P4D = """\
ip-10-36-29-253:79:2547 [0] platform_config_endpoint:626 NCCL WARN NET/OFI GDR disabled on GDR-supported instance type p4d.24xlarge
ip-10-36-29-253:79:2547 [0] nccl_net_ofi_domain_get_ep:969 NCCL WARN NET/OFI Creating new endpoint for domain 0x7f876fa992c0 failed: Invalid argument
ip-10-36-29-253:86:2554 [0] nccl_net_ofi_create_plugin:335 NCCL WARN NET/OFI aws-ofi-nccl initialization failed
ip-10-36-29-253:86:2554 [0] nccl_net_ofi_init:155 NCCL WARN NET/OFI Initializing plugin failed
"""
TEST_FAILURE_LINE = " .. gpu-1-1 pid 3617715: Test failure common.cu:1189"    # from NO_TABLE


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def nccl_run(log: str, nodes: int = 1, itype: str = "p4d.24xlarge", outcome: str = "") -> NcclRun:
    where = "n1/" + itype if nodes == 1 else "n1+n2/" + itype
    return NcclRun(where, itype, nodes, 8, "all_reduce_perf -b 8 -e 2G", log=log, outcome=outcome).parse()


def inst(floors: dict[int, dict[int, float]] | None = None, **kw: object) -> InstanceProfile:
    base: dict = {"instance_type": "p4d.24xlarge", "gpus": 8, "efa": 4, "gdrdma": True, "nvlink_gbs": 600.0,
                  "network_gbps": 400.0, "nccl_floors": floors or {}, "busbw_ceiling_gbs": 900.0}
    base.update(kw)
    return InstanceProfile(**base)


def node(name: str, itype: str = "p5.48xlarge", *, gpus: int = 8, efa: int = 32, ready: bool = True,
         unschedulable: bool = False, zone: str = "us-west-2a", labels: dict[str, str] | None = None,
         expected_efa: int | None = None) -> NodeInfo:
    return NodeInfo(name=name, instance_type=itype, labels=dict(labels or {}), taints=[], allocatable={}, capacity={},
                    gpus_allocatable=gpus, efa_allocatable=efa, nodepool=None, provider_id=None, conditions={},
                    ready=ready, unschedulable=unschedulable, zone=zone, expected_gpus=gpus,
                    expected_efa=efa if expected_efa is None else expected_efa)


# -- which nodes --------------------------------------------------------------------------------------------------
def test_size_arg_writes_sizes_as_nccl_tests_does() -> None:
    assert [size_arg(n) for n in (2 << 30, 32 << 20, 8 << 10, 8)] == ["2G", "32M", "8K", "8"]


def test_single_node_targets_take_the_first_node_of_each_type_or_every_node() -> None:
    nodes = [node("b"), node("a"), node("c", "g5.48xlarge")]
    assert [n.name for n in single_node_targets(nodes, every=False)] == ["c", "a"]   # by type, then name
    assert [n.name for n in single_node_targets(nodes, every=True)] == ["a", "b", "c"]


def test_multi_node_groups_need_enough_ready_schedulable_efa_gpu_nodes_of_one_type() -> None:
    nodes = [node("p5-b"), node("p5-a"), node("p5-c", ready=False), node("p4-a", "p4d.24xlarge"),
             node("p4-b", "p4d.24xlarge", unschedulable=True)]
    groups, why, _ = multi_node_groups(nodes, 2)
    assert [g.id for g in groups] == ["p5-a+p5-b/p5.48xlarge"]
    groups, why, _ = multi_node_groups(nodes, 3)
    assert groups == [] and why == ("multi-node NCCL needs 3 ready EFA GPU nodes of one instance type in one "
                                    "availability zone; found p4d.24xlarge x1, p5.48xlarge x2")


def test_every_efa_node_takes_part_in_a_multi_node_run_and_the_slow_last_node_is_not_missed() -> None:
    nodes = [node(f"p5-{c}") for c in "dcba"]
    groups, _, cov = multi_node_groups(nodes, 2)
    assert [g.id for g in groups] == ["p5-a+p5-b/p5.48xlarge", "p5-c+p5-d/p5.48xlarge"]
    assert cov.shown["p5.48xlarge"] == ["p5-a", "p5-b", "p5-c", "p5-d"]
    assert [[g.id for g in w] for w in waves(groups)] == [[g.id for g in groups]]       # disjoint: run at once
    sample, _, cov = multi_node_groups(nodes, 2, {"p5.48xlarge": "sample"})
    assert [g.id for g in sample] == ["p5-a+p5-b/p5.48xlarge"]                          # today's first pair
    assert cov.not_shown["p5.48xlarge"]["p5-d"].startswith("nccl.multi_node_coverage: sample")
    assert "not shown: p5-c (nccl.multi_node_coverage: sample" in cov.text("p5.48xlarge")


def test_a_remainder_node_joins_an_overlapping_group_which_runs_in_a_later_wave() -> None:
    groups, _, cov = multi_node_groups([node("a"), node("b"), node("c")], 2)
    assert [g.id for g in groups] == ["a+b/p5.48xlarge", "b+c/p5.48xlarge"]
    assert [[g.id for g in w] for w in waves(groups)] == [["a+b/p5.48xlarge"], ["b+c/p5.48xlarge"]]
    assert cov.shown["p5.48xlarge"] == ["a", "b", "c"]


def test_groups_never_cross_availability_zones_and_prefer_shared_network_nodes() -> None:
    layer = "topology.k8s.aws/network-node-layer-3"
    nodes = [node("a", zone="az1", labels={layer: "nn-2"}), node("b", zone="az2"), node("c", zone="az1",
             labels={layer: "nn-1"}), node("d", zone="az2"), node("e", zone="az1", labels={layer: "nn-1"}),
             node("f", zone="az3")]
    groups, _, cov = multi_node_groups(nodes, 2)
    assert [g.id for g in groups] == ["c+e/p5.48xlarge", "e+a/p5.48xlarge", "b+d/p5.48xlarge"]
    assert all(len({n.zone for n in g.nodes}) == 1 for g in groups)
    assert cov.not_shown["p5.48xlarge"] == {"f": "only 1 p5.48xlarge node(s) in zone az3; EFA does not cross zones"}


def test_a_group_with_a_node_without_efa_allocatable_is_not_run_and_says_why() -> None:
    group = NodeGroup("p5.48xlarge", (node("a"), node("b", efa=0, expected_efa=32)))
    why = efa_missing(group)
    assert why is not None and "b (0 vpc.amazonaws.com/efa allocatable, profile expects 32)" in why
    assert "test_efa" in why and efa_missing(NodeGroup("p5.48xlarge", (node("a"), node("c")))) is None
    verdict = correctness(NcclRun(group.id, "p5.48xlarge", 2, 8, "(not submitted)", outcome=why).parse())
    assert verdict.status is Status.FAIL and "0 vpc.amazonaws.com/efa allocatable" in verdict.observed


def test_max_bytes_covers_the_largest_size_the_profile_judges() -> None:
    assert max_bytes(None, 2) == 2 << 30
    assert max_bytes(inst({2: {1 << 30: 40.0, 4 << 30: 80.0}}), 2) == 4 << 30
    assert max_bytes(inst({2: {4 << 30: 80.0}}), 1) == 2 << 30


# -- correctness ---------------------------------------------------------------------------------------------------
def test_a_clean_run_is_correct() -> None:
    verdict = correctness(nccl_run(sample(ONE_NODE)))
    assert verdict.ok, verdict.message


@pytest.mark.parametrize("startup", [OFI_GAVE_UP_G6E, OFI_GAVE_UP_P4D], ids=["g6e-aws-ofi-nccl-1.16", "p4d-issue-889"])
def test_aws_ofi_nccl_giving_up_at_start_up_does_not_fail_one_node(startup: str) -> None:
    """Issue 14: in a pod without EFA, aws-ofi-nccl logs NCCL WARN lines and NCCL goes on over NVLink/shm.
    The sums are right (#wrong 0, no Test failure, exit 0): the run is correct, the lines are evidence."""
    run = nccl_run(startup + sample(ONE_NODE))
    assert run.warnings and run.result is not None and run.table is not None
    verdict = correctness(run)
    assert verdict.ok, verdict.message
    benign, telling = classify_warnings(run)
    assert [w.split("NCCL WARN ")[1] for w in benign][-2:] == ["NET/OFI aws-ofi-nccl initialization failed",
                                                                 "NET/OFI Initializing plugin failed"]
    assert verdict.facts["nccl_warn_benign"] == len(benign) >= 2
    assert "[benign start-up: aws-ofi-nccl gave up, NCCL went on over NVLink/shm]" in warnings_text(run)
    if startup is OFI_GAVE_UP_P4D:   # not a start-up give-up line: kept as a possible explanation
        assert any("GDR disabled on GDR-supported instance type" in w for w in telling)


def test_warn_lines_alone_never_fail_a_run_across_nodes_either() -> None:
    run = nccl_run(OFI_GAVE_UP_G6E + sample(P4D_EFA_GDRDMA), nodes=2)
    verdict = correctness(run)
    assert verdict.ok, verdict.message
    assert classify_warnings(run)[0] == [] and verdict.facts["nccl_warn_telling"] == 3   # across nodes they tell


def test_wrong_elements_fail_with_the_first_size_and_the_fix() -> None:
    run = nccl_run(sample(ONE_NODE))
    assert run.table is not None and run.table.rows[1].out_of_place is not None
    run.table.rows[1].out_of_place.wrong = 12
    verdict = correctness(run)
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith("all_reduce results are wrong on n1/p4d.24xlarge (8 ranks): expected #wrong 0")
    assert "1 message sizes with #wrong > 0 (first at 64M: [12, 0])" in verdict.message
    assert "nvidia-smi -q -d ECC" in verdict.fix and "dmesg | grep -i xid" in verdict.fix


def test_out_of_bounds_values_fail() -> None:
    run = nccl_run(sample(ONE_NODE))
    assert run.table is not None
    run.table.out_of_bounds = 3
    verdict = correctness(run)
    assert not verdict.ok and "Out of bounds values: 3" in verdict.observed


def test_a_test_failure_line_fails_even_with_a_clean_table() -> None:
    verdict = correctness(nccl_run(sample(ONE_NODE) + TEST_FAILURE_LINE + "\n"))
    assert not verdict.ok and f"1 error lines (first: {TEST_FAILURE_LINE.strip()!r})" in verdict.observed


def test_a_failed_pod_fails_even_with_a_clean_table() -> None:
    outcome = "pod gc-nccl-x Failed, exit code 1 - see `kubectl -n ns logs gc-nccl-x`"
    verdict = correctness(nccl_run(sample(ONE_NODE), outcome=outcome))
    assert not verdict.ok and outcome in verdict.observed


def test_a_failure_names_the_warn_lines_that_may_explain_it() -> None:
    run = nccl_run(sample(NO_NET_PLUGIN) + sample(ONE_NODE), outcome="pod Failed, exit code 1")
    verdict = correctness(run)
    assert not verdict.ok and "NCCL WARN lines: '" in verdict.observed
    assert "Failed to initialize any NET plugin" in verdict.observed


def test_no_table_fails_with_why_and_the_log_tail() -> None:
    verdict = correctness(nccl_run(sample(NO_TABLE), nodes=2))
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith("all_reduce_perf on n1+n2/p4d.24xlarge produced no result: expected a result "
                                      "table; observed the log holds no all_reduce_perf result table")
    assert "last log lines:" in verdict.observed and "Test failure" in verdict.observed
    empty = correctness(nccl_run("", outcome="pod never started: ImagePullBackOff"))
    assert not empty.ok and "observed pod never started: ImagePullBackOff" in empty.message


# -- network path ----------------------------------------------------------------------------------------------------
def test_efa_with_gdrdma_passes() -> None:
    verdict = network(nccl_run(sample(P4D_EFA_GDRDMA), nodes=2), inst())
    assert verdict.ok, verdict.message
    assert verdict.facts["transport"] == "efa" and verdict.facts["gdrdma"] is True


def test_socket_fallback_fails_and_says_why_aws_ofi_nccl_did_not_start() -> None:
    verdict = network(nccl_run(OFI_GAVE_UP_G6E + sample(P5_TWO_NODES), nodes=2), inst())
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith("NCCL did not use EFA on n1+n2/p4d.24xlarge: expected 'Using network "
                                      "Libfabric' / 'Selected provider is efa'")
    assert "observed transport socket (socket on 1 process(es) (llama-3-8b-node-0-0:152)" in verdict.message
    assert "networks ['Socket']" in verdict.message
    assert "aws-ofi-nccl did not start: '" in verdict.observed and "Unable to find a protocol" in verdict.observed
    assert "FI_PROVIDER=efa" in verdict.fix and "vpc.amazonaws.com/efa" in verdict.fix


def test_no_network_lines_leave_the_transport_unknown_and_fail() -> None:
    verdict = network(nccl_run(sample(P5_TWO_NODES), nodes=2), inst())
    assert not verdict.ok and "observed transport unknown" in verdict.message


def test_efa_without_gdrdma_fails_where_the_profile_expects_it() -> None:
    run = nccl_run(sample(EFA_NO_CHANNELS), nodes=2)
    verdict = network(run, inst(gdrdma=True))
    assert verdict.status is Status.FAIL and verdict.summary == "NCCL runs EFA without GPUDirect RDMA"
    assert "FI_EFA_USE_DEVICE_RDMA" in verdict.fix
    without_gdr = network(run, inst(gdrdma=False))          # an excerpt: its rank lines were cut
    assert without_gdr.status is Status.NOT_SHOWN and "the log names no ranks" in without_gdr.message


# -- bus bandwidth ---------------------------------------------------------------------------------------------------
def test_bandwidth_at_or_above_every_floor_passes_with_its_criteria() -> None:
    verdict = bandwidth(nccl_run(sample(ONE_NODE)), inst({1: {1 << 30: 200.0, 512 << 20: 220.0}}))
    assert verdict.ok, verdict.message
    by_name = {c.name: c for c in verdict.criteria}
    assert by_name["out-of-place busbw at 1G"].value == 231.72 and by_name["out-of-place busbw at 1G"].passed
    assert by_name["peak out-of-place busbw"].threshold == 220.0
    assert by_name["peak busbw plausible"].op == "<=" and by_name["peak busbw plausible"].passed
    assert by_name["peak busbw / physical ceiling"].value == round(100 * 231.72 / 300, 1)
    assert verdict.facts["physical_ceiling"] == "300.0 GB/s: per-GPU NVLink per direction, nvlink_gbs 600/2, n=8"
    assert "docs/nccl.md" in (by_name["peak busbw / physical ceiling"].source or "")


def test_bandwidth_below_the_floor_on_one_node_names_size_floor_and_nvlink() -> None:
    verdict = bandwidth(nccl_run(sample(ONE_NODE)), inst({1: {1 << 30: 300.0}}))
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith("NCCL all_reduce bus bandwidth below the profile floor on n1/p4d.24xlarge "
                                      "(1 node(s) x 8 GPUs)")
    assert "at 1G expected >= 300 GB/s, observed 231.72 GB/s (77% of the floor)" in verdict.observed
    assert "= 77% of the 300.0 GB/s ceiling (per-GPU NVLink per direction" in verdict.observed
    assert "nvidia-smi nvlink -s" in verdict.fix
    assert not next(c for c in verdict.criteria if c.name == "out-of-place busbw at 1G").passed


def test_bandwidth_below_the_floor_across_nodes_points_at_the_network() -> None:
    verdict = bandwidth(nccl_run(sample(P4D_OLD_LOW), nodes=2), inst({2: {1 << 30: 40.0}}))
    assert not verdict.ok and "at 1G expected >= 40 GB/s, observed" in verdict.observed
    assert "= 35% of the 93.8 GB/s ceiling (network per node 400 Gbps x N/(N-1) x (n-1)/n, N=2" in verdict.observed
    assert verdict.fix.startswith("The network path is efa: check that all EFA interfaces are requested")
    socket = bandwidth(nccl_run(OFI_GAVE_UP_G6E + sample(P4D_OLD_LOW), nodes=2), inst({2: {1 << 30: 40.0}}))
    assert not socket.ok and "NCCL ran over Socket (TCP), not EFA" in socket.fix


def test_implausible_bandwidth_fails() -> None:
    verdict = bandwidth(nccl_run(sample(ONE_NODE)), inst({1: {1 << 30: 100.0}}, busbw_ceiling_gbs=150.0))
    assert verdict.summary == "implausible bus bandwidth" and "expected <= 150 GB/s" in verdict.message
    assert "observed peak 231.72 GB/s" in verdict.message


def test_bandwidth_of_a_run_with_wrong_results_is_not_judged_but_fails() -> None:
    run = nccl_run(sample(ONE_NODE))
    assert run.table is not None
    run.table.out_of_bounds = 1
    verdict = bandwidth(run, inst({1: {1 << 30: 100.0}}))
    assert verdict.status is Status.FAIL and "not judged: the run's results are wrong" in verdict.message
    assert verdict.criteria   # still recorded


def test_bandwidth_without_a_floor_is_recorded_not_judged() -> None:
    verdict = bandwidth(nccl_run(sample(ONE_NODE)), inst())
    assert verdict.status is Status.NOT_SHOWN
    assert "bandwidth recorded, not judged: the profile has no floor for 1 node(s) of p4d.24xlarge" in verdict.message
    assert "set profile instances.p4d.24xlarge.nccl.all_reduce_busbw_floor_gbs.1" in verdict.message
    assert all(c.threshold is None or c.passed for c in verdict.criteria)


def test_bandwidth_of_a_run_without_a_table_fails_as_no_result() -> None:
    verdict = bandwidth(nccl_run(sample(NO_TABLE), nodes=2), inst({2: {1 << 30: 40.0}}))
    assert not verdict.ok and "produced no result" in verdict.message


def test_judges_do_not_change_the_run() -> None:
    run = nccl_run(OFI_GAVE_UP_P4D + sample(ONE_NODE))
    before = copy.deepcopy(run)
    for verdict in (correctness(run), network(run, inst()), bandwidth(run, inst())):
        assert verdict.subject
    assert run == before


# -- the algorithmic ceiling (docs/nccl.md) ---------------------------------------------------------------------
# Every published all_reduce run in tests/data/nccl-tests with a known instance type: (file, type, nodes, GPUs/node).
PUBLISHED = [
    ("allreduce-p4de-2node-srun-prefix.txt", "p4de.24xlarge", 2, 8),
    ("allreduce-p4d-eks-2node-nccl299-debug-info.txt", "p4d.24xlarge", 2, 8),
    ("allreduce-p4d-eks-2node-nccl283-debug-info.txt", "p4d.24xlarge", 2, 8),
    ("allreduce-p5-2node-eks-mpirun-elided.txt", "p5.48xlarge", 2, 8),
    ("allreduce-eksgpuefa-indented-elided.txt", "p5.48xlarge", 2, 8),
    ("allreduce-p5-awsbatch-mpirun-prefix.txt", "p5.48xlarge", 1, 8),
    # 8x A100 SXM on NVSwitch (the p4d / p4de board), single node
    ("allreduce-a100-x8-single-node-validation-off-superbench.txt", "p4d.24xlarge", 1, 8),
    ("allreduce-a100-80gb-x8-single-node-gcm-fixture.txt", "p4de.24xlarge", 1, 8),
]
# Left out, with why: no known instance type / network for these runs, so no honest ceiling.
UNKNOWN_LINKS = {"allreduce-a100-80gb-2node-pairwise-gcm-fixture.txt": "on-prem network of unknown bandwidth",
                 "allreduce-karpenter-eks-efa-elided.txt": "2 ranks of an unnamed instance type",
                 "allreduce-gh200-2node-cuda-busy-failure.txt": "no result table",
                 "allreduce-k80-no-kernel-image-nccl-tests-issue79.txt": "no result table",
                 "allreduce-rtx3090-unhandled-cuda-error-nccl-tests-issue124.txt": "no result table"}


def test_every_sample_is_either_judged_against_a_ceiling_or_named_as_unknown() -> None:
    names = {p.name for p in DATA.glob("allreduce-*.txt")}
    assert names == {f for f, *_ in PUBLISHED} | set(UNKNOWN_LINKS)


@pytest.mark.parametrize("name,itype,nodes,gpus", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_every_published_run_is_at_most_100_percent_of_its_derived_ceiling(name: str, itype: str, nodes: int,
                                                                          gpus: int) -> None:
    coll = parse_nccl(sample(name)).collective("all_reduce")
    assert coll is not None and coll.peak_busbw
    row = max(coll.rows, key=lambda r: r.size)
    assert row.out_of_place is not None
    ranks = round(2 / (2 - row.out_of_place.busbw / row.out_of_place.algbw))          # busbw = algbw * 2(n-1)/n
    assert ranks == nodes * gpus
    ceiling, how = physical_ceiling(load_profile().for_instance(itype), nodes, gpus)
    assert ceiling is not None, how
    assert coll.peak_busbw <= ceiling, f"{name}: {coll.peak_busbw} > {ceiling} ({how})"


def test_the_ceiling_follows_the_algorithm_and_is_none_without_link_figures() -> None:
    p5 = load_profile().for_instance("p5.48xlarge")
    assert physical_ceiling(p5, 1)[0] == pytest.approx(2 * 7 / 8 * 450)               # NVLS: 787.5
    assert physical_ceiling(p5, 2)[0] == pytest.approx(400 * 2 * 15 / 16)             # 2 nodes: 750 (tree)
    assert physical_ceiling(p5, 16)[0] == pytest.approx(400 * 16 / 15 * 127 / 128)    # many nodes -> B_net
    p4d = load_profile().for_instance("p4d.24xlarge")
    assert physical_ceiling(p4d, 1)[0] == 300.0                                        # no NVLS: per-GPU NVLink
    assert physical_ceiling(inst(nvlink_gbs=None, network_gbps=None), 2)[0] is None
    assert physical_ceiling(inst(nvlink_gbs=None), 1) == (
        None, "no NVLink figure in the profile (nvlink_gbs): no ceiling derived")
    assert physical_ceiling(None, 1) == (None, "unknown instance type")


def test_a_run_without_a_derivable_ceiling_shows_none() -> None:
    verdict = bandwidth(nccl_run(sample(ONE_NODE)), inst({1: {1 << 30: 200.0}}, nvlink_gbs=None))
    assert "peak busbw / physical ceiling" not in {c.name for c in verdict.criteria}
    assert verdict.facts["physical_ceiling"].startswith("none: no NVLink figure")


def test_every_gpu_type_of_the_default_profile_with_peers_has_floors_with_sources() -> None:
    profile = load_profile()
    missing = []
    for itype in profile.instance_types():
        i = profile.for_instance(itype)
        assert i is not None
        if not itype.startswith("p") or i.gpus < 2:
            continue                                   # g types: no published nccl-tests figure yet (see docs/nccl.md)
        if not i.nccl_floors and i.sources.get("nccl.all_reduce_busbw_floor_gbs", "").startswith("not set: "):
            continue                                   # declared: no published figure; the check is NOT SHOWN
        for nodes in (1, 2) if i.efa else (1,):
            if not i.nccl_floors.get(nodes) or f"nccl.all_reduce_busbw_floor_gbs.{nodes}" not in i.sources:
                missing.append(f"{itype} x{nodes}")
    assert not missing


def test_a_group_with_a_node_without_gpus_is_not_run_and_says_why() -> None:
    """A node whose device plugin is down advertises no GPU: its MPIJob worker would never schedule, so the group
    is not submitted and the reason names the node (issue 17: no waiting out the MPIJob deadline)."""
    from pytest_gpucluster.checks.nccl_nodes import cannot_run

    first, second = "ip-10-0-1-4", "ip-10-0-1-5"
    group = NodeGroup("p5.48xlarge", (node(first), node(second)))
    assert cannot_run(group, {first: 8, second: 8}) is None
    why = cannot_run(group, {first: 8, second: 0})
    assert why is not None and second in why and "0 nvidia.com/gpu" in why and first not in why
