"""Fake Open MPI `mpirun`: maps ranks onto the MPIJob workers in the sim context and tags their output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from . import ctx as simctx
from . import nccl

VERSION = "mpirun (Open MPI) 4.1.7\n\nReport bugs to https://www.open-mpi.org/community/help/"
NO_ARG_FLAGS = {"--allow-run-as-root", "--tag-output", "-tag-output", "--oversubscribe", "-oversubscribe",
                "--display-map", "-display-map", "--report-bindings", "-report-bindings", "-v", "--verbose",
                "--merge-stderr-to-stdout", "--timestamp-output", "-q", "--quiet", "--nolocal", "-nolocal"}
ARG_FLAGS = {"--bind-to", "-bind-to", "--rank-by", "-rank-by", "--prefix", "-wdir", "--wdir", "-output-filename",
             "--output-filename", "--launch-agent", "-launch-agent"}
ABORT = """--------------------------------------------------------------------------
Primary job  terminated normally, but 1 process returned
a non-zero exit code. Per user-direction, the job has been aborted.
--------------------------------------------------------------------------
--------------------------------------------------------------------------
mpirun detected that one or more processes exited with non-zero status, thus causing
the job to be terminated. The first process to do so was:

  Process name: [[4390,1],{rank}]
  Exit code:    {code}
--------------------------------------------------------------------------"""
ROOT_REFUSED = """--------------------------------------------------------------------------
mpirun has detected an attempt to run as root.

Running as root is *strongly* discouraged as any mistake (e.g., in
defining TMPDIR) or bug can result in catastrophic damage to the OS
file system, leaving your system in an unusable state.

We strongly suggest that you run mpirun as a non-root user.

