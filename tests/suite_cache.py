"""One run of the real acceptance suites per scenario per session, shared by every test and xdist worker."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

from tests.reliability.suite_runs import (FAILED, GPUCLUSTER_RUN, PASSED, PYTEST, ROOT, SKIPPED, Case, SuiteRun,
                                         env_for_child, parse_junit, row_options, row_paths, run_suites,
                                         shipped_rows, suite_command)

# Probe pods on the sim finish within a second or two; pods that can never run (no allocatable GPU, missing
# EFA) wait for this deadline instead of the 600 s default. The fault matrix runs with exactly this option,
# so its cache entries and these are the same runs.
PROBE_TIMEOUT_S = 20
MATRIX_EXTRA = (f"--gpucluster-timeout={PROBE_TIMEOUT_S}",)
RUN_TIMEOUT_S = 300.0       # run_suites' default
# A folder that keeps the suite runs between sessions (a developer pinning fault-matrix rows judges the same runs
# again without making them again). Unset (CI, the default): each session makes its own runs under its basetemp.
KEEP_RUNS_ENV = "GPUCLUSTER_SUITE_CACHE"
ERROR = "error"
__all__ = ["FAILED", "PASSED", "SKIPPED", "ERROR", "SuiteSpec", "Results", "custom", "suite_run"]


@dataclass(frozen=True)
class SuiteSpec:
    """A suite run: a shipped scenario (the whole suite, the fault matrix's entry) or a custom scenario written from
    YAML text (the given suite files, extra options, a profile), run once per session for the same spec."""

    scenario: str                          # shipped scenario name, or the custom run's name
    scenario_yaml: str | None = None       # None: the shipped scenario
    paths: tuple[str, ...] = ()            # suite files relative to the checkout; () = the whole suites/
    extra: tuple[str, ...] = ()
    profile: str | None = None             # profile YAML passed with --gpucluster-profile

    @property
    def shipped(self) -> bool:
        return self.scenario_yaml is None

    def suite_paths(self) -> tuple[str, ...]:
        """The suite files the run collects: a shipped scenario's are its fault-matrix row's `modules` (the whole
        suite when the row has none), so every test reading a shipped scenario reads the matrix's run."""
        if self.shipped:
            row = shipped_rows().get(self.scenario)
            return row_paths(row) if row is not None else ()
        return self.paths

    def via(self) -> str:
        """The entry point: a shipped scenario's fault-matrix row may say `gpucluster run` (the nightly job's)."""
        row = shipped_rows().get(self.scenario) if self.shipped else None
        return row.via if row is not None else PYTEST

    def out_dir(self, shared: Path) -> Path:
        if self.shipped:
            return shared / "fault-matrix" / self.scenario
        key = hashlib.sha256(json.dumps([self.scenario_yaml, self.paths, self.extra, self.profile]).encode())
        return shared / "custom-suites" / f"{self.scenario}-{key.hexdigest()[:12]}"

    def arguments(self, out: Path) -> tuple[str, list[str]]:
        """The --sim target and the extra options of the run (writes the custom scenario and profile files)."""
        if self.shipped:
            row = shipped_rows().get(self.scenario)
            return self.scenario, [*MATRIX_EXTRA, *(row_options(row) if row is not None else ())]
        assert self.scenario_yaml is not None  # noqa: S101 - not shipped
        scenario = out / f"{self.scenario}.yaml"
        scenario.write_text(self.scenario_yaml)
        options = [*MATRIX_EXTRA, *self.extra]
        if self.profile is not None:
            (out / "profile.yaml").write_text(self.profile)
            options.append(f"--gpucluster-profile={out / 'profile.yaml'}")
        return str(scenario), options


def custom(name: str, body: str, *paths: str, extra: Iterable[str] = (), profile: str | None = None,
           extends: str = "healthy") -> SuiteSpec:
    """A custom scenario: `extends` (a shipped scenario) plus `body` (YAML top-level keys)."""
    return SuiteSpec(name, f"description: {name}\nextends: {extends}\n{body}", tuple(paths), tuple(extra), profile)


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every xdist worker of this session sees (the basetemp's parent under xdist), or the folder
    $GPUCLUSTER_SUITE_CACHE names (runs kept between sessions: delete it after changing the code under test)."""
    kept = os.environ.get(KEEP_RUNS_ENV)
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        return Path(kept)
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _load(out: Path) -> SuiteRun:
    meta = json.loads((out / "run.json").read_text())
    run = SuiteRun(meta["args"], meta["returncode"], meta["stdout"], meta["stderr"], meta["seconds"],
                   out / "junit.xml")
    run.cases = parse_junit(run.junit) if run.junit.exists() else []
    return run


def _store(out: Path, run: SuiteRun) -> SuiteRun:
    (out / "run.json").write_text(json.dumps({"args": run.args, "returncode": run.returncode, "stdout": run.stdout,
                                              "stderr": run.stderr, "seconds": run.seconds}))
    return run


def suite_run(shared: Path, spec: SuiteSpec) -> SuiteRun:
    """The spec's run, made once per session under `<shared>/...` (flock `.lock`, result `run.json` + `junit.xml`,
    exactly as tests/reliability/test_fault_matrix.py keeps them); other callers wait for it and read it."""
    out = spec.out_dir(shared)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # another worker running the same scenario: wait for it
        if (out / "run.json").exists():
            return _load(out)
        target, options = spec.arguments(out)
        return _store(out, run_suites(target, out, *spec.suite_paths(), extra=options, via=spec.via()))


def _run_stoppable(spec: SuiteSpec, out: Path, stop: threading.Event) -> SuiteRun | None:
    """run_suites' command, environment and result, in a child that is killed (None returned) once `stop` is set."""
    target, options = spec.arguments(out)
    args = suite_command([f"--sim={target}"], out, *spec.suite_paths(), extra=options, via=spec.via())
    t0 = time.monotonic()
    proc = subprocess.Popen(args, cwd=out if spec.via() == GPUCLUSTER_RUN else ROOT, env=env_for_child(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if stop.is_set() or time.monotonic() - t0 > RUN_TIMEOUT_S:
                proc.kill()
                proc.communicate()
                if stop.is_set():
                    return None
                raise AssertionError(f"`pytest suites --sim={target}` did not finish within {RUN_TIMEOUT_S:.0f} s "
                                     f"(started ahead of its tests)") from None
    run = SuiteRun(args, proc.returncode, stdout, stderr, time.monotonic() - t0, out / "junit.xml")
    if run.junit.exists():
        run.cases = parse_junit(run.junit)
    return run


class Prefetcher:
    """Starts the session's suite runs ahead of the tests that read them, `threads` at a time per process: each
    takes a spec whose lock nobody holds (non-blocking flock) and runs it. A suite run mostly waits on the
    simulated cluster, so running a few beside the tests keeps both cores busy. Errors are kept for close()."""

    def __init__(self, shared: Path, specs: list[SuiteSpec], threads: int) -> None:
        self.shared, self.pending = shared, list(specs)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"suite-prefetch-{i}", daemon=True)
                         for i in range(min(threads, len(specs)))]

    def start(self) -> Prefetcher:
        for thread in self._threads:
            thread.start()
        return self

    def _claim(self) -> Iterator[SuiteSpec]:
        """Specs not done yet, in order; each caller of next() sees the current list."""
        while not self.stop.is_set():
            with self._lock:
                todo = [s for s in self.pending if not (s.out_dir(self.shared) / "run.json").exists()]
                self.pending = todo
            if not todo:
                return
            yield from todo
            self.stop.wait(1.0)      # every remaining spec is being run by someone: look again shortly

    def _work(self) -> None:
        try:
            for spec in self._claim():
                if self.stop.is_set():
                    return
                out = spec.out_dir(self.shared)
                out.mkdir(parents=True, exist_ok=True)
                with open(out / ".lock", "w") as lock:
                    try:
                        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue            # a test or another prefetcher is running it
                    if (out / "run.json").exists():
                        continue
                    run = _run_stoppable(spec, out, self.stop)
                    if run is None:
                        return
                    _store(out, run)
        except (OSError, AssertionError, ValueError) as exc:   # recorded, raised at close()
            self.errors.append(exc)

    def close(self) -> None:
        """Stop starting runs, kill the ones in flight, wait for the threads; raise the first recorded error."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        if self.errors:
            raise RuntimeError(f"starting suite runs ahead of their tests failed: {self.errors[0]!r}") \
                from self.errors[0]


def specs_of(item: pytest.Item) -> list[SuiteSpec]:
    """The suite runs a collected test reads: its `suites(...)` marks (names of shipped scenarios or SuiteSpecs),
    SuiteSpec parameters, and a `scenario` parameter of a test using `suite_result`."""
    found: list[SuiteSpec] = []
    for mark in item.iter_markers("suites"):
        found += [a if isinstance(a, SuiteSpec) else SuiteSpec(str(a)) for a in mark.args]
    params = getattr(getattr(item, "callspec", None), "params", {})
    found += [p for p in params.values() if isinstance(p, SuiteSpec)]
    if "suite_result" in getattr(item, "fixturenames", ()) and isinstance(params.get("scenario"), str):
        found.append(SuiteSpec(params["scenario"]))
    return found


class Results:
    """A suite run as the end-to-end tests read it: outcomes per (test function, id) of some modules, failure
    messages, JUnit properties, the report's summary.json. Outcomes: passed | failed | skipped | error."""

    def __init__(self, run: SuiteRun, *modules: str) -> None:
        self.run = run
        self.modules = modules
        self.cases: list[Case] = [c for c in run.cases if not modules or c.module in modules]

    @property
    def outcomes(self) -> dict[tuple[str, str], str]:
        return {(c.function, c.param): c.outcome for c in self.cases}

    def of(self, test: str) -> dict[str, str]:
        """id -> outcome of one test function."""
        return {c.param: c.outcome for c in self.cases if c.function == test}

    def not_passed(self) -> dict[tuple[str, str], str]:
        return {key: outcome for key, outcome in self.outcomes.items() if outcome != PASSED}

    def failing(self) -> set[tuple[str, str]]:
        """(test, id) of every failed or errored case."""
        return {key for key, outcome in self.outcomes.items() if outcome in (FAILED, ERROR)}

    def failed_tests(self) -> set[str]:
        return {test for test, _ in self.failing()}

    def nodes(self) -> set[str]:
        return {c.param for c in self.cases}

    def messages(self, *outcomes: str) -> str:
        """The failure (or, given, other outcomes') messages of the selected cases, one after another."""
        wanted = outcomes or (FAILED, ERROR)
        return "\n".join(c.message for c in self.cases if c.outcome in wanted)

    def messages_of(self, test: str, ident: str | None = None) -> list[str]:
        return [c.message for c in self.cases if c.function == test and (ident is None or c.param == ident)]

    def skip_reasons(self) -> set[str]:
        """The distinct skip reasons (the first line of a skipped case's message: the JUnit `message`)."""
        return {c.message.split("\n", 1)[0] for c in self.cases if c.outcome == SKIPPED}

    @property
    def stdout(self) -> str:
        return self.run.stdout

    def properties(self) -> dict[tuple[str, str], dict[str, str]]:
        """(test, id) -> the JUnit properties (the report plugin's measurements) of the selected cases."""
        wanted = {(c.module, c.name): (c.function, c.param) for c in self.cases}
        out: dict[tuple[str, str], dict[str, str]] = {}
        for tc in ET.parse(self.run.junit).getroot().iter("testcase"):
            key = (tc.get("classname", "").rsplit(".", 1)[-1], tc.get("name", ""))
            if key in wanted:
                out[wanted[key]] = {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}
        return out

    def report_folder(self) -> Path:
        """The run's report folder (report.html, summary.json, junit.xml)."""
        root = self.run.junit.parent / "reports"
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []
        assert folders, f"no report folder under {root}\n{self}"
        return folders[-1]

    def checks(self) -> dict[str, dict[str, Any]]:
        """summary.json checks of the selected modules by `test[id]`."""
        summary = json.loads((self.report_folder() / "summary.json").read_text())
        return {str(c["name"]): c for c in summary["checks"]
                if not self.modules or Path(str(c["nodeid"]).split("::", 1)[0]).stem in self.modules}

    def measured(self, test_id: str) -> dict[str, float]:
        """name -> value of the measurements summary.json holds for `test[id]`."""
        return {m["name"]: m["value"] for m in self.checks()[test_id]["measurements"]}

    def __str__(self) -> str:
        """What an assertion message shows: the command, every outcome, the failures, the output's tail."""
        where = f" (modules {', '.join(self.modules)})" if self.modules else ""
        lines = [f"`{' '.join(self.run.args[2:])}` exit {self.run.returncode} after {self.run.seconds:.1f} s{where}"]
        lines += [f"  {c.outcome.upper():7} {c.test_id}" for c in self.cases]
        lines += [f"--- {c.outcome} {c.test_id}:\n{c.message[:1500]}" for c in self.cases if c.outcome != PASSED]
        if not self.cases:
            lines.append("no JUnit results for these modules")
        lines.append("--- output tail:\n" + self.run.tail(30))
        return "\n".join(lines)
