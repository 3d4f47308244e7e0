"""Fault matrix: the whole suite per shipped scenario, judged per module against fault_matrix.yaml."""
from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from pytest_gpucluster.report.summary import INCOMPLETE_EXIT
from pytest_gpucluster.sim.scenario import list_scenarios

from .suite_runs import (FAILED, PASSED, SUITES, Case, SuiteRun, load_matrix, matrix_markdown, module_verdicts,
                         parse_junit, run_suites)

MATRIX = load_matrix()
# Probe pods on the sim finish within a second or two; pods that can never run (no allocatable GPU, missing
# EFA) wait for this deadline instead of the 600 s default, so a fault scenario takes seconds, not minutes.
PROBE_TIMEOUT_S = 20
SCENARIOS = sorted(MATRIX["scenarios"])
# Slowest first, so xdist does not leave the long ones for last.
SCENARIOS.sort(key=lambda s: (s not in ("healthy", "api-flaky"), s))


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every xdist worker of this session sees (the basetemp's parent under xdist)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "fault-matrix"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def suite_result(shared_dir: Path) -> Callable[[str], SuiteRun]:
    """suite_result(scenario): the suites' run against that scenario, once per session across xdist workers
    (the healthy run serves both its matrix row and the api-flaky comparison)."""
    def get(scenario: str) -> SuiteRun:
        out = shared_dir / scenario
        out.mkdir(exist_ok=True)
        with open(out / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)        # another worker running the same scenario: wait for it
            done = out / "run.json"
            if done.exists():
                meta = json.loads(done.read_text())
                run = SuiteRun(meta["args"], meta["returncode"], meta["stdout"], meta["stderr"], meta["seconds"],
                               out / "junit.xml")
                run.cases = parse_junit(run.junit) if run.junit.exists() else []
                return run
            run = run_suites(scenario, out, extra=(f"--gpucluster-timeout={PROBE_TIMEOUT_S}",))
            done.write_text(json.dumps({"args": run.args, "returncode": run.returncode, "stdout": run.stdout,
                                        "stderr": run.stderr, "seconds": run.seconds}))
            return run
    return get


def _summary(run: SuiteRun) -> dict:
    """The run's summary.json (the report folder beside its JUnit file), {} when there is none."""
    found = sorted(run.junit.parent.glob("reports/*/summary.json"))
    return json.loads(found[-1].read_text()) if found else {}


def _explain(run: SuiteRun, verdicts: dict[str, str]) -> str:
    bad = [c for c in run.cases if c.outcome in (FAILED, "error")]
    lines = [f"module verdicts: {json.dumps(verdicts, sort_keys=True)}",
             f"exit code {run.returncode} after {run.seconds:.1f} s; command: {' '.join(run.args[2:])}"]
    lines += [f"  {c.outcome.upper()} {c.test_id}: {c.message[:300]}" for c in bad[:12]]
    if not run.cases:
        lines.append(f"no JUnit results; output:\n{run.tail()}")
    return "\n".join(lines)


def test_every_shipped_scenario_has_a_row() -> None:
    shipped = {name for name, _ in list_scenarios()}
    missing, stale = sorted(shipped - set(SCENARIOS)), sorted(set(SCENARIOS) - shipped)
    assert not missing and not stale, (
        f"tests/reliability/fault_matrix.yaml and pytest_gpucluster/sim/scenarios/ disagree: scenarios without "
        f"a row {missing}, rows without a scenario {stale}. Add a row saying which modules must fail and pass.")


def test_every_module_in_the_table_exists() -> None:
    present = {p.stem for p in SUITES.glob("test_*.py")}
    named = set(MATRIX["modules"])
    for row in MATRIX["scenarios"].values():
        named |= set(row["must_fail"]) | set(row["must_pass"])
    assert named <= present, (f"fault_matrix.yaml names suite modules that suites/ does not have: "
                              f"{sorted(named - present)} (present: {sorted(present)})")
    assert present <= set(MATRIX["modules"]), (f"suites/ has modules the table's `modules` (what `all` means) "
                                               f"does not list: {sorted(present - set(MATRIX['modules']))}")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_suite_outcome_matches_table(scenario: str, suite_result: Callable[[str], SuiteRun]) -> None:
    row = MATRIX["scenarios"][scenario]
    run = suite_result(scenario)
    assert run.cases, f"`pytest suites --sim={scenario}` produced no JUnit results.\n{_explain(run, {})}"
    verdicts = module_verdicts(run.cases)
    wrong = []
    for module in row["must_fail"]:
        if verdicts.get(module, "absent") != FAILED:
            wrong.append(f"{module} must FAIL under {scenario} ({row['why']}), observed "
                         f"{verdicts.get(module, 'absent')}: the check cannot see this fault")
    for module in row["must_pass"]:
        if verdicts.get(module, "absent") != PASSED:
            wrong.append(f"{module} must PASS under {scenario}, observed {verdicts.get(module, 'absent')}")
    summary = _summary(run)
    if summary.get("verdict") != row["verdict"]:
        wrong.append(f"the verdict of {scenario} must be {row['verdict']}, summary.json says "
                     f"{summary.get('verdict', 'nothing (no summary.json)')}: {summary.get('verdict_reasons')}")
    assert not wrong, "\n".join(wrong) + "\n" + _explain(run, verdicts)
    if row["verdict"] == "INCOMPLETE":      # nothing failed, evidence missing: exit 6, not pytest's 0
        assert run.returncode == INCOMPLETE_EXIT, f"INCOMPLETE must exit {INCOMPLETE_EXIT}, exited {run.returncode}"
    elif row["verdict"] == "ACCEPTED":
        assert run.returncode == 0, f"ACCEPTED must exit 0, exited {run.returncode}\n{run.tail()}"
    assert "TEARDOWN LEFT" not in run.stdout and "gpucluster: teardown clean" in run.stdout, (
        f"teardown after the {scenario} run did not report clean:\n{run.tail()}")


def _verdict_key(case: Case, node_names: dict[str, str]) -> tuple[str, str, str]:
    param = case.param
    for name, alias in node_names.items():
        param = param.replace(name, alias)
    return case.module, case.function, param


def _node_aliases(cases: list[Case]) -> dict[str, str]:
    """Node names in test ids -> `<instance-type>#<n>` in order of appearance (in case names differ per scenario)."""
    aliases: dict[str, str] = {}
    counters: Counter[str] = Counter()
    for case in cases:
        for part in case.param.split("/", 1)[0].split("+") if "/" in case.param else []:
            if part not in aliases:
                counters[case.instance_type] += 1
                aliases[part] = f"{case.instance_type}#{counters[case.instance_type]}"
    return aliases


def test_api_flaky_gives_the_verdicts_of_healthy(suite_result: Callable[[str], SuiteRun]) -> None:
    healthy, flaky = suite_result("healthy"), suite_result("api-flaky")
    assert healthy.cases and flaky.cases, "one of the runs produced no JUnit results:\n" + healthy.tail() + flaky.tail()
    same_ids = {c.test_id for c in healthy.cases} == {c.test_id for c in flaky.cases}
    h_alias = {} if same_ids else _node_aliases(healthy.cases)
    f_alias = {} if same_ids else _node_aliases(flaky.cases)
    want = {_verdict_key(c, h_alias): c for c in healthy.cases}
    got = {_verdict_key(c, f_alias): c for c in flaky.cases}
    diffs = []
    for key in sorted(set(want) | set(got)):
        w, g = want.get(key), got.get(key)
        if w is None or g is None or w.outcome != g.outcome:
            diffs.append(f"  {key[0]}::{key[1]}[{key[2]}]: healthy {w.outcome if w else 'absent'}, api-flaky "
                         f"{g.outcome if g else 'absent'}{': ' + g.message[:300] if g and g.message else ''}")
    assert not diffs, ("api-flaky must give exactly the verdicts of healthy (429/5xx/dropped connections are "
                       "retried by pytest_gpucluster/retry.py policies); differing tests:\n" + "\n".join(diffs))


def test_docs_print_the_table() -> None:
    doc = (SUITES.parent / "docs" / "reliability.md").read_text()
    assert matrix_markdown() in doc, ("docs/reliability.md must print tests/reliability/fault_matrix.yaml as "
                                      "tests/reliability/suite_runs.py:matrix_markdown() renders it; regenerate with "
                                      "`python -m tests.reliability.suite_runs`")
