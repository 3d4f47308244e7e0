"""report.html stays a page a person opens at fleet scale (issue 27): 200 nodes, every module, on a bad night.

A real 200-node run of every module takes ~10 minutes of CPU, so the run is synthesised: a real run's captured pytest
reports (tests/report/data, every module against the simulated `healthy` cluster) are replayed over 200 nodes and
100 node pairs through the report plugin and pytest-html, with BAD_NIGHT's checks failing on every node and pair."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from benchmarks import report_scale

CAPTURE = Path(__file__).parent / "data" / "capture-healthy.jsonl.gz"
LIMIT = 2 * 1024 * 1024


def test_a_200_node_report_with_checks_failing_everywhere_stays_under_2_mb_and_keeps_every_failure(tmp_path: Path):
    folder = report_scale.synthesise(CAPTURE, 200, tmp_path, report_scale.BAD_NIGHT,
                                     extra=["--tb=no", "--assert=plain"])     # pytest's own failure summary: not ours
    page = (folder / "report.html").read_text()
    assert len(page.encode()) <= LIMIT, f"report.html is {len(page.encode()) / 1e6:.2f} MB at 200 nodes"

    summary = json.loads((folder / "summary.json").read_text())
    failed = [c for c in summary["checks"] if c["outcome"] == "failed"]
    per_test = {name: sum(1 for c in failed if c["name"].startswith(name + "[")) for name in report_scale.BAD_NIGHT}
    assert per_test == {"test_nvlink_and_fabric_ready": 200, "test_nvidia_smi_sees_every_gpu": 200,
                        "test_bus_bandwidth_across_nodes_meets_floor": 100,
                        "test_all_reduce_is_correct_across_nodes": 100}, per_test
    assert summary["verdict"] == "NOT ACCEPTED"

    # Every failure is still on the page: a failing row in the grid per node, and the checks past the table's rows
    # listed with a link to the node's evidence file, which holds the check's complete outputs.
    grid = page[page.index('id="gc-grid"'):page.index('id="gc-plots"')]
    assert len(re.findall(r'<tr class="gc-fail">', grid)) == 200
    node = [c["node"] for c in failed if c["name"].startswith("test_nvlink_and_fabric_ready[")][-1]   # the 200th
    note = page[page.index('id="gc-results-note"'):]
    assert f'<a href="evidence/{node}.txt.gz">{node}</a>' in note
    text = gzip.open(folder / "evidence" / f"{node}.txt.gz", "rt").read()
    assert f"test_nvlink_and_fabric_ready[{node}/p5.48xlarge]\noutcome: failed" in text
    assert "==============NVSMI LOG==============" in text
