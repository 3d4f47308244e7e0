"""Judges for GPU node health beyond nvidia-smi: DCGM diagnostics, kernel-log Xids, NVLink and fabric, ECC and row
remapping, PCIe links, clocks and power, topology and fleet uniformity (pure: parsed outputs and the profile's
`health:` numbers in, a Verdict out). Every failure names the node, the GPU (index, UUID, bus id) and the action."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pytest_gpucluster.checks.verdict import Criterion, Verdict
from pytest_gpucluster.parsers._text import ParseError
from pytest_gpucluster.parsers.dcgm_diag import DcgmDiagResult
from pytest_gpucluster.parsers.nvidia_smi_health import (
    GpuHealth,
    SmiHealth,
    parse_smi_health,
)
from pytest_gpucluster.parsers.nvlink import NvlinkResult
from pytest_gpucluster.parsers.topo import TopoMatrix
from pytest_gpucluster.parsers.xid import XidEvent, XidLog, pci_key

XID_CATALOG = "https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html"
SECTIONS = ("smi-q", "nvlink", "topo", "host", "cuda")
_SECTION = re.compile(r"^### (?P<name>[\w-]+)\n(?P<body>.*?)^### rc=(?P<rc>\d+)$", re.M | re.S)
CUDA_OK = "CUDA-LOAD ok"
# Clock event reasons that mean the GPU is held below its clocks by the hardware, not by its workload.
BAD_CLOCK_EVENTS = ("HW Slowdown", "HW Thermal Slowdown", "HW Power Brake Slowdown", "SW Thermal Slowdown",
                    "hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")


def split_sections(logs: str) -> dict[str, tuple[str, int]]:
    """The probe script's sections: name -> (output, exit code)."""
    return {m["name"]: (m["body"].rstrip("\n"), int(m["rc"])) for m in _SECTION.finditer(logs)}


# -- Xid classification -------------------------------------------------------------------------------
@dataclass(frozen=True)
class XidClass:
    severity: str        # fail | warn
    name: str
    action: str          # NVIDIA's resolution bucket, then what to do on EKS


_RESET = "RESET_GPU: drain the node and reset the GPU (`nvidia-smi -r -i <gpu>` or reboot the node)"
_REPLACE = ("; if it happens again, replace the instance (EC2: stop/start moves it to another host, or report the "
            "instance to AWS Support)")
XID_CLASSES: dict[int, XidClass] = {
    48: XidClass("fail", "double-bit ECC error (DBE)", _RESET + " to retire/remap the page" + _REPLACE),
    61: XidClass("fail", "internal micro-controller breakpoint/warning", _RESET + _REPLACE),
    62: XidClass("fail", "internal micro-controller halt", _RESET + _REPLACE),
    63: XidClass("fail", "ECC page retirement or row remapping recorded (pending)",
                 _RESET + " so the pending row remap takes effect; check `nvidia-smi -q -d ROW_REMAPPER`"),
    64: XidClass("fail", "ECC page retirement or row remapping failure",
                 _RESET + ", then CONTACT_SUPPORT: the GPU ran out of spare rows" + _REPLACE),
    74: XidClass("fail", "NVLink error", _RESET + " and check the links (`nvidia-smi nvlink -s`, `-e`)" + _REPLACE),
    79: XidClass("fail", "GPU has fallen off the bus",
                 "RESTART_BM: reboot the node (drain first); the GPU is gone until then" + _REPLACE),
    92: XidClass("warn", "high single-bit ECC error rate", "watch the GPU's ECC counters; replace if it keeps rising"),
    94: XidClass("warn", "contained ECC error", "RESTART_APP: the affected application was stopped; reset the GPU "
                 "at the next drain so the row is remapped"),
    95: XidClass("fail", "uncontained ECC error", _RESET + _REPLACE),
    119: XidClass("fail", "GSP RPC timeout", _RESET + "; update the driver if it repeats"),
    120: XidClass("fail", "GSP error", _RESET + "; update the driver if it repeats"),
    140: XidClass("fail", "unrecovered ECC error", _RESET + _REPLACE),
    13: XidClass("warn", "graphics engine exception (application)", "RESTART_APP: usually an application bug "
                 "(out-of-range access); run DCGM diag if it is not tied to one job"),
    31: XidClass("warn", "GPU memory page fault (application)", "RESTART_APP: debug the application"),
    43: XidClass("warn", "GPU stopped processing (application fault)", "IGNORE: a user application faulted"),
    45: XidClass("warn", "preemptive cleanup (after another error or a killed job)", "IGNORE unless other Xids "
                 "accompany it"),
    109: XidClass("warn", "context switch timeout", "RESTART_APP; run DCGM diag if it repeats"),
}