You can override this protection by adding the --allow-run-as-root option
to the cmd line or by setting two environment variables in the following way:
the variable OMPI_ALLOW_RUN_AS_ROOT=1 to indicate the desire to override this
protection, and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 to confirm the choice and
add one more layer of certainty that you want to do so.
We reiterate our advice against doing so - please proceed at your own risk.
--------------------------------------------------------------------------"""


class MpiError(Exception):
    """mpirun refuses to start: text for stderr, exit 1."""


@dataclass
class Options:
    np: int | None = None
    per_node: int | None = None
    hostfile: str | None = None
    hosts: list[tuple[str, int]] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)
    mca: dict[str, str] = field(default_factory=dict)
    allow_root: bool = False
    oversubscribe: bool = False
    program: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> Options:
    opts, i = Options(), 0

    def value() -> str:
        nonlocal i
        i += 1
        if i >= len(argv):
            raise MpiError(f"mpirun: Error: option \"{argv[i - 1]}\" did not have enough parameters (1)")
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            opts.program = argv[i:]
            break
        if arg in ("-np", "--np", "-n", "-c"):
            opts.np = int(value())
        elif arg in ("-N", "--npernode", "-npernode"):
            opts.per_node = int(value())
        elif arg in ("--map-by", "-map-by"):
            spec = value()
            if spec.startswith("ppr:") and spec.count(":") >= 2:
                opts.per_node = int(spec.split(":")[1])
        elif arg in ("--hostfile", "-hostfile", "--machinefile", "-machinefile", "--default-hostfile"):
            opts.hostfile = value()
        elif arg in ("-H", "--host", "-host"):
            for item in value().split(","):
                name, _, slots = item.partition(":")
                opts.hosts.append((name, int(slots or 1)))
        elif arg == "-x":
            name, eq, val = value().partition("=")
            opts.exports[name] = val if eq else os.environ.get(name, "")
        elif arg in ("--mca", "-mca", "--gmca", "-gmca"):
            key = value()
            opts.mca[key] = value()
        elif arg == "--version":
            print(VERSION)
            raise SystemExit(0)
        elif arg == "--allow-run-as-root":
            opts.allow_root = True
        elif arg in ("--oversubscribe", "-oversubscribe"):
            opts.oversubscribe = True
        elif arg in NO_ARG_FLAGS:
            pass
        elif arg in ARG_FLAGS:
            value()
        else:
            raise MpiError(f"mpirun: Error: unknown option \"{arg}\"\nType 'mpirun --help' for usage.")
        i += 1
    if not opts.program:
        raise MpiError("--------------------------------------------------------------------------\n"
                       "No executable was specified on the mpirun command line.\n\nAborting.\n"
                       "--------------------------------------------------------------------------")
    return opts


def _hostfile_hosts(path: str) -> list[tuple[str, int]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            slots = 1
            for w in words[1:]:
                if w.startswith("slots="):
                    slots = int(w.split("=", 1)[1])
            out.append((words[0], slots))
    return out


def resolve_hosts(opts: Options, ctx: dict[str, Any]) -> list[tuple[str, int, dict[str, Any], bool]]:
    """(host, slots, worker node context, remote?) in mapping order."""
    workers = {w["host"]: w for w in ctx.get("workers", [])}
    listed = opts.hosts
    if not listed and opts.hostfile:
        listed = _hostfile_hosts(opts.hostfile)
    default_hf = os.environ.get("OMPI_MCA_orte_default_hostfile")
    if not listed and default_hf and os.path.isfile(default_hf):
        listed = _hostfile_hosts(default_hf)
    if not listed and workers:
        listed = [(h, max(1, len(w.get("allocated", {}).get("gpus", [])))) for h, w in workers.items()]
    local = {"hardware": ctx.get("node", {}).get("hardware", {}), "allocated": ctx.get("allocated", {}),
             "faults": ctx.get("faults", []), "private_ip": ctx.get("node", {}).get("private_ip"),
             "tool_output": ctx.get("tool_output", {}), "tool_exit": ctx.get("tool_exit", {})}
    if not listed:
        return [(simctx.hostname(ctx), max(1, len(local["allocated"].get("gpus", []))), local, False)]
    out = []
    for name, slots in listed:
        short = name.split(".", 1)[0]
        if short in ("localhost", simctx.hostname(ctx)):
            out.append((short, slots, local, False))
        elif short in workers:
            out.append((short, slots, workers[short], True))
        else:
            raise MpiError(f"ssh: Could not resolve hostname {name}: Name or service not known\n"
                           "--------------------------------------------------------------------------\n"
                           "ORTE was unable to reliably start one or more daemons.\n"
                           "--------------------------------------------------------------------------")
    return out


def place(opts: Options, hosts: list[tuple[str, int, dict[str, Any], bool]]) -> list[tuple[int, int]]:
    """Process -> (host index, local rank), Open MPI's by-slot mapping or ppr/-N per node."""
    if opts.per_node:
        slots = [opts.per_node] * len(hosts)
    else:
        slots = [h[1] for h in hosts]
    total = sum(slots)
    np = opts.np if opts.np is not None else total
    if np > total and not opts.oversubscribe:
        prog = " ".join(opts.program[:1])
        raise MpiError("--------------------------------------------------------------------------\n"
                       f"There are not enough slots available in the system to satisfy the {np}\n"
                       f"slots that were requested by the application:\n\n  {prog}\n\n"
                       "Either request fewer slots for your application, or make more slots\n"
                       "available for use.\n"
                       "--------------------------------------------------------------------------")
    out: list[tuple[int, int]] = []
    for hi, n in enumerate(slots):
        out.extend((hi, lr) for lr in range(n))
    while len(out) < np:                                     # oversubscribed: wrap around
        out.append(out[len(out) % max(1, total)])
    return out[:np]


def _emit(lines: list[tuple[int, str]], stream: str) -> None:
    target = sys.stdout if stream == "stdout" else sys.stderr
    for proc, line in lines:
        target.write(f"[1,{proc}]<{stream}>:{line}\n")


