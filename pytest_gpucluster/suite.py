"""What a thin suite needs besides its fixtures: enforce a Verdict (record its evidence, then pass, fail or skip)."""
from __future__ import annotations

from typing import Any, NoReturn

import pytest

from .checks.verdict import Status, Verdict
from .evidence import Evidence


def record(verdict: Verdict, evidence: Evidence | Any) -> None:
    """Put the verdict's criteria and facts into the test's evidence (shown in the report and summary.json)."""
    for c in verdict.criteria:
        evidence.measure(c.name, c.value, c.unit, threshold=c.threshold, op=c.op, source=c.source)
    for key, value in verdict.facts.items():
        evidence.fact(key, value)
    if verdict.observed:
        evidence.fact("observed", verdict.observed)


def enforce(verdict: Verdict, evidence: Evidence | Any) -> None:
    """Record the verdict, then: PASS returns, FAIL fails the test with the verdict's message (no traceback),
    NOT_SHOWN skips it with the reason the evidence is missing and how to get it."""
    record(verdict, evidence)
    if verdict.status is Status.FAIL:
        fail(verdict.message)
    if verdict.status is Status.NOT_SHOWN:
        pytest.skip(verdict.message)


def fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)
