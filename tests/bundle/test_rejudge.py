"""Re-judging without the cluster: every shipped scenario's bundle, re-judged with the same profile, gives the same
per-check outcomes and verdict (reusing the fault matrix's one run per scenario, so CI pays only the replays); a
buyer's profile with NCCL floors above the measured bandwidth turns exactly the bandwidth checks NOT ACCEPTED; a check
whose evidence the recording lacks is not shown, never passed; the recording is versioned, redacted and stores
identical outputs once."""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest

from pytest_gpucluster.bundle.recording import INDEX, SCHEMA_PATH, read_gz
from pytest_gpucluster.report.redact import redact_obj
from pytest_gpucluster.sim.scenario import list_scenarios
from tests.reliability.suite_runs import ROOT, SuiteRun, env_for_child

SCENARIOS = sorted(name for name, _ in list_scenarios())
# pytest-kubernetes' kubectl talks to the cluster past the recorded boundary: not shown when re-judged, by design
OUTSIDE_THE_RECORDING = ("test_custom_example.py",)
# checks marked live_only: their evidence is timed by threads beside the suite, which a replay does not reproduce
LIVE_ONLY = ("test_gpu_node_provisioning_latency",)
# a node's own multi-node result follows its pair's bandwidth too (suites/test_nccl.py: with a failing pair and no
# good partner to re-test with, it is not shown)
BANDWIDTH = ("test_bus_bandwidth_on_one_node_meets_floor", "test_bus_bandwidth_across_nodes_meets_floor",
             "test_node_passes_nccl_across_nodes")


def folder_of(run: SuiteRun) -> Path:
    found = sorted(p for p in (run.junit.parent / "reports").iterdir() if p.is_dir())
    assert found, f"no report folder beside {run.junit}"
    return found[-1]


