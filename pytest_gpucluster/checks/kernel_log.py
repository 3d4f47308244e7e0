"""Judge of the kernel log's Xid / SXid events with NVIDIA's Xid catalog: what needs a reset, reboot or replacement
fails, what the application caused is a warning, and what a later GPU reset already cleared (NVML's state for that
GPU is clean) is history (pure: parsed log and `nvidia-smi -q` in, Verdict out)."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from pytest_gpucluster.checks.verdict import Criterion, Verdict
from pytest_gpucluster.parsers.nvidia_smi_model import SmiGpu, SmiLog
from pytest_gpucluster.parsers.xid import XidEvent, XidLog, parse_xid, pci_key

XID_CATALOG = "https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html"
RECOVERY_FLAGS = "https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/error-recovery-and-response-flags.html"


@dataclass(frozen=True)
class XidClass:
    severity: str        # fail | warn | history
    name: str
    action: str          # NVIDIA's resolution bucket, then what to do on EKS
    reset_clears: bool = False   # RESET_GPU bucket: a later GPU reset with a clean NVML state makes it history


_RESET = "RESET_GPU: drain the node and reset the GPU (`nvidia-smi -r -i <gpu>` or reboot the node)"
_REPLACE = ("; if it happens again, replace the instance (EC2: stop/start moves it to another host, or report the "
            "instance to AWS Support)")
XID_CLASSES: dict[int, XidClass] = {
    48: XidClass("fail", "double-bit ECC error (DBE)", _RESET + " to retire/remap the page" + _REPLACE, True),
    61: XidClass("fail", "internal micro-controller breakpoint/warning", _RESET + _REPLACE, True),
    62: XidClass("fail", "internal micro-controller halt", _RESET + _REPLACE, True),
    # NVML: "A pending remapping won't affect future work on the GPU" (nvmlDeviceGetRemappedRows); the row remapper
    # state in nvidia-smi -q is judged by test_memory_errors_pending_or_historic.
    63: XidClass("warn", "row remapping (or page retirement) recorded", "the pending remap takes effect at the next GPU "
                 "reset; see the row remapper in `nvidia-smi -q -d ROW_REMAPPER`"),
    64: XidClass("fail", "ECC page retirement or row remapping failure",
                 _RESET + ", then CONTACT_SUPPORT: the GPU ran out of spare rows" + _REPLACE),
    74: XidClass("fail", "NVLink error", _RESET + " and check the links (`nvidia-smi nvlink -s`, `-e`)" + _REPLACE, True),
    79: XidClass("fail", "GPU has fallen off the bus",
                 "RESTART_BM: reboot the node (drain first); the GPU is gone until then" + _REPLACE),
    92: XidClass("warn", "high single-bit ECC error rate", "watch the GPU's ECC counters; replace if it keeps rising"),
    94: XidClass("warn", "contained ECC error", "RESTART_APP: the affected application was stopped; reset the GPU "
                 "at the next drain so the row is remapped"),
    95: XidClass("fail", "uncontained ECC error", _RESET + _REPLACE, True),
    119: XidClass("fail", "GSP RPC timeout", _RESET + "; update the driver if it repeats", True),
    120: XidClass("fail", "GSP error", _RESET + "; update the driver if it repeats", True),
    140: XidClass("fail", "unrecovered ECC error", _RESET + _REPLACE, True),
    13: XidClass("warn", "graphics engine exception (application)", "RESTART_APP: usually an application bug "
                 "(out-of-range access); run DCGM diag if it is not tied to one job"),
    31: XidClass("warn", "GPU memory page fault (application)", "RESTART_APP: debug the application"),
    43: XidClass("warn", "GPU stopped processing (application fault)", "IGNORE: a user application faulted"),
    45: XidClass("warn", "preemptive cleanup (after another error or a killed job)", "IGNORE unless other Xids "
                 "accompany it"),
    109: XidClass("warn", "context switch timeout", "RESTART_APP; run DCGM diag if it repeats"),
}


def classify_xid(event: XidEvent) -> XidClass:
    """The catalog's class of one event. Xid 154 states the action the driver wants ("GPU Reset Required", "Node
    Reboot Required", "Drain and Reset"): anything but None fails with that action. An SXid whose severity token is
    Fatal needs the NVSwitch tray reset (Fabric Manager user guide); Non-fatal ones are warnings."""
    if event.kind == "SXid":
        if event.fatal:
            return XidClass("fail", f"fatal NVSwitch SXid {event.code}", "a fatal SXid leaves the NVSwitch fabric "
                            "degraded: drain the node and reboot it (resets the GPUs and NVSwitches); replace the "
                            "instance if it recurs")
        return XidClass("warn", f"non-fatal NVSwitch SXid {event.code}", "look the SXid up in NVIDIA's NVSwitch SXid "
                        "catalog (Fabric Manager user guide); watch for recurrence")
    if event.code == 154:
        action = event.recovery_action
        if action and action.lower() != "none":
            return XidClass("fail", f"GPU recovery action {action}", f"the driver asks for: {action} ({RECOVERY_FLAGS}):"
                            " drain the node, then reset the GPU or reboot the node as asked", True)
        return XidClass("warn", "GPU recovery action back to None", "nothing to do: the driver no longer asks for a "
                        "recovery action")
    return XID_CLASSES.get(event.code, XidClass("warn", f"Xid {event.code}", f"look it up in {XID_CATALOG}"))


def _clean(g: SmiGpu) -> bool:
    """NVML reports no recovery action, no uncorrectable error since the last reset and nothing pending on this GPU:
    what a GPU reset leaves behind (the volatile ECC counters and the recovery action reset with the GPU)."""
    return ((g.recovery_action or "").lower() == "none" and not g.ecc_volatile_uncorrectable
            and (g.remap_pending or "No").lower() != "yes" and (g.retired_pending or "No").lower() != "yes")


def _since(log: XidLog, uptime_s: float | None, now_epoch: float | None) -> str:
    """How far back the log reaches: the oldest line's stamp, or its seconds-since-boot turned into UTC."""
    if log.first_timestamp:
        return log.first_timestamp
    if log.first_seconds is not None and uptime_s is not None and now_epoch is not None:
        at = dt.datetime.fromtimestamp(now_epoch - uptime_s + log.first_seconds, tz=dt.timezone.utc)
        return at.strftime("%Y-%m-%d %H:%M:%S UTC") + (" (boot)" if log.first_seconds < 1 else "")
    return "the oldest line of the log (no timestamp)"


