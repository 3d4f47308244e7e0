"""`gpucluster profile show`: the effective acceptance profile (defaults <- family <- instance, then the user's
profile), one line per value with where it comes from (the `sources:` entries beside it in the profile), and each
check's tier with its default and reason."""
from __future__ import annotations

import argparse
import sys
from typing import Any

import pytest

from pytest_gpucluster.checks.nccl import physical_ceiling, size_arg
from pytest_gpucluster.profile import InstanceProfile, Profile, load_profile
from pytest_gpucluster.tiers import BLOCKING, UNLISTED_REASON

FIELDS = ("gpus", "gpu_product", "gpu_memory_mib", "efa", "gdrdma", "nvlink", "nvlink_gbs", "nvlink_sharp",
          "network_gbps", "ecc_required", "driver_min", "busbw_ceiling_gbs", "multi_node_coverage", "provisioning_budget_s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    show = sub.add_parser("show", help="print the effective profile with each value's source")
    show.add_argument("--instance-type", help="one instance type (default: every type the profile lists)")
    show.add_argument("--profile", help="a user profile YAML merged over the default (as --gpucluster-profile)")


def source_of(inst: InstanceProfile, key: str) -> str:
    """The most specific `sources:` entry for `key` (nccl.all_reduce_busbw_floor_gbs.2 -> ... -> nccl)."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in inst.sources:
            return inst.sources[".".join(parts[:i])]
    return "see the profile file's header"


def lines(profile: Profile, itype: str) -> list[str]:
    inst = profile.for_instance(itype)
    if inst is None:
        raise KeyError(itype)
    out = [f"{itype}:"]
    for key in FIELDS:
        value: Any = getattr(inst, key)
        if value in (None, {}, ""):
            continue
        out.append(f"  {key}: {value}    # {source_of(inst, key)}")
    for nodes, floors in sorted(inst.nccl_floors.items()):
        text = ", ".join(f"{size_arg(s)} {v:g}" for s, v in sorted(floors.items()))
        out.append(f"  nccl floor, {nodes} node(s): {text} GB/s    "
                   f"# {source_of(inst, f'nccl.all_reduce_busbw_floor_gbs.{nodes}')}")
    for nodes in (1, 2):
        ceiling, how = physical_ceiling(inst, nodes)
        out.append(f"  nccl ceiling, {nodes} node(s): " + (f"{ceiling:.1f} GB/s    # {how} (docs/nccl.md)" if ceiling
                                                            else f"none    # {how}"))
    return out


def tier_lines(profile: Profile) -> list[str]:
    """Each check's tier in this profile, the shipped default and the reason (the profile's `tiers:` section)."""
    tiers = profile.tiers
    out = [f"cluster.multi_tenant: {str(tiers.multi_tenant).lower()}    # true: `when_multi_tenant` tiers apply",
           "tiers (blocking: a failure is NOT ACCEPTED; advisory: a failure is a WARN that leaves the verdict alone):"]
    for tier in tiers.rows():
        default = f"default {tier.default}" + (", changed by your profile" if tier.changed_by_profile else "")
        other = tiers.effective[tier.check].get("when_multi_tenant")
        if other and not tiers.multi_tenant:
            default += f"; {other} when cluster.multi_tenant is true"
        out.append(f"  {tier.check}: {tier.tier} ({default})    # {tier.reason}")
    out.append(f"  any other check: {BLOCKING}    # {UNLISTED_REASON}")
    return out


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) != "show":
        print("usage: gpucluster profile show [--instance-type T] [--profile FILE]", file=sys.stderr)
        return 2
    try:
        profile = load_profile(args.profile)
    except pytest.UsageError as exc:
        print(f"gpucluster profile: {exc}", file=sys.stderr)
        return 4
    types = [args.instance_type] if args.instance_type else profile.instance_types()
    print(f"# effective profile: {' <- '.join(str(p) for p in profile.sources)} (sha256 {profile.sha256[:12]})")
    if not args.instance_type:
        print("\n".join(tier_lines(profile)))
    for itype in types:
        try:
            print("\n".join(lines(profile, itype)))
        except KeyError:
            print(f"gpucluster profile: {itype!r} is not in the profile (known: {', '.join(profile.instance_types())})",
                  file=sys.stderr)
            return 4
    return 0
