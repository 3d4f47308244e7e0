"""Judges of GPU visibility from inside pods: nvidia-smi sees every GPU, GPU facts vs the profile (incl. ECC),
1-GPU and 0-GPU isolation, CUDA smoke. Pure: probe outputs, node labels and the profile in, a Verdict out."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from ..gather.gpu_visibility import EXIT_NOT_FOUND, SAMPLE_OK, SMOKE_OK, csv_column, parse_or_none, read_listing, split_output
from ..kube.objects import GPU_RESOURCE
from .verdict import Criterion, Verdict

if TYPE_CHECKING:   # the profile module imports pytest; a judge only needs the type
    from ..profile import InstanceProfile

JUDGED_BY_SMI = "judged by test_nvidia_smi_sees_every_gpu"
# nvidia-container-cli's refusal of an image whose NVIDIA_REQUIRE_CUDA the driver cannot meet, as the kubelet reports
# the prestart hook's failure (StartError): `requirement error: unsatisfied condition: cuda>=13.0, please update ...`
REQUIRE_REFUSAL = re.compile(r"requirement error: unsatisfied condition: [^,]+")


class Probe(Protocol):
    """What a probe pod did (kube/probes.py ProbeResult has these)."""

    phase: str
    exit_code: int | None
    reason: str | None
    logs: str
    image: str | None

    @property
    def ok(self) -> bool: ...

    def describe(self) -> str: ...


def no_gpus_to_probe(node_id: str, *, judged_here: bool) -> Verdict:
    """The node advertises no GPU, so no probe pod could take one. The count check fails on it; the checks that
    need a GPU in a pod cannot judge and point at it."""
    text = (f"no stable {GPU_RESOURCE} allocatable on {node_id}: no probe pod can get a GPU there; the device plugin "
            "has not registered the GPUs or is restarting (see test_device_plugins.py::test_nvidia_device_plugin_runs_on "
            "for this node)")
    if judged_here:
        return Verdict.failed(node_id, "the profile's GPUs allocatable", text, summary="GPU count mismatch")
    return Verdict.not_shown(node_id, text, JUDGED_BY_SMI)


# -- judges --------------------------------------------------------------------------------------------
def smi_sees_every_gpu(node_id: str, probe: Probe | None, requested: int,
                             inst: InstanceProfile | None) -> Verdict:
    """In a pod taking all the node's GPUs: driver reachable; GPU count == allocatable (requested) == profile."""
    if probe is None:
        return no_gpus_to_probe(node_id, judged_here=True)
    query, table = split_output(probe.logs)
    smi = parse_or_none(query)
    error = smi.error if smi is not None else None
    if error is None and not probe.ok:
        parsed_table = parse_or_none(table)
        error = parsed_table.error if parsed_table is not None else None
    if error is not None:
        return Verdict.failed(
            node_id, "nvidia-smi to list the GPUs", f"`{error.message}` (exit code {probe.exit_code})",
            "On the node: `lsmod | grep nvidia`, `dmesg | grep -iE 'nvrm|xid'`; a kernel update without a matching "
            "driver is the usual cause.", summary="NVIDIA driver unreachable")
    if not probe.ok or smi is None:
        return Verdict.failed(node_id, "exit code 0 with CSV output",
                              f"{probe.describe()}; log starts {probe.logs[:200]!r}",
                              f"Check the image ({probe.image}) and the pod's events.", summary="nvidia-smi did not run")
    expected = inst.gpus if inst is not None and inst.gpus else None
    seen = len(smi.gpus)
    crit = (Criterion("GPUs seen by nvidia-smi", seen, "GPUs", expected if expected is not None else requested, "==",
                      f"profile {inst.instance_type} gpus" if inst is not None and expected is not None
                      else f"{GPU_RESOURCE} allocatable (instance type not in the profile)"),)
    facts = {"driver version": smi.driver_version}
    problems = []
    if seen != requested:
        problems.append(f"allocatable {requested}, nvidia-smi saw {seen}")
    if expected is not None and expected != requested:
        problems.append(f"profile says {expected}, allocatable {requested}")
    if expected is not None and expected != seen and not problems:
        problems.append(f"profile says {expected}, nvidia-smi saw {seen}")
    want = f"{expected if expected is not None else requested} (profile)"
    if not problems:
        return Verdict.passed(node_id, want, f"{seen} GPUs", criteria=crit, facts=facts)
    buses = sorted(g.bus_id or "?" for g in smi.gpus)
    return Verdict.failed(
        node_id, want, f"{'; '.join(problems)}; bus ids seen: {', '.join(buses) or 'none'}",
        "Check `dmesg | grep -i xid` on the node (a GPU fallen off the bus) and the device plugin's health checks.",
        summary="GPU count mismatch", criteria=crit, facts=facts)


