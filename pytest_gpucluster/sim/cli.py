"""`gpucluster sim`: serve a simulated EKS GPU cluster on 127.0.0.1 until interrupted, or list the scenarios."""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

WHAT_IT_DOES = (
    "Serves a Kubernetes API on 127.0.0.1 only (https, throw-away CA, random bearer token held only by the "
    "written kubeconfig). Its simulated kubelet runs pod commands on THIS machine with /bin/sh, in a scratch "
    "directory, with a scrubbed environment and a time limit.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = f"Serve a simulated EKS GPU cluster until interrupted. {WHAT_IT_DOES}"
    parser.add_argument("--scenario", default="healthy", help="shipped scenario name or YAML file (default: healthy)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--kubeconfig-out", type=Path, help="where to write the kubeconfig (required to serve)")
    parser.add_argument("--workdir", type=Path, help="scratch directory for pods and logs (default: a temp dir)")
    parser.add_argument("--rbac", type=Path, help="restrict the test identity to the rules of this RBAC manifest")
    parser.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")


def _list() -> int:
    from .scenario import list_scenarios
    rows = list_scenarios()
    width = max((len(name) for name, _ in rows), default=0)
    for name, description in rows:
        print(f"{name.ljust(width)}  {description}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    if args.kubeconfig_out is None:
        print("gpucluster sim: --kubeconfig-out PATH is required (where to write the kubeconfig)", file=sys.stderr)
        return 2
    from .launcher import SimCluster, SimClusterError

    sim = SimCluster(args.scenario, port=args.port, workdir=args.workdir, rbac=args.rbac)
    try:
        sim.start()
    except (SimClusterError, OSError, ValueError) as exc:
        print(f"gpucluster sim: cannot start scenario {args.scenario!r}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        out = args.kubeconfig_out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(sim.kubeconfig_path.read_bytes())
        out.chmod(0o600)
        aws = "AWS API available (moto)" if sim.aws_env else "no AWS API"
        print(f"gpucluster sim: scenario {sim.scenario_name} serving {sim.server_url} in "
              f"{sim.start_seconds * 1000:.0f} ms, {aws}; kubeconfig written to {out}", flush=True)
        for key, value in sorted(sim.aws_env.items()):
            print(f"export {key}={shlex.quote(value)}", flush=True)
        for warning in sim.warnings:
            print(f"gpucluster sim: warning: {warning}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        try:  # our handlers stay installed: a second Ctrl-C must not interrupt the clean stop
            sim.stop()
        except SimClusterError as exc:
            print(f"gpucluster sim: {exc}", file=sys.stderr)
            return 1
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    print("gpucluster sim: stopped", flush=True)
    return 0
