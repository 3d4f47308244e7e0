"""Controller-side report hooks: gather check results, write summary.json, fill pytest-html's sections, upload."""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from html import escape
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator

import pytest

from pytest_gpucluster import __version__
from pytest_gpucluster.report import headline
from pytest_gpucluster.report import html as html_parts
from pytest_gpucluster.report.areas import check_name, nodes_of, split_nodeid
from pytest_gpucluster.report.coverage import nodes_missing, requirement_line
from pytest_gpucluster.report.evidence_files import EvidenceFolder, check_text, file_name
from pytest_gpucluster.report.grid import grid_block
from pytest_gpucluster.report.runinfo import get_run, new_run_id, run_info
from pytest_gpucluster.report.summary import (
    ACCEPTED, INCOMPLETE, INCOMPLETE_EXIT, NOT_ACCEPTED, WARNED, CheckResult, apply_tier, build_summary, verdict_line,
    write_summary,
)
from pytest_gpucluster.packaged import in_suites
from pytest_gpucluster.tiers import Tiers

EVIDENCE_ATTR = "gpucluster_evidence"    # dict set on TestReport (plain data: survives xdist)
NODE_ATTR = "gpucluster_node"            # {"node": ..., "instance_type": ..., "zone": ..., "nodes": [...]}
KEEP_PASSING_ROWS = 150                  # passing checks kept as rows (summarised) before only one per test and type
FULL_PER_CHECK = 5                       # failing / not-shown checks of one test and type with their outputs in full
ROWS_PER_CHECK = 20                      # ... with a row at all; past it, the results note lists the nodes, linked
                                         # to their evidence files (a test failing on 200 nodes: 5 MB of rows)


@dataclass
class ReportState:
    """Per-run report state, kept in config.stash on the controller process."""

    started: float = field(default_factory=time.time)
    fallback_id: str = field(default_factory=new_run_id)
    report_dir: Path | None = None
    html_path: Path | None = None
    upload_url: str | None = None
    checks: dict[str, CheckResult] = field(default_factory=dict)
    collected: int = 0
    summary: dict[str, Any] | None = None
    summary_path: Path | None = None
    uploaded: list[str] = field(default_factory=list)
    upload_error: str | None = None
    evidence: EvidenceFolder | None = None     # evidence/<node>.txt.gz beside the report
    dropped: set[str] = field(default_factory=set)   # passing checks without a row in the results table
    shown_in_full: set[tuple[str, str]] = field(default_factory=set)   # (check name, instance type)
    kept_passing: int = 0
    full_counts: dict[tuple[str, str], int] = field(default_factory=dict)   # failing/not-shown rows in full
    shown_texts: dict[str, str] = field(default_factory=dict)   # digest of an output shown in full -> its check
    deselected: set[tuple[str, str]] = field(default_factory=set)   # (module file, function) dropped by -m/-k
    suite_run: bool = False     # the acceptance suites took part: the profile's required evidence is judged


def anchor(nodeid: str) -> str:
    """The id of a check's evidence block in the report (the grid links to it)."""
    return "gc-ev-" + hashlib.sha1(nodeid.encode()).hexdigest()[:12]


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
    return reason.removeprefix("Skipped: ")


