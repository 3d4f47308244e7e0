"""Full run at fleet scale (issue 27): every suite module against `scale-10`, `scale-50` and `scale-200`, as a user runs it.

Each size is `python -m pytest suites --sim=scale-N` in a child process (the simulated cluster in its own child of
that, as always with --sim), the report plugin on, the default probe timeout and real retry waits. Printed per size:

* wall time of the pytest process and the verdict it wrote (summary.json), exit code, outcome counts;
* CPU seconds split three ways: the plugin (the pytest process: suites, client, fleets, report), the simulated
  cluster's own process (apiserver, controllers, kubelet) and the pod processes its kubelet ran (fake tools, sh);
  the sim child measures its own split when it stops (GPUCLUSTER_SIM_STATS, sim/cli.py) and the plugin's share is
  the pytest process tree's total (os.wait4) minus the sim's;
* plugin CPU per GPU node (the target: it grows no faster than the node count);
* API requests the run made (counted by the simulated apiserver) per GPU node;
* report.html, evidence/ and summary.json sizes (report.html target: <= 2 MB at 200 nodes);
* the load average when the size started and ended (the machine is shared: wall time depends on it).

    python benchmarks/full_run.py                        # scale-10, scale-50, scale-200 (scale-200 ~10+ min)
    python benchmarks/full_run.py --sizes 10 --keep /tmp/full   # keep each run's report folder and output
    python benchmarks/full_run.py --sizes 200 --profile /tmp/prof  # py-spy the whole tree (pip install py-spy)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STATS_ENV = "GPUCLUSTER_SIM_STATS"          # sim/cli.py writes its request counts and CPU split there at stop
OUTCOMES = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")
TARGET_WALL_S = {200: 15 * 60}
TARGET_REPORT_BYTES = 2 * 1024 * 1024


@dataclass
class Result:
    size: int
    wall_s: float
    exit_code: int
    verdict: str
    outcomes: dict[str, int]
    plugin_cpu_s: float
    sim_cpu_s: float
    pods_cpu_s: float
    requests: int
    gpu_nodes: int
    report_bytes: int
    evidence_bytes: int
    summary_bytes: int
    plugin_rss_mib: float
    load: tuple[float, float]
    top_requests: list[tuple[str, int]] = field(default_factory=list)

    @property
    def requests_per_gpu_node(self) -> float:
        return self.requests / max(1, self.gpu_nodes)

    @property
    def plugin_cpu_per_node(self) -> float:
        return self.plugin_cpu_s / max(1, self.gpu_nodes)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _verdict(summary: Path) -> str:
    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError):
        return "(no summary.json)"
    verdict = data.get("verdict")
    if isinstance(verdict, dict):
        return str(verdict.get("verdict") or verdict.get("label") or verdict.get("status") or verdict)
    return str(verdict)


def run_size(n: int, work: Path, *, timeout_s: float | None, extra: list[str], profile: Path | None) -> Result:
    out = work / f"scale-{n}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    stats_path = out / "sim-stats.json"
    cmd = [sys.executable, "-m", "pytest", "suites", f"--sim=scale-{n}", f"--gpucluster-report-dir={out / 'report'}",
           "-p", "no:cacheprovider", *extra]
    if timeout_s is not None:
        cmd.append(f"--gpucluster-timeout={timeout_s:.0f}")
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        cmd = ["py-spy", "record", "--subprocesses", "--idle", "-r", "20", "-f", "raw",
               "-o", str(profile / f"scale-{n}.txt"), "--", *cmd]
    env = {k: v for k, v in os.environ.items() if k not in ("GPUCLUSTER_RETRY_NO_WAIT", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(ROOT), **{STATS_ENV: str(stats_path)})
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with (out / "pytest-output.txt").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    text = (out / "pytest-output.txt").read_text(errors="replace")
    tail = next((line for line in reversed(text.splitlines()) if OUTCOMES.search(line)), "")
    outcomes = {kind.rstrip("s") if kind.startswith("error") else kind: int(num) for num, kind in OUTCOMES.findall(tail)}
    try:
        stats: dict[str, Any] = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        stats = {}
    sim_cpu, pods_cpu = float(stats.get("cpu_self_s", 0.0)), float(stats.get("cpu_children_s", 0.0))
    requests = dict(stats.get("requests") or {})
    found = sorted((out / "report").glob("**/report.html"))
    report = found[-1].parent if found else out / "report"
    return Result(size=n, wall_s=wall, exit_code=os.waitstatus_to_exitcode(status),
                  verdict=_verdict(report / "summary.json"), outcomes=outcomes,
                  plugin_cpu_s=_cpu(usage) - sim_cpu - pods_cpu, sim_cpu_s=sim_cpu, pods_cpu_s=pods_cpu,
                  requests=int(stats.get("requests_total", 0)), gpu_nodes=n,
                  report_bytes=_size(report / "report.html"), evidence_bytes=_size(report / "evidence"),
                  summary_bytes=_size(report / "summary.json"), plugin_rss_mib=usage.ru_maxrss / 1024,
                  load=(load0, load1), top_requests=sorted(requests.items(), key=lambda kv: -kv[1])[:6])


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def table(results: list[Result]) -> str:
    head = ("| GPU nodes | wall (s) | verdict | exit | outcomes | CPU s: plugin / sim / pod processes "
            "| plugin CPU s / GPU node | API requests / GPU node | report.html | evidence/ | summary.json "
            "| load avg start-end |\n|---:|---:|---|---:|---|---|---:|---:|---:|---:|---:|---|")
    rows = [f"| {r.size} | {r.wall_s:.0f} | {r.verdict} | {r.exit_code} | "
            f"{', '.join(f'{v} {k}' for k, v in r.outcomes.items())} | "
            f"{r.plugin_cpu_s:.0f} / {r.sim_cpu_s:.0f} / {r.pods_cpu_s:.0f} | {r.plugin_cpu_per_node:.2f} | "
            f"{r.requests_per_gpu_node:.1f} | {_mb(r.report_bytes)} | {_mb(r.evidence_bytes)} | "
            f"{_mb(r.summary_bytes)} | {r.load[0]:.1f}-{r.load[1]:.1f} |" for r in results]
    return "\n".join([head, *rows])


def verdicts(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        target = TARGET_WALL_S.get(r.size)
        if target is not None:
            lines.append(f"scale-{r.size}: verdict after {r.wall_s / 60:.1f} min "
                         f"({'within' if r.wall_s <= target else 'OVER'} the {target / 60:.0f} min target)")
        if r.size >= 200:
            ok = r.report_bytes <= TARGET_REPORT_BYTES
            lines.append(f"scale-{r.size}: report.html {_mb(r.report_bytes)} "
                         f"({'within' if ok else 'OVER'} the {_mb(TARGET_REPORT_BYTES)} target)")
        lines.append(f"scale-{r.size}: top requests " + ", ".join(f"{k} {v}" for k, v in r.top_requests))
    if len(results) > 1:
        small, large = results[0], results[-1]
        growth = large.plugin_cpu_s / max(small.plugin_cpu_s, 1e-9)
        nodes = large.size / small.size
        lines.append(f"plugin CPU x{growth:.1f} for x{nodes:.0f} nodes "
                     f"({'no faster than' if growth <= nodes else 'FASTER than'} the node count)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200], help="GPU node counts (scale-N)")
    parser.add_argument("--timeout", type=float, help="--gpucluster-timeout (default: the plugin's, 600 s)")
    parser.add_argument("--keep", type=Path, help="keep each size's report folder and pytest output here")
    parser.add_argument("--profile", type=Path, help="record the whole process tree with py-spy (raw collapsed stacks)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="gpucluster-full-run-"))
    results = []
    try:
        for n in args.sizes:
            print(f"running every module against scale-{n} (load average {os.getloadavg()[0]:.1f}) ...",
                  file=sys.stderr, flush=True)
            results.append(run_size(n, work, timeout_s=args.timeout, extra=args.pytest_args, profile=args.profile))
            print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    print()
    print("\n".join(verdicts(results)))
    return 0 if all(r.exit_code in (0, 1) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