def memory_criteria(index: str | int | None, mib: float, inst: InstanceProfile) -> tuple[Criterion, Criterion]:
    """The profile's memory as the judge applies it, both bounds: gpu_memory_mib -tolerance <= value <= +tolerance."""
    assert inst.gpu_memory_mib is not None
    pct = inst.gpu_memory_tolerance_pct
    source = f"profile {inst.instance_type} gpu_memory_mib {inst.gpu_memory_mib} +-{pct}%"
    return (Criterion(f"GPU {index} memory.total (low bound)", mib, "MiB", inst.gpu_memory_mib * (1 - pct / 100), ">=",
                      source),
            Criterion(f"GPU {index} memory.total (high bound)", mib, "MiB", inst.gpu_memory_mib * (1 + pct / 100), "<=",
                      source))


def gpu_facts(node_id: str, probe: Probe | None, inst: InstanceProfile | None,
                    labels: Mapping[str, str], mig_resources: bool) -> Verdict:
    """Per GPU: product and memory as the profile says, ECC on where the profile requires it and no uncorrected
    ECC errors, MIG mode as the node's labels/resources say (`mig_resources`: nvidia.com/mig-* advertised)."""
    if probe is None:
        return no_gpus_to_probe(node_id, judged_here=False)
    query = split_output(probe.logs)[0]
    smi = parse_or_none(query)
    if smi is None or smi.error is not None or not smi.gpus:
        why = smi.error.message if smi is not None and smi.error is not None else probe.describe()
        return Verdict.not_shown(node_id, f"nvidia-smi gave no GPU facts ({why})", JUDGED_BY_SMI)
    mig_expected = ("Enabled" if "-MIG-" in labels.get("nvidia.com/gpu.product", "") or mig_resources
                    else "Disabled")
    ecc_required = bool(inst is not None and inst.ecc_required)
    ecc_modes = csv_column(query, "ecc.mode.current")
    problems: list[str] = []
    unknown: list[str] = []
    crit: list[Criterion] = []
    for i, gpu in enumerate(smi.gpus):
        where = f"GPU {gpu.index} ({gpu.bus_id})"
        if inst is not None and inst.gpu_product and not gpu.matches_product(inst.gpu_product):
            problems.append(f"{where} is {gpu.name!r}, profile expects {inst.gpu_product!r}")
        if inst is not None and inst.gpu_memory_mib:
            if gpu.memory_total_mib is None:   # N/A is no evidence of the memory the profile sets
                unknown.append(f"{where} memory.total N/A")
            else:
                crit.extend(memory_criteria(gpu.index, gpu.memory_total_mib, inst))
                if not inst.gpu_memory_ok(gpu.memory_total_mib):
                    problems.append(f"{where} has {gpu.memory_total_mib} MiB, profile expects "
                                    f"{inst.gpu_memory_mib} MiB +-{inst.gpu_memory_tolerance_pct}%")
        ecc = ecc_modes[i] if i < len(ecc_modes) else None
        if ecc == "Disabled" and ecc_required:
            problems.append(f"{where} ECC mode Disabled, profile requires ECC on ({inst.instance_type if inst else ''} "
                            "ecc_required)")
        elif ecc is None and ecc_required:
            unknown.append(f"{where} ECC mode N/A")
        if ecc == "Enabled" and gpu.ecc_errors_uncorrected is None:
            unknown.append(f"{where} uncorrected ECC error count N/A")
        if gpu.ecc_errors_uncorrected:
            problems.append(f"{where} reports {gpu.ecc_errors_uncorrected} uncorrected volatile ECC errors")
        if gpu.mig_mode is not None and gpu.mig_mode != mig_expected:
            problems.append(f"{where} MIG mode {gpu.mig_mode}, node labels imply {mig_expected}")
    counted = [g.ecc_errors_uncorrected for g in smi.gpus if g.ecc_errors_uncorrected is not None]
    if counted:   # N/A (ECC off or not reported) is not 0 errors: only reported counts are summed
        crit.append(Criterion("uncorrected ECC errors", sum(counted), "errors", 0, "==",
                              f"any uncorrected error fails ({len(counted)} of {len(smi.gpus)} GPUs report a count)"))
    facts = {"ECC mode": {f"GPU {g.index}": (ecc_modes[i] if i < len(ecc_modes) else None) or "N/A"
                          for i, g in enumerate(smi.gpus)}, "ECC required by the profile": ecc_required}
    expected = "the profile's product and memory, " + ("ECC on, " if ecc_required else "") + \
        "no uncorrected ECC errors, MIG mode as the node's labels say"
    fix = ("Wrong product/memory: the node is not the instance type it claims or the profile is wrong; ECC "
           "errors: drain the node and run `nvidia-smi -q -d ECC,PAGE_RETIREMENT`; ECC off: `nvidia-smi -e 1` on the "
           "node and reboot it (data-center GPUs ship with ECC on); MIG: check `nvidia.com/mig.config`.")
    if problems:
        return Verdict.failed(node_id, expected, "; ".join(problems), fix, summary="GPU facts wrong",
                              criteria=tuple(crit), facts=facts)
    if unknown:
        return Verdict.not_shown(node_id, f"nvidia-smi did not report every fact the profile sets: {'; '.join(unknown)}",
                                 "run `nvidia-smi -q -d MEMORY,ECC` on the node; memory and ECC state must be readable "
                                 "to sign off a data-center GPU", criteria=tuple(crit), facts=facts)
    return Verdict.passed(node_id, expected, f"{len(smi.gpus)} GPUs as expected", criteria=tuple(crit), facts=facts)


