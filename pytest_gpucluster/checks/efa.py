"""Judges for EFA: allocatable against the profile, and what `fi_info`, /dev/infiniband and `ulimit -l` showed in a pod
holding the node's EFA devices (pure: counts, probe outputs and the profile's numbers in, a Verdict out)."""
from __future__ import annotations

import shlex

from pytest_gpucluster.checks.probe_output import not_run as probe_not_run
from pytest_gpucluster.checks.verdict import Criterion, Verdict
from pytest_gpucluster.kube.objects import EFA_RESOURCE
from pytest_gpucluster.parsers import ParseError, parse_fi_info

SECTIONS = ("fi_info", "dev-infiniband", "memlock")
SG_HINT = ("the security group of EFA nodes must allow ALL traffic to and from itself (a self-referencing "
           "inbound and outbound rule; see test_efa_security_group_allows_itself in the aws suite)")


def why_no_efa(allocatable: str) -> str:
    """Hints for a node whose pod sees fewer EFA devices than expected, from what the node advertises now."""
    if allocatable in ("0", ""):
        return (f"The node advertises {EFA_RESOURCE}={allocatable}: the EFA device plugin is not running on it "
                "(does its DaemonSet tolerate the node's GPU taint? see test_efa_device_plugin_runs_on) or the instance "
                "has no EFA interfaces attached (instance type without EFA support, or a launch template / "
                "NodeClass without EFA network interfaces).")
    return (f"The node advertises {EFA_RESOURCE}={allocatable}: fewer interfaces attached than the instance type "
            "supports (check the launch template's network interfaces with InterfaceType=efa, one per network card), "
            "or the EFA device plugin registered only some of them (see its logs on the node).")


def allocatable(subject: str, instance_type: str, expected: int | None, got: int, capacity: str, hint: str,
                profile_path: str | None) -> Verdict:
    if not expected:
        return Verdict.not_shown(subject, f"{instance_type} has no EFA count in the acceptance profile "
                                 f"({profile_path})", f"add `instances: {{{instance_type}: {{efa: N}}}}` to judge it")
    crit = Criterion(f"{EFA_RESOURCE} allocatable", got, "interfaces", threshold=expected, op="==",
                     source=f"profile {instance_type} efa")
    facts = {f"{EFA_RESOURCE} capacity": capacity}
    if got == expected:
        return Verdict.passed(subject, f"{expected}", f"{got}", criteria=(crit,), facts=facts)
    return Verdict.failed(subject, f"{EFA_RESOURCE} allocatable {expected} (profile {instance_type} efa)",
                          f"allocatable {got}, capacity {capacity}", hint, summary="EFA count mismatch",
                          criteria=(crit,), facts=facts)


def not_run(subject: str, requested: int, describe: str, namespace: str | None, pod: str) -> Verdict:
    return probe_not_run(subject, "EFA", describe, namespace, pod, f"the probe pod (requesting {requested} "
                         f"{EFA_RESOURCE}, IPC_LOCK, the node's taints tolerated) to run `fi_info -p efa`")


def fi_info(subject: str, output: str, rc: int, want: int, requested: int, instance_type: str, hint: str) -> Verdict:
    """`fi_info -p efa`: provider efa, one distinct domain per expected device, RDM endpoints."""
    try:
        parsed = parse_fi_info(output)
    except ParseError as exc:
        return Verdict.failed(subject, "libfabric's `provider: efa` entries", f"output not understood ({exc})",
                              "Raw output is attached to the report.", summary="fi_info output not understood")
    entries = bool(parsed.entries)
    nics = parsed.nic_count("efa") if entries else 0
    crit = Criterion("EFA devices seen by fi_info (distinct domains)", nics, "devices", threshold=want, op="==",
                     source=f"profile {instance_type} efa")
    facts = {"fi_info providers": parsed.provider_names(),
             "fi_info EFA domains": parsed.domains("efa") if entries else [],
             "fi_info endpoint types": parsed.endpoint_types("efa") if entries else []}
    if parsed.error is not None or "efa" not in parsed.provider_names():
        error = f"fi_getinfo {parsed.error.code} ({parsed.error.message})" if parsed.error else f"exit code {rc}"
        return Verdict.failed(subject, f"`fi_info -p efa` to list {want} EFA device(s) (profile)",
                              f"{error} with {requested} {EFA_RESOURCE} requested",
                              hint + " If the node does advertise EFA, check the instance type supports EFA (aws suite: test_instance_type_supports_efa).",
                              summary="No EFA provider in a pod", criteria=(crit,), facts=facts)
    problems = []
    if nics != want:
        problems.append(f"{nics} distinct EFA domain(s) ({', '.join(parsed.nics('efa'))}) where the profile "
                        f"expects {want}")
    if "FI_EP_RDM" not in parsed.endpoint_types("efa"):
        problems.append(f"no FI_EP_RDM endpoint (endpoint types {parsed.endpoint_types('efa')}); NCCL's "
                        "aws-ofi-nccl plugin needs RDM endpoints")
    if problems:
        problems[-1] += f" ({requested} requested)"
    fix = (hint + " " if nics < want else "") + "Once every device shows, " + SG_HINT + "."
    return Verdict.from_problems(subject, f"{want} EFA device(s) with RDM endpoints", problems, fix,
                                 observed_ok=f"{nics} EFA device(s), RDM", summary="EFA devices missing in a pod",
                                 criteria=(crit,), facts=facts)


def infiniband(subject: str, output: str, rc: int, want: int, requested: int, instance_type: str) -> Verdict:
    """/dev/infiniband holds one uverbs device per EFA device the pod was given."""
    entries = [line.strip() for line in output.splitlines() if line.strip()] if rc == 0 else []
    uverbs = [e for e in entries if e.startswith("uverbs")]
    crit = Criterion("/dev/infiniband uverbs devices", len(uverbs), "devices", threshold=want, op="==",
                     source=f"profile {instance_type} efa")
    listing = shlex.join(entries) if entries else output or "empty"
    return Verdict.from_problems(
        subject, f"{want} uverbs device(s) in a pod given {requested} {EFA_RESOURCE} (profile {want})",
        [] if len(uverbs) == want else [f"{len(uverbs)} ({listing})"],
        "The EFA device plugin mounts /dev/infiniband/uverbsN for each allocated device: check that it runs on "
        "the node and that the node advertises every EFA interface.", observed_ok=f"{len(uverbs)} ({listing})",
        summary="/dev/infiniband", criteria=(crit,), facts={"/dev/infiniband": entries or output})


def memlock(subject: str, output: str, rc: int) -> Verdict:
    """`ulimit -l` in an EFA pod is unlimited (libfabric pins its buffers)."""
    value = output.strip().splitlines()[-1].strip() if output.strip() else ""
    crits = (Criterion("locked-memory limit in the pod", int(value), "KiB"),) if value.isdigit() else ()
    facts = {"ulimit -l in the pod": value or f"(no output, exit code {rc})"}
    if value == "unlimited":
        return Verdict.passed(subject, "unlimited", value, criteria=crits, facts=facts)
    return Verdict.failed(
        subject, "`ulimit -l` = unlimited in an EFA pod (libfabric and NCCL register GPU and host buffers with the "
        "NIC)", f"{value or 'nothing'} {'KiB ' if value.isdigit() else ''}(exit code {rc})",
        "Set LimitMEMLOCK=infinity for containerd on the node (the EKS AMIs do; custom AMIs / user data may not) "
        "or `default_ulimits` memlock -1 in the runtime config, and give the pod the IPC_LOCK capability.",
        summary="Locked memory limited", criteria=crits, facts=facts)
