"""What the GPU-visibility probes run on the cluster and how their output reads: the nvidia-smi query and table, the
isolation listing (nvidia-smi -L and the NVIDIA device nodes), the CUDA smoke commands. Pure text in, data out."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from ..parsers import NvidiaSmiResult, ParseError, parse_nvidia_smi

QUERY_FIELDS = ("index", "name", "uuid", "pci.bus_id", "memory.total", "driver_version", "mig.mode.current",
                "ecc.mode.current", "ecc.errors.uncorrected.volatile.total")
TABLE_MARK = "---- gpucluster: nvidia-smi table ----"
# One pod per node: the CSV facts, then the table for the report; the exit code is the query's.
SMI_SCRIPT = (f"nvidia-smi --query-gpu={','.join(QUERY_FIELDS)} --format=csv; rc=$?; "
              f"echo '{TABLE_MARK}'; nvidia-smi; exit $rc")
ENV_PREFIX, EXIT_PREFIX = "NVIDIA_VISIBLE_DEVICES=", "nvidia-smi exit "
DEV_MARK, DEV_EXIT_PREFIX = "---- gpucluster: NVIDIA device nodes ----", "ls exit "
# nvidia-smi as the pod sees it, then the NVIDIA device nodes in the container: a GPU device node is a way to the GPU
# whatever the image holds (nvidia-smi or not), so a pod without a GPU request must have none.
ISOLATION_SCRIPT = (f'echo "{ENV_PREFIX}${{NVIDIA_VISIBLE_DEVICES-<unset>}}"; '
                    f'nvidia-smi -L; echo "{EXIT_PREFIX}$?"; '
                    f"echo '{DEV_MARK}'; ls -d /dev/nvidia* 2>&1; echo \"{DEV_EXIT_PREFIX}$?\"")
# The runtime mounts /dev/nvidia<minor> for each GPU it gives, plus the control nodes nvidiactl, nvidia-uvm,
# nvidia-uvm-tools and nvidia-modeset (NVIDIA/nvidia-container-toolkit@d34b3046 pkg/nvcdi/common-nvml.go
# controlDeviceNodeDiscoverer). Control nodes alone reach no GPU; a GPU device node does.
GPU_DEVICE_NODE = re.compile(r"^nvidia\d+$")
SMOKE_SCRIPT = """
import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
n = torch.cuda.device_count()
props = torch.cuda.get_device_properties(0)
torch.cuda.synchronize()
print(f"CUDA-SMOKE ok devices={n} name={props.name} memory_mib={props.total_memory // (1024 * 1024)} "
      f"capability={props.major}.{props.minor} torch={torch.__version__}")
"""
SMOKE_OK = "CUDA-SMOKE ok"
# The default smoke: NVIDIA's vectorAdd sample (NVIDIA/cuda-samples Samples/0_Introduction/vectorAdd, in the GPU
# Operator docs' cuda-sample image): a kernel runs and its result is checked on the host; it ends `Test PASSED`.
SAMPLE_COMMAND = ["/cuda-samples/vectorAdd"]
SAMPLE_OK = "Test PASSED"
EXIT_NOT_FOUND = 127   # POSIX shells: command not found
# A shell that cannot find nvidia-smi: dash `sh: 1: nvidia-smi: not found`, bash `nvidia-smi: command not found`,
# runc `exec: "nvidia-smi": executable file not found in $PATH`.
SMI_NOT_FOUND = re.compile(r"nvidia-smi\"?:? (?:command )?not found|executable file not found", re.IGNORECASE)


# -- reading the probes' output ------------------------------------------------------------------------
def split_output(logs: str) -> tuple[str, str]:
    """(query CSV, table) of the nvidia-smi probe's log."""
    query, _, table = logs.partition(TABLE_MARK)
    return query.strip("\n"), table.strip("\n")


def parse_or_none(text: str) -> NvidiaSmiResult | None:
    try:
        return parse_nvidia_smi(text) if text.strip() else None
    except ParseError:
        return None


