"""Time to verdict: every shipped scenario of the simulated cluster against `healthy`, in one run.

Each scenario runs the whole acceptance suite as a user would (`python -m pytest suites --sim=NAME`, the default
probe timeout of 600 s, real retry waits), one after the other on this machine. Printed per scenario: wall time,
its ratio to healthy's, the exit code and the modules that failed. The target (issue 17): every fault scenario
reaches its verdict within 3x the wall time of `healthy` measured in the same run; a scenario that waits out a
probe deadline shows up here as a ratio of 10 or more.

    python benchmarks/time_to_verdict.py                       # every shipped scenario (about 10-20 min)
    python benchmarks/time_to_verdict.py --scenarios device-plugin-not-ready efa-absent efa-plugin-untolerated
    python benchmarks/time_to_verdict.py --repeat 2            # run each twice (variance between runs)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.suite_runs import module_verdicts, parse_junit, suite_command  # noqa: E402

SCENARIOS = ROOT / "pytest_gpucluster" / "sim" / "scenarios"
TARGET_RATIO = 3.0


def shipped() -> list[str]:
    return sorted(p.stem for p in SCENARIOS.glob("*.yaml") if not p.stem.startswith("scale-"))


def run(scenario: str, out: Path) -> tuple[float, int, list[str]]:
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GPUCLUSTER_RETRY_NO_WAIT", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(ROOT)
    t0 = time.monotonic()
    proc = subprocess.run(suite_command([f"--sim={scenario}"], out), cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.monotonic() - t0
    junit = out / "junit.xml"
    failed = sorted(m for m, v in module_verdicts(parse_junit(junit)).items() if v == "failed") if junit.exists() else []
    return seconds, proc.returncode, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="*", help="scenarios to time (default: every shipped one)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario")
    args = parser.parse_args()
    names = [s for s in (args.scenarios or shipped()) if s != "healthy"]
    with tempfile.TemporaryDirectory(prefix="gpucluster-ttv-") as tmp:
        base = [run("healthy", Path(tmp) / f"healthy-{i}")[0] for i in range(args.repeat)]
        healthy = min(base)
        print(f"{'scenario':32} {'wall s':>8} {'x healthy':>10} {'exit':>5}  modules failed")
        print(f"{'healthy':32} {healthy:8.1f} {1.0:10.2f} {0:5d}  (runs: {', '.join(f'{b:.1f}' for b in base)})")
        worst = 1.0
        for name in names:
            for i in range(args.repeat):
                seconds, code, failed = run(name, Path(tmp) / f"{name}-{i}")
                ratio = seconds / healthy
                worst = max(worst, ratio)
                flag = "" if ratio <= TARGET_RATIO else "  <-- over target"
                print(f"{name:32} {seconds:8.1f} {ratio:10.2f} {code:5d}  {', '.join(failed) or '-'}{flag}",
                      flush=True)
        print(f"worst ratio {worst:.2f} (target <= {TARGET_RATIO:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
