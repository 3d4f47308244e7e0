"""`gpucluster run`: pytest on the installed acceptance suites (or a checkout's suites/), options passed through."""
from __future__ import annotations

import argparse
import sys

import pytest

from ..packaged import suites_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Everything after `run` belongs to pytest (`gpucluster run --sim -m gpu`, `gpucluster run --help`):
    # with no prefix characters argparse treats every word as a positional, so REMAINDER takes them all.
    parser.prefix_chars = "\0"
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="pytest options, e.g. --kubeconfig ~/.kube/config -m gpu, or --sim")


def run(args: argparse.Namespace) -> int:
    try:
        target = suites_dir()
    except FileNotFoundError as exc:
        print(f"gpucluster run: {exc}", file=sys.stderr)
        return 2
    extra = [a for a in args.pytest_args if a != "--"]
    # Paths given explicitly (e.g. one suite module) replace the default target.
    explicit = [a for a in extra if not a.startswith("-") and (target / a).exists()]
    rest = [a for a in extra if a not in explicit]
    paths = [str(target / a) for a in explicit] or [str(target)]
    return int(pytest.main([*paths, "--rootdir", str(target), *rest]))