def run_perf(prog: str, argv: list[str], opts: Options, hosts: list[tuple[str, int, dict[str, Any], bool]],
             placement: list[tuple[int, int]], ctx: dict[str, Any], env: dict[str, str]) -> int:
    try:
        args = nccl.parse_args(argv, prog)
    except nccl.UsageError as exc:
        _emit([(p, line) for p in range(len(placement)) for line in str(exc).splitlines()], "stdout")
        return 0
    ranks: list[nccl.Rank] = []
    per_proc = args.nthreads * args.ngpus
    for proc, (hi, lr) in enumerate(placement):
        host, _, node, _ = hosts[hi]
        node_ctx = {"node": {"hardware": node.get("hardware", {}), "private_ip": node.get("private_ip")},
                    "allocated": node.get("allocated", {}), "faults": node.get("faults", []),
                    "gpu_code": node.get("gpu_code")}        # the worker's image's GPU code (MPI pods)
        if nccl._fault(node, "driver-unreachable") is not None:
            node_ctx["allocated"] = {**node_ctx["allocated"], "gpus": []}
        got, error = nccl.local_ranks(node_ctx, args, host, proc=proc, local_rank=lr, first_rank=proc * per_proc)
        if error:
            _emit([(proc, e) for e in error.splitlines()], "stderr")
            _emit([(proc, f" .. {host} pid {25 + lr}: Test failure common.cu:1189")], "stdout")
            print(ABORT.format(rank=proc, code=2), file=sys.stderr)
            return 2
        ranks.extend(got)
    out, err, code = nccl.generate(prog, args, ranks, nccl.config(ctx), env, nprocs=len(placement))
    _emit(out, "stdout")
    _emit(err, "stderr")
    if code:
        print(ABORT.format(rank=0, code=code), file=sys.stderr)
    return code


def run_generic(opts: Options, hosts: list[tuple[str, int, dict[str, Any], bool]],
                placement: list[tuple[int, int]], ctx: dict[str, Any], env: dict[str, str]) -> int:
    """Any other program: one subprocess per rank with that worker's context, output tagged."""
    tmp = tempfile.mkdtemp(prefix="mpirun-", dir=os.environ.get("HOME") or None)
    procs = []
    for proc, (hi, lr) in enumerate(placement):
        host, _, node, _ = hosts[hi]
        wctx = {**ctx, "node": {"name": host, "private_ip": node.get("private_ip"),
                                "hardware": node.get("hardware", {})},
                "allocated": node.get("allocated", {}), "faults": node.get("faults", []),
                "tool_output": node.get("tool_output", {}), "tool_exit": node.get("tool_exit", {}), "workers": [],
                "pod": {"name": host}}
        path = os.path.join(tmp, f"ctx-{proc}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(wctx, fh)
        penv = {**env, "GPUCLUSTER_SIM_CONTEXT": path, "OMPI_COMM_WORLD_RANK": str(proc),
                "OMPI_COMM_WORLD_SIZE": str(len(placement)), "OMPI_COMM_WORLD_LOCAL_RANK": str(lr),
                "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        try:
            procs.append(subprocess.Popen(opts.program, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          env=penv, text=True))
        except OSError:
            print("--------------------------------------------------------------------------\n"
                  f"mpirun was unable to find the specified executable file, and therefore\n"
                  f"did not launch the job.\n\nExecutable: {opts.program[0]}\nNode: {host}\n"
                  "--------------------------------------------------------------------------", file=sys.stderr)
            return 1
    first_fail = None
    for proc, p in enumerate(procs):
        stdout, stderr = p.communicate()
        _emit([(proc, line) for line in stdout.splitlines()], "stdout")
        _emit([(proc, line) for line in stderr.splitlines()], "stderr")
        if p.returncode and first_fail is None:
            first_fail = (proc, p.returncode)
    if first_fail:
        print(ABORT.format(rank=first_fail[0], code=first_fail[1]), file=sys.stderr)
        return first_fail[1]
    return 0


def main(argv: list[str]) -> int:
    ctx = simctx.load()
    try:
        opts = parse(argv)
        if (hasattr(os, "geteuid") and os.geteuid() == 0 and not opts.allow_root
                and not (os.environ.get("OMPI_ALLOW_RUN_AS_ROOT") == "1"
                         and os.environ.get("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM") == "1")):
            raise MpiError(ROOT_REFUSED)
        hosts = resolve_hosts(opts, ctx)
        placement = place(opts, hosts)
    except MpiError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for host, _, _, remote in hosts:
        if remote:
            print(f"Warning: Permanently added '{host}' (ED25519) to the list of known hosts.", file=sys.stderr)
    remote = any(h[3] for h in hosts)
    env = dict(opts.exports) if remote else {**os.environ, **opts.exports}
    prog = os.path.basename(opts.program[0])
    if prog in nccl.COLLECTIVES:
        return run_perf(prog, opts.program[1:], opts, hosts, placement, ctx, env)
    return run_generic(opts, hosts, placement, ctx, env)