def classify_xid(event: XidEvent) -> XidClass:
    if event.kind == "SXid":
        return XidClass("warn", f"NVSwitch SXid {event.code}", "look the SXid up in NVIDIA's NVSwitch SXid catalog; "
                        "fatal SXids need a reset of the whole NVSwitch tray (reboot the node)")
    return XID_CLASSES.get(event.code, XidClass("warn", f"Xid {event.code}", f"look it up in {XID_CATALOG}"))


# -- naming GPUs -------------------------------------------------------------------------------------
def gpu_label(index: int | None, g: GpuHealth | None, bus: str | None = None) -> str:
    if g is None:
        return f"GPU {index if index is not None else '?'}" + (f" (bus {bus})" if bus else "")
    return f"GPU {index} ({g.uuid or 'no UUID'}, bus {g.bus_id})"


def gpus_by_pci(health: SmiHealth | None) -> dict[str, tuple[int, GpuHealth]]:
    return {pci_key(g.bus_id): (i, g) for i, g in enumerate(health.gpus)} if health else {}


def not_run(subject: str, what: str, describe: str, namespace: str | None, pod: str) -> Verdict:
    return Verdict.failed(subject, f"the {what} probe pod to run and print its sections", describe,
                          f"Look at `kubectl -n {namespace} describe pod {pod}` (kept only with --gpucluster-keep) "
                          "and the node's events.", summary=f"{what} probe did not run")


