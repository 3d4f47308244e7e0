"""Report size and render time at 10, 200 and 1,000 simulated GPU nodes (issue 18), printed as a table.

Each size is either a REAL run (`pytest --sim scale-N`, every suite module, report plugin on) or a SYNTHESISED one:
the pytest reports of a real run are captured (this module is loaded into that run as a plugin, `-p report_scale`),
then replayed by a generated suite with the shipped modules' file and test names over N nodes (node names
substituted in every text), through the same report plugin and pytest-html. A 1,000-node real run needs ~20+ min of
CPU on the 2-core VM, so 1,000 is synthesised by default; the table says which each row is.

    python benchmarks/report_scale.py                    # real 10 and 200, synthesised 1000 (from the 10-node run)
    python benchmarks/report_scale.py --real 10 --synth 10 200 1000
    python benchmarks/report_scale.py --keep /tmp/reports   # keep the report folders
    python benchmarks/report_scale.py --real --synth 200 --bad-night --capture tests/report/data/capture-healthy.jsonl.gz

Multi-node checks are replayed over the fleet in disjoint groups of the captured group's size (100 pairs at 200
nodes); --bad-night adds, per size, a run where the checks of BAD_NIGHT fail on every node and group.

Columns: nodes, checks, grid rows (nodes), results-table rows, report.html size, evidence folder size,
summary.json size and per node, headless Chromium wall time to load and render (`--dump-dom`, median of 3).
"""
from __future__ import annotations

import argparse
import fnmatch
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CAPTURE_ENV = "GPUCLUSTER_REPORT_CAPTURE"     # the capture plugin's output file (JSON lines)
# A bad night at fleet scale: node health and nvidia-smi fail on every node, both multi-node NCCL checks on every group.
BAD_NIGHT = {"test_nvlink_and_fabric_ready": 1.0, "test_nvidia_smi_sees_every_gpu": 1.0,
             "test_bus_bandwidth_across_nodes_meets_floor": 1.0, "test_all_reduce_is_correct_across_nodes": 1.0}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000"]


# -- capture plugin (runs inside the real pytest run) -----------------------------------------------------------
def pytest_runtest_logreport(report: Any) -> None:
    """Write each finished phase of a test as one JSON line: outcome, message, node attribution, evidence."""
    path = os.environ.get(CAPTURE_ENV)
    if not path or (report.when != "call" and not (report.failed or report.skipped)):
        return
    msg = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        msg = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed:
        msg = getattr(getattr(report.longrepr, "reprcrash", None), "message", None) or report.longreprtext
    line = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome, "message": str(msg),
            "node": getattr(report, "gpucluster_node", None), "evidence": getattr(report, "gpucluster_evidence", None)}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


# -- the generated suite (replays captured reports over N nodes) -------------------------------------------------
SYNTH_MODULE = '''
import json, pytest
from dataclasses import dataclass

@dataclass(frozen=True)
class N:
    name: str
    instance_type: str
    zone: str

@dataclass(frozen=True)
class G:
    instance_type: str
    nodes: tuple

TEMPLATES = json.load(open({templates!r}))[{module!r}]
NODES = json.load(open({nodes!r}))

def _replay(t, subs, evidence, failing=False):
    def s(x):
        if isinstance(x, str):
            for a, b in subs:
                x = x.replace(a, b)
            return x
        if isinstance(x, list):
            return [s(v) for v in x]
        if isinstance(x, dict):
            return {{s(k): s(v) for k, v in x.items()}}
        return x
    ev = s(t["evidence"] or {{}})
    for m in ev.get("measurements", []):
        evidence.measure(m["name"], m["value"], m["unit"], threshold=m["threshold"], op=m["op"], source=m["source"])
    for k, v in ev.get("facts", {{}}).items():
        evidence.fact(k, v)
    for a in ev.get("attachments", []):
        evidence.attach(a["title"], a["text"], kind=a["kind"])
    for p in ev.get("plots", []):
        evidence.plot(p["title"], p["svg"])
    evidence.events(ev.get("events", []))
    for node, conds in ev.get("conditions", {{}}).items():
        evidence.node_conditions(node, conds)
    evidence.versions(**ev.get("versions", {{}}))
    if failing:                               # an injected failure (--fail): the check's own evidence, failed
        pytest.fail(f"synthesised failure of {{t['function']}}: " + s(t["message"] or "as captured, but failed"),
                    pytrace=False)
    if t["outcome"] == "failed":
        pytest.fail(s(t["message"]), pytrace=False)
    if t["outcome"] == "skipped":
        pytest.skip(s(t["message"]))

def _params(t):
    node = t["node"]
    fail = t.get("fail", 0)
    if node is None:
        return [pytest.param(None, [], fail > 0, id=t["id"])]
    if len(node.get("nodes") or []) > 1:      # a multi-node group: the fleet in disjoint groups of that size
        names, itype = node["nodes"], node["instance_type"]
        size = len(names)
        groups = [NODES[i:i + size] for i in range(0, len(NODES) - size + 1, size)]
        return [pytest.param(G(itype, tuple(N(m["name"], itype, m["zone"]) for m in g)),
                             list(zip(names, [m["name"] for m in g])), i < fail,
                             id="+".join(m["name"] for m in g) + "/" + itype) for i, g in enumerate(groups)]
    if t["per_type"]:                         # one node per instance type (single-node NCCL)
        return [pytest.param(N(node["node"], node["instance_type"], node.get("zone") or ""), [], fail > 0,
                             id=t["id"])]
    return [pytest.param(N(n["name"], n["instance_type"], n["zone"]), [(node["node"], n["name"])], i < fail,
                         id=f"{{n['name']}}/{{n['instance_type']}}") for i, n in enumerate(NODES)]

def _make(t):
    @pytest.mark.parametrize("target,subs,failing", _params(t))
    def test(target, subs, failing, evidence):
        _replay(t, subs, evidence, failing)
    test.__name__ = t["function"]
    return test

for _t in TEMPLATES:
    globals()[_t["function"]] = _make(_t)
'''
SYNTH_CONFTEST = '''
from pytest_gpucluster.report.options import add_report_options

def pytest_addoption(parser):
    add_report_options(parser.getgroup("gpucluster"))
'''


