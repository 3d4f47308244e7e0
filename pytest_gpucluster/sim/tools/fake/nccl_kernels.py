"""What nccl-tests and NCCL print when the image has no kernel for the GPU (fake nccl-tests, fake/nccl.py).

The image's GPU code is in the catalog (sim/tools/images.py: Image.sass/ptx, e.g. AWS's nccl-tests image: cubins for
8.0-10.0 only). NCCL's initialisation skips kernels it cannot load ("Silently ignore failures":
NVIDIA/nccl@v2.27.5-1 src/enqueue.cc ncclInitKernelsForDevice), so the communicator comes up and the first
collective fails in ncclLaunchKernel at `CUDACHECKGOTO(cudaGetFuncBySymbol(&fn, sym), ...)` (enqueue.cc:1558), which
WARNs "Cuda failure '<cudaGetErrorString>'" (src/include/checks.h) and returns ncclUnhandledCudaError. nccl-tests
runs that collective in its warm-up, before any row of the table: its NCCLCHECK prints
"<host>: Test NCCL failure <file>:<line> '<ncclGetErrorString> / <ncclGetLastError>'", each TESTCHECK on the way
up " .. <host> pid <pid>: Test failure <file>:<line>", and main returns testNcclError (3) (src/common.h). The
shape is that of real captures: NVIDIA/nccl-tests issue 124 ("ArchLinux: Test NCCL failure all_reduce.cu:44
'unhandled cuda error / '" then six "Test failure" lines), issue 79 (the same cudaErrorNoKernelImageForDevice text
from nccl-tests' own kernels, older layout)."""
from __future__ import annotations

import os
import time
from typing import Any

NO_KERNEL = "no kernel image is available for execution on the device"
NCCL_ERROR = "unhandled cuda error (run with NCCL_DEBUG=INFO for details)"
EXIT_NCCL_ERROR = 3                      # testNcclError
WARN_SITE = "enqueue.cc:1558"            # NCCL v2.27.5-1 ncclLaunchKernel, cudaGetFuncBySymbol
# nccl-tests' error path from the warm-up's first all-reduce up to main(), per version: the NCCLCHECK that fails
# (-g 1: ncclAllReduce in all_reduce.cu; -g >1: ncclGroupEnd in startColl) and the TESTCHECKs above it. Line numbers
# of tags v2.16.4 and v2.17.9 (src/all_reduce.cu, src/common.cu); other collectives fail the same way from their
# own file, whose lines are not modelled.
SITES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "2.16": {"single": ("all_reduce.cu:44", ("common.cu:400", "common.cu:609", "all_reduce.cu:90", "common.cu:642",
                                             "common.cu:1202", "common.cu:937")),
             "group": ("common.cu:411", ("common.cu:609", "all_reduce.cu:90", "common.cu:642", "common.cu:1202",
                                         "common.cu:937"))},
    "2.17": {"single": ("all_reduce.cu:494", ("common.cu:514", "common.cu:723", "all_reduce.cu:561",
                                              "common.cu:762", "common.cu:1508", "common.cu:1189")),
             "group": ("common.cu:536", ("common.cu:723", "all_reduce.cu:561", "common.cu:762", "common.cu:1508",
                                         "common.cu:1189"))},
}


# The GPU code of the container's image (sim/tools/images.py Image.sass/ptx), as the kubelet passes it: a channel
# of the simulator like its context file, e.g. "sass=8.0,8.6,8.9,9.0,10.0;ptx=". Unset: not known, runs everywhere.
CODE_ENV = "GPUCLUSTER_SIM_GPU_CODE"


