"""checks/efa.py: every verdict of the EFA judges, on real fi_info outputs (tests/data/fi_info) and plain counts."""
from __future__ import annotations

from pathlib import Path

from pytest_gpucluster.checks import efa as judge
from pytest_gpucluster.checks.probe_output import split_sections
from pytest_gpucluster.checks.verdict import Status

DATA = Path(__file__).resolve().parents[1] / "data" / "fi_info"
P4DE = (DATA / "efa-p4de-4domains-rdm-v119.txt").read_text()
NO_EFA = (DATA / "fi_getinfo-61-no-efa.txt").read_text()
NODE = "ip-10-0-3-17/p4de.24xlarge"


def test_split_sections_reads_each_output_and_exit_code() -> None:
    logs = "### fi_info\nprovider: efa\n### rc=0\n### dev-infiniband\nuverbs0\n### rc=0\n### memlock\n64\n### rc=0"
    assert split_sections(logs) == {"fi_info": ("provider: efa", 0), "dev-infiniband": ("uverbs0", 0),
                                          "memlock": ("64", 0)}


def test_allocatable_pass_fail_and_not_shown() -> None:
    assert judge.allocatable(NODE, "p4de.24xlarge", 4, 4, "4", "", "default.yaml").ok
    low = judge.allocatable(NODE, "p4de.24xlarge", 4, 1, "1", judge.why_no_efa("1"), "default.yaml")
    assert low.status is Status.FAIL
    assert low.message.startswith(f"EFA count mismatch on {NODE}: expected vpc.amazonaws.com/efa allocatable 4 "
                                  "(profile p4de.24xlarge efa); observed allocatable 1, capacity 1")
    assert "fewer interfaces attached than the instance type supports" in low.message
    unknown = judge.allocatable(NODE, "x9.large", None, 0, "0", "", "default.yaml")
    assert unknown.status is Status.NOT_SHOWN and "add `instances: {x9.large: {efa: N}}`" in unknown.message


def test_why_no_efa_names_the_device_plugin_when_nothing_is_advertised() -> None:
    assert "the EFA device plugin is not running on it" in judge.why_no_efa("0")


def test_fi_info_passes_with_every_domain_and_rdm() -> None:
    verdict = judge.fi_info(NODE, P4DE, 0, 4, 4, "p4de.24xlarge", "")
    assert verdict.ok and verdict.criteria[0].value == 4


def test_fi_info_fails_with_fewer_domains_than_the_profile() -> None:
    verdict = judge.fi_info(NODE, P4DE, 0, 32, 4, "p4de.24xlarge", judge.why_no_efa("4"))
    assert verdict.status is Status.FAIL
    assert "4 distinct EFA domain(s)" in verdict.message and "where the profile expects 32 (4 requested)" in \
        verdict.message and judge.SG_HINT in verdict.message


def test_fi_info_without_the_efa_provider_names_the_error() -> None:
    verdict = judge.fi_info(NODE, NO_EFA, 61, 4, 0, "p4de.24xlarge", judge.why_no_efa("0"))
    assert verdict.status is Status.FAIL and verdict.message.startswith(f"No EFA provider in a pod on {NODE}")
    assert "observed fi_getinfo -61 (No data available) with 0 vpc.amazonaws.com/efa requested" in verdict.message


def test_fi_info_without_rdm_endpoints_fails() -> None:
    text = "provider: efa\n    fabric: efa\n    domain: rdmap0s6-dgrm\n    version: 2.0\n    type: FI_EP_DGRAM\n" \
           "    protocol: FI_PROTO_EFA\n"
    verdict = judge.fi_info(NODE, text, 0, 1, 1, "g5.8xlarge", "")
    assert verdict.status is Status.FAIL and "no FI_EP_RDM endpoint" in verdict.message


def test_infiniband_counts_uverbs_devices() -> None:
    listing = "\n".join(f"uverbs{i}" for i in range(4)) + "\nrdma_cm"
    assert judge.infiniband(NODE, listing, 0, 4, 4, "p4de.24xlarge").ok
    short = judge.infiniband(NODE, "uverbs0", 0, 4, 1, "p4de.24xlarge")
    assert short.status is Status.FAIL and "observed 1 (uverbs0)" in short.message
    missing = judge.infiniband(NODE, "ls: /dev/infiniband: No such file or directory", 1, 4, 0, "p4de.24xlarge")
    assert missing.status is Status.FAIL and "observed 0 (ls: /dev/infiniband" in missing.message


def test_memlock_unlimited_or_limited() -> None:
    assert judge.memlock(NODE, "unlimited", 0).ok
    limited = judge.memlock(NODE, "64", 0)
    assert limited.status is Status.FAIL and "observed 64 KiB" in limited.message
    assert limited.criteria[0].value == 64
    assert "observed nothing" in judge.memlock(NODE, "", 1).message


def test_probe_that_did_not_run_fails_with_the_pod_to_describe() -> None:
    verdict = judge.not_run(NODE, 4, "Pending: Unschedulable", "gpucluster", "efa-fi-info-x")
    assert verdict.status is Status.FAIL and "kubectl -n gpucluster describe pod efa-fi-info-x" in verdict.message
