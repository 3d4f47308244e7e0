"""HTML fragments for the pytest-html report: verdict, criteria vs measured, fingerprint, per-test evidence."""
from __future__ import annotations

import hashlib
from html import escape
from typing import Any, Callable, Iterable, Sequence

from pytest_gpucluster.report.coverage import requirement_line
from pytest_gpucluster.report.evidence_files import summarise
from pytest_gpucluster.report.redact import redact
from pytest_gpucluster.report.summary import ACCEPTED, INCOMPLETE, CheckResult, verdict_line

# Inline styles (the report stays one self-contained file). `body` becomes a flex column so the
# verdict/criteria block (pytest-html's summary section) is the first thing under the title,
# above pytest-html's environment table.
STYLE = """
<style>
body { display: flex; flex-direction: column; }
body > * { order: 3; }
body > #title { order: 0; }
body > .summary { order: 1; }
body > #results-table { order: 4; }
body > footer { order: 5; }
.gc-verdict { padding: 12px 16px; margin: 8px 0 12px; border-radius: 6px; color: #fff; }
.gc-verdict h2 { margin: 0 0 4px; font-size: 28px; letter-spacing: 1px; color: #fff; }
.gc-accepted { background: #1e7b34; }
.gc-not-accepted { background: #b3261e; }
.gc-incomplete { background: #a15c00; }
td.gc-missing { color: #a15c00; font-weight: bold; }
.gc-verdict ul { margin: 4px 0 0 18px; padding: 0; }
.gc-counts span { margin-right: 14px; font-weight: bold; }
.gc-sim { display: inline-block; background: #6a3d9a; color: #fff; padding: 2px 8px;
          border-radius: 4px; font-weight: bold; margin-left: 8px; font-size: 14px; }
table.gc { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
table.gc th, table.gc td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
table.gc th { background: #f0f0f0; }
td.gc-pass { color: #1e7b34; font-weight: bold; }
td.gc-fail { color: #b3261e; font-weight: bold; }
.gc-evidence h4 { margin: 10px 0 4px; }
.gc-evidence pre { background: #f7f7f7; border: 1px solid #ddd; padding: 6px; overflow-x: auto;
                   font-size: 12px; max-height: 420px; }
.gc-plot svg { max-width: 100%; height: auto; }
.gc-section h3 { margin: 14px 0 4px; }
body > #gc-results-note { order: 3; }
table.gc-grid { border-collapse: collapse; table-layout: fixed; font-size: 12px; margin: 0; }
table.gc-grid th, table.gc-grid td { border: 1px solid #ddd; padding: 1px 4px; text-align: center; }
table.gc-grid th:first-child { width: 24em; text-align: left; font-weight: normal; overflow: hidden;
                               white-space: nowrap; text-overflow: ellipsis; }
table.gc-grid tr:first-child th { background: #f0f0f0; font-weight: bold; }
table.gc-grid td a { text-decoration: none; display: block; font-weight: bold; }
.gc-p, .gc-p a { color: #1e7b34; } .gc-f, .gc-f a { color: #fff; } td.gc-f { background: #b3261e; }
.gc-n, .gc-n a { color: #7a5200; } td.gc-n { background: #f6d98b; }
.gc-k, .gc-k a { color: #fff; } td.gc-k { background: #7b5ea7; } .gc-legend .gc-k { background: #7b5ea7; }
.gc-w, .gc-w a { color: #5c4a00; } td.gc-w { background: #fff1a8; } .gc-legend .gc-w { background: #fff1a8; }
p.gc-warn { background: #fff1a8; padding: 4px 8px; } tr.gc-warn th { background: #fffbe0; }
.gc-legend span { padding: 0 3px; } .gc-legend .gc-f { background: #b3261e; } .gc-legend .gc-n { background: #f6d98b; }
tr.gc-fail th { background: #fbe3e1; } tr.gc-not-shown th { background: #fdf3d8; }
details.gc-fold > summary { cursor: pointer; padding: 3px 4px; color: #1e7b34; font-weight: bold; }
.gc-plots { display: flex; flex-wrap: wrap; gap: 8px; }
.gc-plots figure { margin: 0; max-width: 640px; }
.gc-plots figcaption { font-size: 12px; color: #555; }
</style>
"""


