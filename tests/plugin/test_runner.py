"""`gpucluster run`: pytest on the shipped suites with every argument passed through."""
from __future__ import annotations

import argparse

import pytest

from pytest_gpucluster import cli, runner


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


def test_suites_are_found_in_the_package_or_the_checkout() -> None:
    found = runner.suites_dir()
    assert (found / "conftest.py").exists() and (found / "test_custom_example.py").exists()


def test_run_executes_a_suite_module_against_the_simulated_cluster(plugin_args: list[str],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pytest_gpucluster.sim.launcher", reason="simulated cluster not available yet")
    code = cli.main(["run", "test_custom_example.py", "--sim", "--gpucluster-no-report", "-p", "no:cacheprovider",
                     *plugin_args])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 passed" in out and "SIMULATED cluster (scenario healthy)" in out