def templates(capture: Path) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """One template per test function (the first node's report), grouped by module; and the template node name."""
    text = gzip.decompress(capture.read_bytes()).decode() if capture.suffix == ".gz" else capture.read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    last: dict[str, dict[str, Any]] = {}
    for r in rows:                      # the call report, or the setup report of a check skipped/failed there
        last[r["nodeid"]] = r
    by_fn: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in last.values():
        path, _, rest = r["nodeid"].partition("::")
        fn = rest.split("[", 1)[0]
        by_fn.setdefault((Path(path).stem, fn), []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    first_node = ""
    for (module, fn), rs in by_fn.items():
        node_rs = [r for r in rs if r["node"]]
        singles = [r for r in node_rs if len(r["node"].get("nodes") or []) <= 1]
        if node_rs and not first_node and singles:
            first_node = singles[0]["node"]["node"]
        per_node_count = len({r["node"]["node"] for r in singles})
        for r in (rs if not node_rs else [node_rs[0]]):
            nodeid = r["nodeid"]
            out.setdefault(module, []).append({
                "function": fn, "id": nodeid.split("[", 1)[1].rstrip("]") if "[" in nodeid else "x",
                "outcome": r["outcome"], "message": r["message"], "node": r["node"], "evidence": r["evidence"],
                # a test run on one node of a type only (single-node NCCL with --gpucluster-nccl-sample-nodes)
                "per_type": bool(node_rs) and per_node_count == 1 and len(singles) == len(node_rs)})
    return out, first_node


def synthesise(capture: Path, n: int, work: Path, fail: dict[str, float] | None = None,
               extra: list[str] | None = None) -> Path:
    """Write and run the replay suite over n nodes; returns the report folder. `fail`: test function name glob ->
    fraction of its nodes (or groups) made to fail with their captured evidence (a bad night's run)."""
    suite = work / f"synth-{n}"
    suite.mkdir(parents=True)
    tmpl, _ = templates(capture)
    for module in tmpl.values():
        for t in module:
            fraction = max((f for glob, f in (fail or {}).items() if fnmatch.fnmatchcase(t["function"], glob)),
                           default=0.0)
            t["fail"] = int(round(fraction * n))
    (suite / "templates.json").write_text(json.dumps(tmpl))
    nodes = [{"name": f"ip-10-{i // 65025 % 256}-{i // 255 % 255}-{i % 255 + 1}.us-west-2.compute.internal",
              "instance_type": "p5.48xlarge", "zone": "us-west-2a"} for i in range(n)]
    (suite / "nodes.json").write_text(json.dumps(nodes))
    (suite / "conftest.py").write_text(SYNTH_CONFTEST)
    (suite / "pytest.ini").write_text("[pytest]\n")
    for module in tmpl:
        (suite / f"{module}.py").write_text(SYNTH_MODULE.format(templates=str(suite / "templates.json"),
                                                                 nodes=str(suite / "nodes.json"), module=module))
    reports = work / f"reports-synth-{n}"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:gpucluster", "-p", "pytest_gpucluster.report.plugin",
           "-p", "no:randomly", "-p", "no:cacheprovider", "--rootdir", str(suite), "-c", str(suite / "pytest.ini"),
           "--gpucluster-report-dir", str(reports), *(extra or []), str(suite)]
    subprocess.run(cmd, cwd=suite, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                   stderr=subprocess.STDOUT, check=False)
    return _only_dir(reports)


def real_run(n: int, work: Path, capture: Path | None = None) -> Path:
    reports = work / f"reports-real-{n}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]))
    if capture is not None:
        env[CAPTURE_ENV] = str(capture)
    cmd = [sys.executable, "-m", "pytest", "--sim", f"scale-{n}", "-q", "-p", "no:randomly",
           "--gpucluster-report-dir", str(reports), *(["-p", "report_scale"] if capture is not None else [])]
    subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=False)
    return _only_dir(reports)