# -- DCGM ----------------------------------------------------------------------------------------------
def dcgm(subject: str, parsed: DcgmDiagResult | None, level: int, duration_s: float | None, rc: int,
         problem: str | None, gpus: Mapping[int, GpuHealth] | None = None) -> Verdict:
    """Every test result of every GPU of `dcgmi diag -r <level> -j` passed (warnings recorded, skips shown)."""
    crits = (Criterion("dcgmi diag duration", round(duration_s, 1), "s"),) if duration_s is not None else ()
    facts: dict[str, Any] = {"dcgmi diag level": level, "dcgmi diag duration": f"{duration_s:.0f} s"
                             if duration_s is not None else "unknown"}
    if parsed is None:
        return Verdict.failed(subject, f"`dcgmi diag -r {level} -j` to print its JSON result",
                              f"{problem or 'no output'} (exit code {rc})",
                              "Raw output is attached. Check that the DCGM image runs on the node (nv-hostengine "
                              "needs the GPUs the pod holds) and that the driver is loaded.",
                              summary="DCGM diagnostics did not produce a result", criteria=crits, facts=facts)
    facts.update({"DCGM version": parsed.dcgm_version, "driver (DCGM)": parsed.driver_version,
                  "tests": parsed.tests()})

    def name(i: int | None) -> str:
        return gpu_label(i, (gpus or {}).get(i)) if i is not None else "all GPUs"

    failed = parsed.with_status("fail", "unknown")
    warned = parsed.with_status("warn")
    skipped = parsed.with_status("skip", "not run")
    if warned:
        facts["DCGM warnings"] = [f"{r.test} on {name(r.entity_id)}: {'; '.join(r.warnings) or r.status}"
                                  for r in warned]
    if skipped:
        facts["DCGM tests skipped"] = sorted({f"{r.test} ({r.status})" for r in skipped})
    if parsed.runtime_error:
        return Verdict.failed(subject, f"`dcgmi diag -r {level}` to complete", f"runtime error: "
                              f"{parsed.runtime_error}", "Read nv-hostengine.log / nvvs.log in the DCGM pod.",
                              summary="DCGM diagnostics failed", criteria=crits, facts=facts)
    if failed:
        problems = [f"{r.test} FAILED on {name(r.entity_id)}: {'; '.join(r.warnings) or r.status}"
                    + (f" (DCGM error id {', '.join(map(str, r.error_ids))})" if r.error_ids else "")
                    for r in failed]
        return Verdict.failed(subject, f"every `dcgmi diag -r {level}` test to pass on every GPU", "; ".join(problems),
                              "Act on DCGM's message for the named GPU: a hardware failure (memory, pcie, diagnostic, "
                              "targeted stress) means drain the node and replace the instance; a software/config "
                              "failure (persistence mode, driver, inforom) is fixed on the node. See "
                              "https://docs.nvidia.com/datacenter/dcgm/latest/reference/diagnostics/errors.html",
                              summary="DCGM diagnostics failed", criteria=crits, facts=facts)
    ran = [r for r in parsed.results if r.status in ("pass", "warn")]
    if not ran:
        return Verdict.not_shown(subject, f"every DCGM test was skipped or not run ({facts.get('DCGM tests skipped')})",
                                 "run the DCGM image with the GPUs allocated; level 2+ tests need CUDA in the image",
                                 criteria=crits, facts=facts)
    return Verdict.passed(subject, f"every dcgmi diag -r {level} test passes",
                          f"{len(ran)} results passed in {facts['dcgmi diag duration']}", criteria=crits, facts=facts)


# -- Xid -----------------------------------------------------------------------------------------------
def xid(subject: str, log: XidLog | None, uptime_s: float | None, window_h: float | None,
        health: SmiHealth | None, why_not: str | None = None) -> Verdict:
    """No Xid the NVIDIA catalog says needs a reset/replacement in the kernel log (since boot or the last N hours)."""
    if log is None:
        return Verdict.not_shown(subject, why_not or "the kernel log could not be read",
                                 "allow a privileged pod reading /dev/kmsg in the run's namespace (see the suite "
                                 "docstring: RBAC pods/create, Pod Security `privileged`)")
    window_s = window_h * 3600 if window_h else None
    events = [e for e in log.events
              if window_s is None or e.seconds is None or uptime_s is None or uptime_s - e.seconds <= window_s]
    where = f"in the last {window_h:g} h" if window_s else "since boot"
    by_pci = gpus_by_pci(health)

    def describe(e: XidEvent) -> str:
        idx, g = by_pci.get(e.pci, (None, None))
        gpu = gpu_label(idx, g, e.pci) if g else f"GPU at PCI {e.pci}" + (
            f" ({log.uuid_by_pci[e.pci]})" if e.pci in log.uuid_by_pci else "")
        c = classify_xid(e)
        ago = f", {(uptime_s - e.seconds) / 3600:.1f} h ago" if uptime_s is not None and e.seconds is not None else ""
        return f"{e.kind} {e.code} ({c.name}) on {gpu}{ago}: {e.message[:120]}"

    fails = [e for e in events if classify_xid(e).severity == "fail"]
    warns = [e for e in events if classify_xid(e).severity != "fail"]
    counts = Counter(f"{e.kind} {e.code}" for e in events)
    facts: dict[str, Any] = {"kernel log lines read": log.lines, "Xid window": where,
                             "Xid/SXid events": dict(counts) or "none"}
    if warns:
        facts["Xid warnings (application-level)"] = sorted({describe(e) for e in warns})[:10]
    crit = Criterion(f"Xids needing a reset or replacement ({where})", len(fails), "events", threshold=0, op="==",
                     source=XID_CATALOG)
    if fails:
        actions = sorted({f"{e.kind} {e.code}: {classify_xid(e).action}" for e in fails})
        return Verdict.failed(subject, f"no Xid that NVIDIA's catalog resolves with a GPU reset or replacement {where}",
                              "; ".join(sorted({describe(e) for e in fails})[:8]),
                              "NVIDIA's recommended action (" + XID_CATALOG + "): " + " | ".join(actions),
                              summary="GPU Xid errors", criteria=(crit,), facts=facts)
    return Verdict.passed(subject, f"no reset/replace Xid {where}",
                          f"{len(events)} Xid events, none needing a reset" if events else "no Xid events",
                          criteria=(crit,), facts=facts)