def one_gpu(node_id: str, probe: Probe | None) -> Verdict:
    """A pod requesting 1 GPU sees exactly 1 (the device plugin hands out one device, the runtime exposes one)."""
    if probe is None:
        return no_gpus_to_probe(node_id, judged_here=False)
    seen = read_listing(probe.logs)
    if seen.parsed is not None and seen.parsed.error is not None and seen.error_category == "driver_unreachable":
        return Verdict.not_shown(node_id, f"cannot judge isolation: {seen.parsed.error.message}", JUDGED_BY_SMI)
    crit = (Criterion("GPUs visible with 1 requested", len(seen.gpus), "GPUs", 1, "==",
                      "a pod sees exactly what it requested"),)
    facts = {"NVIDIA_VISIBLE_DEVICES": seen.env}
    expected = f"a pod requesting 1 {GPU_RESOURCE} to see exactly 1 GPU"
    if probe.ok and len(seen.gpus) == 1:
        return Verdict.passed(node_id, expected, seen.gpus[0], criteria=crit, facts=facts)
    return Verdict.failed(
        node_id, expected, f"{len(seen.gpus)} ({'; '.join(seen.gpus) or seen.text.strip()[:160] or probe.describe()}), "
                           f"NVIDIA_VISIBLE_DEVICES={seen.env}",
        "More than 1: the device plugin's deviceListStrategy/the container runtime expose all GPUs; none: the "
        "driver or the allocated device is broken (`dmesg | grep -i xid`).", summary="GPU isolation broken",
        criteria=crit, facts=facts)


