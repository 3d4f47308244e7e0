"""checks/gpu_visibility.py: every judge on plain probe outputs (real nvidia-smi captures where they exist)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_gpucluster.gather.gpu_visibility import DEV_MARK, TABLE_MARK, csv_column, read_devices, read_listing
from pytest_gpucluster.checks.gpu_visibility import (
    cuda_smoke,
    gpu_facts,
    no_gpu,
    one_gpu,
    smi_sees_every_gpu,
)
from pytest_gpucluster.checks.verdict import Status
from pytest_gpucluster.profile import load_profile

DATA = Path(__file__).resolve().parents[1] / "data" / "nvidia-smi"
NODE = "ip-10-0-3-17/p5.48xlarge"
P5 = load_profile().for_instance("p5.48xlarge")
H200_CSV = (DATA / "query-gpu-csv-allfields-units-h200-590-load.txt").read_text()   # real, ecc.mode.current Enabled
LIST_H200 = (DATA / "list-L-h200-590.txt").read_text()                                 # real `nvidia-smi -L`, 1 GPU
LIST_8 = "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d}-aaaa-bbbb-cccc-dddddddddddd)\n" for i in range(8))
DRIVER_ERROR = (DATA / "error-couldnt-communicate-with-driver.txt").read_text()
HEADER = ("index, name, uuid, pci.bus_id, memory.total [MiB], driver_version, mig.mode.current, ecc.mode.current, "
          "ecc.errors.uncorrected.volatile.total")


@dataclass
class Probe:
    """What kube/probes.py ProbeResult carries, as plain data."""

    logs: str
    phase: str = "Succeeded"
    exit_code: int | None = 0
    reason: str | None = None
    image: str | None = "nvidia/cuda:13.0.2-runtime-ubuntu22.04"

    @property
    def ok(self) -> bool:
        return self.phase == "Succeeded" and self.exit_code == 0

    def describe(self) -> str:
        return f"probe pod gpucluster/gc-x on {NODE}: phase {self.phase}, exit code {self.exit_code}"


def smi_csv(n: int = 8, *, ecc: str = "Enabled", errors: str = "0", name: str = "NVIDIA H100 80GB HBM3",
            memory: int = 81559, mig: str = "Disabled", memory_text: str | None = None) -> str:
    mem = memory_text or f"{memory} MiB"
    rows = [f"{i}, {name}, GPU-{i:08d}-aaaa-bbbb-cccc-dddddddddddd, 00000000:{0x53 + i:02X}:00.0, {mem}, "
            f"580.105.08, {mig}, {ecc}, {errors}" for i in range(n)]
    return "\n".join([HEADER, *rows]) + f"\n{TABLE_MARK}\n(table)\n"


# `ls -d /dev/nvidia*` as containers print it. No match: GNU ls's message, exit 2 (as public captures of containers
# without devices print it). Devices: the node set of a container given one GPU (ollama/ollama issue #17069, ulope,
# 2026-07-21: `ls -l /dev/nvidia*` inside the container; the control nodes plus /dev/nvidia0).
NO_DEVICES = ("ls: cannot access '/dev/nvidia*': No such file or directory", 2)
ONE_GPU_DEVICES = ("""crw-rw-rw- 1 root root 195, 254 Jul 21 11:50 /dev/nvidia-modeset
crw-rw-rw- 1 root root 511,   0 Jul 21 11:50 /dev/nvidia-uvm
crw-rw-rw- 1 root root 511,   1 Jul 21 11:50 /dev/nvidia-uvm-tools
crw-rw-rw- 1 root root 195,   0 Jul 21 11:50 /dev/nvidia0
crw-rw-rw- 1 root root 195, 255 Jul 21 11:50 /dev/nvidiactl""", 0)


def isolation(text: str, code: int, env: str = "<unset>", devices: tuple[str, int] | None = NO_DEVICES) -> Probe:
    listing = "" if devices is None else f"{DEV_MARK}\n{devices[0]}\nls exit {devices[1]}\n"
    return Probe(f"NVIDIA_VISIBLE_DEVICES={env}\n{text}\nnvidia-smi exit {code}\n{listing}")


# -- nvidia-smi sees every GPU -------------------------------------------------------------------------
def test_smi_passes_when_count_matches_profile_and_allocatable() -> None:
    verdict = smi_sees_every_gpu(NODE, Probe(smi_csv()), 8, P5)
    assert verdict.status is Status.PASS
    assert [(c.name, c.value, c.threshold) for c in verdict.criteria] == [("GPUs seen by nvidia-smi", 8, 8)]
    assert verdict.facts["driver version"] == "580.105.08"


def test_smi_fails_a_missing_gpu_with_the_bus_ids() -> None:
    verdict = smi_sees_every_gpu(NODE, Probe(smi_csv(7)), 8, P5)
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"GPU count mismatch on {NODE}: expected 8 (profile); observed allocatable 8, "
                                      "nvidia-smi saw 7; bus ids seen: 00000000:53:00.0")
    assert "dmesg | grep -i xid" in verdict.message


def test_smi_fails_allocatable_below_profile() -> None:
    verdict = smi_sees_every_gpu(NODE, Probe(smi_csv(4)), 4, P5)
    assert verdict.status is Status.FAIL and "profile says 8, allocatable 4" in verdict.message


def test_smi_fails_an_unreachable_driver_with_its_message() -> None:
    verdict = smi_sees_every_gpu(NODE, Probe(DRIVER_ERROR + f"{TABLE_MARK}\n" + DRIVER_ERROR, exit_code=9), 8, P5)
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"NVIDIA driver unreachable on {NODE}")
    assert "couldn't communicate with the NVIDIA driver" in verdict.message and "exit code 9" in verdict.message


def test_smi_fails_a_probe_that_did_not_run() -> None:
    verdict = smi_sees_every_gpu(NODE, Probe("", phase="Pending", exit_code=None, reason="ErrImagePull"), 8, P5)
    assert verdict.status is Status.FAIL and verdict.message.startswith(f"nvidia-smi did not run on {NODE}")
    assert "Check the image (nvidia/cuda" in verdict.message


def test_smi_fails_a_node_without_allocatable_gpus() -> None:
    verdict = smi_sees_every_gpu(NODE, None, 0, P5)
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"GPU count mismatch on {NODE}: expected the profile's GPUs allocatable")
    assert "test_nvidia_device_plugin_runs_on" in verdict.message


def test_smi_judges_against_allocatable_when_the_instance_type_is_unknown() -> None:
    verdict = smi_sees_every_gpu(NODE, Probe(smi_csv(2)), 2, None)
    assert verdict.status is Status.PASS and "(instance type not in the profile)" in str(verdict.criteria[0].source)


# -- GPU facts -----------------------------------------------------------------------------------------
def test_facts_pass_on_a_healthy_node() -> None:
    verdict = gpu_facts(NODE, Probe(smi_csv()), P5, {}, False)
    assert verdict.status is Status.PASS, verdict.message
    assert {c.name for c in verdict.criteria} >= {"GPU 0 memory.total (low bound)", "GPU 0 memory.total (high bound)",
                                                  "uncorrected ECC errors"}


def test_facts_record_both_memory_bounds_the_judge_applies() -> None:
    """A value above the profile's +tolerance fails the check AND its recorded criterion (the criterion was one-sided,
    `>= low`, so the report showed a tick beside the failure)."""
    verdict = gpu_facts(NODE, Probe(smi_csv(memory=90000)), P5, {}, False)
    assert verdict.status is Status.FAIL and "has 90000 MiB, profile expects 81559 MiB +-3" in verdict.message
    bounds = {c.name: c for c in verdict.criteria if c.name.startswith("GPU 0 memory.total")}
    low, high = bounds["GPU 0 memory.total (low bound)"], bounds["GPU 0 memory.total (high bound)"]
    assert (low.op, high.op) == (">=", "<=") and low.threshold < 81559 < high.threshold
    assert low.passed is True and high.passed is False


def test_facts_do_not_show_memory_read_as_na_where_the_profile_sets_it() -> None:
    """Memory N/A passed "8 GPUs as expected" with no memory criterion at all."""
    verdict = gpu_facts(NODE, Probe(smi_csv(memory_text="[N/A]")), P5, {}, False)
    assert verdict.status is Status.NOT_SHOWN and "GPU 0 (00000000:53:00.0) memory.total N/A" in verdict.message
    assert not any(c.name.startswith("GPU 0 memory.total") for c in verdict.criteria)


def test_facts_accept_memory_na_where_the_profile_sets_none() -> None:
    assert gpu_facts(NODE, Probe(smi_csv(memory_text="[N/A]")), None, {}, False).status is Status.PASS


def test_facts_read_ecc_mode_from_a_real_capture() -> None:
    assert csv_column(H200_CSV, "ecc.mode.current") == ["Enabled"]
    h200 = load_profile().for_instance("p5e.48xlarge")
    assert gpu_facts(NODE, Probe(H200_CSV), h200, {}, False).status is Status.PASS


@pytest.mark.parametrize("kw, words", [
    ({"name": "NVIDIA A100-SXM4-80GB"}, "is 'NVIDIA A100-SXM4-80GB', profile expects 'NVIDIA H100 80GB HBM3'"),
    ({"memory": 40537}, "has 40537 MiB, profile expects 81559 MiB"),
    ({"errors": "3"}, "reports 3 uncorrected volatile ECC errors"),
    ({"mig": "Enabled"}, "MIG mode Enabled, node labels imply Disabled"),
])
def test_facts_fail_each_wrong_fact(kw: dict, words: str) -> None:
    verdict = gpu_facts(NODE, Probe(smi_csv(**kw)), P5, {}, False)
    assert verdict.status is Status.FAIL and words in verdict.message
    assert verdict.message.startswith(f"GPU facts wrong on {NODE}")


def test_facts_fail_disabled_ecc_where_the_profile_requires_it() -> None:
    """Issue 19b: ECC Disabled printed N/A errors, summed as 0, and passed; enabled-ness was never checked."""
    verdict = gpu_facts(NODE, Probe(smi_csv(ecc="Disabled", errors="[N/A]")), P5, {}, False)
    assert verdict.status is Status.FAIL
    assert "GPU 0 (00000000:53:00.0) ECC mode Disabled, profile requires ECC on" in verdict.message
    assert "nvidia-smi -e 1" in verdict.message
    assert all(c.name != "uncorrected ECC errors" for c in verdict.criteria)   # N/A is not 0 errors


def test_facts_do_not_show_ecc_that_reads_na_where_required() -> None:
    """Issue 19b: ECC mode N/A (not reported) is not shown, never a pass."""
    verdict = gpu_facts(NODE, Probe(smi_csv(ecc="[N/A]", errors="[N/A]")), P5, {}, False)
    assert verdict.status is Status.NOT_SHOWN and "ECC mode N/A" in verdict.message


def test_facts_do_not_show_na_error_counts_with_ecc_on() -> None:
    verdict = gpu_facts(NODE, Probe(smi_csv(errors="[N/A]")), P5, {}, False)
    assert verdict.status is Status.NOT_SHOWN and "uncorrected ECC error count N/A" in verdict.message


def test_facts_accept_ecc_off_where_the_profile_does_not_require_it() -> None:
    verdict = gpu_facts(NODE, Probe(smi_csv(ecc="Disabled", errors="[N/A]")), None, {}, False)
    assert verdict.status is Status.PASS and verdict.facts["ECC mode"]["GPU 0"] == "Disabled"


def test_facts_expect_mig_from_the_node_labels() -> None:
    labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"}
    assert gpu_facts(NODE, Probe(smi_csv(mig="Enabled")), P5, labels, False).status is Status.PASS
    assert gpu_facts(NODE, Probe(smi_csv(mig="Enabled")), P5, {}, True).status is Status.PASS


@pytest.mark.parametrize("probe", [None, Probe(DRIVER_ERROR, exit_code=9)])
def test_facts_are_not_shown_without_nvidia_smi_output(probe: Probe | None) -> None:
    verdict = gpu_facts(NODE, probe, P5, {}, False)
    assert verdict.status is Status.NOT_SHOWN and "judged by test_nvidia_smi_sees_every_gpu" in verdict.message


# -- isolation -----------------------------------------------------------------------------------------
def test_one_gpu_sees_exactly_one() -> None:
    verdict = one_gpu(NODE, isolation(LIST_H200, 0, env="GPU-x"))
    assert verdict.status is Status.PASS and verdict.facts["NVIDIA_VISIBLE_DEVICES"] == "GPU-x"


def test_one_gpu_fails_when_all_are_exposed() -> None:
    verdict = one_gpu(NODE, isolation(LIST_8, 0, env="all"))
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"GPU isolation broken on {NODE}: expected a pod requesting 1 nvidia.com/gpu "
                                      "to see exactly 1 GPU; observed 8")
    assert "NVIDIA_VISIBLE_DEVICES=all" in verdict.message and "deviceListStrategy" in verdict.message


def test_one_gpu_fails_when_none_is_seen() -> None:
    verdict = one_gpu(NODE, isolation("No devices were found", 6))
    assert verdict.status is Status.FAIL and "observed 0" in verdict.message


def test_one_gpu_is_not_shown_with_the_driver_unreachable_or_no_gpu() -> None:
    assert one_gpu(NODE, isolation(DRIVER_ERROR, 9)).status is Status.NOT_SHOWN
    assert one_gpu(NODE, None).status is Status.NOT_SHOWN


def test_no_gpu_fails_a_leak() -> None:
    verdict = no_gpu(NODE, isolation(LIST_H200, 0, env="all"))
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"GPU leak on {NODE}: expected no GPU and no GPU device node in a pod "
                                      "requesting no nvidia.com/gpu; "
                                      "observed 1 (GPU 0: NVIDIA H200")
    assert "accept-nvidia-visible-devices-envvar-when-unprivileged = false" in verdict.message


@pytest.mark.parametrize("text, code", [
    ("No devices were found", 6),                       # driver libraries injected, no device (NVIDIA_VISIBLE_DEVICES=none)
    ("sh: 1: nvidia-smi: not found", 127),              # dash: nothing injected (hardened node)
    ("sh: nvidia-smi: command not found", 127),         # bash
    ("", 127),                                          # stderr not captured: the exit code says it
])
def test_no_gpu_passes_when_the_pod_sees_no_gpu(text: str, code: int) -> None:
    assert no_gpu(NODE, isolation(text, code)).status is Status.PASS


@pytest.mark.parametrize("text, code", [
    ("Segmentation fault (core dumped)", 139),
    ("Failed to initialize NVML: Unknown Error", 255),  # devices injected but unreadable: cannot tell
    (DRIVER_ERROR, 9),
    ("", 0),
])
def test_no_gpu_does_not_show_output_it_cannot_read(text: str, code: int) -> None:
    """Issue 19a: output that did not parse counted as "no GPUs" and passed."""
    verdict = no_gpu(NODE, isolation(text, code))
    assert verdict.status is Status.NOT_SHOWN
    assert f"(exit {code})" in verdict.message and repr(text.strip()[:300] or "(no output)") in verdict.message


def test_no_gpu_fails_a_gpu_device_node_whatever_nvidia_smi_says() -> None:
    """The no-GPU pod was judged by nvidia-smi alone: an image without nvidia-smi passed with /dev/nvidia0 mounted."""
    verdict = no_gpu(NODE, isolation("sh: 1: nvidia-smi: not found", 127, env="all", devices=ONE_GPU_DEVICES))
    assert verdict.status is Status.FAIL and verdict.message.startswith(f"GPU leak on {NODE}")
    assert "GPU device node(s) /dev/nvidia0 in the container although nvidia-smi listed none" in verdict.message
    assert [(c.name, c.value) for c in verdict.criteria][-1] == ("GPU device nodes with none requested", 1)
    unreadable = no_gpu(NODE, isolation("Failed to initialize NVML: Unknown Error", 255,
                                              devices=ONE_GPU_DEVICES))
    assert unreadable.status is Status.FAIL


def test_no_gpu_accepts_control_nodes_without_a_gpu_node() -> None:
    control = ("/dev/nvidia-uvm\n/dev/nvidia-uvm-tools\n/dev/nvidiactl", 0)
    verdict = no_gpu(NODE, isolation("No devices were found", 6, devices=control))
    assert verdict.status is Status.PASS and "control nodes only: /dev/nvidia-uvm" in verdict.message


def test_no_gpu_does_not_show_a_pass_without_the_device_listing() -> None:
    assert no_gpu(NODE, isolation("sh: 1: nvidia-smi: not found", 127, devices=None)).status \
        is Status.NOT_SHOWN
    verdict = no_gpu(NODE, isolation("sh: 1: nvidia-smi: not found", 127, devices=("Killed", 137)))
    assert verdict.status is Status.NOT_SHOWN and "could not be listed" in verdict.message


@pytest.mark.parametrize("text, code, names", [
    (ONE_GPU_DEVICES[0], 0, ["nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidiactl"]),
    ("/dev/nvidia-modeset  /dev/nvidia-uvm  /dev/nvidia-uvm-tools  /dev/nvidia0  /dev/nvidiactl", 0,
     ["nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidiactl"]),   # columns, as a terminal shows
    ("/tmp/pods/x/dev/nvidia3\n/tmp/pods/x/dev/nvidiactl", 0, ["nvidia3", "nvidiactl"]),   # /dev under another root
    (NO_DEVICES[0], 2, []),
    ("ls: /dev/nvidia*: No such file or directory", 1, []),                                 # busybox
    ("", 0, None), ("sh: 1: ls: not found", 127, None),
])
def test_read_devices(text: str, code: int, names: list[str] | None) -> None:
    assert read_devices(text, code) == names


def test_no_gpu_fails_a_probe_that_did_not_finish() -> None:
    verdict = no_gpu(NODE, Probe("", phase="Pending", exit_code=None))
    assert verdict.status is Status.FAIL and verdict.message.startswith(f"The no-GPU probe did not run on {NODE}")


def test_read_listing_keeps_env_and_exit_code_apart() -> None:
    seen = read_listing(f"NVIDIA_VISIBLE_DEVICES=void\n{LIST_8}nvidia-smi exit 0\n")
    assert (len(seen.gpus), seen.env, seen.smi_exit) == (8, "void", 0) and "nvidia-smi exit" not in seen.text


# -- CUDA smoke ----------------------------------------------------------------------------------------
# NVIDIA's vectorAdd sample as the GPU Operator docs show its log (`kubectl logs pod/cuda-vectoradd`).
VECTOR_ADD_OK = """[Vector addition of 50000 elements]
Copy input data from the host memory to the CUDA device
CUDA kernel launch with 196 blocks of 256 threads
Copy output data from the CUDA device to the host memory
Test PASSED
Done
"""
SAMPLE = "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04"
CUDA_12 = ("12.5", 525)


def test_vector_add_smoke_passes_on_test_passed() -> None:
    verdict = cuda_smoke(NODE, Probe(VECTOR_ADD_OK, image=SAMPLE), driver="580.105.08", needs=CUDA_12)
    assert verdict.status is Status.PASS


def test_vector_add_failure_is_cuda_unusable_on_a_new_enough_driver() -> None:
    logs = ("[Vector addition of 50000 elements]\n"
            "Failed to allocate device vector A (error code system not yet initialized)!\n")
    failed = cuda_smoke(NODE, Probe(logs, "Failed", 1, image=SAMPLE), driver="580.105.08", needs=CUDA_12)
    assert failed.status is Status.FAIL and failed.message.startswith(f"CUDA unusable on {NODE}")
    assert "system not yet initialized" in failed.message


def test_smoke_on_a_driver_older_than_the_image_needs_names_the_driver() -> None:
    """Issue 14: a CUDA 13 image on a 570 driver fails 'driver too old' with the minimum, not 'CUDA unusable'."""
    logs = ("[Vector addition of 50000 elements]\nFailed to allocate device vector A (error code CUDA driver "
            "version is insufficient for CUDA runtime version)!\n")
    failed = cuda_smoke(NODE, Probe(logs, "Failed", 1, image="nvidia/cuda:13.0.2-runtime-ubuntu22.04"),
                              driver="570.172.08", needs=("13.0", 580))
    assert failed.status is Status.FAIL and failed.message.startswith(f"CUDA driver too old on {NODE}")
    assert "driver >= 580" in failed.message and "driver 570.172.08" in failed.message


def test_torch_smoke_passes_and_fails() -> None:
    assert cuda_smoke(NODE, Probe("CUDA-SMOKE ok devices=1 name=NVIDIA H100"), torch=True).status is Status.PASS
    failed = cuda_smoke(NODE, Probe("AssertionError: torch.cuda.is_available() is False", "Failed", 1),
                              torch=True)
    assert failed.status is Status.FAIL and failed.message.startswith(f"CUDA unusable on {NODE}")
    assert "torch.cuda.is_available() is False" in failed.message


@pytest.mark.parametrize("probe", [
    Probe("ModuleNotFoundError: No module named 'torch'", "Failed", 1),
    Probe("sh: 1: python3: not found", "Failed", 127),
])
def test_torch_smoke_is_not_shown_in_an_image_without_pytorch(probe: Probe) -> None:
    assert cuda_smoke(NODE, probe, torch=True).status is Status.NOT_SHOWN


# The kubelet's report of the NVIDIA runtime refusing a CUDA 13.0 image on driver 560 (runc's prestart hook failure
# as MauriceNino/dashdot issue #1226 prints it; the condition names the image's CUDA).
REFUSED = ("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
           "failed: unable to start container process: error during container init: error running prestart hook #0: "
           "exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\nnvidia-container-cli: requirement error: "
           "unsatisfied condition: cuda>=13.0, please update your driver to a newer version, or use an earlier cuda "
           "container: unknown")


@dataclass
class Refused(Probe):
    message: str = REFUSED

    def describe(self) -> str:
        return f"probe pod gpucluster/gc-x on {NODE}: phase Failed, exit code 128, reason StartError: {self.message}"


def test_smoke_refused_by_the_runtime_says_the_driver_is_too_old_for_the_image() -> None:
    probe = Refused("", "Failed", 128, reason="StartError", image="nvcr.io/nvidia/pytorch:25.09-py3")
    verdict = cuda_smoke(NODE, probe, torch=True, driver="560.35.05")
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"Driver too old for this image (NVIDIA_REQUIRE_CUDA) on {NODE}")
    assert "refused at start: requirement error: unsatisfied condition: cuda>=13.0" in verdict.message


@pytest.mark.parametrize("probe", [Probe("", "Pending", None, reason="ErrImagePull"), None])
def test_smoke_is_not_shown_without_the_image_or_a_gpu(probe: Probe | None) -> None:
    assert cuda_smoke(NODE, probe).status is Status.NOT_SHOWN


def test_isolation_leak_names_the_device_plugin_and_toolkit_fix() -> None:
    verdict = no_gpu(NODE, Probe(f"NVIDIA_VISIBLE_DEVICES=all\n{LIST_8}nvidia-smi exit 0\n"))
    assert verdict.status is Status.FAIL
    for words in ("deviceListStrategy: volume-mounts", "accept-nvidia-visible-devices-as-volume-mounts = true",
                  "accept-nvidia-visible-devices-envvar-when-unprivileged = false"):
        assert words in verdict.message
