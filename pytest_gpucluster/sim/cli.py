"""`gpucluster sim`, `python -m pytest_gpucluster.sim`: serve a simulated EKS GPU cluster, with its hand-off folder."""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ..sim_contract.handoff import KUBECONFIG, missing_sim_module, sim_extra_message

WHAT_IT_DOES = (
    "Serves a Kubernetes API on 127.0.0.1 only (https, throw-away CA, random bearer token held only by the "
    "written kubeconfig). Its simulated kubelet runs pod commands on THIS machine with /bin/sh, in a scratch "
    "directory, with a scrubbed environment and a time limit.")
if TYPE_CHECKING:
    from .launcher import SimCluster

STATS_ENV = "GPUCLUSTER_SIM_STATS"    # file the child writes its request counts and CPU to when it stops
EXIT_START_FAILED = 1
EXIT_NO_EXTRA = 4           # as pytest's usage error: the same words as `pytest --sim` without the extra


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = f"Serve a simulated EKS GPU cluster until interrupted. {WHAT_IT_DOES}"
    parser.add_argument("--scenario", default="healthy", help="shipped scenario name or YAML file (default: healthy)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--handoff", type=Path, metavar="DIR",
                        help="where to write the hand-off folder: kubeconfig, aws.json, profile.yaml, handoff.json "
                             "(default: a new temporary folder, removed at exit)")
    parser.add_argument("--kubeconfig-out", type=Path, help="also copy the kubeconfig here")
    parser.add_argument("--workdir", type=Path, help="scratch directory for pods and logs (default: a temp dir)")
    parser.add_argument("--rbac", type=Path, help="restrict the test identity to the rules of this RBAC manifest")
    parser.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    parser.add_argument("--faults", action="store_true",
                        help="list the fault kinds a scenario's `faults:` may name (parameters, target, effect) and exit")
    parser.add_argument("--from-report", type=Path, metavar="REPORT_DIR",
                        help="write a scenario from a report folder's recording (its nodes, NodePools, operators and "
                             "each node's recorded tool outputs), then exit; say what the recording could not give")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="with --from-report: the scenario file to write (default: replay-<run id>.yaml here; "
                             "the outputs go to <FILE stem>-outputs/ beside it)")
    # The plugin's child mode: print only the manifest's path on stdout, stop when stdin closes (the parent
    # is done or died), ignore the terminal's Ctrl-C (the parent tears down against this cluster first).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)


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
    if args.faults:
        from .faults import table
        sys.stdout.write(table())
        return 0
    if args.from_report is not None:
        from .from_report import write
        return write(args.from_report, args.out)
    missing = missing_sim_module()
    if missing is not None:
        print(sim_extra_message("gpucluster sim", missing), file=sys.stderr)
        return EXIT_NO_EXTRA
    from .launcher import SimCluster, SimClusterError

    own_handoff = args.handoff is None
    handoff = args.handoff or Path(tempfile.mkdtemp(prefix="gpucluster-sim-handoff-"))
    sim = SimCluster(args.scenario, port=args.port, workdir=args.workdir, rbac=args.rbac)
    try:
        sim.start()
        manifest = sim.write_handoff(handoff)
    except (SimClusterError, OSError, ValueError) as exc:   # ScenarioError is a ValueError
        reason = str(exc) if args.child else f"cannot start scenario {args.scenario!r}: {exc}"
        print(f"gpucluster sim: {reason}", file=sys.stderr, flush=True)
        _stop_quietly(sim)
        return EXIT_START_FAILED
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.child:
            _hand_over_to_parent(manifest, stop)
        else:
            _announce(sim, manifest, args.kubeconfig_out)
        stop.wait()
    finally:
        stats = _request_stats(sim)
        try:  # our handlers stay installed: a second Ctrl-C must not interrupt the clean stop
            sim.stop()
        except SimClusterError as exc:
            print(f"gpucluster sim: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            _write_stats(stats)
            for s, handler in previous.items():
                signal.signal(s, handler)
            if own_handoff:
                shutil.rmtree(handoff, ignore_errors=True)
    if not args.child:
        print("gpucluster sim: stopped", flush=True)
    return 0


def _hand_over_to_parent(manifest: Path, stop: threading.Event) -> None:
    """One line on stdout (the manifest), then stdout joins stderr; a closed stdin stops the cluster."""
    sys.stdout.write(f"{manifest}\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def wait_for_eof() -> None:
        try:
            sys.stdin.buffer.read()
        finally:
            stop.set()
    threading.Thread(target=wait_for_eof, name="gpucluster-sim-parent", daemon=True).start()


def _announce(sim: SimCluster, manifest: Path, kubeconfig_out: Path | None) -> None:
    kubeconfig = manifest.parent / KUBECONFIG
    if kubeconfig_out is not None:
        kubeconfig_out.parent.mkdir(parents=True, exist_ok=True)
        kubeconfig_out.write_bytes(kubeconfig.read_bytes())
        kubeconfig_out.chmod(0o600)
        kubeconfig = kubeconfig_out
    aws = "AWS API available (moto)" if sim.aws_env else "no AWS API"
    print(f"gpucluster sim: scenario {sim.scenario_name} serving {sim.server_url} in "
          f"{sim.start_seconds * 1000:.0f} ms, {aws}", flush=True)
    print(f"gpucluster sim: hand-off folder {manifest.parent} (manifest {manifest.name})", flush=True)
    print(f"gpucluster sim: kubeconfig {kubeconfig}  (kubectl --kubeconfig {shlex.quote(str(kubeconfig))} "
          "get nodes)", flush=True)
    for key, value in sorted(sim.aws_env.items()):
        print(f"export {key}={shlex.quote(value)}", flush=True)
    for warning in sim.warnings:
        print(f"gpucluster sim: warning: {warning}", file=sys.stderr, flush=True)


def _request_stats(sim: SimCluster) -> dict[str, object] | None:
    """The apiserver's request counts, read before the stop when benchmarks/full_run.py asks for them (STATS_ENV)."""
    if not os.environ.get(STATS_ENV):
        return None
    try:
        return sim.stats()
    except Exception as exc:  # noqa: BLE001 - a measurement aid: the stop must still happen
        return {"error": f"{type(exc).__name__}: {exc}"}


def _write_stats(stats: dict[str, object] | None) -> None:
    """Write the request counts and this process's CPU split (its own: apiserver, controllers, kubelet; its reaped
    children: the pod processes) to the file STATS_ENV names. Measured here because only this process can tell
    its own CPU from its children's once the pod processes are gone."""
    path = os.environ.get(STATS_ENV)
    if stats is None or not path:
        return
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = dict(stats, cpu_self_s=own.ru_utime + own.ru_stime, cpu_children_s=children.ru_utime + children.ru_stime,
                 max_rss_mib=own.ru_maxrss / 1024)
    Path(path).write_text(json.dumps(stats, indent=1, sort_keys=True), encoding="utf-8")


def _stop_quietly(sim: SimCluster) -> None:
    """After a failed start: stop what did start; the start error is the one reported."""
    from .launcher import SimClusterError
    try:
        sim.stop()
    except SimClusterError as exc:
        print(f"gpucluster sim: while stopping after the failed start: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """`python -m pytest_gpucluster.sim ...`: the same options as `gpucluster sim`."""
    parser = argparse.ArgumentParser(prog="python -m pytest_gpucluster.sim")
    add_arguments(parser)
    return run(parser.parse_args(argv))
