"""End to end on the simulated cluster: `pytest --sim` writes the report folder; compare flags a bandwidth fault."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_gpucluster.cli import main

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("pytest_gpucluster.sim.launcher", reason="the simulated cluster is not available")
if not (ROOT / "suites" / "test_nccl.py").exists():
    pytest.skip("suites/test_nccl.py is not in this checkout", allow_module_level=True)


def sim_run(scenario: str, out: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The real suites (NCCL bandwidth checks only, to stay quick) against one scenario, from the checkout root."""
    cmd = [sys.executable, "-m", "pytest", f"--sim={scenario}", "suites/test_nccl.py", "-k", "bus_bandwidth",
           "-q", "-p", "no:cacheprovider", "--gpucluster-report-dir", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    folders = sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []
    assert folders, f"no report folder for --sim={scenario}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done, folders[-1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sim-reports")
    return {name: sim_run(name, base / name)[1] for name in ("healthy", "nccl-low-bandwidth")}


def load(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())


def test_sim_run_writes_html_summary_and_junit(runs: dict[str, Path]) -> None:
    folder = runs["healthy"]
    assert {"report.html", "summary.json", "junit.xml"} <= {p.name for p in folder.iterdir()}
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


def test_compare_flags_the_low_bandwidth_run(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = runs["healthy"] / "summary.json", runs["nccl-low-bandwidth"] / "summary.json"
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "bandwidth" in out and "test_bus_bandwidth_across_nodes_meets_floor[*/p5.48xlarge]" in out
    assert main(["compare", str(old), str(old)]) == 0