LEAK_FIX = ("The image sets NVIDIA_VISIBLE_DEVICES=all (every CUDA image does) and the NVIDIA container runtime "
            "honours it in an unprivileged pod (the upstream defaults). Set the device plugin's `deviceListStrategy: "
            "volume-mounts` (Helm value; env DEVICE_LIST_STRATEGY) and, in the NVIDIA Container Toolkit's "
            "config.toml on every GPU node, `accept-nvidia-visible-devices-as-volume-mounts = true` and "
            "`accept-nvidia-visible-devices-envvar-when-unprivileged = false` (GPU Operator: devicePlugin.env / "
            "toolkit.env).")


def no_gpu(node_id: str, probe: Probe) -> Verdict:
    """A pod requesting no GPU sees none: no NVIDIA_VISIBLE_DEVICES leakage from the image or the runtime.

    Sees none: `nvidia-smi -L` lists no GPU and says `No devices were found` (driver libraries injected without
    devices, NVIDIA_VISIBLE_DEVICES=none), or the container has no nvidia-smi at all (exit 127 / "not found": on a
    hardened node the runtime injects nothing into a pod without a GPU); AND the container holds no GPU device node
    (/dev/nvidia<N>): a device node reaches the GPU without nvidia-smi. Anything else that lists no GPU (an NVML or
    driver error, unknown text, a device listing that did not run) does not show that the pod could not reach a GPU:
    not shown, with the text."""
    seen = read_listing(probe.logs)
    crit = [Criterion("GPUs visible with none requested", len(seen.gpus), "GPUs", 0, "==",
                      "a pod without a GPU request must not see any GPU")]
    if seen.devices is not None:
        crit.append(Criterion("GPU device nodes with none requested", len(seen.gpu_devices), "devices", 0, "==",
                              "a pod without a GPU request must hold no /dev/nvidia<N>"))
    facts = {"NVIDIA_VISIBLE_DEVICES": seen.env,
             "NVIDIA device nodes in the pod": (", ".join(f"/dev/{d}" for d in seen.devices) or "none")
             if seen.devices is not None else f"not listed ({seen.dev_text[:160] or 'no output'})"}
    expected = f"no GPU and no GPU device node in a pod requesting no {GPU_RESOURCE}"
    if probe.phase != "Succeeded":
        return Verdict.failed(node_id, "the no-GPU probe to finish", probe.describe(),
                              summary="The no-GPU probe did not run", facts=facts)
    if seen.gpus:
        return Verdict.failed(
            node_id, expected, f"{len(seen.gpus)} ({'; '.join(seen.gpus)}), NVIDIA_VISIBLE_DEVICES={seen.env}",
            LEAK_FIX, summary="GPU leak", criteria=tuple(crit), facts=facts)
    if seen.gpu_devices:
        return Verdict.failed(
            node_id, expected, f"GPU device node(s) {', '.join('/dev/' + d for d in seen.gpu_devices)} in the "
            f"container although nvidia-smi listed none ({seen.text.strip()[:120] or 'no output'!r}), "
            f"NVIDIA_VISIBLE_DEVICES={seen.env}", LEAK_FIX, summary="GPU leak", criteria=tuple(crit), facts=facts)
    if seen.smi_absent or seen.error_category == "no_devices":
        smi = "no nvidia-smi in the container (no driver injected)" if seen.smi_absent \
            else "nvidia-smi: No devices were found"
        if seen.devices is None:
            return Verdict.not_shown(
                node_id, f"{smi}, but the NVIDIA device nodes could not be listed (`ls -d /dev/nvidia*`: "
                         f"{seen.dev_text[:160] or 'no output'!r})",
                "a GPU device node reaches the GPU without nvidia-smi: list /dev/nvidia* in a pod without a GPU "
                "request on the node", criteria=tuple(crit), facts=facts)
        control = f"; control nodes only: {', '.join('/dev/' + d for d in seen.devices)}" if seen.devices else ""
        return Verdict.passed(node_id, expected, f"{smi}; no GPU device node{control}", criteria=tuple(crit),
                              facts=facts)
    raw = seen.text.strip()[:300] or "(no output)"
    return Verdict.not_shown(
        node_id, f"nvidia-smi -L in a pod without GPUs printed neither a GPU list nor `No devices were found` "
                 f"(exit {seen.smi_exit}): {raw!r}",
        "run `kubectl run` with the probe image and no GPU request on the node and read nvidia-smi's output; "
        f"{JUDGED_BY_SMI} for driver errors", facts=facts)


