"""Scale benchmark: the GPU visibility and taint suites against simulated clusters of 10, 100 and 1000 GPU nodes.

For each size N the simulated cluster (`scale-N`: the healthy scenario with N p5.48xlarge nodes) runs in this
process; pytest runs the suites in a child process against it through its kubeconfig, as against a real cluster.
Printed per size: wall time of the pytest process, API requests it caused (counted by the simulated apiserver)
per GPU node, the test outcomes, and the peak RSS of the pytest process (os.wait4 rusage of that child alone).

    python benchmarks/scale.py                 # 10, 100, 1000
    python benchmarks/scale.py --sizes 10 100  # a quicker look
    python benchmarks/scale.py --profile-dir /tmp/prof   # py-spy the pytest child (pip install py-spy)
"""
from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_gpucluster.sim.launcher import SimCluster  # noqa: E402 - after the checkout is importable

SUITES = ["suites/test_gpu_visibility.py", "suites/test_taints.py"]
OUTCOMES = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected)")
TARGET_REQUESTS_PER_NODE = 50          # "bounded by a small constant": what a regression would blow through
TARGET_WALL_RATIO = 5.0                # wall(1000) within a few times wall(10)


@dataclass
class Result:
    nodes: int
    gpu_nodes: int
    wall_s: float
    requests: int
    max_rss_mib: float
    outcomes: dict[str, int]
    exit_code: int
    top_requests: list[tuple[str, int]] = field(default_factory=list)
    settle_s: float = 0.0              # until the cluster's own pods (device-plugin DaemonSets) all ran
    pytest_cpu_s: float = 0.0          # the pytest process (suite, client, fleets)
    sim_cpu_s: float = 0.0             # this process: apiserver, controllers, kubelet (one event loop thread)
    pods_cpu_s: float = 0.0            # the pod processes the simulated kubelet ran (fake nvidia-smi, sh, ...)

    @property
    def requests_per_gpu_node(self) -> float:
        return self.requests / max(1, self.gpu_nodes)


def run_size(n: int, timeout_s: float, profile_dir: Path | None, keep_output: Path | None,
             select: str | None = None, suites: list[str] | None = None) -> Result:
    work = Path(tempfile.mkdtemp(prefix=f"gpucluster-scale-{n}-"))
    try:
        with SimCluster(f"scale-{n}", workdir=work, aws=False) as sim:
            settle_s = settle(sim)
            before = sim.stats()
            gpu_nodes = len(sim.call(_gpu_node_names, sim))
            cmd = [sys.executable, "-m", "pytest", *(suites or SUITES), "--kubeconfig", str(sim.kubeconfig_path), "-q",
                   "-p", "no:cacheprovider", "--gpucluster-no-report", f"--gpucluster-timeout={timeout_s:.0f}",
                   *(["-k", select] if select else [])]
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
                cmd = ["py-spy", "record", "--subprocesses", "-r", "50", "-f", "speedscope",
                       "-o", str(profile_dir / f"pytest-{n}.json"), "--", *cmd]
            env = dict(os.environ, PYTHONPATH=str(ROOT), GPUCLUSTER_RETRY_NO_WAIT="1")
            out_path = work / "pytest-output.txt"
            self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            with out_path.open("w") as out:
                proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t0
            self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            after = sim.stats()
            text = out_path.read_text()
            if keep_output is not None:
                keep_output.mkdir(parents=True, exist_ok=True)
                shutil.copy(out_path, keep_output / f"pytest-{n}.txt")
        delta = {k: v - before["requests"].get(k, 0) for k, v in after["requests"].items()}
        outcomes = {kind.rstrip("s") if kind.startswith("error") else kind: int(num)
                    for num, kind in OUTCOMES.findall(text.splitlines()[-1] if text else "")}
        return Result(nodes=after["nodes"], gpu_nodes=gpu_nodes, wall_s=wall, requests=sum(delta.values()),
                      max_rss_mib=usage.ru_maxrss / 1024, outcomes=outcomes, exit_code=proc.returncode,
                      top_requests=sorted(delta.items(), key=lambda kv: -kv[1])[:6],
                      settle_s=settle_s, pytest_cpu_s=_cpu(usage), sim_cpu_s=_cpu(self1) - _cpu(self0),
                      pods_cpu_s=_cpu(kids1) - _cpu(kids0) - _cpu(usage))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def settle(sim: SimCluster, timeout_s: float = 900.0) -> float:
    """Wait until every pod of the fresh cluster (the DaemonSets' pods on every node) is Running; seconds taken.
    The sim's loop can be busy for longer than SimCluster.call's 30 s at 1000 nodes: keep asking until the deadline."""
    t0 = time.perf_counter()

    def pending() -> int:
        assert sim.store is not None  # noqa: S101 - running
        return sum(1 for p in sim.store.iter_objects("pods") if (p.get("status") or {}).get("phase") != "Running")
    while time.perf_counter() - t0 < timeout_s:
        try:
            if sim.call(pending) == 0:
                return time.perf_counter() - t0
        except TimeoutError:
            continue                                  # the loop is still busy scheduling: ask again
        time.sleep(1.0)
    raise RuntimeError(f"scale cluster did not settle within {timeout_s:.0f} s")


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _gpu_node_names(sim: SimCluster) -> list[str]:
    assert sim.store is not None  # noqa: S101 - running
    return [n["metadata"]["name"] for n in sim.store.iter_objects("nodes")
            if "p5" in (n["metadata"].get("labels") or {}).get("node.kubernetes.io/instance-type", "")]


