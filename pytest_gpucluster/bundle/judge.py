"""`gpucluster judge REPORT_DIR [--gpucluster-profile FILE] [--report-dir OUT]`: run the shipped suites against a
recorded run instead of a cluster (replay.py) and write a full report of the current judges' verdict under the given
profile, marked "re-judged from run <id> recorded <time>, profile <file> (sha256)"."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from .replay import Recording, RecordingError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report_dir", metavar="REPORT_DIR", help="the report folder of a recorded run")
    parser.add_argument("--gpucluster-profile", dest="profile", metavar="FILE", default=None,
                        help="acceptance profile to judge with, deep-merged over the default (default: the default "
                             "profile, with a simulated scenario's own expectations as the recorded run had them)")
    parser.add_argument("--report-dir", dest="out", metavar="OUT", default="reports",
                        help="write the new report folder under OUT/<timestamp>/ (default: reports/)")
    parser.add_argument("-q", "--quiet", action="store_true", help="pytest's -q")


def run(args: argparse.Namespace) -> int:
    from ..packaged import suites_dir

    folder = Path(args.report_dir)
    try:
        recording = Recording.load(folder)
    except RecordingError as exc:
        print(f"gpucluster judge: {exc}", file=sys.stderr)
        return 2
    if args.profile and not Path(args.profile).is_file():
        print(f"gpucluster judge: --gpucluster-profile must be a YAML file, given: {args.profile}", file=sys.stderr)
        return 2
    target = suites_dir()
    extra = ["-q"] if args.quiet else []
    # the suite files and tests the recorded run collected (recordings without the list: all of them); anything else
    # would ask questions the recorded run never asked
    recorded = (recording.index.get("selection") or {}).get("suites")
    if recorded is not None and not recorded:
        print(f"gpucluster judge: {folder}: the recorded run ran none of the shipped suites (only a site's own test "
              "files): there is nothing this tool's judges can re-judge", file=sys.stderr)
        return 2
    paths = [str(target) if a in (".", "") else f"{target}/{a}" for a in recorded or ["."]]
    # rootdir above suites/: test ids read suites/test_x.py::..., as in the recorded run, and the report judges the
    # profile's required evidence (report/collector.in_suites)
    argv = [*paths, "--rootdir", str(target.parent), f"--gpucluster-replay={folder.resolve()}",
            f"--gpucluster-report-dir={Path(args.out).resolve()}", "-p", "no:cacheprovider", *extra]
    if args.profile:
        argv.append(f"--gpucluster-profile={Path(args.profile).resolve()}")
    return int(pytest.main(argv))