def _number(sections: dict[str, tuple[str, int]], name: str) -> float | None:
    try:
        return float(sections.get(name, ("", 1))[0].split()[0])
    except (IndexError, ValueError):
        return None


def from_reader(subject: str, sections: dict[str, tuple[str, int]], window_h: float | None, health: SmiLog | None,
                not_run: Verdict) -> tuple[Verdict, XidLog | None]:
    """The verdict on a kernel-log reader's sections (`uptime`, `now`, `dmesg`; gather/node_health.HOSTLOG_SCRIPT):
    a reader that never printed its log section did not run: `not_run` (a failure, like every other probe); a
    `dmesg` that ran and failed (dmesg_restrict, no CAP_SYSLOG) is not shown with its message."""
    if "dmesg" not in sections:
        return not_run, None
    text, rc = sections["dmesg"]
    if rc != 0:
        return xid(subject, None, None, window_h, health, f"dmesg ran but could not read the log (exit code {rc}): "
                   f"{text.strip()[-300:] or 'no output'}"), None
    log = parse_xid(text)
    return xid(subject, log, _number(sections, "uptime"), window_h, health, now_epoch=_number(sections, "now")), log


def xid(subject: str, log: XidLog | None, uptime_s: float | None, window_h: float | None,
        health: SmiLog | None, why_not: str | None = None, now_epoch: float | None = None) -> Verdict:
    """No Xid the NVIDIA catalog says needs a reset/replacement in the kernel log (all of it, or the last N hours).
    An empty log is not shown; the evidence says how far back the log reaches (the ring buffer drops old lines)."""
    if log is None:
        return Verdict.not_shown(subject, why_not or "the kernel log could not be read",
                                 "allow a privileged pod reading /dev/kmsg in the run's namespace (see the suite "
                                 "docstring: RBAC pods/create, Pod Security `privileged`)")
    if log.lines == 0:
        return Verdict.not_shown(subject, "the kernel log reader printed no lines: no evidence either way",
                                 "run `dmesg` on the node; an empty ring buffer or a reader without CAP_SYSLOG "
                                 "prints nothing (kernel.dmesg_restrict)", facts={"kernel log lines read": 0})
    since = _since(log, uptime_s, now_epoch)
    window_s = window_h * 3600 if window_h else None
    events = [e for e in log.events
              if window_s is None or e.seconds is None or uptime_s is None or uptime_s - e.seconds <= window_s]
    where = f"in the last {window_h:g} h (log reaches back to {since})" if window_s else f"since {since}"
    by_pci = {pci_key(g.bus_id): (i, g) for i, g in enumerate(health.gpus)} if health else {}

    def judged(e: XidEvent) -> XidClass:
        c = classify_xid(e)
        _, g = by_pci.get(e.pci, (None, None))
        if c.severity == "fail" and c.reset_clears and g is not None and _clean(g):
            return replace(c, severity="history")
        return c

    def describe(e: XidEvent) -> str:
        idx, g = by_pci.get(e.pci, (None, None))
        gpu = (f"GPU {idx} ({g.uuid or 'no UUID'}, bus {g.bus_id})" if g else f"GPU at PCI {e.pci}" + (
            f" ({log.uuid_by_pci[e.pci]})" if e.pci in log.uuid_by_pci else ""))
        ago = f", {(uptime_s - e.seconds) / 3600:.1f} h ago" if uptime_s is not None and e.seconds is not None else ""
        return f"{e.kind} {e.code} ({judged(e).name}) on {gpu}{ago}: {e.message[:120]}"

    fails = [e for e in events if judged(e).severity == "fail"]
    counts = Counter(f"{e.kind} {e.code}" for e in events)
    facts: dict[str, Any] = {"kernel log lines read": log.lines, "kernel log reaches back to": since,
                             "Xid window": where, "Xid/SXid events": dict(counts) or "none"}
    history = [e for e in events if judged(e).severity == "history"]
    if history:
        facts["Xids cleared by a later GPU reset (NVML state clean now)"] = sorted({describe(e) for e in history})[:10]
    warns = [e for e in events if judged(e).severity == "warn"]
    if warns:
        facts["Xid warnings (application-level or informational)"] = sorted({describe(e) for e in warns})[:10]
    crit = Criterion(f"Xids needing a reset or replacement ({where})", len(fails), "events", threshold=0, op="==",
                     source=XID_CATALOG)
    if fails:
        actions = sorted({f"{e.kind} {e.code}: {judged(e).action}" for e in fails})
        return Verdict.failed(subject, f"no Xid that NVIDIA's catalog resolves with a GPU reset or replacement {where}",
                              "; ".join(sorted({describe(e) for e in fails})[:8]),
                              "NVIDIA's recommended action (" + XID_CATALOG + "): " + " | ".join(actions),
                              summary="GPU Xid errors", criteria=(crit,), facts=facts)
    observed = f"{len(events)} Xid events, none needing a reset" if events else f"no Xid since {since}"
    return Verdict.passed(subject, f"no reset/replace Xid {where}", observed + f" ({log.lines} lines read)",
                          criteria=(crit,), facts=facts)
