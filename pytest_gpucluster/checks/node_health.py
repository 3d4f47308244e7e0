"""Judges of the node-health probe (a CUDA load on every GPU, `nvidia-smi -q` read under it, `nvlink -s`, `topo -m`):
CUDA usable on every GPU, NVLink and fabric, ECC and memory replacement flags, memory-error history, PCIe links,
clocks under load and topology (pure: parsed outputs and the profile's `health:` numbers in, a Verdict out). Every
failure names the node, the GPU (index, UUID, bus id) and the action. DCGM: checks/dcgm.py; Xids:
checks/kernel_log.py; fleet uniformity: checks/fleet.py."""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from pytest_gpucluster.checks.probe_output import split_sections
from pytest_gpucluster.checks.verdict import Criterion, Verdict
from pytest_gpucluster.parsers import ParseError
from pytest_gpucluster.parsers.nvidia_smi_model import SmiGpu, SmiLog
from pytest_gpucluster.parsers.nvidia_smi_q import parse_smi_log
from pytest_gpucluster.parsers.nvlink import NvlinkResult
from pytest_gpucluster.parsers.topo import TopoMatrix

# What each load prints once it runs on a GPU, the GPU index captured: dcgmproftester's per-worker report line
# `Worker <gpu>:<worker>[<field id>]: ...` (NVIDIA/DCGM dcgmproftester/PhysicalGpu.cpp, a line per report interval
# once the worker's CUDA load runs; real output in NVIDIA/DCGM issue #239), and the PyTorch load's own marker printed
# after its first synchronize on that device.
LOAD_MARKS = (re.compile(r"^Worker (\d+):\d+ ?\[\d+\]:", re.M), re.compile(r"CUDA-LOAD running device=(\d+)"))
# Clock event reasons that mean the GPU is held below its clocks by the hardware, not by its workload.
BAD_CLOCK_EVENTS = ("HW Slowdown", "HW Thermal Slowdown", "HW Power Brake Slowdown", "SW Thermal Slowdown",
                    "hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")
FABRIC_NOT_READY = ("system not yet initialized", "Error 802", "cudaErrorSystemNotReady")
IDLE_LINKS = ("NVIDIA documents that the current PCIe link generation and width \"may be reduced when the GPU is not in "
              "use\" (nvidia-smi manual, GPU Link Info)")


def smi_health_of(logs: str) -> SmiLog | None:
    """The `nvidia-smi -q` health sections of a node-health probe's log (None when absent or unreadable)."""
    try:
        return parse_smi_log(split_sections(logs).get("smi-q", ("", 1))[0])
    except ParseError:
        return None


def load_running(text: str) -> set[int]:
    """GPU indices the load announced it runs on."""
    return {int(m.group(1)) for mark in LOAD_MARKS for m in mark.finditer(text)}


# -- naming GPUs -------------------------------------------------------------------------------------
def gpu_label(index: int | None, g: SmiGpu | None, bus: str | None = None) -> str:
    if g is None:
        return f"GPU {index if index is not None else '?'}" + (f" (bus {bus})" if bus else "")
    return f"GPU {index} ({g.uuid or 'no UUID'}, bus {g.bus_id})"


def gpus_seen(sequence: Sequence[SmiGpu]) -> dict[int, SmiGpu]:
    return dict(enumerate(sequence))


def mig_mixed(subject: str, what: str, mig: Mapping[str, int]) -> Verdict:
    """A node whose device plugin advertises MIG devices and no whole GPU (the `mixed` MIG strategy): whole-GPU
    checks cannot run there."""
    return Verdict.not_shown(subject, f"MIG mixed: whole GPUs needed for {what}; the node advertises only "
                             + ", ".join(f"{v} x {k}" for k, v in sorted(mig.items())) + " and 0 nvidia.com/gpu",
                             "judge this node's hardware before MIG is configured, or on a node of the type in whole-GPU "
                             "mode (nvidia.com/mig.config=all-disabled)")


def summary_row(verdicts: Mapping[str, Verdict]) -> str:
    """One compact line for the per-node summary fact: check -> pass/FAIL/n-s."""
    mark = {"pass": "ok", "fail": "FAIL", "not shown": "n/s"}
    return " ".join(f"{name}={mark[v.status.value]}" for name, v in verdicts.items())


def _no_q(subject: str, what: str) -> Verdict:
    return Verdict.failed(subject, f"`nvidia-smi -q` with {what}", "no GPU in the output",
                          "Raw output is attached; check the driver on the node.", summary=f"{what} not readable")


