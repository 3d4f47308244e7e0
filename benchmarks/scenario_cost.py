"""CI cost of one scenario run: where the CPU of `pytest suites --sim=SCENARIO` goes, as the fault matrix runs it.

tests/reliability/test_fault_matrix.py runs the whole suite once per shipped scenario (the command and options of
tests/suite_cache.py), so every second of CPU here is paid ~40 times per CI run. Printed per run: wall time and CPU
seconds split into the plugin (the pytest process: suites, client, fleets, report), the simulated cluster's own
process (apiserver, controllers, kubelet) and the pod processes its kubelet ran (shells, fake tools, python3); with
--tools, the fake tools' share per tool (each wrapper appends its own CPU at exit to a file: GPUCLUSTER_SIM_TOOL_CPU).

    python benchmarks/scenario_cost.py                          # healthy, 3 runs
    python benchmarks/scenario_cost.py --scenarios healthy nic-degraded-node --repeat 1 --tools
    python benchmarks/scenario_cost.py --reliability            # also `pytest tests/reliability -n 2`: wall and CPU
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.suite_runs import env_for_child, suite_command  # noqa: E402
from tests.suite_cache import MATRIX_EXTRA  # noqa: E402

STATS_ENV = "GPUCLUSTER_SIM_STATS"
TOOL_CPU_ENV = "GPUCLUSTER_SIM_TOOL_CPU"


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def run_scenario(scenario: str, out: Path, tools: bool) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    extra_env = {STATS_ENV: str(out / "sim-stats.json")}
    if tools:
        extra_env[TOOL_CPU_ENV] = str(out / "tool-cpu.txt")
    cmd = suite_command([f"--sim={scenario}"], out, extra=MATRIX_EXTRA)
    t0 = time.perf_counter()
    with (out / "output.txt").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env_for_child(extra_env), stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    try:
        stats = json.loads((out / "sim-stats.json").read_text())
    except (OSError, ValueError):
        stats = {}
    sim, pods = float(stats.get("cpu_self_s", 0.0)), float(stats.get("cpu_children_s", 0.0))
    per_tool: dict[str, list[float]] = defaultdict(list)
    if tools and (out / "tool-cpu.txt").exists():
        for line in (out / "tool-cpu.txt").read_text().splitlines():
            name, _, seconds = line.rpartition(" ")
            per_tool[name].append(float(seconds))
    return {"scenario": scenario, "wall": wall, "exit": os.waitstatus_to_exitcode(status), "total": _cpu(usage),
            "plugin": _cpu(usage) - sim - pods, "sim": sim, "pods": pods, "requests": stats.get("requests_total", 0),
            "tools": {k: (len(v), sum(v)) for k, v in sorted(per_tool.items(), key=lambda kv: -sum(kv[1]))}}


def run_reliability() -> tuple[float, float, int, str]:
    """`pytest tests/reliability -n 2`: wall, CPU of the whole process tree, exit code, its failure lines."""
    cmd = [sys.executable, "-m", "pytest", "tests/reliability", "-n", "2", "-q", "-p", "no:cacheprovider", "-rf"]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        log.seek(0)
        failures = [line for line in log.read().decode(errors="replace").splitlines() if line.startswith("FAILED")]
    return time.perf_counter() - t0, _cpu(usage), os.waitstatus_to_exitcode(status), "\n".join(failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["healthy"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tools", action="store_true", help="per fake tool: launches and CPU seconds")
    parser.add_argument("--reliability", action="store_true", help="also time `pytest tests/reliability -n 2`")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print("| scenario | wall (s) | exit | CPU s total | plugin | simulated cluster | pod processes | API requests |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    tool_rows: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="gpucluster-cost-") as tmp:
        for scenario in args.scenarios:
            for i in range(args.repeat):
                r = run_scenario(scenario, Path(tmp) / f"{scenario}-{i}", args.tools)
                print(f"| {scenario} | {r['wall']:.1f} | {r['exit']} | {r['total']:.1f} | {r['plugin']:.1f} | "
                      f"{r['sim']:.1f} | {r['pods']:.1f} | {r['requests']} |", flush=True)
                for name, value in r["tools"].items():  # type: ignore[union-attr]
                    tool_rows[name].append(value)
    if tool_rows:
        print("\n| fake tool | launches per run | CPU s per run | ms per launch |\n|---|---:|---:|---:|")
        runs = len(args.scenarios) * args.repeat
        for name, values in sorted(tool_rows.items(), key=lambda kv: -sum(s for _, s in kv[1])):
            count, seconds = sum(c for c, _ in values) / runs, sum(s for _, s in values) / runs
            print(f"| {name} | {count:.0f} | {seconds:.2f} | {1000 * seconds / max(count, 1):.0f} |")
    if args.reliability:
        wall, cpu, code, failures = run_reliability()
        print(f"\n`pytest tests/reliability -n 2`: wall {wall:.0f} s, CPU {cpu:.0f} s, exit {code} "
              f"(load average now {os.getloadavg()[0]:.1f})")
        if failures:
            print(failures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