def _first_line(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    message = getattr(getattr(report.longrepr, "reprcrash", None), "message", None)
    if message and str(message).strip():
        return str(message).strip().splitlines()[0]
    lines = (report.longreprtext or "").strip().splitlines()
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    return (errors or lines)[0] if (errors or lines) else None


def exit_code(verdict: str, status: int | pytest.ExitCode, reported: bool) -> int | pytest.ExitCode:
    """The exit code follows the verdict of a run that reports one (a suite run, or a report was asked for), where
    pytest's own code is 0 or 1 (tests passed / failed): ACCEPTED 0 (also when the only failures were advisory
    checks), INCOMPLETE 6, NOT ACCEPTED 1 (everything skipped, a known failure that passed, objects left on the
    cluster). pytest's other codes (interrupted 2, internal error 3, usage 4, nothing collected 5) stay."""
    if not reported or status not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return status
    if verdict == INCOMPLETE:
        return INCOMPLETE_EXIT      # a nightly job must not pass on missing evidence (docs/report.md)
    if verdict == NOT_ACCEPTED:
        return pytest.ExitCode.TESTS_FAILED
    return pytest.ExitCode.OK


class ReportCollector:
    """Builds CheckResults from test reports; writes each finished check to the evidence folder, decides whether it
    keeps a row in the HTML results table (and renders that row's evidence); writes summary.json and uploads."""

    def __init__(self, config: pytest.Config, state: ReportState, html: bool = False) -> None:
        self.config = config
        self.state = state
        self.html = html
        self.phases: dict[str, list[pytest.TestReport]] = {}
        if state.report_dir is not None and state.evidence is None:
            state.evidence = EvidenceFolder(state.report_dir)

    def _check(self, nodeid: str) -> CheckResult:
        return self.state.checks.setdefault(nodeid, CheckResult(nodeid))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            check = self._check(report.nodeid or "<collection>")
            check.outcome, check.message = "error", _first_line(report)
            where = report.nodeid.split("::", 1)[0]
            self.state.suite_run = self.state.suite_run or bool(where) and in_suites(self.config.rootpath / where)

    # A suite run is one that collected (or deselected) a test of the shipped suites, by the file's location: the
    # test ids depend on the rootdir (`gpucluster run` makes the suites folder the rootdir), the location does not.
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.state.collected = len(session.items)
        self.state.suite_run = self.state.suite_run or any(in_suites(i.path) for i in session.items)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.state.deselected.add(split_nodeid(item.nodeid))
            self.state.suite_run = self.state.suite_run or in_suites(item.path)

    @pytest.hookimpl(tryfirst=True)   # before pytest-html reads the row's extras (its hook is trylast)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        check = self._check(report.nodeid)
        check.duration_s += report.duration
        node = getattr(report, NODE_ATTR, None)
        if node:
            check.node, check.instance_type = node["node"], node["instance_type"]
            check.zone, check.nodes, check.zones = node.get("zone"), list(node.get("nodes") or []), dict(
                node.get("zones") or {})
        ev = getattr(report, EVIDENCE_ATTR, None)
        if ev:
            check.evidence = ev
        xfail = hasattr(report, "wasxfail")
        if report.when == "setup":
            if report.failed:
                check.outcome, check.message = "error", _first_line(report)
            elif report.skipped:
                check.outcome, check.skip_reason = ("xfailed", None) if xfail else ("skipped", _skip_reason(report))
        elif report.when == "call":
            if report.failed:
                check.outcome, check.message = "failed", _first_line(report)
            elif report.skipped:
                check.outcome, check.skip_reason = ("xfailed", None) if xfail else ("skipped", _skip_reason(report))
            elif xfail:
                check.outcome = "xpassed"
        elif report.when == "teardown" and report.failed and check.outcome in ("passed", "skipped"):
            check.outcome, check.message = "error", _first_line(report)
        self.phases.setdefault(report.nodeid, []).append(report)
        if report.when == "teardown":
            self._finish(check, self.phases.pop(report.nodeid))

    def _tiers(self) -> Tiers | None:
        """The profile's tiers (read when a check finishes: the Session's profile gains a scenario overlay on connect)."""
        tiers = getattr(getattr(get_run(self.config), "profile", None), "tiers", None)
        return tiers if isinstance(tiers, Tiers) else None

    def _finish(self, check: CheckResult, reports: list[pytest.TestReport]) -> None:
        """The check is complete: evidence file, headline data, row or no row, then keep only what summary.json
        and the grid need in memory."""
        state, ev = self.state, check.evidence
        apply_tier(check, self._tiers())
        nodes: list[str | None] = list(nodes_of(check.nodeid, check.node, check.nodes)) or [None]
        longrepr = "\n".join(r.longreprtext for r in reports if r.failed and r.longreprtext)
        if state.evidence is not None:
            state.evidence.add(nodes, check_text(check.nodeid, check.outcome, check.message or check.skip_reason,
                                                 longrepr, ev))
        check.headline = headline.extract(check.nodeid, ev) if ev else {}
        full = True
        if check.outcome in ("passed", "xfailed"):
            key = (check_name(check.nodeid), check.instance_type or "")
            full = key not in state.shown_in_full
            state.shown_in_full.add(key)
            check.kept = full or state.kept_passing < KEEP_PASSING_ROWS
            state.kept_passing += check.kept
        else:   # failing and not-shown checks keep their rows, the first few of a test and type in full, up to a cap
            key = (check_name(check.nodeid), f"{check.instance_type}:{check.outcome}")
            state.full_counts[key] = state.full_counts.get(key, 0) + 1
            full = state.full_counts[key] <= FULL_PER_CHECK
            check.kept = state.full_counts[key] <= ROWS_PER_CHECK
        if not check.kept:
            state.dropped.add(check.nodeid)
        elif self.html:
            target = next((r for r in reports if r.when == "call"), None) or next(
                (r for r in reports if r.failed or r.skipped), reports[-1])
            from pytest_html import extras

            block = html_parts.evidence_block(ev, failed=check.outcome not in ("passed", "xfailed"),
                                              warned=check.tier_reason if check.outcome == WARNED else None,
                                              anchor=anchor(check.nodeid), full=full,
                                              evidence_file=file_name(nodes[0]) if state.evidence else None,
                                              shown=state.shown_texts, owner=check.nodeid.split("::")[-1])
            target.extras = [*getattr(target, "extras", []), extras.html(block)]  # type: ignore[attr-defined]
        check.evidence = {k: ev[k] for k in ("measurements", "facts", "versions", "headline") if k in ev}

    def build(self, session: pytest.Session, exitstatus: int | pytest.ExitCode) -> dict[str, Any]:
        info = run_info(self.config, self.state.fallback_id)
        stopped = bool(session.shouldstop or session.shouldfail)
        info.interrupted = info.interrupted or exitstatus == pytest.ExitCode.INTERRUPTED or stopped
        finished = time.time()
        doc = build_summary(info, list(self.state.checks.values()), started=_iso(self.state.started),
                            finished=_iso(finished), duration_s=finished - self.state.started,
                            tool_version=__version__, judge_required=self.state.suite_run,
                            deselected=self.state.deselected)
        from pytest_gpucluster.bundle.plugin import summary_fields
        doc.update(summary_fields(self.config))      # a re-judged run says from which recording, with which profile
        not_run = max(self.state.collected - sum(1 for c in self.state.checks.values()), 0)
        doc["counts"]["not_run"] = not_run if info.interrupted else 0
        return doc

    # trylast: innermost wrapper, so the upload happens after pytest-html/junitxml wrote their files and
    # before the terminal reporter prints our summary lines
    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session,
                             exitstatus: int | pytest.ExitCode) -> Generator[None, None, None]:
        for nodeid, reports in list(self.phases.items()):   # interrupted: checks that never reached teardown
            self._finish(self._check(nodeid), reports)
        self.phases.clear()
        # The Session's teardown has happened by now (plugin.py's sessionfinish wraps this one), so its leftovers are
        # in the verdict, and summary.json and the exit code say the same thing.
        self.state.summary = self.build(session, exitstatus)
        if self.state.report_dir is not None:
            self.state.summary_path = write_summary(self.state.report_dir / "summary.json", self.state.summary)
        if self.state.evidence is not None:
            self.state.evidence.finish()
        session.exitstatus = exit_code(self.state.summary["verdict"], session.exitstatus,
                                       reported=self.state.suite_run or self.state.report_dir is not None)
        try:
            yield  # pytest-html and junitxml write their files here
        finally:
            if self.state.report_dir is not None:   # the manifest: after every other file, before the upload
                from pytest_gpucluster.bundle.plugin import seal_report
                seal_report(self.config, self.state.report_dir, self.state.summary)
            if self.state.upload_url and self.state.report_dir is not None:
                self._upload(session)

    def _upload(self, session: pytest.Session) -> None:
        """After pytest-html and junitxml wrote their files; boto3's credential chain (AWS_* env, profile,
        IRSA/pod identity in the CronJob). With --sim the simulated cluster's moto has stopped by now."""
        from pytest_gpucluster.aws.errors import AwsCallFailed, AwsUnavailable
        from pytest_gpucluster.aws.s3 import S3UrlError, upload_folder

        folder, url = self.state.report_dir, self.state.upload_url
        assert folder is not None and url is not None
        try:
            self.state.uploaded = list(upload_folder(folder, url))
        except (AwsUnavailable, AwsCallFailed, S3UrlError, OSError) as exc:
            self.state.upload_error = (f"upload of {folder} to {url} failed: {exc}; "
                                       "the report is still on local disk")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR  # a nightly job must notice lost reports

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        doc = self.state.summary
        if doc is None or self.state.report_dir is None and doc["verdict"] != INCOMPLETE:   # no report asked for
            return
        tr = terminalreporter
        color = ({"red": True} if doc["verdict"] == NOT_ACCEPTED else {"green": True} if doc["verdict"] == ACCEPTED
                 and not doc.get("partial") else {"yellow": True})
        tr.write_sep("=", f"gpucluster verdict: {verdict_line(doc)}", bold=True, **color)
        for reason in doc["verdict_reasons"]:
            tr.write_line(f"  - {reason}")
        altered = requirement_line(doc.get("requirements"))
        if altered:
            tr.write_line(f"  ! {altered}", yellow=True)
        for w in doc.get("warnings") or ():
            tr.write_line(f"  WARN (advisory, does not block) {w['check']} on {w['count']} check(s): {w['reason']}",
                          yellow=True)
        if doc["verdict"] == INCOMPLETE:
            tr.write_line(f"exit {INCOMPLETE_EXIT}: required evidence is missing; get it as said above, or pass "
                          "--gpucluster-partial if the run was narrowed on purpose (docs/report.md)", yellow=True)
        if self.state.html_path is not None:
            tr.write_line(f"report:  {self.state.html_path}")
        if self.state.summary_path is not None:
            tr.write_line(f"summary: {self.state.summary_path}")
        if self.state.uploaded and self.state.report_dir is not None:
            dest = f"{str(self.state.upload_url).rstrip('/')}/{self.state.report_dir.name}/"
            tr.write_line(f"uploaded {len(self.state.uploaded)} file(s) to {dest}")
        if self.state.upload_error:
            tr.write_line(f"ERROR: {self.state.upload_error}", red=True)