def csv_column(query: str, name: str) -> list[str | None]:
    """One column of `--query-gpu=... --format=csv` output by its header, a row per GPU; N/A and absent -> None.
    (For columns the nvidia-smi parser does not type, e.g. ecc.mode.current.)"""
    rows = [r for r in csv.reader(query.splitlines(), skipinitialspace=True) if r]
    if not rows:
        return []
    header = [re.sub(r" \[.*", "", h.strip()) for h in rows[0]]
    if name not in header:
        return []
    i = header.index(name)
    values = [r[i].strip() if len(r) == len(header) else None for r in rows[1:]]
    return [None if v is None or v in ("", "N/A", "[N/A]", "Not Supported", "[Not Supported]") else v
            for v in values]


@dataclass(frozen=True)
class Listing:
    """The isolation probe's output: `nvidia-smi -L` and the NVIDIA device nodes as the pod saw them."""

    gpus: list[str]                  # `GPU 0: NVIDIA H100 80GB HBM3 (GPU-...)`
    env: str | None                  # NVIDIA_VISIBLE_DEVICES as the pod saw it
    text: str                        # nvidia-smi's own output
    smi_exit: int | None             # nvidia-smi's exit code (127: not in the container)
    parsed: NvidiaSmiResult | None   # None: not nvidia-smi output at all
    devices: list[str] | None = None   # NVIDIA device node names in /dev; None: the listing was not shown
    dev_text: str = ""               # `ls -d /dev/nvidia*` as printed

    @property
    def gpu_devices(self) -> list[str]:
        return [d for d in self.devices or [] if GPU_DEVICE_NODE.match(d)]

    @property
    def error_category(self) -> str | None:
        return self.parsed.error.category if self.parsed is not None and self.parsed.error is not None else None

    @property
    def smi_absent(self) -> bool:
        """The container has no nvidia-smi: the runtime injected no driver (a pod without GPUs on a hardened node)."""
        return self.smi_exit == EXIT_NOT_FOUND or bool(SMI_NOT_FOUND.search(self.text))


DEV_TOKEN = re.compile(r"(?:^|/)dev/(nvidia[A-Za-z0-9-]*)$")


def read_devices(text: str, code: int | None) -> list[str] | None:
    """NVIDIA device node names from `ls -d /dev/nvidia*` (one per line, in columns or `ls -l` rows: every
    `/dev/nvidia...` path counts; the node's /dev may sit under another root): [] when the glob matched nothing
    (`ls: cannot access '/dev/nvidia*': No such file or directory`, non-zero exit), None when the output says
    neither (ls missing, killed, unreadable)."""
    names = [m.group(1) for token in text.split() if (m := DEV_TOKEN.search(token))]
    if code == 0 and names:
        return sorted(set(names))
    lines = [line for line in text.splitlines() if line.strip()]
    if code not in (None, 0) and lines and all("No such file or directory" in line for line in lines):
        return []
    return None


def read_listing(logs: str) -> Listing:
    head, _, devs = logs.partition(DEV_MARK)
    dev_code, dev_lines = None, []
    for line in devs.splitlines():
        if line.startswith(DEV_EXIT_PREFIX):
            value = line[len(DEV_EXIT_PREFIX):].strip()
            dev_code = int(value) if value.isdigit() else None
        else:
            dev_lines.append(line)
    dev_text = "\n".join(dev_lines).strip()
    env, code, own = None, None, []
    for line in head.splitlines():
        if line.startswith(ENV_PREFIX):
            env = line[len(ENV_PREFIX):]
        elif line.startswith(EXIT_PREFIX):
            code = int(line[len(EXIT_PREFIX):]) if line[len(EXIT_PREFIX):].strip().isdigit() else None
        else:
            own.append(line)
    text = "\n".join(own)
    parsed = parse_or_none(text)
    gpus = [f"GPU {g.index}: {g.name} ({g.uuid})" for g in parsed.gpus] if parsed is not None else []
    devices = read_devices(dev_text, dev_code) if DEV_MARK in logs else None
    return Listing(gpus, env, text, code, parsed, devices, dev_text)