# -- NVLink and fabric ------------------------------------------------------------------------------
def nvlink_fabric(subject: str, links: int | None, link_gbs: float | None, nvlink: NvlinkResult | None,
                  health: SmiHealth | None, cuda_out: str, cuda_rc: int) -> Verdict:
    """On NVSwitch types: every link of every GPU up at the profile's speed, fabric state Completed/Success, and a
    CUDA context on every GPU (CUDA init fails with "system not yet initialized" when the fabric manager is not)."""
    if not links:
        return Verdict.not_shown(subject, "the instance type has no NVLink expectation in the profile (PCIe-only GPUs)",
                                 "set `health: {nvlink_links: N, nvlink_link_gbs: X}` for NVSwitch instance types")
    problems: list[str] = []
    facts: dict[str, Any] = {}
    gpus = health.gpus if health else []
    for i, g in enumerate(gpus):
        if g.fabric_state is not None and (g.fabric_state != "Completed" or (g.fabric_status or "Success") != "Success"):
            problems.append(f"{gpu_label(i, g)} fabric state {g.fabric_state}/{g.fabric_status}")
    for ng in (nvlink.gpus if nvlink else []):
        name = gpu_label(ng.index, gpus[ng.index] if ng.index < len(gpus) else None)
        slow = [k for k, v in ng.links.items() if v is not None and link_gbs and v < link_gbs * 0.99]
        if ng.note and not ng.links:
            problems.append(f"{name}: {ng.note}")
        elif len(ng.active) < links or ng.inactive or slow:
            problems.append(f"{name}: {len(ng.active)}/{links} links active" +
                            (f", inactive {ng.inactive}" if ng.inactive else "") +
                            (f", below {link_gbs} GB/s: {slow}" if slow else ""))
    if nvlink is None or not nvlink.gpus:
        problems.append("`nvidia-smi nvlink -s` listed no GPU" + (f" ({'; '.join(nvlink.notes)})"
                                                                   if nvlink and nvlink.notes else ""))
    active = sum(len(ng.active) for ng in (nvlink.gpus if nvlink else []))
    facts["NVLinks active"] = f"{active}/{links * max(len(gpus), len(nvlink.gpus) if nvlink else 0)}"
    facts["fabric state"] = sorted({f"{g.fabric_state}/{g.fabric_status}" for g in gpus}) or "not shown"
    cuda_line = next((ln for ln in cuda_out.splitlines() if ln.strip()), "")
    if CUDA_OK not in cuda_out:
        err = next((ln.strip() for ln in reversed(cuda_out.splitlines()) if "Error" in ln or "error" in ln),
                   cuda_line or f"exit code {cuda_rc}")
        problems.append(f"CUDA could not use the GPUs: {err}")
    facts["CUDA on all GPUs"] = "ok" if CUDA_OK in cuda_out else "failed"
    crit = Criterion("NVLinks active", active, "links", threshold=links * len(gpus) if gpus else links, op=">=",
                     source="profile health.nvlink_links x GPUs")
    return Verdict.from_problems(
        subject, f"{links} NVLinks per GPU at {link_gbs} GB/s, fabric Completed/Success, CUDA usable", problems,
        "Check the fabric manager on the node (`systemctl status nvidia-fabricmanager`: it must run the same version "
        "as the driver; EKS GPU AMIs start it); CUDA reports 'system not yet initialized' until it has trained the "
        "NVSwitch fabric. Inactive links with a running fabric manager: reset the GPUs or replace the instance.",
        observed_ok=f"{active} links active, fabric Completed", summary="NVLink / fabric not ready",
        criteria=(crit,), facts=facts)