def _cc(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def code_env(sass: tuple[str, ...], ptx: tuple[str, ...]) -> str:
    return f"sass={','.join(sass)};ptx={','.join(ptx)}"


def runs_on(code: str, compute_cap: str) -> bool:
    """Whether GPU code `code` (code_env's format; "" = not known) runs on compute capability `compute_cap`. CUDA's
    binary compatibility (CUDA C++ Programming Guide, "Binary Compatibility"): a cubin for sm_XY runs on compute
    capability X.Z with the same major X and Z >= Y; PTX for compute_XY is JIT-compiled for X.Y and later. Neither:
    cudaErrorNoKernelImageForDevice."""
    if not code or not compute_cap:
        return True
    parts = dict(item.partition("=")[::2] for item in code.split(";"))
    sass = [_cc(c) for c in parts.get("sass", "").split(",") if c]
    ptx = [_cc(c) for c in parts.get("ptx", "").split(",") if c]
    if not sass and not ptx:
        return True
    want = _cc(compute_cap)
    return any(c[0] == want[0] and c[1] <= want[1] for c in sass) or any(c <= want for c in ptx)


def code_of(node: dict[str, Any]) -> str:
    """The GPU code of the image a rank runs in: its worker's (MPI), else this container's."""
    return str(node.get("gpu_code") if node.get("gpu_code") is not None else os.environ.get(CODE_ENV, ""))


# A security group without its self-referencing all-traffic rules (inbound and outbound) blocks EFA between the
# nodes: aws-ofi-nccl cannot set up the peer's address when NCCL connects at the first collective, and nccl-tests
# fails there. Text of aws/aws-ofi-nccl issue 663 (2x p5.48xlarge, aws-ofi-nccl 1.11.0-aws, NCCL 2.20/2.22; the
# maintainer's answer: the security group must name itself in both directions): "internal error - please report this
# issue to the NCCL developers" with last error "NET/OFI Unable to insert remote address into address vector for
# device 1. RC: 0" (init_send_comm_rails in src/nccl_ofi_rdma; the line number of the WARN prefix is not modelled).
# Later plugin versions were reported to hang several minutes instead: either way every pair of the zone fails.
SG_WARN_SITE = "int init_send_comm_rails(nccl_net_ofi_rdma_send_comm_t*, nccl_net_ofi_rdma_ep_t*, int, " \
               "nccl_ofi_rdma_ep_name_t*, int):0"
SG_WARN = "NET/OFI Unable to insert remote address into address vector for device 1. RC: 0"
SG_NCCL_ERROR = "internal error - please report this issue to the NCCL developers"


def failure_lines(ranks: list[Any], tests_version: str, ngpus: int, debug: str, *, warn_site: str = WARN_SITE,
                  warn: str = f"Cuda failure '{NO_KERNEL}'", nccl_error: str = NCCL_ERROR) -> list[tuple[int, str]]:
    """Per process, in order: NCCL's WARN (with NCCL_DEBUG=WARN/INFO/TRACE), nccl-tests' NCCLCHECK line and its
    TESTCHECK lines, for an error NCCL returns at the warm-up's first collective."""
    series = "2.16" if tuple(int(x) for x in tests_version.split(".")[:2]) < (2, 17) else "2.17"
    site, chain = SITES[series]["group" if ngpus > 1 else "single"]
    out: list[tuple[int, str]] = []
    first_of_proc: dict[int, Any] = {}
    for r in ranks:
        first_of_proc.setdefault(r.proc, r)
    stamp = time.strftime("[%Y-%m-%d %H:%M:%S] ")
    for proc, r in sorted(first_of_proc.items()):
        if debug in ("WARN", "INFO", "TRACE"):
            out.append((proc, ""))           # NCCL starts every WARN with a newline (src/debug.cc)
            out.append((proc, f"{stamp}{r.host}:{r.pid}:{r.pid + 40} [{r.gpu['index']}] {warn_site} NCCL WARN {warn}"))
        out.append((proc, f"{r.host}: Test NCCL failure {site} '{nccl_error} / {warn}'"))
        out += [(proc, f" .. {r.host} pid {r.pid}: Test failure {where}") for where in chain]
    return out
