"""Running the real suites in a pytest subprocess and reading their JUnit XML (per test, per module)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Sequence

import yaml

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
MATRIX_FILE = Path(__file__).with_name("fault_matrix.yaml")
NO_WAIT_ENV = {"GPUCLUSTER_RETRY_NO_WAIT": "1"}
PASSED, FAILED, SKIPPED, ABSENT = "passed", "failed", "skipped", "absent"


@dataclass(frozen=True)
class Case:
    """One test case of a JUnit file: `suites.test_efa` / `test_x[node/itype]` and its outcome."""

    module: str          # test_efa
    name: str            # test_x[ip-10-0-1-2.../p5.48xlarge]
    outcome: str         # passed | failed | error | skipped
    message: str = ""

    @property
    def function(self) -> str:
        return self.name.split("[", 1)[0]

    @property
    def param(self) -> str:
        return self.name[len(self.function) + 1:-1] if "[" in self.name else ""

    @property
    def instance_type(self) -> str:
        """The `/instance-type` end of a node-parametrized id (house style: `name/instance-type`)."""
        return self.param.rsplit("/", 1)[1] if "/" in self.param else self.param

    @property
    def test_id(self) -> str:
        return f"{self.module}::{self.name}"


@dataclass
class SuiteRun:
    """What one `pytest suites --sim SCENARIO` subprocess did."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    junit: Path
    cases: list[Case] = field(default_factory=list)

    def tail(self, lines: int = 40) -> str:
        return "\n".join((self.stdout + "\n" + self.stderr).strip().splitlines()[-lines:])


def parse_junit(path: Path) -> list[Case]:
    """Every testcase of a pytest JUnit XML file. Raises FileNotFoundError / ET.ParseError as they come."""
    cases = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        module = tc.get("classname", "").rsplit(".", 1)[-1]
        outcome, message = PASSED, ""
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": FAILED, "error": "error", "skipped": SKIPPED}[child.tag]
                # The message attribute is the short form (long assertion messages are cut); the element
                # text holds the whole report, so a check's full message is searchable.
                message = "\n".join(part for part in (child.get("message", ""), child.text or "") if part)
                break
        cases.append(Case(module, tc.get("name", ""), outcome, message))
    return cases


def module_verdicts(cases: Sequence[Case]) -> dict[str, str]:
    """Per module: failed (any failure or error), passed (at least one pass, no failure), skipped (all skipped)."""
    by_module: dict[str, Counter[str]] = {}
    for case in cases:
        by_module.setdefault(case.module, Counter())[case.outcome] += 1
    out = {}
    for module, counts in by_module.items():
        if counts[FAILED] or counts["error"]:
            out[module] = FAILED
        elif counts[PASSED]:
            out[module] = PASSED
        else:
            out[module] = SKIPPED
    return out


def plugin_args() -> list[str]:
    """`-p pytest_gpucluster.plugin` unless the plugin's pytest11 entry point is installed (then it loads itself)."""
    installed = any(ep.value == "pytest_gpucluster.plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "pytest_gpucluster.plugin"]


def env_for_child(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, **NO_WAIT_ENV, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    env.update(extra or {})
    return env


def suite_command(target: Sequence[str], out_dir: Path, *paths: str, extra: Sequence[str] = ()) -> list[str]:
    """`python -m pytest <paths> <target> --junitxml=... --gpucluster-report-dir=...` with the checkout's suites."""
    return [sys.executable, "-m", "pytest", *(paths or ("suites",)), *target,
            f"--junitxml={out_dir / 'junit.xml'}", f"--gpucluster-report-dir={out_dir / 'reports'}",
            "-p", "no:cacheprovider", "-q", "-rA", *extra]


def run_suites(scenario: str, out_dir: Path, *paths: str, extra: Sequence[str] = (),
               timeout_s: float = 300.0) -> SuiteRun:
    """Run the suites against `--sim=SCENARIO` in ONE subprocess (cwd = checkout root), zero-wait retries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = suite_command([f"--sim={scenario}"], out_dir, *paths, extra=extra)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=ROOT, env=env_for_child(), capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"`pytest suites --sim={scenario}` did not finish within {timeout_s:.0f} s; "
                             f"output so far:\n{exc.stdout!r}\n{exc.stderr!r}") from exc
    run = SuiteRun(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0, out_dir / "junit.xml")
    if run.junit.exists():
        run.cases = parse_junit(run.junit)
    return run


def start_suites(target: Sequence[str], out_dir: Path, *paths: str, extra: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the suites in a subprocess (for interrupting it); stdout+stderr go to out_dir/output.txt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = (out_dir / "output.txt").open("w")
    return subprocess.Popen(suite_command(target, out_dir, *paths, extra=extra), cwd=ROOT, env=env_for_child(env),
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop_process(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> int:
    """Wait for a child; kill its process group if it does not end in time. Returns the exit code."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise AssertionError(f"pytest (pid {proc.pid}) did not end within {timeout_s:.0f} s; killed it") from None


VERDICTS = ("ACCEPTED", "NOT ACCEPTED", "INCOMPLETE")


def load_matrix(path: Path = MATRIX_FILE) -> dict:
    """The expected-outcome table: `modules` (what `all` means) and per scenario `must_fail` / `must_pass` and the
    `verdict` of summary.json (default: NOT ACCEPTED when a module must fail, else ACCEPTED)."""
    data = yaml.safe_load(path.read_text())
    modules = list(data["modules"])
    rows = {}
    for scenario, row in data["scenarios"].items():
        must_pass = row.get("must_pass") or []
        must_fail = list(row.get("must_fail") or [])
        verdict = str(row.get("verdict") or ("NOT ACCEPTED" if must_fail else "ACCEPTED"))
        if verdict not in VERDICTS:
            raise ValueError(f"{path}: scenarios.{scenario}.verdict must be one of {VERDICTS}, given {verdict!r}")
        rows[scenario] = {"must_fail": must_fail, "must_pass": modules if must_pass == "all" else list(must_pass),
                          "verdict": verdict, "why": str(row.get("why", "")).strip()}
    return {"modules": modules, "scenarios": rows}


def matrix_markdown(matrix: dict | None = None) -> str:
    """The expected-outcome table as Markdown (docs/reliability.md prints exactly this)."""
    matrix = matrix or load_matrix()
    everything = set(matrix["modules"])
    lines = ["| scenario | must fail | must pass | verdict | fault |", "|---|---|---|---|---|"]
    for scenario, row in matrix["scenarios"].items():
        passing = "all" if set(row["must_pass"]) == everything else ", ".join(row["must_pass"])
        lines.append(f"| {scenario} | {', '.join(row['must_fail']) or '(none)'} | {passing} | {row['verdict']} | "
                     f"{row['why']} |")
    return "\n".join(lines)


if __name__ == "__main__":      # print the table for docs/reliability.md
    print(matrix_markdown())