def driver_major(version: str | None) -> int | None:
    head = (version or "").strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


def cuda_smoke(node_id: str, probe: Probe | None, *, torch: bool = False, driver: str | None = None,
                     needs: tuple[str, int] | None = None) -> Verdict:
    """Beyond nvidia-smi: a CUDA kernel runs on 1 GPU. Default: NVIDIA's vectorAdd sample (`Test PASSED`); `torch`:
    a CUDA context through PyTorch (--gpucluster-smoke-image). `driver`: the node's driver (nvidia-smi fleet);
    `needs`: (CUDA version, minimum driver major) of the image (profile probes.smoke_image_cuda/cuda_min_driver)."""
    if probe is None:
        return no_gpus_to_probe(node_id, judged_here=False)
    pulled = probe.reason not in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")
    if not pulled:
        return Verdict.not_shown(node_id, f"the CUDA smoke image {probe.image} could not be pulled ({probe.describe()})",
                                 "mirror the image into a registry the nodes reach, or pass another with "
                                 "--gpucluster-smoke-image (python3 + PyTorch)")
    if torch and ("No module named 'torch'" in probe.logs or "python3: not found" in probe.logs
                  or probe.exit_code == EXIT_NOT_FOUND):
        return Verdict.not_shown(
            node_id, f"the PyTorch smoke check needs an image with python3 and PyTorch; {probe.image} has none "
                     f"({probe.describe()})", "pass --gpucluster-smoke-image=nvcr.io/nvidia/pytorch:25.01-py3, or "
                                              "leave it unset for NVIDIA's vectorAdd sample")
    mark = SMOKE_OK if torch else SAMPLE_OK
    expected = f"`{mark}` from {'PyTorch' if torch else 'vectorAdd'} on 1 GPU"
    facts = {"smoke image": probe.image, "node driver": driver or "not shown"}
    if needs is not None:
        facts["image needs"] = f"CUDA {needs[0]}: driver >= {needs[1]}"
    if probe.ok and mark in probe.logs:
        return Verdict.passed(node_id, expected, mark, facts=facts)
    refused = REQUIRE_REFUSAL.search(probe.describe())
    if refused:   # the NVIDIA runtime refused the container at start (its NVIDIA_REQUIRE_CUDA)
        return Verdict.failed(
            node_id, f"the NVIDIA runtime to start {probe.image} on driver {driver or '(not shown)'}",
            f"refused at start: {refused.group(0)}",
            "The node's driver satisfies none of the image's NVIDIA_REQUIRE_CUDA (its CUDA version or a listed "
            "forward-compatible branch): update the node's AMI/driver, or use a smoke image built for an older CUDA.",
            summary="Driver too old for this image (NVIDIA_REQUIRE_CUDA)", facts=facts)
    major = driver_major(driver)
    observed = f"{probe.describe()}; last output {probe.logs.strip()[-300:]!r}"
    if needs is not None and major is not None and major < needs[1]:
        return Verdict.failed(
            node_id, f"an NVIDIA driver >= {needs[1]} for the smoke image's CUDA {needs[0]} ({probe.image})",
            f"driver {driver}; {observed}",
            f"CUDA {needs[0].split('.')[0]}.x needs driver >= {needs[1]} (NVIDIA CUDA compatibility, minor version "
            "compatibility table): update the node's AMI/driver, or choose a smoke image built for an older CUDA "
            "(profile probes.smoke_image_cuda).", summary="CUDA driver too old", facts=facts)
    return Verdict.failed(
        node_id, expected, observed,
        "nvidia-smi can work while CUDA cannot: check the driver/CUDA compatibility (`nvidia-smi` CUDA Version >= "
        "the image's), the fabric manager on NVSwitch nodes, and `dmesg | grep -i xid`.", summary="CUDA unusable",
        facts=facts)