class HtmlHooks:
    """pytest-html hooks (registered only when pytest-html is active, so its hookspecs exist)."""

    def __init__(self, state: ReportState) -> None:
        self.state = state
        self.report_data: Any = None

    def pytest_html_report_title(self, report: Any) -> None:
        self.report_data = report  # pytest-html's ReportData; its title is re-set once the verdict is known
        report.title = "GPU cluster acceptance (run in progress)"

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: pytest.Session) -> None:
        doc = self.state.summary
        if doc is None:
            return
        if self.report_data is not None:
            self.report_data.title = html_parts.title(doc)
        checks = list(self.state.checks.values())
        evidence_file = file_name if self.state.evidence is not None else (lambda node: None)

        def link(check: CheckResult, node: str | None) -> str:
            if check.kept and check.outcome not in ("passed", "xfailed") or evidence_file(node) is None:
                return f"#{anchor(check.nodeid)}"
            return str(evidence_file(node))

        shown = sum(1 for c in checks if c.kept)
        prefix.extend([html_parts.STYLE, html_parts.verdict_block(doc),
                       grid_block(checks, link, evidence_file, nodes_missing(doc.get("coverage") or [])),
                       headline.headline_block(checks, (doc.get("profile") or {}).get("values") or {}),
                       html_parts.criteria_block(doc), html_parts.fingerprint_block(doc),
                       html_parts.results_note(shown, len(checks), checks, evidence_file)])

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, "<th>Key figures</th>")

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        if report.nodeid in self.state.dropped:     # folded into the grid, the results note and the evidence file
            counted = report.when == "call" or report.when in ("setup", "teardown") and not report.passed
            if counted and self.report_data is not None:
                self.report_data.outcomes = html_parts.html_outcome(report)   # pytest-html's counter still counts it
            cells.clear()
            return
        ev = getattr(report, EVIDENCE_ATTR, None) or {}
        figures = []
        for m in ev.get("measurements", [])[:4]:
            mark = "" if m.get("pass") is None else (" \u2713" if m["pass"] else " \u2717")
            figures.append(escape(f"{m['name']}: {m['value']:.4g} {m['unit']}{mark}"))
        cells.insert(2, f'<td class="col-figures">{"<br>".join(figures)}</td>')
