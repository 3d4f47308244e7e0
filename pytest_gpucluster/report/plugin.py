"""pytest hooks of the report: evidence on test reports, pytest-html sections, JUnit properties, summary.json, upload."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator

import pytest

from pytest_gpucluster.evidence import RECORD_KEY, evidence, unmet_criteria  # noqa: F401  (the fixture is served from here)
from pytest_gpucluster.options import run_options
from pytest_gpucluster.report.collector import EVIDENCE_ATTR, NODE_ATTR, HtmlHooks, ReportCollector, ReportState
from pytest_gpucluster.report.redact import redact, redact_obj
from pytest_gpucluster.packaged import collects_suites

STATE_KEY = pytest.StashKey[ReportState]()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _timestamped_dir(root: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    candidate.mkdir(parents=True)
    return candidate


def _start_html(config: pytest.Config, path: Path) -> None:
    """Have pytest-html write a self-contained report to `path`.

    pytest-html's own pytest_configure may already have run (when this plugin is registered late)
    or may run after us; calling it here with the path set, then clearing the option, gives exactly
    one report either way.
    """
    import pytest_html.plugin

    config.option.htmlpath = str(path)
    config.option.self_contained_html = True
    try:
        pytest_html.plugin.pytest_configure(config)
    finally:
        config.option.htmlpath = None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if _is_worker(config):
        return
    opts = run_options(config)
    state = ReportState(upload_url=opts.upload)
    config.stash[STATE_KEY] = state
    user_html = getattr(config.option, "htmlpath", None)
    root = opts.report_dir
    wanted = root is not None or state.upload_url is not None or (collects_suites(config) and not opts.no_report)
    if user_html:
        state.html_path = Path(user_html).expanduser().resolve()
        state.report_dir = state.html_path.parent
    elif wanted and config.pluginmanager.hasplugin("html"):
        state.report_dir = _timestamped_dir(Path(root or "reports").resolve())
        state.html_path = state.report_dir / "report.html"
        _start_html(config, state.html_path)
    elif wanted:
        state.report_dir = _timestamped_dir(Path(root or "reports").resolve())
    if state.report_dir is not None and not getattr(config.option, "xmlpath", None) and user_html is None:
        config.option.xmlpath = str(state.report_dir / "junit.xml")  # used if junitxml configures after us
    html = config.pluginmanager.hasplugin("html") and state.html_path is not None
    # the folder's recording, manifest and signature (imported by its full name, as collector.py does: one module
    # object, one stash key, even where pytester drops and re-imports modules between runs)
    from pytest_gpucluster.bundle.plugin import configure as configure_bundle
    configure_bundle(config, opts.sign, state.report_dir)
    config.pluginmanager.register(ReportCollector(config, state, html=html), "gpucluster-report-collector")
    if config.pluginmanager.hasplugin("html"):
        config.pluginmanager.register(HtmlHooks(state), "gpucluster-report-html")


def _node_of(item: pytest.Item) -> dict[str, Any] | None:
    """Node, instance type and zone of a test parametrized over a node (gpu_node/efa_node/cpu_node: `.name`) or a
    group of nodes of one type (e.g. NCCL's NodeGroup: `.nodes`), as
    `{"node": "a+b", "instance_type": ..., "zone": ..., "nodes": ["a", "b"], "zones": {"a": ..., "b": ...}}`."""
    callspec = getattr(item, "callspec", None)
    for value in (callspec.params.values() if callspec else ()):
        itype = getattr(value, "instance_type", None)
        if not isinstance(itype, str):
            continue
        name = getattr(value, "name", None)
        if isinstance(name, str):
            zone = getattr(value, "zone", None)
            return {"node": name, "instance_type": itype, "zone": zone if isinstance(zone, str) else None,
                    "nodes": [name], "zones": {name: zone} if isinstance(zone, str) else {}}
        members = list(getattr(value, "nodes", None) or ())
        names = [getattr(n, "name", None) for n in members]
        if names and all(isinstance(n, str) for n in names):
            zones = {str(getattr(n, "name")): z for n in members if isinstance(z := getattr(n, "zone", None), str)}
            return {"node": "+".join(str(n) for n in names), "instance_type": itype,
                    "zone": zones.get(str(names[0])), "nodes": [str(n) for n in names], "zones": zones}
    return None


@dataclass
class _Crash:
    path: str
    lineno: int
    message: str


class RedactedRepr:
    """A failure representation whose text went through redaction (terminal, JUnit, xdist, HTML)."""

    def __init__(self, text: str, crash: Any) -> None:
        self.text = text
        self.reprcrash = None if crash is None else _Crash(
            str(getattr(crash, "path", "")), int(getattr(crash, "lineno", 0)), redact(str(getattr(crash, "message", ""))))

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


def _redact_report(report: pytest.TestReport) -> None:
    """Scrub secrets from the failure text and captured output before any reporter sees them.

    A traceback that shows a secret is replaced by its redacted text (keeping the crash line for
    pytest's short summary and JUnit's message); clean reports are left untouched.
    """
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        clean = redact(text)
        if clean != text:
            # pytest accepts any TerminalRepr-like object (toterminal, __str__, reprcrash) here
            report.longrepr = RedactedRepr(clean, getattr(report.longrepr, "reprcrash", None))  # type: ignore[assignment]
    report.sections = [(header, redact(content)) for header, content in report.sections]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    record = item.stash.get(RECORD_KEY, None)
    if record is not None and call.when == "call":
        for m in record.measurements:  # JUnit <properties>: the key figures
            crit = "" if m.threshold is None else f" ({m.op} {m.threshold:g}: {'pass' if m.passed else 'FAIL'})"
            item.user_properties.append((m.name, f"{m.value:g} {m.unit}{crit}"))
    report = yield
    unmet = unmet_criteria(record) if record is not None and call.when == "call" and report.passed else None
    if unmet is not None:   # a failed criterion fails its test (evidence.unmet_criteria)
        report.outcome = "failed"
        report.longrepr = unmet
    _redact_report(report)
    node = _node_of(item)
    if node:
        setattr(report, NODE_ATTR, node)
    attach = call.when == "call" or (report.failed or report.skipped) and call.when == "setup"
    if record is not None and attach and not record.is_empty():
        # plain data (survives xdist); the controller renders it (collector.HtmlHooks) once it knows whether the
        # check keeps its row in the report or is folded into the grid and its evidence file
        setattr(report, EVIDENCE_ATTR, redact_obj(record.to_dict()))
    return report