# -- CUDA -----------------------------------------------------------------------------------------------
def cuda_usable(subject: str, load_out: str, load_rc: int, held: int, health: SmiLog | None,
                image: str | None = None) -> Verdict:
    """The CUDA load announced it runs on each of the `held` GPUs (a CUDA context and kernels on every GPU, whatever
    the interconnect: on PCIe-only types this is the only check that sees CUDA fail)."""
    running = load_running(load_out)
    gpus = gpus_seen(health.gpus) if health else {}
    facts: dict[str, Any] = {"GPUs held by the pod": held, "load running on": sorted(running), "load image": image}
    if re.search(r"No module named 'torch'|python3: not found|dcgmproftester\d*: not found|executable file not found",
                 load_out):
        return Verdict.not_shown(subject, f"the load's image ({image}) lacks the load's program: "
                                 + next(ln for ln in load_out.splitlines() if "not found" in ln or "No module" in ln),
                                 "use the DCGM image's dcgmproftester (profile `health: {load: dcgmproftester}`) or "
                                 "an image with python3 and PyTorch", facts=facts)
    missing = [i for i in range(held) if i not in running]
    if held and not missing:
        return Verdict.passed(subject, f"a CUDA load running on each of the {held} GPUs",
                              f"running on GPUs {', '.join(map(str, sorted(running)))}", facts=facts)
    err = next((ln.strip() for ln in reversed(load_out.splitlines())
                if re.search(r"error|Error|failed|FAILED|Exiting", ln)), "")
    last = err or (load_out.strip().splitlines() or [f"no output (exit code {load_rc})"])[-1]
    return Verdict.failed(subject, f"a CUDA load running on each of the {held} GPUs",
                          f"the load never ran on {', '.join(gpu_label(i, gpus.get(i)) for i in missing) or 'any GPU'}"
                          f" (exit code {load_rc}): {last[:300]}",
                          "nvidia-smi can work while CUDA cannot: check the driver/CUDA compatibility, the fabric "
                          "manager on NVSwitch nodes (CUDA error 802 'system not yet initialized'), `dmesg | grep -i "
                          "xid`, and DCGM's result for the same GPUs.", summary="CUDA unusable", facts=facts)


# -- NVLink and fabric ------------------------------------------------------------------------------
def nvlink_fabric(subject: str, links: int | None, link_gbs: float | None, nvlink: NvlinkResult | None,
                  health: SmiLog | None, cuda_out: str) -> Verdict:
    """On NVSwitch types: every GPU that `nvidia-smi -q` lists has all its links up at the profile's speed in
    `nvlink -s`; fabric state Completed/Success where the GPU reports one (NVML GPU fabric info is for Hopper and
    later: A100 prints `N/A`); and CUDA did not fail with error 802 (the fabric manager has not trained the NVSwitch
    fabric: how an A100 node shows it)."""
    if not links:
        return Verdict.not_shown(subject, "the instance type has no NVLink expectation in the profile (PCIe-only GPUs)",
                                 "set `health: {nvlink_links: N, nvlink_link_gbs: X}` for NVSwitch instance types")
    if health is None or not health.gpus:
        return _no_q(subject, "the GPUs to compare `nvlink -s` with")
    problems: list[str] = []
    gpus = health.gpus
    listed = {ng.index: ng for ng in (nvlink.gpus if nvlink else [])}
    reported = [g for g in gpus if g.fabric_state not in (None, "N/A")]
    for i, g in enumerate(gpus):
        if g.fabric_state not in (None, "N/A") and (g.fabric_state != "Completed" or
                                                    (g.fabric_status or "Success") != "Success"):
            problems.append(f"{gpu_label(i, g)} fabric state {g.fabric_state}/{g.fabric_status}")
        ng = listed.get(i)
        if ng is None:
            problems.append(f"{gpu_label(i, g)}: not listed by `nvidia-smi nvlink -s`")
            continue
        slow = [k for k, v in ng.links.items() if v is not None and link_gbs and v < link_gbs * 0.99]
        if ng.note and not ng.links:
            problems.append(f"{gpu_label(i, g)}: {ng.note}")
        elif len(ng.active) < links or ng.inactive or slow:
            problems.append(f"{gpu_label(i, g)}: {len(ng.active)}/{links} links active" +
                            (f", inactive {ng.inactive}" if ng.inactive else "") +
                            (f", below {link_gbs} GB/s: {slow}" if slow else ""))
    if nvlink is not None and not nvlink.gpus and nvlink.notes:
        problems.append(f"`nvidia-smi nvlink -s`: {'; '.join(nvlink.notes)}")
    active = sum(len(listed[i].active) for i in range(len(gpus)) if i in listed)
    want = links * len(gpus)
    if any(mark in cuda_out for mark in FABRIC_NOT_READY):
        problems.append("CUDA could not start: " + next(ln.strip() for ln in cuda_out.splitlines()
                                                        if any(m in ln for m in FABRIC_NOT_READY)))
    crit = Criterion("NVLinks active", active, "links", threshold=want, op=">=",
                     source=f"profile health.nvlink_links ({links}) x the {len(gpus)} GPUs in nvidia-smi -q")
    if crit.passed is False and not problems:
        problems.append(f"{active} of {want} NVLinks active")
    facts: dict[str, Any] = {"NVLinks active": f"{active}/{want}",
                             "fabric state": sorted({f"{g.fabric_state}/{g.fabric_status}" for g in reported})
                             or "not reported (NVML GPU fabric info: Hopper and later)"}
    fabric = "fabric Completed" if reported else "fabric state not reported (A100: links and CUDA start-up judged)"
    return Verdict.from_problems(
        subject, f"{links} NVLinks per GPU at {link_gbs} GB/s on all {len(gpus)} GPUs, {fabric}, CUDA starts", problems,
        "Check the fabric manager on the node (`systemctl status nvidia-fabricmanager`: it must run the same version "
        "as the driver; EKS GPU AMIs start it); CUDA reports 'system not yet initialized' (error 802) until it has "
        "trained the NVSwitch fabric. Inactive links with a running fabric manager: reset the GPUs or replace the "
        "instance.", observed_ok=f"{active} links active, {fabric}", summary="NVLink / fabric not ready",
        criteria=(crit,), facts=facts)