def _only_dir(root: Path) -> Path:
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise RuntimeError(f"no report folder under {root}")
    return dirs[-1]


def chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def render_once(exe: str, html: Path) -> float:
    """Wall time of headless Chromium loading the report and running its scripts (--dump-dom), fresh profile."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-"))
    try:
        t0 = time.perf_counter()
        subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", html.as_uri()],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def render_all(rows: list[dict[str, Any]], rounds: int = 5) -> None:
    """Median render time per report, measured round-robin (every report once per round) so that the load of a
    shared machine weighs on all sizes alike."""
    exe = chromium()
    if exe is None:
        return
    times: dict[int, list[float]] = {i: [] for i in range(len(rows))}
    for _ in range(rounds):
        for i, r in enumerate(rows):
            times[i].append(render_once(exe, r["folder"] / "report.html"))
    for i, r in enumerate(rows):
        r["render_s"] = statistics.median(times[i])


def measure(folder: Path, kind: str) -> dict[str, Any]:
    doc = json.loads((folder / "summary.json").read_text())
    html = (folder / "report.html").read_text()
    nodes = {n for c in doc["checks"] if c["node"] and "karpenter" not in c["module"] for n in c["node"].split("+")}
    blob = re.search(r'data-jsonblob="([^"]*)"', html)
    table_rows = 0
    if blob:
        import html as h
        tests = json.loads(h.unescape(blob.group(1))).get("tests", {})
        table_rows = sum(len(v) for v in tests.values())
    evidence = sum(p.stat().st_size for p in (folder / "evidence").glob("*")) if (folder / "evidence").exists() else 0
    summary = (folder / "summary.json").stat().st_size
    return {"kind": kind, "nodes": len(nodes), "checks": len(doc["checks"]), "grid_rows": len(nodes),
            "table_rows": table_rows, "html": (folder / "report.html").stat().st_size, "evidence": evidence,
            "summary": summary, "summary_per_node": summary / max(1, len(nodes)), "render_s": None,
            "verdict": doc["verdict"], "folder": folder}


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| run | nodes | checks | grid rows | results-table rows | report.html | evidence/ | summary.json "
            "| summary.json / node | Chromium render (s) | render / 10-node |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = rows[0]["render_s"] if rows else None       # the smallest run
    lines = [head]
    for r in rows:
        ratio = f"{r['render_s'] / base:.2f}" if base and r["render_s"] else "-"
        render = f"{r['render_s']:.2f}" if r["render_s"] else "-"
        lines.append(f"| {r['kind']} | {r['nodes']} | {r['checks']} | {r['grid_rows']} | {r['table_rows']} | "
                     f"{_mb(r['html'])} | {_mb(r['evidence'])} | {_mb(r['summary'])} | {r['summary_per_node'] / 1024:.1f} KB | "
                     f"{render} | {ratio} |")
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=int, nargs="*", default=[10, 200], help="sizes run for real (pytest --sim scale-N)")
    ap.add_argument("--synth", type=int, nargs="*", default=[1000], help="sizes synthesised from the smallest real run")
    ap.add_argument("--keep", type=Path, help="keep the report folders (and the capture) here")
    ap.add_argument("--render-only", type=Path, nargs="*", help="only measure these kept report folders")
    ap.add_argument("--capture", type=Path, help="synthesise from this capture (capture.jsonl[.gz] of a kept run)")
    ap.add_argument("--fail", nargs="*", default=[], metavar="TEST=FRACTION",
                    help="also synthesise each size with these tests failing on that fraction of nodes / groups "
                         f"(default with --bad-night: {' '.join(f'{k}={v:g}' for k, v in BAD_NIGHT.items())})")
    ap.add_argument("--bad-night", action="store_true", help="add a synthesised row per size with --fail's failures")
    args = ap.parse_args()
    failures = {k: float(v) for k, _, v in (f.partition("=") for f in args.fail)} or dict(BAD_NIGHT)
    if args.render_only:
        rows = [measure(f, f.parent.name) for f in args.render_only]
        render_all(rows)
        print(table(rows))
        return 0
    work = Path(tempfile.mkdtemp(prefix="gpucluster-report-scale-"))
    rows = []
    try:
        capture = work / "capture.jsonl"
        if args.capture:
            shutil.copy(args.capture, capture)
        for i, n in enumerate(sorted(args.real)):
            folder = real_run(n, work, capture if i == 0 and not args.capture else None)
            rows.append(measure(folder, f"real scale-{n}"))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        if args.synth and not capture.exists():
            real_run(10, work, capture)
        for n in sorted(args.synth):
            rows.append(measure(synthesise(capture, n, work), f"synthesised {n}"))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            if args.bad_night:
                rows.append(measure(synthesise(capture, n, work / "bad", failures), f"synthesised {n}, bad night"))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        render_all(rows)
        print()
        print(table(rows))
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
