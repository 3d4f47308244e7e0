"""What one check measured and judged: the `evidence` fixture's object and its serialisable record."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import pytest

from .checks.verdict import OPS, Criterion

ATTACHMENT_KINDS = ("text", "nvidia-smi", "fi_info", "nccl", "log", "yaml", "json", "manifest")
# A plot's kind says what the report may do with it beyond showing it in its check: a "timeline" (a new node's
# provisioning phases) is also one of the summary's headline plots (report/headline.py).
PLOT_KINDS = ("figure", "timeline")


# What `evidence.measure` records is the judges' Criterion: one type for a measured number and its criterion.
Measurement = Criterion


@dataclass
class Attachment:
    title: str
    text: str
    kind: str = "text"


@dataclass
class Plot:
    title: str
    svg: str
    kind: str = "figure"


@dataclass
class EvidenceRecord:
    """Everything one test recorded; `to_dict()` is what travels on the test report."""

    measurements: list[Measurement] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    conditions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    headline: dict[str, dict[str, Any]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not any((self.measurements, self.attachments, self.facts, self.plots,
                        self.events, self.conditions, self.versions, self.headline))

    def to_dict(self) -> dict[str, Any]:
        return {
            "measurements": [m.to_dict() for m in self.measurements],
            "attachments": [asdict(a) for a in self.attachments],
            "facts": dict(self.facts),
            "plots": [asdict(p) for p in self.plots],
            "events": list(self.events),
            "conditions": {k: list(v) for k, v in self.conditions.items()},
            "versions": dict(self.versions),
            "headline": {k: dict(v) for k, v in self.headline.items()},
        }


class Evidence:
    """The `evidence` fixture: what a check saw, so a person can re-judge it from the report.

    Methods only record; the test still asserts. Measurements with a threshold show up in the
    criteria table and in summary.json with their pass/fail; attachments are shown verbatim
    (after redaction) in the HTML report.
    """

    def __init__(self, record: EvidenceRecord | None = None) -> None:
        self.record = record if record is not None else EvidenceRecord()

    def measure(self, name: str, value: float, unit: str, *, threshold: float | None = None,
                op: str = ">=", source: str | None = None) -> Measurement:
        """Record a measured number; `threshold`/`op` is the criterion it was judged against.

        `source` says where the threshold came from, e.g. "profile p5.48xlarge nccl.min_busbw_gbps".
        Returns the Measurement; `.passed` is None when there is no threshold.
        """
        if op not in OPS:
            raise ValueError(f"evidence.measure({name!r}): op must be one of {sorted(OPS)}, given {op!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"evidence.measure({name!r}): value must be a number, given {value!r}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise TypeError(f"evidence.measure({name!r}): threshold must be a number, given {threshold!r}")
        m = Measurement(name, float(value), unit,
                        None if threshold is None else float(threshold), op, source)
        self.record.measurements.append(m)
        return m

    def attach(self, title: str, text: str, kind: str = "text") -> None:
        """Keep a raw output the check judged (nvidia-smi table, fi_info, NCCL table, logs)."""
        if kind not in ATTACHMENT_KINDS:
            raise ValueError(f"evidence.attach({title!r}): kind must be one of {ATTACHMENT_KINDS}, given {kind!r}")
        self.record.attachments.append(Attachment(title, str(text), kind))

    def fact(self, key: str, value: Any) -> None:
        """A parsed fact (e.g. "gpus_seen", 8); values should be JSON-serialisable."""
        self.record.facts[key] = _jsonable(value)

    def plot(self, title: str, svg: str, kind: str = "figure") -> None:
        """An SVG drawing (see pytest_gpucluster.report.plots) shown inline in the report; `kind` "timeline" also
        puts it among the summary's headline plots."""
        if "<svg" not in svg:
            raise ValueError(f"evidence.plot({title!r}): expected SVG markup, got {svg[:60]!r}")
        if kind not in PLOT_KINDS:
            raise ValueError(f"evidence.plot({title!r}): kind must be one of {PLOT_KINDS}, given {kind!r}")
        self.record.plots.append(Plot(title, svg, kind))

    def headline(self, key: str, **values: Any) -> None:
        """Numbers the summary's headline plots draw across checks (e.g. "nccl": the bus-bandwidth curve, node
        count, ceiling), as plain JSON values merged into `key`'s entry. Not shown in the check's own evidence:
        the report reads them instead of parsing facts or raw outputs again; summary.json keeps them."""
        self.record.headline.setdefault(key, {}).update({k: _jsonable(v) for k, v in values.items()})

    def events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Kubernetes events of the pods the check ran (core/v1 Event dicts or simplified dicts)."""
        self.record.events.extend(_event_row(e) for e in events)

    def node_conditions(self, node: str, conditions: Iterable[Mapping[str, Any]]) -> None:
        """The node's `.status.conditions` as the check saw them."""
        self.record.conditions[node] = [
            {k: _jsonable(c.get(k)) for k in ("type", "status", "reason", "message", "lastTransitionTime")
             if c.get(k) is not None}
            for c in conditions
        ]

    def version(self, component: str, version: str) -> None:
        """A component version for the cluster fingerprint (e.g. "nccl", "2.18.5")."""
        self.record.versions[component] = str(version)

    def versions(self, **components: str) -> None:
        """Several versions at once: `evidence.versions(driver="580.105.08", cuda="13.0")`."""
        for component, version in components.items():
            self.version(component, version)


def _event_row(e: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten a core/v1 (or events.k8s.io/v1) Event to the columns `kubectl describe` shows."""
    involved = e.get("involvedObject") or e.get("regarding") or {}
    return {
        "type": e.get("type"),
        "reason": e.get("reason"),
        "object": e.get("object") or (f"{involved.get('kind', '')}/{involved.get('name', '')}" if involved else None),
        "message": e.get("message") or e.get("note"),
        "count": e.get("count") or (e.get("series") or {}).get("count") or 1,
        "lastTimestamp": _jsonable(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")),
    }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return str(value)


def unmet_criteria(record: EvidenceRecord) -> str | None:
    """The failure text when a recorded criterion failed (None when every criterion held or none was judged).

    A measurement recorded with a threshold is a claim the report shows as pass/FAIL: a test that records a failed
    criterion and then passes would put a failed criterion inside a passed test, so the report plugin fails it."""
    failed = [m for m in record.measurements if m.passed is False]
    if not failed:
        return None
    parts = [f"{m.name} = {m.value:g} {m.unit}, required {m.op} {m.threshold:g}"
             + (f" ({m.source})" if m.source else "") for m in failed]
    return "criterion not met although the test passed: " + "; ".join(parts)


RECORD_KEY = pytest.StashKey[EvidenceRecord]()
"""Where the fixture leaves the test's record on `item.stash` for the report hooks."""


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    """Record measurements, raw outputs, facts, plots, events and versions for the report."""
    record = EvidenceRecord()
    request.node.stash[RECORD_KEY] = record
    return Evidence(record)
