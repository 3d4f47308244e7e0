"""The Verdict every judge returns: pass / fail / not shown, with expected, observed, the fix and its criteria."""
from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}


class Status(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    NOT_SHOWN = "not shown"      # the evidence needed to judge is missing: never a pass


@dataclass(frozen=True)
class Criterion:
    """One measured number and the criterion it was judged against (threshold None: recorded, not judged)."""

    name: str
    value: float
    unit: str
    threshold: float | None = None
    op: str = ">="
    source: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"Criterion {self.name!r}: op must be one of {sorted(OPS)}, given {self.op!r}")

    @property
    def passed(self) -> bool | None:
        """True/False against the threshold; None when nothing was required."""
        return None if self.threshold is None else OPS[self.op](self.value, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "threshold": self.threshold,
                "op": self.op, "source": self.source, "pass": self.passed}


@dataclass(frozen=True)
class Verdict:
    """The judgement on one subject (a node, a pair of nodes, a NodePool, an AWS resource).

    `message` is what a failing (or not-shown) test prints: subject, expected, observed, then the fix.
    """

    status: Status
    subject: str
    expected: str = ""
    observed: str = ""
    fix: str = ""
    criteria: tuple[Criterion, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""                    # a one-line headline (e.g. "GPU count mismatch"); optional

    @property
    def ok(self) -> bool:
        return self.status is Status.PASS

    @property
    def message(self) -> str:
        head = f"{self.summary} on {self.subject}" if self.summary else self.subject
        if self.status is Status.NOT_SHOWN:
            text = f"{head}: cannot judge: {self.observed}" if self.observed else f"{head}: cannot judge"
            return f"{text}; {self.fix}" if self.fix else text
        text = f"{head}: expected {self.expected}; observed {self.observed}"
        return f"{text}. {self.fix}" if self.fix and self.status is Status.FAIL else text

    @classmethod
    def passed(cls, subject: str, expected: str = "", observed: str = "", **kw: Any) -> "Verdict":
        return cls(Status.PASS, subject, expected, observed, **kw)

    @classmethod
    def failed(cls, subject: str, expected: str, observed: str, fix: str = "", **kw: Any) -> "Verdict":
        return cls(Status.FAIL, subject, expected, observed, fix, **kw)

    @classmethod
    def not_shown(cls, subject: str, why: str, how: str = "", **kw: Any) -> "Verdict":
        """The evidence is missing: `why` it could not be shown, `how` to get it."""
        return cls(Status.NOT_SHOWN, subject, observed=why, fix=how, **kw)

    @classmethod
    def from_problems(cls, subject: str, expected: str, problems: list[str], fix: str = "",
                      observed_ok: str = "as expected", **kw: Any) -> "Verdict":
        """FAIL listing `problems` (joined by "; "), PASS when there are none."""
        if problems:
            return cls.failed(subject, expected, "; ".join(problems), fix, **kw)
        return cls.passed(subject, expected, observed_ok, **kw)
