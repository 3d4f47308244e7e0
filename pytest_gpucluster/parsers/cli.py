"""`gpucluster parse KIND FILE`: print the parsed JSON of saved nvidia-smi / fi_info / nccl-tests / dcgmi diag (table or -j) /
kernel-log Xid / nvlink -s / topo -m output."""
from __future__ import annotations

import argparse
import json
import sys

from typing import Any

from . import KINDS, ParseError, parse
from .nvidia_smi import parse_nvidia_smi
from .nvidia_smi_q import parse_smi_log

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=sorted(KINDS), metavar="KIND", help="one of: " + ", ".join(sorted(KINDS)))
    parser.add_argument("file", metavar="FILE", help="saved output to parse, or - for stdin")
    parser.add_argument("--fields", default=None,
                        help="nvidia-smi only: comma-separated --query-gpu fields of headerless CSV (--format=csv,noheader)")
    parser.add_argument("--indent", type=int, default=2, help="JSON indentation (0 for one line)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
    except OSError as exc:
        print(f"gpucluster parse: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    result: Any
    try:
        if args.kind == "nvidia-smi" and args.fields:
            result = parse_nvidia_smi(text, fields=[f.strip() for f in args.fields.split(",") if f.strip()])
        else:
            result = parse(args.kind, text)
    except ParseError as exc:
        print(f"gpucluster parse: {args.file}: {exc}", file=sys.stderr)
        return 2
    data = result.to_json()
    if args.kind == "nvidia-smi" and data.get("format") in ("query", "xml"):
        # everything -q prints per GPU (ECC, row remapper, PCIe, clocks event reasons, power, fabric...)
        data["health"] = parse_smi_log(text).to_json()["gpus"]
    print(json.dumps(data, indent=args.indent or None))
    return 0
