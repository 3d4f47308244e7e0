"""`gpucluster run`: pytest on the shipped suites with every argument passed through."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from pytest_gpucluster.cli import run as runner

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpucluster")
    sub = parser.add_subparsers(dest="command")
    runner.add_arguments(sub.add_parser("run"))
    return parser.parse_args(argv)


def test_every_argument_after_run_belongs_to_pytest() -> None:
    assert parse(["run", "--sim", "-m", "gpu and not costly", "-x"]).pytest_args == [
        "--sim", "-m", "gpu and not costly", "-x"]
    assert parse(["run", "--help"]).pytest_args == ["--help"]
    assert parse(["run"]).pytest_args == []


def test_suites_are_the_package_data_of_pytest_gpucluster_suites() -> None:
    """One importlib.resources lookup: the installed package's copy, or (editable install) the checkout's suites/."""
    found = runner.suites_dir()
    assert found == resources.files("pytest_gpucluster.suites") and found.resolve() == ROOT / "suites"
    assert (found / "conftest.py").exists() and (found / "test_custom_example.py").exists()


def test_suites_not_installed_is_one_message_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pytest_gpucluster.suites", None)   # as if the package were not installed
    assert runner.run(parse(["run"])) == 2
    assert capsys.readouterr().err.startswith(
        "gpucluster run: package pytest_gpucluster.suites is not installed (import of pytest_gpucluster.suites "
        "halted; None in sys.modules): in a checkout run `pip install -e .`")


def test_run_executes_a_suite_module_against_the_simulated_cluster(plugin_args: list[str]) -> None:
    pytest.importorskip("pytest_gpucluster.sim.launcher", reason="simulated cluster not available yet")
    # A subprocess, as a user runs it (and so the suite module is not left in this process's sys.modules).
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPUCLUSTER_RETRY_NO_WAIT="1")
    proc = subprocess.run([sys.executable, "-m", "pytest_gpucluster.cli", "run", "test_custom_example.py", "--sim",
                           "--gpucluster-no-report", "--gpucluster-partial", "-p", "no:cacheprovider", *plugin_args],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout and "SIMULATED cluster (scenario healthy)" in proc.stdout