# -- ECC and memory -----------------------------------------------------------------------------------
def ecc_memory(subject: str, health: SmiHealth | None) -> Verdict:
    """No uncorrectable ECC errors (volatile/aggregate), no pending or failed row remapping, no pending page retirement,
    and a bank remap histogram without exhausted banks."""
    if health is None or not health.gpus:
        return Verdict.failed(subject, "`nvidia-smi -q` with ECC / row remapper sections", "no GPU in the output",
                              "Raw output is attached; check the driver on the node.", summary="ECC not readable")
    problems = []
    for i, g in enumerate(health.gpus):
        name = gpu_label(i, g)
        if g.ecc_volatile_uncorrectable:
            problems.append(f"{name}: {g.ecc_volatile_uncorrectable} volatile uncorrectable ECC errors")
        if g.ecc_aggregate_uncorrectable:
            problems.append(f"{name}: {g.ecc_aggregate_uncorrectable} aggregate (lifetime) uncorrectable ECC errors")
        if (g.remap_pending or "").lower() == "yes":
            problems.append(f"{name}: row remapping pending (reset the GPU to apply it)")
        if (g.remap_failure or "").lower() == "yes":
            problems.append(f"{name}: row remapping FAILED (no spare rows left)")
        if g.remap_histogram.get("None"):
            problems.append(f"{name}: {g.remap_histogram['None']} bank(s) with no remap left")
        if (g.retired_pending or "").lower() == "yes":
            problems.append(f"{name}: page retirement pending (reset the GPU)")
        if g.retired_dbe:
            problems.append(f"{name}: {g.retired_dbe} pages retired for double-bit ECC errors")
    facts = {"remapped rows (uncorrectable)": sum(g.remapped_uncorrectable or 0 for g in health.gpus),
             "ECC mode": sorted({str(g.ecc_mode) for g in health.gpus})}
    return Verdict.from_problems(
        subject, "no uncorrectable ECC errors, no pending/failed row remap or page retirement", problems,
        "Pending remap/retirement: drain the node and reset the GPU (`nvidia-smi -r -i <gpu>` or reboot) so the "
        "remap takes effect. Remap failure, exhausted banks or recurring uncorrectable errors: replace the instance "
        "(NVIDIA's Xid 64/48 guidance).", observed_ok="clean", summary="GPU memory errors", facts=facts)


# -- PCIe -----------------------------------------------------------------------------------------------
def pcie(subject: str, health: SmiHealth | None, gen: int | None, width: int | None, loaded: bool) -> Verdict:
    """Every GPU's PCIe link at the profile's generation and width (read under load: idle GPUs downshift the
    generation to save power, so under no load only the width is judged)."""
    if health is None or not health.gpus:
        return Verdict.failed(subject, "`nvidia-smi -q` with the PCI link section", "no GPU in the output",
                              "Raw output is attached.", summary="PCIe not readable")
    problems = []
    for i, g in enumerate(health.gpus):
        want_gen = gen or g.pcie_gen_max
        want_width = width or g.pcie_width_max
        if want_width and g.pcie_width_current is not None and g.pcie_width_current < want_width:
            problems.append(f"{gpu_label(i, g)}: link width x{g.pcie_width_current}, expected x{want_width}"
                            f" (max x{g.pcie_width_max})")
        if loaded and want_gen and g.pcie_gen_current is not None and g.pcie_gen_current < want_gen:
            problems.append(f"{gpu_label(i, g)}: PCIe Gen{g.pcie_gen_current} under load, expected Gen{want_gen}"
                            f" (max Gen{g.pcie_gen_max})")
    links = sorted({f"Gen{g.pcie_gen_current} x{g.pcie_width_current}" for g in health.gpus})
    facts = {"PCIe links": links, "read under load": loaded}
    crit = Criterion("GPUs below the expected PCIe link", len(problems), "GPUs", threshold=0, op="==",
                     source="profile health.pcie_gen / pcie_width")
    return Verdict.from_problems(
        subject, f"PCIe Gen{gen or 'max'} x{width or 'max'} on every GPU", problems,
        "A link trained below its width or generation is a seating, riser or retimer fault: drain the node and "
        "replace the instance (on AWS: stop/start, or report the instance). DCGM's pcie test measures the bandwidth.",
        observed_ok=", ".join(links), summary="PCIe link degraded", criteria=(crit,), facts=facts)


