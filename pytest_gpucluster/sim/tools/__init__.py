"""The fake tools (one wrapper each) the image catalog (images.py) places in an image, and absolute-path mapping."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .fake.nccl import COLLECTIVES

TOOLS_DIR = Path(__file__).parent
PYLIB_DIR = TOOLS_DIR / "pylib"          # holds the fake `torch` package (PYTHONPATH)

# tool name -> python call run by the wrapper script
TOOLS: dict[str, str] = {
    "nvidia-smi": "from fake.nvidia_smi import main; sys.exit(main(sys.argv[1:]))",
    "fi_info": "from fake.fi_info import main; sys.exit(main(sys.argv[1:]))",
    "mpirun": "from fake.launch import mpirun; sys.exit(mpirun(sys.argv[1:]))",
    "mpiexec": "from fake.launch import mpirun; sys.exit(mpirun(sys.argv[1:]))",
    "sshd": "from fake.misc import sshd; sys.exit(sshd(sys.argv[1:]))",
    "dcgmi": "from fake.health import dcgmi; sys.exit(dcgmi(sys.argv[1:]))",
    "nv-hostengine": "from fake.health import nv_hostengine; sys.exit(nv_hostengine(sys.argv[1:]))",
    "vectorAdd": "from fake.cuda_samples import vector_add; sys.exit(vector_add(sys.argv[1:]))",
    "dcgmproftester12": "from fake.proftester import main; sys.exit(main(sys.argv[1:]))",
    **{prog: f"from fake.nccl import main; sys.exit(main(sys.argv[1:], {prog!r}))" for prog in COLLECTIVES},
}
# Absolute paths in commands that live in the image (not the node's /proc, /sys, /dev, /etc): mapped into
# the container's image root, so `/opt/nccl-tests/build/all_reduce_perf` exists only where the image has it.
_ABS_IMAGE = re.compile(r"(?<![\w./-])/(?:usr|bin|sbin|opt|cuda-samples)(?:/[\w.+-]+)+/?")
_DEV_IB = re.compile(r"(?<![\w./-])/dev/infiniband\b")
_DEV_NVIDIA = re.compile(r"(?<![\w./-])/dev/nvidia")
# A container's /tmp is its own (the image's writable layer, or an emptyDir): never another pod's. Shared, the
# node-health probes of 200 pods on this one machine read each other's `/tmp/cuda.out` and failed at random.
_TMP = re.compile(r"(?<![\w./-])/tmp(?![\w.+-])")


TOOL_CPU_ENV = "GPUCLUSTER_SIM_TOOL_CPU"   # benchmarks/scenario_cost.py: a file each wrapper appends its CPU to


def wrapper_text(name: str, call: str) -> str:
    """A fake tool's executable: this interpreter, isolated (-I -S), with the fake package on its path. When the
    simulated cluster runs under benchmarks/scenario_cost.py (TOOL_CPU_ENV set here; the pod's own environment is
    scrubbed), the wrapper also appends `<tool> <CPU seconds>` to that file at exit."""
    measure = os.environ.get(TOOL_CPU_ENV)
    probe = "" if not measure else (
        "import atexit, resource\n"
        f"atexit.register(lambda: open({measure!r}, 'a').write('{name} %.4f\\n' % "
        "sum(resource.getrusage(resource.RUSAGE_SELF)[:2])))\n")
    return f"#!{sys.executable} -IS\nimport sys\n{probe}sys.path.insert(0, {str(TOOLS_DIR)!r})\n{call}\n"


def install_tools(dest: Path) -> Path:
    """Write one executable wrapper per tool into `dest` (started with this interpreter, -I -S)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, call in TOOLS.items():
        path = dest / name
        path.write_text(wrapper_text(name, call), encoding="utf-8")
        path.chmod(0o755)
    return dest


def map_paths(text: str, image_root: Path, scratch: Path) -> str:
    """Rewrite `/usr/sbin/sshd`, `/opt/nccl-tests/build/all_reduce_perf` (into the image root), `/dev/infiniband`,
    `/dev/nvidia*` (into the pod's scratch, which holds the device nodes the pod was given) and `/tmp` (the pod's
    own, in its scratch) ... in a command."""
    text = _TMP.sub(lambda m: str(scratch / "tmp"), text)   # first: the roots below may themselves be under /tmp
    text = _ABS_IMAGE.sub(lambda m: str(image_root) + m.group(0), text)
    text = _DEV_NVIDIA.sub(str(scratch / "dev" / "nvidia"), text)
    return _DEV_IB.sub(str(scratch / "dev" / "infiniband"), text)
