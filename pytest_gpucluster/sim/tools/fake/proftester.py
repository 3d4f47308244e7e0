"""Fake `dcgmproftester12` (NVIDIA DCGM's CUDA load generator, /usr/bin in the DCGM image): a per-GPU worker runs a
CUDA load and the parent prints one report line per worker and report interval, as NVIDIA/DCGM@6e947dc
dcgmproftester/ does.

Text and behaviour: the real run in the DCGM 4.2.3 image, NVIDIA/DCGM issue #239 (`--no-dcgm-validation`:
"Skipping CreateDcgmGroups() since DCGM validation is disabled", then `Worker 0:0[1007]: Fp32EngineActive: target
0.00, dcgm 0` and `... target max, dcgm 0` lines); PhysicalGpu.cpp formats those lines; DcgmProfTester.cpp main()
checks the CUDA major first ("Wrong version of dcgmproftester is used..."), starts an embedded host engine
("dcgmStartEmbedded() returned -7." then "Error -7 from Init(). Exiting." when NVML cannot start: DCGM_ST_INIT_ERROR,
dcgmlib/dcgm_structs.h) and ends "All Tests Passed."; Arguments.h: `--max-processes` defaults to 4 GPUs at a time,
`-d` 30 s, `-r` 1 s. A worker whose CUDA context cannot start (the fabric manager down: cuInit 802) never reports;
what it logs goes to the log file, not the console, so nothing is printed for it.
"""
from __future__ import annotations

import signal
import sys
import time
from typing import Any

from . import ctx as simctx
from . import health

CUDA_MAJOR = 12                 # dcgmproftester12 is built against CUDA 12 (CMakeLists: dcgmproftester${cuda_version})
MIN_DRIVER = 525                # CUDA 12.x needs driver >= 525 (docs.nvidia.com/deploy/cuda-compatibility)
HEADERS = {1001: "GrActivity", 1002: "SmActivity", 1003: "SmOccupancy", 1004: "TensorEngineActive",
           1005: "DramActive", 1006: "Fp64EngineActive", 1007: "Fp32EngineActive", 1008: "Fp16EngineActive"}
# Starting DCGM's embedded host engine, then forking a worker per GPU that creates its CUDA context, before the
# first report interval ends (modelled: no published figure; a few seconds, like the PyTorch load).
EMBEDDED_START_S = 2.0
WORKER_START_S = 1.0
EXIT_GENERIC = 256 - 3          # DCGM_ST_GENERIC_ERROR as an exit status
EXIT_INIT = 256 - 7             # DCGM_ST_INIT_ERROR


def _args(argv: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"field": 1004, "duration": 30.0, "report": 1.0, "max": 4, "validate": True}
    i = 0
    while i < len(argv):
        arg, value = argv[i], argv[i + 1] if i + 1 < len(argv) else ""
        if arg in ("-t", "--fieldId"):
            out["field"], i = int(value.split(",")[0]), i + 1
        elif arg in ("-d", "--duration"):
            out["duration"], i = float(value), i + 1
        elif arg in ("-r", "--report"):
            out["report"], i = float(value), i + 1
        elif arg == "--max-processes":
            out["max"], i = int(value), i + 1
        elif arg == "--no-dcgm-validation":
            out["validate"] = False
        i += 1
    return out


def main(argv: list[str]) -> int:
    ctx = simctx.load()
    recorded = simctx.replay(ctx, "dcgmproftester12")
    if recorded is not None:
        return recorded
    major = health.driver_major(ctx)
    if major is not None and major < MIN_DRIVER:
        print(f"Wrong version of dcgmproftester is used. Expected Cuda version is {CUDA_MAJOR}. Installed Cuda "
              f"version is 11.", end="", flush=True)
        return EXIT_GENERIC
    if simctx.fault(ctx, "driver-unreachable") is not None:
        print("dcgmStartEmbedded() returned -7.Error -7 from Init(). Exiting.", end="", flush=True)
        return EXIT_INIT
    args = _args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (print("Received signal 15", flush=True), sys.exit(EXIT_GENERIC)))
    time.sleep(EMBEDDED_START_S)
    gpus = simctx.visible_gpus(ctx)
    fabric_down = simctx.fault(ctx, "nvlink-down") is not None
    header = HEADERS.get(args["field"], f"Field{args['field']}")
    batch = len(gpus) if args["max"] == 0 else max(1, args["max"])
    for start in range(0, len(gpus), batch):
        group = gpus[start:start + batch]
        for _ in group:
            if not args["validate"]:
                print("Skipping CreateDcgmGroups() since DCGM validation is disabled", flush=True)
        time.sleep(WORKER_START_S)
        if fabric_down:
            return EXIT_GENERIC
        ticks = max(1, int(args["duration"] / args["report"]))
        for tick in range(ticks):
            for g in group:
                if tick == 0:
                    simctx.mark_busy(g)
                target = "0.00" if tick == 0 else "max"
                print(f"Worker {g['index']}:0[{args['field']}]: {header}: target {target}, dcgm 0", flush=True)
            time.sleep(args["report"])
    print("All Tests Passed.", flush=True)
    return 0