def judge(folder: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`gpucluster judge` in its own process (the replay's virtual clock stands in for time in that process)."""
    done = subprocess.run([sys.executable, "-m", "pytest_gpucluster.cli", "judge", str(folder), "--report-dir",
                           str(out), "-q", *extra], cwd=ROOT, env=env_for_child(), capture_output=True, text=True,
                          timeout=300)
    summaries = sorted(out.glob("*/summary.json"))
    assert summaries, f"gpucluster judge wrote no summary.json (exit {done.returncode}):\n{done.stdout[-3000:]}\n" \
                      f"{done.stderr[-3000:]}"
    return done, json.loads(summaries[-1].read_text())


def outcomes(summary: dict[str, Any]) -> dict[str, str]:
    """`module.py::test[id]` -> outcome (the recorded run says suites/test_x.py, the judge test_x.py)."""
    return {f"{Path(c['module']).name}::{c['name']}": c["outcome"] for c in summary["checks"]
            if Path(c["module"]).name not in OUTSIDE_THE_RECORDING and c["name"].partition("[")[0] not in LIVE_ONLY}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rejudged_with_the_same_profile_gives_the_same_outcomes(scenario: str, suite_result: Callable[[str], SuiteRun],
                                                                tmp_path: Path) -> None:
    run = suite_result(scenario)
    folder = folder_of(run)
    recorded = json.loads((folder / "summary.json").read_text())
    done, rejudged = judge(folder, tmp_path / "judged")
    want, got = outcomes(recorded), outcomes(rejudged)
    diffs = [f"  {k}: recorded {want.get(k)}, re-judged {got.get(k)}" for k in sorted(set(want) | set(got))
             if want.get(k) != got.get(k)]
    reasons = {f"{Path(c['module']).name}::{c['name']}": c.get("skip_reason") or c.get("message")
               for c in rejudged["checks"]}
    assert not diffs, (f"{scenario}: re-judging changed outcomes:\n" + "\n".join(
        f"{d} ({reasons.get(d.split(':', 1)[0].strip() + '::' + d.split('::', 1)[1].split(':')[0])})" for d in diffs)
        + f"\n{done.stdout[-2000:]}")
    live = [c for c in rejudged["checks"] if c["name"].partition("[")[0] in LIVE_ONLY]
    assert all(c["outcome"] == "skipped" and "not shown in a re-judged run" in (c.get("skip_reason") or "")
               for c in live), live
    if not any(c["name"].partition("[")[0] in LIVE_ONLY and c["outcome"] == "failed" for c in recorded["checks"]):
        assert rejudged["verdict"] == recorded["verdict"], (recorded["verdict_reasons"], rejudged["verdict_reasons"])
    assert rejudged["rejudged"]["from_run"] == recorded["run_id"]
    assert rejudged["rejudged"]["profile"]["sha256"] == recorded["profile"]["sha256"]


BUYER_PROFILE = """\
instances:
  p5.48xlarge:
    nccl:
      all_reduce_busbw_floor_gbs:
        1: {1G: 600, 2G: 600}
        2: {1G: 600, 2G: 600}
    sources:
      nccl.all_reduce_busbw_floor_gbs.1: "buyer's contract: 600 GB/s"
      nccl.all_reduce_busbw_floor_gbs.2: "buyer's contract: 600 GB/s"
"""


def test_buyer_floor_above_the_measured_bandwidth_fails_exactly_the_bandwidth_checks(
        suite_result: Callable[[str], SuiteRun], tmp_path: Path) -> None:
    folder = folder_of(suite_result("healthy"))
    recorded = json.loads((folder / "summary.json").read_text())
    (tmp_path / "buyer.yaml").write_text(BUYER_PROFILE)
    done, rejudged = judge(folder, tmp_path / "judged", "--gpucluster-profile", str(tmp_path / "buyer.yaml"))
    assert done.returncode == 1 and rejudged["verdict"] == "NOT ACCEPTED"
    want, got = outcomes(recorded), outcomes(rejudged)
    changed = {k for k in set(want) | set(got) if want.get(k) != got.get(k)}
    assert changed and {k.split("::")[1].split("[")[0] for k in changed} == set(BANDWIDTH)
    assert all(got[k] == ("skipped" if "::test_node_passes_nccl_across_nodes[" in k else "failed") for k in changed)
    assert rejudged["profile"]["sha256"] != recorded["profile"]["sha256"]
    assert "re-judged from run " + recorded["run_id"] in done.stdout
    html = next((tmp_path / "judged").glob("*/report.html")).read_text()
    assert f"Re-judged from run {recorded['run_id']} recorded" in html and "buyer.yaml" in html


def test_a_check_whose_evidence_is_not_recorded_is_not_shown(suite_result: Callable[[str], SuiteRun],
                                                             tmp_path: Path) -> None:
    """Drop every pod log from the healthy recording: the checks that judge probe output are not shown (skipped,
    saying why), none passes on evidence it does not have."""
    folder = tmp_path / "bundle"
    shutil.copytree(folder_of(suite_result("healthy")), folder)
    for path in (folder / "recording" / "nodes").glob("*.json.gz"):
        doc = read_gz(path)
        doc["calls"] = [c for c in doc["calls"] if not c["path"].endswith("/log")]
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            json.dump(doc, fh)
    _done, rejudged = judge(folder, tmp_path / "judged")
    by_name = {c["name"].split("[")[0]: c for c in rejudged["checks"] if c["outcome"] == "skipped"}
    for test in ("test_nvidia_smi_sees_every_gpu", "test_dcgm_diagnostics_pass", "test_locked_memory_unlimited_in_pod"):
        assert test in by_name and "not shown in a re-judged run: the recording has no answer to GET" in \
            by_name[test]["skip_reason"], test
    assert not [c for c in rejudged["checks"] if c["outcome"] == "passed" and c["name"].startswith(
        ("test_nvidia_smi_sees_every_gpu", "test_dcgm_diagnostics_pass"))]
    assert rejudged["verdict"] != "ACCEPTED"


def test_the_recording_follows_its_schema_is_redacted_and_stores_shared_outputs_once(
        suite_result: Callable[[str], SuiteRun]) -> None:
    folder = folder_of(suite_result("healthy"))
    schema = json.loads(SCHEMA_PATH.read_text())
    index = read_gz(folder / INDEX)
    jsonschema.validate(index, schema)
    assert index["schema_version"] == 1 and index["run_id"] and index["options"]["sim"] == "healthy"
    probes = []
    for rel in index["nodes"].values():
        doc = read_gz(folder / rel)
        jsonschema.validate(doc, {**schema, "$ref": "#/$defs/node"})
        probes += doc["probes"]
        assert redact_obj(doc) == doc, f"{rel} holds text the report would redact"
    assert redact_obj(index) == index
    finished = [p for p in probes if p["exit_code"] is not None]
    assert finished and all(p["node"] and p["image"] and p["command"] and p["phase"] and p["finished"]
                            and p["output"] for p in finished)
    jsonschema.validate(read_gz(folder / "recording" / "aws.json.gz"), {**schema, "$ref": "#/$defs/aws"})
    refs = [p["output"]["$output"] for p in probes if isinstance(p["output"], dict)]
    assert len(set(refs)) < len(refs), "identical outputs of nodes of one type are stored once"
    assert {p.name.removesuffix(".txt.gz") for p in (folder / "recording" / "outputs").glob("*.txt.gz")} >= set(refs)