# -- memory ---------------------------------------------------------------------------------------------
def ecc_memory(subject: str, health: SmiLog | None) -> Verdict:
    """What makes a GPU unfit now: uncorrectable ECC errors since the last reset (volatile), a failed row remap,
    banks with no spare row left, and NVIDIA's replacement flags (590-series drivers: `SRAM Threshold Exceeded`,
    `Unrepairable Memory`)."""
    if health is None or not health.gpus:
        return _no_q(subject, "ECC / row remapper sections")
    problems = []
    for i, g in enumerate(health.gpus):
        name = gpu_label(i, g)
        if g.ecc_volatile_uncorrectable:
            problems.append(f"{name}: {g.ecc_volatile_uncorrectable} volatile uncorrectable ECC errors")
        if (g.remap_failure or "").lower() == "yes":
            problems.append(f"{name}: row remapping FAILED (no spare rows left)")
        if g.remap_histogram.get("None"):
            problems.append(f"{name}: {g.remap_histogram['None']} bank(s) with no remap left")
        if (g.sram_threshold_exceeded or "").lower() == "yes":
            problems.append(f"{name}: SRAM Threshold Exceeded: Yes (uncorrectable SRAM errors past NVIDIA's threshold)")
        if (g.unrepairable_memory or "").lower() == "yes":
            problems.append(f"{name}: Unrepairable Memory: Yes")
    facts = {"remapped rows (uncorrectable)": sum(g.remapped_uncorrectable or 0 for g in health.gpus),
             "ECC mode": sorted({str(g.ecc_mode) for g in health.gpus})}
    return Verdict.from_problems(
        subject, "no uncorrectable ECC error since the last reset, no failed row remap, no replacement flag", problems,
        "Replace the instance (EC2 stop/start moves it to another host; report it to AWS Support): a failed remap, "
        "exhausted banks, SRAM Threshold Exceeded and Unrepairable Memory are NVIDIA's replacement criteria (GPU "
        "memory error management, RMA policy). Volatile uncorrectable errors: drain and reset the GPU, then watch.",
        observed_ok="clean", summary="GPU memory errors", facts=facts)


