"""Kernel-log Xid judge on plain data and real dmesg captures (checks/kernel_log.py)."""
from __future__ import annotations

import dataclasses

from pytest_gpucluster.checks.kernel_log import classify_xid, from_reader, xid
from pytest_gpucluster.checks.verdict import Status, Verdict
from pytest_gpucluster.parsers import parse_smi_log, parse_xid
from pytest_gpucluster.parsers.nvidia_smi_model import SmiGpu, SmiLog

from tests.parsers._data import sample

S = "ip-10-0-3-17/p5.48xlarge"
# Line layouts of real logs: Xid 154 as NVIDIA/NVSentinel's syslog-health-monitor tests quote an r570+ driver; the
# SXid severity token as NVIDIA's Fabric Manager guide and gpud's fault injector print it.
XID154 = "[ 7200.0] NVRM: Xid (PCI:0000:53:00): 154, GPU recovery action changed from 0x0 (None) to 0x{n} ({action})\n"
SXID = "[ 12.5] nvidia-nvswitch3: SXid (PCI:0000:86:00.0): {code}, {severity}, Link 44 LTSSM Fault Up\n"


def gpu(i: int = 0, **kw: object) -> SmiGpu:
    base: dict = dict(bus_id=f"00000000:{0x53 + i:02X}:00.0", uuid=f"GPU-{i:08d}", ecc_volatile_uncorrectable=0,
                      remap_pending="No")
    base.update(kw)
    return SmiGpu(**base)


def test_xid_79_fails_with_nvidia_action_and_gpu_named() -> None:
    log = parse_xid("[ 3600.000000] NVRM: Xid (PCI:0000:56:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen "
                    "off the bus.\n")
    v = xid(S, log, 10800.0, None, SmiLog(gpus=[gpu(0), gpu(3)]))
    assert v.status is Status.FAIL
    assert "Xid 79 (GPU has fallen off the bus) on GPU 1 (GPU-00000003, bus 00000000:56:00.0), 2.0 h ago" in v.message
    assert "RESTART_BM" in v.message


def test_application_level_warns_only_and_window_excludes_old_events() -> None:
    v = xid(S, parse_xid(sample("xid", "dmesg-decode-iso-xid13.log")), None, None, None)
    assert v.ok and v.facts["Xid warnings (application-level or informational)"]
    old = parse_xid("[ 100.0] NVRM: Xid (PCI:0000:53:00): 48, pid=1, name=x, DBE\n")
    assert xid(S, old, 100000.0, 24, None).ok                      # 27 h ago, window 24 h
    assert xid(S, old, 100000.0, None, None).status is Status.FAIL  # the whole log


def test_real_capture_fails_and_not_readable_is_not_shown() -> None:
    v = xid(S, parse_xid(sample("xid", "dmesg-ctime-xid119-h100-xe9680.log")), None, None, None)
    assert v.status is Status.FAIL and "GPU-509665ad-b600-ac93-3616-d754b23d636d" in v.message
    assert "since Sun Feb 23" in v.expected                        # how far back the log reaches, as printed
    forbidden = xid(S, None, None, None, None, "the cluster refused a privileged pod: Forbidden")
    assert forbidden.status is Status.NOT_SHOWN and "Forbidden" in forbidden.message


def test_empty_log_is_not_shown_and_a_clean_log_says_how_far_back_it_reaches() -> None:
    assert xid(S, parse_xid(""), 3600.0, None, None, now_epoch=1_700_000_000).status is Status.NOT_SHOWN
    clean = parse_xid("[    4.120000] NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  580.105.08\n")
    v = xid(S, clean, 3600.0, None, None, now_epoch=1_700_003_600.0)
    assert v.ok and "no Xid since 2023-11-14 22:13:24 UTC" in v.observed      # boot + 4.12 s
    assert v.facts["kernel log reaches back to"].startswith("2023-11-14 22:13:24")


def test_xid_154_fails_with_the_action_the_driver_asks_for() -> None:
    reset = xid(S, parse_xid(XID154.format(n=1, action="GPU Reset Required")), 10800.0, None, None)
    assert reset.status is Status.FAIL and "GPU recovery action GPU Reset Required" in reset.message
    reboot = parse_xid(XID154.format(n=2, action="Node Reboot Required")).events[0]
    assert classify_xid(reboot).severity == "fail" and "Node Reboot Required" in classify_xid(reboot).action
    back = parse_xid("[ 1.0] NVRM: Xid (PCI:0000:53:00): 154, GPU recovery action changed from 0x1 (GPU Reset "
                     "Required) to 0x0 (None)\n")
    assert xid(S, back, 10.0, None, None).ok


def test_fatal_sxid_fails_and_non_fatal_warns() -> None:
    fatal = xid(S, parse_xid(SXID.format(code=20034, severity="Fatal")), 100.0, None, None)
    assert fatal.status is Status.FAIL and "fatal NVSwitch SXid 20034" in fatal.message
    assert xid(S, parse_xid(SXID.format(code=12028, severity="Non-fatal")), 100.0, None, None).ok


def test_a_reset_xid_that_a_later_reset_cleared_is_history() -> None:
    """Xid 48 on GPU 0; -q (real 590 capture layout) now reports recovery action None and no uncorrectable error or
    pending remap since the reset: history, not a failure. Without that NVML evidence it still fails."""
    log = parse_xid("[ 100.0] NVRM: Xid (PCI:0000:00:09): 48, pid=1, name=x, DBE\n")
    q = parse_smi_log(sample("nvidia-smi", "q-h100-80gb-hbm3-590-load.txt"))
    assert q.gpus[0].recovery_action == "None"
    v = xid(S, log, 7200.0, None, q)
    assert v.ok and v.facts["Xids cleared by a later GPU reset (NVML state clean now)"]
    pending = SmiLog(gpus=[dataclasses.replace(q.gpus[0], remap_pending="Yes")])
    assert xid(S, log, 7200.0, None, pending).status is Status.FAIL
    older_driver = SmiLog(gpus=[dataclasses.replace(q.gpus[0], recovery_action=None)])
    assert xid(S, log, 7200.0, None, older_driver).status is Status.FAIL
    fell_off = parse_xid("[ 100.0] NVRM: Xid (PCI:0000:00:09): 79, GPU has fallen off the bus.\n")
    assert xid(S, fell_off, 7200.0, None, q).status is Status.FAIL    # RESTART_BM: a reboot would have cleared it


def test_a_reader_that_did_not_run_fails_and_a_failing_dmesg_is_not_shown() -> None:
    not_run = Verdict.failed(S, "the kernel-log probe pod to run", "phase Pending", summary="kernel-log probe did not run")
    assert from_reader(S, {}, None, None, not_run)[0] is not_run
    v, _ = from_reader(S, {"dmesg": ("dmesg: read kernel buffer failed: Operation not permitted", 1)}, None, None,
                       not_run)
    assert v.status is Status.NOT_SHOWN and "Operation not permitted" in v.message
    ok, log = from_reader(S, {"uptime": ("3600.0 7000.0", 0), "now": ("1700003600", 0),
                              "dmesg": ("[    4.120000] NVRM: loading NVIDIA UNIX Open Kernel Module", 0)}, None, None,
                          not_run)
    assert ok.ok and log is not None and log.lines == 1
