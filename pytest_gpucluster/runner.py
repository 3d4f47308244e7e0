"""`gpucluster run`: pytest on the installed acceptance suites (or a checkout's suites/), options passed through."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from .packaged import SUITES_PACKAGE, package_folder


def suites_dir() -> Path:
    """The acceptance suites shipped as the package `pytest_gpucluster.suites` (suites/ in a checkout)."""
    return package_folder(SUITES_PACKAGE)


def in_suites(path: str | Path) -> bool:
    """Whether a file lies inside the shipped acceptance suites, wherever they are installed (a checkout's suites/,
    site-packages/pytest_gpucluster/suites): what makes a run a suite run, whatever its rootdir or test ids."""
    try:
        suites = suites_dir().resolve()
    except FileNotFoundError:
        return False
    where = Path(path).resolve()
    return where == suites or suites in where.parents


def collects_suites(config: pytest.Config) -> bool:
    """Whether a run's arguments point at the shipped suites (known before collection; after it, the collected
    items say: report/collector.py)."""
    return bool(suite_args(config))


def suite_args(config: pytest.Config) -> list[str]:
    """The run's file and test arguments that lie in the shipped suites, relative to them ("." for all of them,
    "test_nccl.py", "test_nccl.py::test_x"): what `gpucluster judge` collects again. Arguments outside the shipped
    suites (a site's own test files) are left out: this tool's judges cannot re-judge them."""
    try:
        root = suites_dir().resolve()
    except FileNotFoundError:
        return []
    out = []
    for arg in config.args:
        path, sep, rest = str(arg).partition("::")
        where = (config.invocation_params.dir / path).resolve()
        if where == root or root in where.parents:
            out.append(where.relative_to(root).as_posix() + sep + rest)
    return out


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