def memory_history(subject: str, health: SmiLog | None) -> Verdict:
    """What is history or waits for the next reset: aggregate (lifetime) uncorrectable ECC counts, pages retired for
    double-bit errors, a pending row remap or page retirement. NVML: "A pending remapping won't affect future work
    on the GPU" (nvmlDeviceGetRemappedRows); NVIDIA's Error Recovery and Response Flags page: new workloads can be
    launched with the flag set. Its tier is the profile's (advisory by default)."""
    if health is None or not health.gpus:
        return _no_q(subject, "ECC / row remapper sections")
    problems = []
    for i, g in enumerate(health.gpus):
        name = gpu_label(i, g)
        if g.ecc_aggregate_uncorrectable:
            problems.append(f"{name}: {g.ecc_aggregate_uncorrectable} aggregate (lifetime) uncorrectable ECC errors")
        if (g.remap_pending or "").lower() == "yes":
            problems.append(f"{name}: row remapping pending (applied at the next GPU reset)")
        if (g.retired_pending or "").lower() == "yes":
            problems.append(f"{name}: page retirement pending (applied at the next GPU reset)")
        if g.retired_dbe:
            problems.append(f"{name}: {g.retired_dbe} pages retired for double-bit ECC errors")
    return Verdict.from_problems(
        subject, "no lifetime uncorrectable ECC errors, nothing pending until the next reset", problems,
        "Reset the GPU at the next drain (`nvidia-smi -r -i <gpu>` or reboot) so pending remaps/retirements take "
        "effect; lifetime counts that keep rising mean replacing the instance.", observed_ok="clean",
        summary="GPU memory error history")


# -- PCIe -----------------------------------------------------------------------------------------------
def pcie(subject: str, health: SmiLog | None, gen: int | None, width: int | None) -> Verdict:
    """Every GPU's PCIe link at the profile's width, and at its generation on the GPUs read under load (P0, not
    idle): idle GPUs downshift the generation to save power. A value printed N/A, or a GPU not read under load, is
    not shown."""
    if health is None or not health.gpus:
        return _no_q(subject, "the PCI link section")
    problems, unread, idle = [], [], []
    for i, g in enumerate(health.gpus):
        want_gen = gen or g.pcie_gen_max
        want_width = width or g.pcie_width_max
        if g.pcie_width_current is None or (g.pcie_gen_current is None and g.busy):
            unread.append(f"{gpu_label(i, g)} (link printed N/A)")
        if want_width and g.pcie_width_current is not None and g.pcie_width_current < want_width:
            problems.append(f"{gpu_label(i, g)}: link width x{g.pcie_width_current}, expected x{want_width}"
                            f" (max x{g.pcie_width_max})")
        if not g.busy:
            idle.append(gpu_label(i, g))
        elif want_gen and g.pcie_gen_current is not None and g.pcie_gen_current < want_gen:
            problems.append(f"{gpu_label(i, g)}: PCIe Gen{g.pcie_gen_current} under load, expected Gen{want_gen}"
                            f" (max Gen{g.pcie_gen_max})")
    links = sorted({f"Gen{g.pcie_gen_current} x{g.pcie_width_current}" for g in health.gpus})
    facts: dict[str, Any] = {"PCIe links": links, "GPUs read under load": sum(1 for g in health.gpus if g.busy)}
    if idle:
        facts["GPUs not read under load"] = idle
    crit = Criterion("GPUs below the expected PCIe link", len(problems), "GPUs", threshold=0, op="==",
                     source="profile health.pcie_gen / pcie_width")
    expected = f"PCIe Gen{gen or 'max'} x{width or 'max'} on every GPU"
    if problems:
        return Verdict.failed(subject, expected, "; ".join(problems),
                              "A link trained below its width or generation is a seating, riser or retimer fault: "
                              "drain the node and replace the instance (on AWS: stop/start, or report the instance). "
                              "DCGM's pcie test measures the bandwidth.", summary="PCIe link degraded",
                              criteria=(crit,), facts=facts)
    if unread or idle:
        why = "; ".join(([f"link not readable on {', '.join(unread)}"] if unread else []) +
                        ([f"generation not judged on {', '.join(idle)}: not read under load (performance state "
                          f"not P0 or Idle active): {IDLE_LINKS}"] if idle else []))
        return Verdict.not_shown(subject, why, "see test_cuda_usable_on_every_gpu: the load must run on every GPU "
                                 "while -q is read", criteria=(crit,), facts=facts)
    return Verdict.passed(subject, expected, ", ".join(links) + " under load", criteria=(crit,), facts=facts)


