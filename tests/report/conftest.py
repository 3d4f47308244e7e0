"""Shared helpers for the report tests: a pytester project wired to the report plugin only."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import pytest_gpucluster.report.plots  # noqa: F401  (numpy must be imported once, before pytester snapshots sys.modules)

# pytester comes from tests/conftest.py (pytest_plugins is only allowed in the top-level conftest)

# The pytester project registers the report options itself and loads only the report plugin
# (`-p no:gpucluster` keeps the foundation plugin out), so these tests pin the report contract.
WIRING = '''
from pytest_gpucluster.report.options import add_report_options

def pytest_addoption(parser):
    add_report_options(parser.getgroup("gpucluster"))
'''


class ReportRun:
    """A pytester run of a small fake suite and the files its report plugin wrote."""

    def __init__(self, result: pytest.RunResult, report_root: Path) -> None:
        self.result = result
        dirs = sorted(p for p in report_root.iterdir() if p.is_dir()) if report_root.exists() else []
        self.dir = dirs[-1] if dirs else None

    @property
    def summary(self) -> dict[str, Any]:
        assert self.dir is not None, "no report folder was written"
        return json.loads((self.dir / "summary.json").read_text())

    @property
    def html(self) -> str:
        assert self.dir is not None, "no report folder was written"
        return (self.dir / "report.html").read_text()


@pytest.fixture
def run_suite(pytester: pytest.Pytester):
    """run_suite(source, *args) -> ReportRun: write the suite's module(s) and run them with the report plugin."""

    def run(source: str | dict[str, str], *args: str) -> ReportRun:
        """`source`: the text of test_suite.py, or {module name: text} for several modules."""
        pytester.makeconftest(WIRING)
        pytester.makepyfile(**(source if isinstance(source, dict) else {"test_suite": source}))
        root = pytester.path / "reports"
        result = pytester.runpytest("-p", "no:gpucluster", "-p", "pytest_gpucluster.report.plugin",
                                    "--gpucluster-report-dir", str(root), *args, no_reraise_ctrlc=True)
        return ReportRun(result, root)

    return run
