"""Running the real suites in a pytest subprocess, reading their JUnit XML, and the fault matrix's rows (per test)."""
from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Sequence

import yaml

from pytest_gpucluster.options import OPTIONS

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


OPTION_ENV = frozenset(opt.env for opt in OPTIONS if opt.env)


def env_for_child(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Bytecode caches are written, even where the environment says not to (PYTHONDONTWRITEBYTECODE: this one was set
    # here too): each of the ~40 suite runs of a CI run otherwise compiled the package from source in the pytest and
    # the simulated cluster's processes and rewrote the asserts of every plugin module pytest rewrites (the suites,
    # pytest_gpucluster, hypothesis). __pycache__ is git-ignored; writers replace cache files atomically, so
    # concurrent runs are safe.
    env = dict(os.environ, **NO_WAIT_ENV, PYTHONPATH=str(ROOT))
    # A suite run is configured by its arguments only: an option's environment fallback set for a moment by another
    # test of the same worker (monkeypatch.setenv GPUCLUSTER_CUDA_SMOKE_IMAGE in tests/plugin/test_options.py) would
    # otherwise reach a run the prefetch thread starts at that moment (it ran the smoke in an image without python3:
    # StartError on every node of that scenario, now and then in CI).
    for name in OPTION_ENV:
        env.pop(name, None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    env.update(extra or {})
    return env


PYTEST, GPUCLUSTER_RUN = "pytest", "gpucluster run"     # the entry points a suite run can go through


def suite_command(target: Sequence[str], out_dir: Path, *paths: str, extra: Sequence[str] = (),
                  via: str = PYTEST) -> list[str]:
    """`python -m pytest <paths> <target> --junitxml=... --gpucluster-report-dir=...` with the checkout's suites, or
    the nightly job's `gpucluster run <modules> <target> ...` (the installed suites folder as rootdir)."""
    # hypothesis (a test dependency, not the suites') imports itself at every run's terminal summary: ~1 s of CPU
    outputs = [f"--junitxml={out_dir / 'junit.xml'}", f"--gpucluster-report-dir={out_dir / 'reports'}",
               "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q", "-rA"]
    if via == GPUCLUSTER_RUN:
        modules = [Path(p).name for p in paths]
        return [sys.executable, "-m", "pytest_gpucluster.cli", "run", *modules, *target, *outputs, *extra]
    return [sys.executable, "-m", "pytest", *(paths or ("suites",)), *target, *outputs, *extra]


def run_suites(scenario: str, out_dir: Path, *paths: str, extra: Sequence[str] = (),
               timeout_s: float = 300.0, via: str = PYTEST) -> SuiteRun:
    """Run the suites against `--sim=SCENARIO` in ONE subprocess, zero-wait retries (cwd: the checkout root; the
    run's own folder for `gpucluster run`, which a nightly job starts outside any checkout)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = suite_command([f"--sim={scenario}"], out_dir, *paths, extra=extra, via=via)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=out_dir if via == GPUCLUSTER_RUN else ROOT, env=env_for_child(),
                              capture_output=True, text=True, timeout=timeout_s, check=False)
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
ROW_KEYS = {"verdict", "must_fail_tests", "cascade", "why", "modules", "via"}
OLD_ROW_KEYS = {"must_fail", "must_pass"}      # the per-module format: read and ignored while rows are converted
_PATTERN = re.compile(r"^(?P<module>test_\w+\.py)::(?P<function>[^\[\]]+)(?:\[(?P<param>.+)\])?$")


@dataclass(frozen=True)
class CasePattern:
    """`module.py::function` or `module.py::function[param-glob]`; the function and the parameters are globs."""

    text: str
    module: str          # test_node_health (the JUnit classname's last part)
    function: str
    param: str | None    # None: every case of the function

    @classmethod
    def parse(cls, text: str) -> "CasePattern":
        match = _PATTERN.match(str(text).strip())
        if match is None:
            raise ValueError(f"not a test pattern: {text!r} (write `test_module.py::test_function` or "
                             "`test_module.py::test_function[param-glob]`)")
        return cls(str(text).strip(), match["module"][:-3], match["function"], match["param"])

    def matches(self, case: Case) -> bool:
        return (case.module == self.module and fnmatchcase(case.function, self.function)
                and (self.param is None or fnmatchcase(case.param, self.param)))


@dataclass(frozen=True)
class Row:
    """What one shipped scenario must do to the suite (fault_matrix.yaml)."""

    scenario: str
    verdict: str
    must_fail: tuple[CasePattern, ...]
    cascade: dict[str, str]              # pattern text -> why a real cluster would fail it too
    why: str
    modules: tuple[str, ...] = ()        # the run is narrowed to these suite modules (with --gpucluster-partial)
    via: str = PYTEST                    # the entry point: `pytest suites` or the nightly job's `gpucluster run`

    @property
    def cascade_patterns(self) -> tuple[CasePattern, ...]:
        return tuple(CasePattern.parse(text) for text in self.cascade)


BAD = (FAILED, "error")


def judge_row(row: Row, cases: Sequence[Case]) -> list[str]:
    """What the run did that the row does not allow: a must-fail test that did not fail (or did not run), a test
    that failed or errored without being named (in must_fail_tests or cascade). Skips are the verdict's business."""
    problems = []
    for pattern in row.must_fail:
        matched = [c for c in cases if pattern.matches(c)]
        if not matched:
            problems.append(f"{pattern.text} must fail under {row.scenario} ({row.why}), but no such test ran")
        for case in matched:
            if case.outcome not in BAD:
                problems.append(f"{pattern.text} must fail under {row.scenario} ({row.why}): {case.test_id} "
                                f"{case.outcome}; the check cannot see this fault")
    allowed = (*row.must_fail, *row.cascade_patterns)
    for case in cases:
        if case.outcome in BAD and not any(p.matches(case) for p in allowed):
            first = case.message.strip().splitlines()[0][:300] if case.message.strip() else ""
            problems.append(f"{case.test_id} {case.outcome.upper()} under {row.scenario}, and the row neither "
                            f"requires it (must_fail_tests) nor allows it (cascade, with why): {first}")
    return problems


def _row(path: Path, scenario: str, raw: Any) -> Row:
    where = f"{path}: scenarios.{scenario}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping")
    unknown = set(raw) - ROW_KEYS - OLD_ROW_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(ROW_KEYS)})")
    if "verdict" not in raw or "must_fail_tests" not in raw:
        raise ValueError(f"{where}: a row needs `verdict` and `must_fail_tests` (per test, see the file's header); "
                         "`must_fail`/`must_pass` per module are no longer judged")
    verdict = str(raw["verdict"])
    if verdict not in VERDICTS:
        raise ValueError(f"{where}.verdict must be one of {VERDICTS}, given {verdict!r}")
    cascade = raw.get("cascade") or {}
    if not isinstance(cascade, dict) or not all(isinstance(v, str) and v.strip() for v in cascade.values()):
        raise ValueError(f"{where}.cascade: expected a mapping of test pattern -> why (a sentence)")
    modules = tuple(str(m) for m in raw.get("modules") or ())
    bad = [m for m in modules if not re.match(r"^test_\w+\.py$", m)]
    if bad:
        raise ValueError(f"{where}.modules: expected suite module file names (test_nccl.py), given {bad}")
    try:
        must_fail = tuple(CasePattern.parse(t) for t in raw["must_fail_tests"] or ())
        for text in cascade:
            CasePattern.parse(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    via = str(raw.get("via") or PYTEST)
    if via not in (PYTEST, GPUCLUSTER_RUN):
        raise ValueError(f"{where}.via must be {PYTEST!r} or {GPUCLUSTER_RUN!r}, given {via!r}")
    row = Row(scenario, verdict, must_fail, {str(k): str(v).strip() for k, v in cascade.items()},
              str(raw.get("why") or "").strip(), modules, via)
    if not row.why:
        raise ValueError(f"{where}.why: say in one sentence what the fault is and what must see it")
    outside = [p.text for p in (*must_fail, *row.cascade_patterns) if modules and f"{p.module}.py" not in modules]
    if outside:
        raise ValueError(f"{where}: {outside} name modules the narrowed run ({list(modules)}) does not run")
    return row


def load_matrix(path: Path = MATRIX_FILE) -> dict[str, Row]:
    """The expected outcome per shipped scenario (fault_matrix.yaml), validated; ValueError says file and row."""
    data = yaml.safe_load(path.read_text()) or {}
    return {str(s): _row(path, str(s), raw) for s, raw in (data.get("scenarios") or {}).items()}


@functools.cache
def shipped_rows() -> dict[str, Row]:
    """fault_matrix.yaml's rows, read once per process (every suite run of a shipped scenario consults its row)."""
    return load_matrix()


def row_paths(row: Row) -> tuple[str, ...]:
    """The suite paths of a row's run: its `modules` under suites/, or () for the whole suite."""
    return tuple(f"suites/{m}" for m in row.modules)


def row_options(row: Row) -> tuple[str, ...]:
    """A narrowed row says so: --gpucluster-partial forgives the modules it leaves out, nothing else."""
    return ("--gpucluster-partial",) if row.modules else ()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def matrix_markdown(matrix: dict[str, Row] | None = None) -> str:
    """The expected-outcome table as Markdown (`python -m tests.reliability.suite_runs`)."""
    matrix = matrix or load_matrix()
    lines = ["| scenario | verdict | must fail | may also fail (why) | fault |", "|---|---|---|---|---|"]
    for scenario, row in matrix.items():
        fail = "<br>".join(f"`{_cell(p.text)}`" for p in row.must_fail) or "(none)"
        cascade = "<br>".join(f"`{_cell(k)}`: {_cell(v)}" for k, v in row.cascade.items()) or "-"
        name = scenario + (f" ({', '.join(row.modules)} only)" if row.modules else "")
        name += f" (through `{row.via}`)" if row.via != PYTEST else ""
        lines.append(f"| {name} | {row.verdict} | {fail} | {cascade} | {_cell(row.why)} |")
    return "\n".join(lines)


if __name__ == "__main__":      # the matrix as a table to read
    print(matrix_markdown())
