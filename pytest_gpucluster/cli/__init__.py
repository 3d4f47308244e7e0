"""The `gpucluster` console script: dispatches to subcommands owned by their packages."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# subcommand -> module exposing `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pytest_gpucluster.cli.run", "run the acceptance suites (pytest on the installed suites)"),
    "sim": ("pytest_gpucluster.sim.cli", "serve a simulated EKS GPU cluster until interrupted"),
    "parse": ("pytest_gpucluster.parsers.cli", "parse saved nvidia-smi / fi_info / nccl-tests output to JSON"),
    "cleanup": ("pytest_gpucluster.kube.cleanup", "delete leftovers of dead runs from a cluster"),
    "compare": ("pytest_gpucluster.report.compare", "compare two summary.json files and list regressions"),
    "judge": ("pytest_gpucluster.bundle.judge", "re-judge a recorded run (its report folder) with the current judges "
                                                 "and a profile, without the cluster"),
    "verify": ("pytest_gpucluster.bundle.verify", "check a report folder against its manifest and signature"),
    "profile": ("pytest_gpucluster.cli.profile", "show the effective acceptance profile with each value's source"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpucluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a subcommand whose module is missing must not break the others
            sp.set_defaults(_missing=f"{name}: not available ({exc})")
            continue
        module.add_arguments(sp)
        modules[name] = module
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    missing = getattr(args, "_missing", None)
    if missing:
        print(f"gpucluster {missing}", file=sys.stderr)
        return 2
    return int(modules[args.command].run(args) or 0)