def table(results: list[Result]) -> str:
    head = ("| GPU nodes | nodes | wall time (s) | API requests | requests / GPU node | peak RSS of pytest (MiB) "
            "| CPU s: pytest / sim / pod processes | outcomes | exit | sim settle (s) |\n"
            "|---:|---:|---:|---:|---:|---:|---|---|---:|---:|")
    rows = [f"| {r.gpu_nodes} | {r.nodes} | {r.wall_s:.1f} | {r.requests} | {r.requests_per_gpu_node:.1f} | "
            f"{r.max_rss_mib:.0f} | {r.pytest_cpu_s:.1f} / {r.sim_cpu_s:.1f} / {r.pods_cpu_s:.1f} | "
            f"{', '.join(f'{v} {k}' for k, v in r.outcomes.items())} | {r.exit_code} | {r.settle_s:.0f} |"
            for r in results]
    return "\n".join([head, *rows])


def verdict(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        ok = r.requests_per_gpu_node <= TARGET_REQUESTS_PER_NODE
        lines.append(f"{r.gpu_nodes} GPU nodes: {r.requests_per_gpu_node:.1f} requests/GPU node "
                     f"({'within' if ok else 'OVER'} the {TARGET_REQUESTS_PER_NODE} target); top: "
                     + ", ".join(f"{k} {v}" for k, v in r.top_requests))
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratio = large.wall_s / max(small.wall_s, 1e-9)
        lines.append(f"wall time {large.gpu_nodes} vs {small.gpu_nodes} GPU nodes: x{ratio:.1f} "
                     f"({'within' if ratio <= TARGET_WALL_RATIO else 'OVER'} the x{TARGET_WALL_RATIO:.0f} target)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="GPU node counts")
    parser.add_argument("--timeout", type=float, default=300, help="--gpucluster-timeout for the probes (s)")
    parser.add_argument("--profile-dir", type=Path, help="record the pytest child with py-spy (speedscope JSON)")
    parser.add_argument("--keep-output", type=Path, help="copy each run's pytest output here")
    parser.add_argument("-k", dest="select", help="pytest -k expression (e.g. carries_gpu_taint: no probe pods)")
    parser.add_argument("--suites", nargs="+", default=SUITES,
                        help="suite modules to run (default: GPU visibility and taints; e.g. suites/test_node_health.py)")
    args = parser.parse_args(argv)
    results = []
    for n in args.sizes:
        print(f"running {' '.join(args.suites)}{f' -k {args.select}' if args.select else ''} against scale-{n} ...",
              file=sys.stderr, flush=True)
        results.append(run_size(n, args.timeout, args.profile_dir, args.keep_output, args.select, args.suites))
        print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(results))
    print()
    print("\n".join(verdict(results)))
    return 0 if all(r.exit_code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