def _e(value: Any) -> str:
    return escape(redact("" if value is None else str(value)))


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, raw: bool = False) -> str:
    """A table; cells are escaped unless `raw` (then callers pass ready HTML)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(c if raw else f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="gc"><tr>{head}</tr>{body}</table>'


def _fmt(value: float | None) -> str:
    """81559.0 -> "81,559"; 369.231 -> "369.2"; 0.125 -> "0.125" (no scientific notation for people)."""
    if value is None:
        return ""
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    if value == int(value):
        return str(int(value))
    return f"{value:.4g}"


def title(summary: dict[str, Any]) -> str:
    """Plain-text page title: verdict first, SIMULATED when it was the simulated cluster."""
    parts = [f"GPU cluster acceptance: {verdict_line(summary)}"]
    if summary.get("interrupted"):
        parts.append("PARTIAL (interrupted)")
    if summary.get("simulated"):
        parts.insert(0, "SIMULATED")
    parts.append(f"run {summary['run_id']}")
    return " \u2014 ".join(parts)


def verdict_block(summary: dict[str, Any]) -> str:
    """The sign-off banner: verdict, counts, why not accepted, and why each skip happened."""
    ok = summary["verdict"] == ACCEPTED and not summary.get("partial")
    amber = summary["verdict"] in (INCOMPLETE, ACCEPTED)     # INCOMPLETE, or ACCEPTED (partial: ...)
    css = "gc-accepted" if ok else "gc-incomplete" if amber else "gc-not-accepted"
    c = summary["counts"]
    sim = ""
    if summary.get("simulated"):
        sim = f'<span class="gc-sim">SIMULATED cluster ({_e(summary.get("scenario") or "sim")})</span>'
    reasons = "".join(f"<li>{_e(r)}</li>" for r in summary.get("verdict_reasons", []))
    counts = "".join(
        f"<span>{c.get(k, 0)} {label}</span>"
        for k, label in (("passed", "passed"), ("failed", "failed"), ("error", "errored"), ("skipped", "skipped"),
                         ("xfailed", "known failures (xfailed)"), ("xpassed", "known failures passed (xpassed)"),
                         ("warned", "advisory warnings (WARN)"))
    )
    altered = requirement_line(summary.get("requirements"))
    html = [
        f'<div id="gc-verdict" class="gc-verdict {css}">',
        f'<h2>{_e(verdict_line(summary))}{sim}</h2>',
        f'<div class="gc-counts">{counts}</div>',
        f"<ul>{reasons}</ul>" if reasons else "",
        f'<p id="gc-required-altered"><b>{_e(altered)}</b></p>' if altered else "",
        "</div>",
    ]
    html.append(coverage_block(summary.get("coverage") or []))
    html.append(warnings_block(summary.get("warnings") or []))
    skips = summary.get("skips", [])
    if skips:
        html.append('<div class="gc-section" id="gc-skips"><h3>Skipped checks and why</h3>')
        html.append(_table(("check", "reason"), skip_rows(skips)))
        html.append("</div>")
    return "".join(html)


SKIP_ROWS = 20
_COVERAGE_CSS = {"shown": "gc-pass", "failed": "gc-fail", "missing": "gc-missing", "not applicable": ""}


def warnings_block(warnings: list[dict[str, Any]]) -> str:
    """Advisory checks that failed (the profile's tiers:): shown, and why they do not block."""
    if not warnings:
        return ""
    rows = [(w["check"], str(w["count"]), w.get("message") or "", w.get("reason") or "") for w in warnings]
    return ('<div class="gc-section" id="gc-warnings"><h3>Advisory warnings (WARN: shown, not blocking)</h3>'
            + _table(("check", "checks", "first message", "why advisory (profile tiers:)"), rows) + "</div>")


def coverage_block(coverage: list[dict[str, Any]]) -> str:
    """Required evidence (the profile's `required:`): per item, shown / failed / missing on which subjects, why."""
    if not coverage:
        return ""
    rows = []
    for item in coverage:
        subjects = item.get("subjects") or []
        where = f"{len(subjects)} {item['scope']}(s)" if len(subjects) > 3 else ", ".join(subjects)
        why = "; ".join(dict.fromkeys(f"{m['subject']}: {m['reason']}" + (f" ({m['how']})" if m.get("how") else "")
                                      for m in (item.get("missing") or [])[:3]))
        if item.get("failed"):
            why = "failed on " + ", ".join(item["failed"][:5])
        css = _COVERAGE_CSS.get(item["status"], "")
        rows.append(f"<tr><td>{_e(item['name'])}</td><td class=\"{css}\">{_e(item['status'])}</td>"
                    f"<td>{_e(where or item.get('note', ''))}</td><td>{len(item.get('nodes') or [])}</td>"
                    f"<td>{_e(why)}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("required", "status", "on", "nodes covered", "missing: why, and how"))
    return ('<div class="gc-section" id="gc-coverage"><h3>Required evidence</h3>'
            f'<table class="gc"><tr>{head}</tr>{"".join(rows)}</table></div>')




def skip_rows(skips: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """One row per skip for a few; past SKIP_ROWS, one row per test (and reason) with the number of nodes."""
    if len(skips) <= SKIP_ROWS:
        return [(s["nodeid"], s.get("reason") or "") for s in skips]
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in skips:
        groups.setdefault(s["nodeid"].split("[", 1)[0], []).append(s)
    rows = []
    for name, members in groups.items():
        reasons = list(dict.fromkeys(s.get("reason") or "" for s in members))
        more = f" (+{len(reasons) - 1} other reason(s): see summary.json)" if len(reasons) > 1 else ""
        label = name if len(members) == 1 and "[" not in members[0]["nodeid"] else f"{name}[...] x{len(members)}"
        rows.append((label, reasons[0] + more))
    return rows


def criteria_block(summary: dict[str, Any]) -> str:
    """Acceptance criteria applied (profile values per instance type) beside what was measured."""
    out = ['<div class="gc-section" id="gc-criteria"><h3>Acceptance criteria applied and measured values</h3>']
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for check in summary.get("checks", []):
        for m in check.get("measurements", []):
            key = (m["name"], check.get("instance_type") or "", m.get("op"), m.get("threshold"), m.get("unit"),
                   m.get("source") or "")
            groups.setdefault(key, []).append(m)
    rows = []
    for (name, itype, op, threshold, unit, source), ms in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        values = [m["value"] for m in ms]
        judged = [m for m in ms if m.get("pass") is not None]
        failed = sum(1 for m in judged if not m["pass"])
        crit = "" if threshold is None else f"{op} {_fmt(threshold)} {unit}"
        lo, hi = _fmt(min(values)), _fmt(max(values))
        span = lo if lo == hi else f"{lo} \u2026 {hi}"
        measured = f"{span} {unit}" + (f" (n={len(values)})" if len(values) > 1 else "")
        if not judged:
            verdict_cell = "<td>recorded</td>"
        elif failed:
            verdict_cell = f'<td class="gc-fail">{failed}/{len(judged)} below criterion</td>'
        else:
            verdict_cell = f'<td class="gc-pass">{len(judged)}/{len(judged)} pass</td>'
        rows.append([f"<td>{_e(name)}</td>", f"<td>{_e(itype)}</td>", f"<td>{_e(crit)}</td>",
                     f"<td>{_e(measured)}</td>", verdict_cell, f"<td>{_e(source)}</td>"])
    if rows:
        out.append(_table(("measurement", "instance type", "criterion", "measured", "verdict", "criterion source"),
                          rows, raw=True))
    else:
        out.append("<p>No measurements were recorded.</p>")
    profile_values: dict[str, Any] = summary.get("profile", {}).get("values") or {}
    if profile_values:
        flat = {itype: _flatten(crit) for itype, crit in profile_values.items()}
        keys = list(dict.fromkeys(k for values in flat.values() for k in values if k != "instance_type"))
        out.append("<h4>Profile values per instance type present</h4>")
        out.append(_table(("profile value", *flat), ([k, *(flat[t].get(k, "") for t in flat)] for k in keys)))
    out.append("</div>")
    return "".join(out)


def fingerprint_block(summary: dict[str, Any]) -> str:
    """Cluster fingerprint: API version, inventory, component versions, profile and its sha256."""
    fp = summary.get("fingerprint", {})
    prof = fp.get("profile") or {}
    rows: list[tuple[str, str]] = [
        ("run id", summary.get("run_id", "")),
        ("cluster", "SIMULATED (scenario " + str(fp.get("scenario")) + ")" if fp.get("simulated") else "real"),
        ("API server version", fp.get("server_version") or "unknown"),
        ("nodes per instance type", ", ".join(f"{k}: {v}" for k, v in (fp.get("inventory") or {}).items()) or "unknown"),
    ]
    for comp, versions in (fp.get("components") or {}).items():
        rows.append((comp, ", ".join(versions)))
    for key, value in (fp.get("extra") or {}).items():
        rows.append((key, value))
    moving = fp.get("in_transition") or {}
    if moving:
        rows.append(("in transition (checks not shown)", "; ".join(f"{n} ({why})" for n, why in moving.items())))
    rows.append(("profile", f"{prof.get('path') or 'default'} (sha256 {prof.get('sha256') or 'unknown'})"))
    rows.append(("started / finished", f"{summary.get('started')} / {summary.get('finished')}"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<div class="gc-section" id="gc-fingerprint"><h3>Cluster fingerprint</h3><table class="gc">{body}</table></div>'



def evidence_block(evidence: dict[str, Any], *, failed: bool, anchor: str | None = None,
                   evidence_file: str | None = None, full: bool = True,
                   shown: dict[str, str] | None = None, owner: str = "", warned: str | None = None) -> str:
    """Per-test extras: measurements, parsed facts, raw outputs, plots; events/conditions on failure.

    `anchor` is the block's id (the grid links to it); `evidence_file` the node's complete evidence beside the
    report; `full=False` (a passing check of a type already shown in full) keeps the first and last lines of each
    raw output and no plot. `shown` (text digest -> check id, filled as rows are rendered) replaces an output
    already shown in full by another check (the health checks of one node share one probe's output) by a pointer."""
    ident = f' id="{escape(anchor)}"' if anchor else ""
    out = [f'<div class="gc-evidence"{ident}>']
    if warned is not None:
        out.append(f'<p class="gc-warn"><b>WARN: advisory check, does not block acceptance</b> ({_e(warned)})</p>')
    if evidence_file:
        out.append(f'<p>Complete evidence of this node: <a href="{escape(evidence_file)}">{escape(evidence_file)}</a></p>')
    ms = evidence.get("measurements", [])
    if ms:
        rows = []
        for m in ms:
            crit = "" if m.get("threshold") is None else f"{m['op']} {_fmt(m['threshold'])} {m['unit']}"
            cls, word = ("", "") if m.get("pass") is None else (("gc-pass", "pass") if m["pass"] else ("gc-fail", "FAIL"))
            rows.append([f"<td>{_e(m['name'])}</td>", f"<td>{_e(_fmt(m['value']))} {_e(m['unit'])}</td>",
                         f"<td>{_e(crit)}</td>", f'<td class="{cls}">{word}</td>', f"<td>{_e(m.get('source'))}</td>"])
        out.append("<h4>Measurements</h4>" + _table(("name", "measured", "criterion", "verdict", "source"), rows, raw=True))
    facts = evidence.get("facts", {})
    if facts:
        out.append("<h4>Parsed facts</h4>" + _table(("fact", "value"), _flatten(facts).items()))
    if full:
        for p in evidence.get("plots", []):
            out.append(f'<h4>{_e(p["title"])}</h4><div class="gc-plot">{p["svg"]}</div>')
    opened = " open" if failed else ""
    for a in evidence.get("attachments", []):
        digest = hashlib.sha1(a["text"].encode()).hexdigest()
        if shown is not None and shown.get(digest, owner) != owner:
            out.append(f'<details><summary><b>{_e(a["title"])}</b> ({_e(a.get("kind", "text"))})</summary>'
                       f'<p>The same text as the output of {_e(shown[digest])} in this report.</p></details>')
            continue
        if full and shown is not None and len(a["text"]) > 512:
            shown.setdefault(digest, owner)
        text = clip(a["text"]) if full or not evidence_file else summarise(a["text"], evidence_file)
        out.append(f'<details{opened}><summary><b>{_e(a["title"])}</b> ({_e(a.get("kind", "text"))})</summary>'
                   f'<pre>{_e(text)}</pre></details>')
    events = evidence.get("events", [])
    if events:
        table = _table(("type", "reason", "object", "message", "count", "last seen"),
                       ([e.get("type"), e.get("reason"), e.get("object"), e.get("message"), e.get("count"),
                         e.get("lastTimestamp")] for e in events))
        out.append(f'<details{opened}><summary><b>Pod events</b> ({len(events)})</summary>{table}</details>')
    for node, conds in (evidence.get("conditions") or {}).items():
        table = _table(("type", "status", "reason", "message", "since"),
                       ([c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("lastTransitionTime")]
                        for c in conds))
        out.append(f'<details{opened}><summary><b>Node conditions: {_e(node)}</b></summary>{table}</details>')
    out.append("</div>")
    return "".join(out)


def results_note(shown: int, total: int, checks: Sequence[CheckResult] = (),
                 evidence_file: Callable[[str | None], str | None] = lambda node: None) -> str:
    """Above pytest-html's table, when checks were folded out of it: what the table holds, and per test and type the
    failing / not-shown checks past its rows (each node linked to its evidence file)."""
    if shown >= total:
        return ""
    folded: dict[tuple[str, str, str], list[CheckResult]] = {}
    for c in checks:
        if not c.kept and c.outcome not in ("passed", "xfailed"):
            folded.setdefault((c.name.split("[", 1)[0], c.instance_type or "", c.outcome), []).append(c)
    out = [f'<div class="gc-section" id="gc-results-note"><p>The results table below lists {shown} of {total} '
           "checks: failing, errored and not-shown checks (the first few of each test and instance type in full, at "
           "most a few dozen rows each), and one passing check of each test and instance type in full. The other "
           "checks are marks in the grid above; their complete evidence is in evidence/&lt;node&gt;.txt.gz beside "
           "this report and their measurements and messages in summary.json.</p>"]
    if folded:
        rows = []
        for (name, itype, outcome), members in sorted(folded.items()):
            links = []
            for c in members:
                node = c.node or ""
                href = evidence_file(c.nodes[0] if c.nodes else c.node)
                label = escape(node.replace("+", " + "))
                links.append(f'<a href="{escape(href)}">{label}</a>' if href else label)
            word = "not shown" if outcome == "skipped" else outcome
            rows.append(f"<tr><td>{_e(name)}</td><td>{_e(itype)}</td><td>{_e(word)}</td><td>{len(members)}</td>"
                        f"<td>{', '.join(links)}</td></tr>")
        head = "".join(f"<th>{h}</th>" for h in ("check", "instance type", "outcome", "more", "on (evidence file)"))
        out.append("<h3>Also failing or not shown, without a row below</h3>"
                   f'<table class="gc"><tr>{head}</tr>{"".join(rows)}</table>')
    out.append("</div>")
    return "".join(out)


def html_outcome(report: Any) -> str:
    """pytest-html's outcome word for a phase report (its counters' key): Error for a failed setup/teardown."""
    if report.when in ("setup", "teardown") and report.failed:
        return "Error"
    if hasattr(report, "wasxfail"):
        return "XPassed" if report.outcome in ("passed", "failed") else "XFailed"
    return str(report.outcome).capitalize()


ATTACHMENT_LIMIT = 256 * 1024


def clip(text: str, limit: int = ATTACHMENT_LIMIT) -> str:
    """Keep head and tail of a huge output (a 500-node fleet's logs) so the page stays openable."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n\n[... {len(text) - limit:,} characters omitted from the report ...]\n\n{text[-half:]}"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"nccl": {"min_busbw": 300}} -> {"nccl.min_busbw": 300}; lists are joined."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for k, v in value.items():
            flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return {prefix: ", ".join(str(v) for v in value)}
    return {prefix: value}
