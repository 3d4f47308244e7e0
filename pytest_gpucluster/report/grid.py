"""The node-by-check grid: one row per node, one column per check area; failing and incomplete nodes first,
passing nodes of one instance type and zone folded into one line."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from html import escape
from typing import Callable, Iterable, Sequence

from pytest_gpucluster.report.areas import AREAS, CLUSTER, area_of, nodes_of
from pytest_gpucluster.report.summary import CheckResult

# cell states, worst first; a cell shows the worst state of its area's checks on that node. A known failure
# (xfailed) shows nothing about the check: it is drawn apart from a pass and makes the node incomplete. WARN: an
# advisory check (the profile's tiers:) failed; shown, not blocking.
FAIL, KNOWN, NOT_SHOWN, WARN, PASS = "fail", "known failure", "not shown", "warn", "pass"
_RANK = {FAIL: 0, KNOWN: 1, NOT_SHOWN: 2, WARN: 3, PASS: 4}
_STATE = {"failed": FAIL, "error": FAIL, "xpassed": FAIL, "xfailed": KNOWN, "skipped": NOT_SHOWN, "warned": WARN,
          "passed": PASS}
_MARK = {FAIL: ("gc-f", "\u2717"), KNOWN: ("gc-k", "xf"), NOT_SHOWN: ("gc-n", "?"), WARN: ("gc-w", "!"),
         PASS: ("gc-p", "\u2713")}
FOLD_AT = 6                       # passing nodes of one type and zone: more than this fold into one line

Link = Callable[[CheckResult, "str | None"], str]   # (check, row's node) -> href


@dataclass
class Cell:
    state: str
    checks: list[CheckResult] = field(default_factory=list)

    def add(self, check: CheckResult) -> None:
        self.checks.append(check)
        state = _STATE.get(check.outcome, FAIL)
        if _RANK[state] < _RANK[self.state]:
            self.state = state

    @property
    def worst(self) -> CheckResult:
        return min(self.checks, key=lambda c: _RANK[_STATE.get(c.outcome, FAIL)])


@dataclass
class Row:
    node: str
    instance_type: str
    zone: str
    cells: dict[str, Cell] = field(default_factory=dict)
    state: str = PASS

    def add(self, area: str, check: CheckResult) -> None:
        self.cells.setdefault(area, Cell(PASS)).add(check)


def node_state(row: Row, uniform: frozenset[tuple[str, str]], missing: frozenset[str] = frozenset()) -> str:
    """FAIL if any check failed or errored on the node; NOT_SHOWN if evidence the profile requires of this node is
    missing (`missing`: report/coverage.nodes_missing), a known failure stands in for a check, or a check could not
    be judged on this node while it could on others of its type (a not-shown check on every node of a type says
    nothing about one node); else WARN if an advisory check warned, else PASS."""
    states = [c.state for c in row.cells.values()]
    if FAIL in states:
        return FAIL
    if row.node in missing or KNOWN in states:
        return NOT_SHOWN
    if any(c.state == NOT_SHOWN and (row.instance_type, a) not in uniform for a, c in row.cells.items()):
        return NOT_SHOWN
    return WARN if WARN in states else PASS


def blame(row: Row) -> tuple[int, int]:
    """Sort key of failing nodes, most to blame first: failed checks of this node alone (a multi-node check
    fails every node of its group), then failing areas."""
    alone = sum(1 for c in row.cells.values() for k in c.checks
                if _STATE.get(k.outcome, FAIL) == FAIL and "+" not in (k.node or ""))
    return -alone, -sum(1 for c in row.cells.values() if c.state == FAIL)


# A node's own multi-node NCCL result (suites/test_nccl.py: a failed group's nodes are re-tested with good partners)
# decides its cell, not the result of the group it happened to be paired into, so the healthy partner stays green.
OWN_RESULT = "::test_node_passes_nccl_across_nodes["


def _follow_own_result(row: Row) -> None:
    for cell in row.cells.values():
        own = [c for c in cell.checks if OWN_RESULT in c.nodeid]
        if not own:
            continue
        kept = [c for c in cell.checks if "+" not in (c.node or "")]
        cell.state = PASS
        for check in kept:
            state = _STATE.get(check.outcome, FAIL)
            if _RANK[state] < _RANK[cell.state]:
                cell.state = state


def build_rows(checks: Iterable[CheckResult], missing: frozenset[str] = frozenset()
               ) -> tuple[list[Row], Row | None, frozenset[tuple[str, str]]]:
    """Rows per node (multi-node checks mark every node of their group), the cluster-wide row, and the
    (instance type, area) pairs whose not-shown state is the same on every node of the type."""
    rows: dict[str, Row] = {}
    cluster = Row(CLUSTER, "", "")
    for check in checks:
        area = area_of(check.nodeid)
        names = nodes_of(check.nodeid, check.node, check.nodes)
        if not names:
            cluster.add(area, check)
            continue
        for name in names:
            row = rows.get(name)
            if row is None:
                zone = (check.zones or {}).get(name) or check.zone or ""
                row = rows[name] = Row(name, check.instance_type or "unknown", zone)
            row.add(area, check)
    for row in rows.values():
        _follow_own_result(row)
    per_type: dict[str, list[Row]] = {}
    for row in rows.values():
        per_type.setdefault(row.instance_type, []).append(row)
    uniform = frozenset(
        (itype, area) for itype, rs in per_type.items() for area in {a for r in rs for a in r.cells}
        if all(area in r.cells and r.cells[area].state == NOT_SHOWN for r in rs))
    for row in rows.values():
        row.state = node_state(row, uniform, missing)
    return list(rows.values()), (cluster if cluster.cells else None), uniform


def grid_block(checks: Sequence[CheckResult], link: Link, evidence_file: Callable[[str | None], str | None],
               missing: frozenset[str] = frozenset()) -> str:
    """The grid's HTML: a table of failing and incomplete nodes (and small groups), then one <details> line per
    folded group of passing nodes of one instance type and zone. `missing`: nodes lacking required evidence."""
    rows, cluster, uniform = build_rows(checks, missing)
    present = {a for r in rows for a in r.cells} | (set(cluster.cells) if cluster else set())
    areas = [a for a in AREAS if a in present]
    if not areas:
        return ""
    def key(r: Row) -> tuple[str, str, str]:
        return r.instance_type, r.zone, r.node

    bad = sorted((r for r in rows if r.state == FAIL), key=lambda r: (*blame(r), *key(r)))
    incomplete = sorted((r for r in rows if r.state == NOT_SHOWN), key=key)
    groups: dict[tuple[str, str], list[Row]] = {}      # nodes with no failure: passing, or advisory warnings only
    for r in sorted((r for r in rows if r.state in (PASS, WARN)), key=key):
        groups.setdefault((r.instance_type, r.zone), []).append(r)
    small = [r for g in groups.values() if len(g) <= FOLD_AT for r in g]
    folded = {k: g for k, g in groups.items() if len(g) > FOLD_AT}

    width = 7 * len(areas) + 24
    head = "<tr><th>node</th>" + "".join(f"<th>{escape(a)}</th>" for a in areas) + "</tr>"
    counts = Counter(r.state for r in rows)
    out = ['<div class="gc-section" id="gc-grid"><h3>Nodes and checks</h3>',
           f'<p class="gc-legend">{len(rows)} nodes: {counts[FAIL]} failing, {counts[NOT_SHOWN]} incomplete, '
           + (f'{counts[WARN]} with advisory warnings, ' if counts[WARN] else '')
           + f'{counts[PASS]} passing. <span class="gc-p">\u2713</span> pass '
           '<span class="gc-f">\u2717</span> fail <span class="gc-n">?</span> not shown (could not be judged) '
           '<span class="gc-k">xf</span> known failure (xfail: not evidence) <span class="gc-w">!</span> WARN (an '
           'advisory check failed: shown, not blocking). A mark other than a pass links to the check in this report '
           '(or the node\'s evidence file); a node\'s name links to its complete evidence file.</p>',
           f'<table class="gc-grid" style="width:{width}em">{head}']
    for r in bad:
        out.append(_row_html(r, areas, link, evidence_file(r.node)))
    if cluster is not None:     # after the failing nodes: a failing node is the first row
        out.append(_row_html(cluster, areas, link, evidence_file(None), "gc-cluster"))
    for r in [*incomplete, *small]:
        out.append(_row_html(r, areas, link, evidence_file(r.node)))
    out.append("</table>")
    for (itype, zone), group in folded.items():
        skipped = sorted({a for a in areas if (itype, a) in uniform})
        note = f"; not shown on every node: {', '.join(skipped)}" if skipped else ""
        where = f" in {zone}" if zone else ""
        warned = [r for r in group if r.state == WARN]
        areas_warned = sorted({a for r in warned for a, c in r.cells.items() if c.state == WARN})
        verdict = (f"no failure; advisory warnings on {len(warned)} ({', '.join(areas_warned)})" if warned
                   else "all pass")
        out.append(f'<details class="gc-fold"><summary>{len(group)} {escape(itype)} nodes{escape(where)}: '
                   f'{escape(verdict)}{escape(note)}</summary><table class="gc-grid" style="width:{width}em">')
        out.extend(_row_html(r, areas, link, evidence_file(r.node), terse=True) for r in group)
        out.append("</table></details>")
    out.append("</div>")
    return "".join(out)


def _row_html(row: Row, areas: Sequence[str], link: Link, file: str | None, cls: str = "",
              terse: bool = False) -> str:
    label = escape(row.node)
    if file is not None:
        label = f'<a href="{escape(file)}">{label}</a>'
    where = " ".join(x for x in (row.instance_type, row.zone) if x)
    head = f'<th title="{escape(where)}">{label}</th>' if terse else f"<th>{label} <small>{escape(where)}</small></th>"
    cells = []
    for area in areas:
        cell = row.cells.get(area)
        if cell is None:
            cells.append("<td></td>")
            continue
        css, mark = _MARK[cell.state]
        if cell.state == PASS:
            # A pass mark would link to the node's evidence file, which the node's name links to already: ~0.6 KB
            # per node of links and tooltips repeated in every row of a 200-node grid.
            cells.append(f'<td class="{css}">{mark}</td>')
            continue
        worst = cell.worst
        node = None if row.node == CLUSTER else row.node
        cells.append(f'<td class="{css}"><a href="{escape(link(worst, node))}" '
                     f'title="{escape(_tip(cell, worst, row.node), quote=True)}">{mark}</a></td>')
    return f'<tr class="{cls or "gc-" + row.state.replace(" ", "-")}">{head}{"".join(cells)}</tr>'


def _tip(cell: Cell, worst: CheckResult, node: str) -> str:
    """`3 check(s): 1 fail, 2 pass. test_x: failed: <message>`: the row names the node, so the tip does not."""
    n = Counter(_STATE.get(c.outcome, FAIL) for c in cell.checks)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(n.items(), key=lambda kv: _RANK[kv[0]]))
    name = worst.name.split("[", 1)[0]
    text = (worst.message or worst.skip_reason or "").replace(f"{node}/{worst.instance_type}: ", "")
    return f"{len(cell.checks)} check(s): {counts}. {name}: {worst.outcome}" + (f": {text[:160]}" if text else "")