# -- clocks, power, persistence ---------------------------------------------------------------------
def clocks(subject: str, health: SmiHealth | None, power_limit_w: float | None, loaded: bool) -> Verdict:
    """Under load: no hardware slowdown / thermal / power-brake clock event reason; persistence mode on; power limit
    at the product default (and the profile's value)."""
    if health is None or not health.gpus:
        return Verdict.failed(subject, "`nvidia-smi -q` with clocks event reasons", "no GPU in the output",
                              "Raw output is attached.", summary="clocks not readable")
    problems = []
    for i, g in enumerate(health.gpus):
        bad = [r for r in g.clock_events_active if r in BAD_CLOCK_EVENTS]
        if bad:
            problems.append(f"{gpu_label(i, g)}: clock event reasons active under load: {', '.join(bad)}")
        if g.persistence_mode and g.persistence_mode != "Enabled":
            problems.append(f"{gpu_label(i, g)}: persistence mode {g.persistence_mode}")
        want = power_limit_w or g.power_limit_default_w
        if want and g.power_limit_w is not None and abs(g.power_limit_w - want) > 1:
            problems.append(f"{gpu_label(i, g)}: power limit {g.power_limit_w:g} W, expected {want:g} W")
    facts = {"clock event reasons active": sorted({r for g in health.gpus for r in g.clock_events_active}) or "none",
             "power limits": sorted({f"{g.power_limit_w:g} W" for g in health.gpus if g.power_limit_w}),
             "under load": loaded}
    if not loaded and not problems:
        return Verdict.not_shown(subject, "the CUDA load did not run, so throttling under load was not observed",
                                 "see test_nvlink_and_fabric_ready for why CUDA failed", facts=facts)
    return Verdict.from_problems(
        subject, f"no hardware slowdown under load, persistence mode on, power limit {power_limit_w or 'default'} W",
        problems, "HW Slowdown / Power Brake: the board asserts it (power supply, cooling, sensor): drain the node and "
        "replace the instance. Thermal: check cooling. Power limit: `nvidia-smi -pl <W>` was changed on the node "
        "(reset it, or fix the AMI/user data). Persistence mode: run nvidia-persistenced (EKS GPU AMIs do).",
        observed_ok="no throttling", summary="GPU clocks throttled", facts=facts)


# -- topology -------------------------------------------------------------------------------------------
def topology(subject: str, topo: TopoMatrix | None, gpu_gpu_link: str | None, gpus: int) -> Verdict:
    """`nvidia-smi topo -m` lists the profile's GPU count and the expected GPU-GPU connection between every pair."""
    if topo is None:
        return Verdict.failed(subject, "`nvidia-smi topo -m` matrix", "not understood", "Raw output is attached.",
                              summary="topology not readable")
    problems = []
    seen = topo.gpus
    if gpus and len(seen) != gpus:
        problems.append(f"{len(seen)} GPUs in the matrix, profile {gpus}")
    wrong = [f"{a}-{b}: {topo.link(a, b)}" for a in seen for b in seen
             if a < b and gpu_gpu_link and topo.link(a, b) != gpu_gpu_link]
    if wrong:
        problems.append(f"GPU pairs not connected by {gpu_gpu_link}: {', '.join(wrong[:8])}")
    facts = {"GPU-GPU links": sorted({topo.link(a, b) or "?" for a in seen for b in seen if a != b}) or "single GPU",
             "NUMA affinity": topo.numa_affinity}
    return Verdict.from_problems(
        subject, f"{gpus} GPUs" + (f", every pair {gpu_gpu_link}" if gpu_gpu_link else ""), problems,
        "Fewer NV links than expected between GPUs means NVLinks or NVSwitches are down: see the NVLink check; "
        "a missing GPU: see test_nvidia_smi_sees_every_gpu.", observed_ok=f"{len(seen)} GPUs as expected",
        summary="GPU topology differs", facts=facts)


