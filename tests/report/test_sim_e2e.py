"""End to end on the simulated cluster: `pytest --sim` writes the report folder; compare flags a bandwidth fault.
The runs are the session's one whole-suite run per shipped scenario (tests/suite_cache.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_gpucluster.cli import main
from tests.reliability.suite_runs import SuiteRun
from tests.suite_cache import Results

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("pytest_gpucluster.sim.launcher", reason="the simulated cluster is not available")
if not (ROOT / "suites" / "test_nccl.py").exists():
    pytest.skip("suites/test_nccl.py is not in this checkout", allow_module_level=True)
pytestmark = pytest.mark.suites("healthy", "nccl-low-bandwidth")


@pytest.fixture
def runs(suite_result: Callable[[str], SuiteRun]) -> dict[str, Results]:
    """The session's whole-suite runs against healthy and nccl-low-bandwidth (the runs the fault matrix and the
    other end-to-end tests read too)."""
    return {name: Results(suite_result(name)) for name in ("healthy", "nccl-low-bandwidth")}


def load(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())


def test_sim_run_writes_html_summary_and_junit(runs: dict[str, Results]) -> None:
    folder = runs["healthy"].report_folder()
    assert {"report.html", "summary.json"} <= {p.name for p in folder.iterdir()}
    # The run names its JUnit file (--junitxml), so it is written there instead of the folder (the folder's own
    # junit.xml without --junitxml: tests/report/test_report_plugin.py).
    assert "test_bus_bandwidth_across_nodes_meets_floor" in runs["healthy"].run.junit.read_text()
    doc = load(folder)
    assert doc["simulated"] is True and doc["scenario"] == "healthy"
    assert doc["fingerprint"]["server_version"] and doc["fingerprint"]["inventory"].get("p5.48xlarge")
    assert "nccl" in doc["fingerprint"]["components"]
    assert doc["profile"]["sha256"] and "p5.48xlarge" in doc["profile"]["values"]
    busbw = [m for c in doc["checks"] for m in c["measurements"] if m["unit"] == "GB/s"]
    assert busbw and all(m["value"] > 0 for m in busbw)
    jsonschema = pytest.importorskip("jsonschema")
    from pytest_gpucluster.report.summary import SCHEMA_PATH

    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    page = (folder / "report.html").read_text()
    assert "SIMULATED" in page and "&lt;svg" in page and "Cluster fingerprint" in page


def test_compare_flags_the_low_bandwidth_run(runs: dict[str, Results], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = (runs[name].report_folder() / "summary.json" for name in ("healthy", "nccl-low-bandwidth"))
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "bandwidth" in out and "test_bus_bandwidth_across_nodes_meets_floor[*/p5.48xlarge]" in out
    assert main(["compare", str(old), str(old)]) == 0
