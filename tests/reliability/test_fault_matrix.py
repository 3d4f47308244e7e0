"""Fault matrix: the suite per shipped scenario, judged test by test against fault_matrix.yaml."""
from __future__ import annotations

import ast
import json
from collections import Counter
from fnmatch import fnmatchcase
from typing import Callable

import pytest

from pytest_gpucluster.report.summary import INCOMPLETE_EXIT
from pytest_gpucluster.sim.scenario import list_scenarios

from .suite_runs import FAILED, SUITES, Case, SuiteRun, judge_row, load_matrix

MATRIX = load_matrix()
SCENARIOS = sorted(MATRIX)
# Slowest first, so xdist does not leave the long ones for last.
SCENARIOS.sort(key=lambda s: (s not in ("healthy", "api-flaky"), s))


def _summary(run: SuiteRun) -> dict:
    """The run's summary.json (the report folder beside its JUnit file), {} when there is none."""
    found = sorted(run.junit.parent.glob("reports/*/summary.json"))
    return json.loads(found[-1].read_text()) if found else {}


def _explain(run: SuiteRun) -> str:
    counts = Counter(c.outcome for c in run.cases)
    lines = [f"outcomes: {dict(sorted(counts.items()))}; exit code {run.returncode} after {run.seconds:.1f} s; "
             f"command: {' '.join(run.args[2:])}"]
    lines += [f"  {c.outcome.upper()} {c.test_id}: {c.message[:300]}" for c in run.cases
              if c.outcome in (FAILED, "error")][:16]
    if not run.cases:
        lines.append(f"no JUnit results; output:\n{run.tail()}")
    return "\n".join(lines)


def suite_functions() -> dict[str, set[str]]:
    """Test function names per suite module (test_nccl -> {test_...}), read from the source without importing it."""
    out = {}
    for path in sorted(SUITES.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        out[path.stem] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return out


def test_every_shipped_scenario_has_a_row() -> None:
    shipped = {name for name, _ in list_scenarios()}
    missing, stale = sorted(shipped - set(SCENARIOS)), sorted(set(SCENARIOS) - shipped)
    assert not missing and not stale, (
        f"tests/reliability/fault_matrix.yaml and pytest_gpucluster/sim/scenarios/ disagree: scenarios without "
        f"a row {missing}, rows without a scenario {stale}. Add a row naming the tests that must fail.")


def test_every_test_the_table_names_exists() -> None:
    functions = suite_functions()
    wrong = []
    for scenario, row in MATRIX.items():
        for module in row.modules:
            if module.removesuffix(".py") not in functions:
                wrong.append(f"{scenario}: modules names {module}, which suites/ does not have")
        for pattern in (*row.must_fail, *row.cascade_patterns):
            names = functions.get(pattern.module)
            if names is None:
                wrong.append(f"{scenario}: {pattern.text}: suites/ has no {pattern.module}.py")
            elif not any(fnmatchcase(name, pattern.function) for name in names):
                wrong.append(f"{scenario}: {pattern.text} matches no test function of {pattern.module}.py "
                             f"({', '.join(sorted(names))})")
    assert not wrong, "fault_matrix.yaml names tests the suites do not have:\n" + "\n".join(wrong)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_suite_outcome_matches_table(scenario: str, suite_result: Callable[[str], SuiteRun]) -> None:
    row = MATRIX[scenario]
    run = suite_result(scenario)
    assert run.cases, f"`pytest suites --sim={scenario}` produced no JUnit results.\n{_explain(run)}"
    wrong = judge_row(row, run.cases)
    summary = _summary(run)
    if row.verdict == "ACCEPTED":      # a test that fails without blocking is advisory, and says so (WARN)
        blocking = [c["nodeid"] for c in summary.get("checks", []) if c["outcome"] in ("failed", "error")]
        wrong += [f"{n} failed under {scenario} (ACCEPTED) without being advisory (summary.json outcome warned)"
                  for n in blocking]
    if summary.get("verdict") != row.verdict:
        wrong.append(f"the verdict of {scenario} must be {row.verdict}, summary.json says "
                     f"{summary.get('verdict', 'nothing (no summary.json)')}: {summary.get('verdict_reasons')}")
    assert not wrong, "\n".join(wrong) + "\n" + _explain(run)
    if row.verdict == "INCOMPLETE":      # nothing failed, evidence missing: exit 6, not pytest's 0
        assert run.returncode == INCOMPLETE_EXIT, f"INCOMPLETE must exit {INCOMPLETE_EXIT}, exited {run.returncode}"
    elif row.verdict == "ACCEPTED":
        assert run.returncode == 0, f"ACCEPTED must exit 0, exited {run.returncode}\n{run.tail()}"
    else:
        assert run.returncode == 1, f"NOT ACCEPTED must exit 1, exited {run.returncode}\n{run.tail()}"
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