# -- clocks, power limit, persistence mode: one check each ------------------------------------------------
def clocks(subject: str, health: SmiLog | None) -> Verdict:
    """On the GPUs read under load: no hardware slowdown / thermal / power-brake clock event reason. GPUs not read
    under load are named and the check is not shown for them."""
    if health is None or not health.gpus:
        return _no_q(subject, "clocks event reasons")
    problems, idle = [], []
    for i, g in enumerate(health.gpus):
        bad = [r for r in g.clock_events_active if r in BAD_CLOCK_EVENTS]
        if not g.busy:
            idle.append(gpu_label(i, g))
        elif bad:
            problems.append(f"{gpu_label(i, g)}: clock event reasons active under load: {', '.join(bad)}")
    facts: dict[str, Any] = {
        "clock event reasons active": sorted({r for g in health.gpus for r in g.clock_events_active}) or "none",
        "GPUs read under load": sum(1 for g in health.gpus if g.busy)}
    if idle:
        facts["GPUs not read under load"] = idle
    if problems:
        return Verdict.failed(subject, "no hardware slowdown, thermal or power-brake clock event under load",
                              "; ".join(problems),
                              "HW Slowdown / Power Brake: the board asserts it (power supply, cooling, sensor): drain "
                              "the node and replace the instance. Thermal: check cooling.", summary="GPU clocks throttled",
                              facts=facts)
    if idle:
        return Verdict.not_shown(subject, f"throttling under load not observed on {', '.join(idle)}: not read under "
                                 "load (performance state not P0 or Idle active)", "see "
                                 "test_cuda_usable_on_every_gpu: the load must run on every GPU while -q is read",
                                 facts=facts)
    return Verdict.passed(subject, "no hardware slowdown, thermal or power-brake clock event under load",
                          "no throttling under load", facts=facts)


def power_limit(subject: str, health: SmiLog | None, power_limit_w: float | None) -> Verdict:
    """Every GPU's enforced power limit at the profile's value, else at the product default `-q` reports. A limit
    `-q` does not print (N/A) is not shown, never taken as right."""
    if health is None or not health.gpus:
        return _no_q(subject, "power limits")
    problems, unread = [], []
    for i, g in enumerate(health.gpus):
        want = power_limit_w or g.power_limit_default_w
        if g.power_limit_w is None or not want:
            unread.append(gpu_label(i, g))
        elif abs(g.power_limit_w - want) > 1:
            problems.append(f"{gpu_label(i, g)}: power limit {g.power_limit_w:g} W, expected {want:g} W")
    expected = f"power limit {f'{power_limit_w:g} W (profile)' if power_limit_w else 'at the product default'}"
    facts: dict[str, Any] = {"power limits": sorted({f"{g.power_limit_w:g} W" for g in health.gpus if g.power_limit_w})}
    if problems:
        return Verdict.failed(subject, expected, "; ".join(problems), "`nvidia-smi -pl <W>` was changed on the node: "
                              "reset it, or fix the AMI / user data that sets it.", summary="GPU power limit changed",
                              facts=facts)
    if unread:
        return Verdict.not_shown(subject, f"power limit or its default not printed by nvidia-smi -q on "
                                 f"{', '.join(unread)}", "read `nvidia-smi -q -d POWER` on the node", facts=facts)
    return Verdict.passed(subject, expected, ", ".join(facts["power limits"]), facts=facts)


def persistence_mode(subject: str, health: SmiLog | None) -> Verdict:
    """Persistence mode Enabled on every GPU (`nvidia-smi -q` Persistence Mode; DCGM's deployment check warns on it).
    `N/A` or a GPU without the line is not shown, never taken as on."""
    if health is None or not health.gpus:
        return _no_q(subject, "persistence mode")
    off = [f"{gpu_label(i, g)}: {g.persistence_mode}" for i, g in enumerate(health.gpus)
           if g.persistence_mode and g.persistence_mode not in ("Enabled", "N/A")]
    unread = [gpu_label(i, g) for i, g in enumerate(health.gpus) if g.persistence_mode in (None, "", "N/A")]
    if off:
        return Verdict.failed(subject, "persistence mode Enabled on every GPU", "persistence mode " + "; ".join(off),
                              "run nvidia-persistenced on the node (EKS GPU AMIs start it): without it the driver "
                              "tears down and re-initialises the GPUs whenever no process holds them, which adds "
                              "seconds to every job start.", summary="GPU persistence mode off")
    if unread:
        return Verdict.not_shown(subject, f"persistence mode not reported by nvidia-smi -q on {', '.join(unread)}",
                                 "read `nvidia-smi -q` on the node")
    return Verdict.passed(subject, "persistence mode Enabled on every GPU", f"Enabled on {len(health.gpus)} GPUs")


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