# -- fleet uniformity -----------------------------------------------------------------------------------
UNIFORM_KEYS = ("driver", "cuda", "vbios", "kernel", "efa driver")


def uniformity(subject: str, node: str, instance_type: str, versions: Mapping[str, Mapping[str, str]]) -> Verdict:
    """`versions`: node -> {driver, cuda, vbios, kernel, efa driver} for every node of this instance type. The node
    fails when one of its values differs from what most nodes of its type run."""
    mine = versions.get(node)
    if mine is None:
        return Verdict.not_shown(subject, "no versions read on this node (its health probe did not run)")
    problems: list[str] = []
    facts: dict[str, Any] = {}
    for key in UNIFORM_KEYS:
        values = Counter(v[key] for v in versions.values() if v.get(key))
        if not values or not mine.get(key):
            continue
        common, n = values.most_common(1)[0]
        facts[key] = mine[key]
        if len(values) > 1:
            facts[f"{key} across {instance_type}"] = dict(values)
        tied = [v for v, c in values.items() if c == n]
        if len(tied) > 1:
            problems.append(f"{key} differs across the {sum(values.values())} {instance_type} nodes with no majority: "
                            + ", ".join(f"{v} on {c} node(s)" for v, c in values.most_common()) + f"; {node} runs {mine[key]}")
        elif mine[key] != common:
            problems.append(f"{key} {mine[key]} on {node} where {n}/{sum(values.values())} {instance_type} nodes "
                            f"run {common}")
    return Verdict.from_problems(
        subject, f"the same {', '.join(UNIFORM_KEYS)} as the other {instance_type} nodes", problems,
        "Mixed drivers break NCCL jobs across nodes and make results irreproducible: replace the odd node (or roll "
        "the AMI / GPU Operator driver version so every node of the type runs the same one).",
        observed_ok="same as the rest of the type", summary="Node differs from its fleet", facts=facts)


def versions_of(health: SmiHealth | None, host: str) -> dict[str, str]:
    """The values fleet uniformity compares, from `nvidia-smi -q` and the probe's host section."""
    out: dict[str, str] = {}
    if health is not None:
        out["driver"] = health.driver_version or ""
        out["cuda"] = health.cuda_version or ""
        out["vbios"] = ",".join(sorted({g.vbios or "" for g in health.gpus}))
    for line in host.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("kernel", "efa driver") and value.strip():
            out[key.strip()] = value.strip()
    return {k: v for k, v in out.items() if v}


def summary_row(verdicts: Mapping[str, Verdict]) -> str:
    """One compact line for the per-node summary fact: check -> pass/FAIL/n-s."""
    mark = {"pass": "ok", "fail": "FAIL", "not shown": "n/s"}
    return " ".join(f"{name}={mark[v.status.value]}" for name, v in verdicts.items())


def gpus_seen(sequence: Sequence[GpuHealth]) -> dict[int, GpuHealth]:
    return dict(enumerate(sequence))


def smi_health_of(logs: str) -> SmiHealth | None:
    """The `nvidia-smi -q` health sections of a node-health probe's log (None when absent or unreadable)."""
    try:
        return parse_smi_health(split_sections(logs).get("smi-q", ("", 1))[0])
    except ParseError:
        return None
