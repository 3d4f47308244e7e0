"""The image catalog: which tools each container image really holds, where, with which PATH and ENV (each entry
cites the Dockerfile or docs it was read from); the per-image root the kubelet runs a container against.

A simulated container sees only its image: the kubelet builds one directory per image (and one more per image
with the NVIDIA driver injected), holding at the image's real paths either a host binary (shells, coreutils,
busybox applets), a fake tool (fi_info, nccl-tests, mpirun, sshd, dcgmi, vectorAdd) or a python3 wrapper (the fake
`torch` on its path only where the image ships PyTorch). PATH entries and absolute tool paths in commands are
mapped into that directory, so a tool the image lacks is "not found" (exit 127) as on a real node.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import PYLIB_DIR, TOOLS
from .cuda_require import cuda_of_tag, require_cuda
from .fake.nccl import COLLECTIVES
from .fake.nccl_kernels import CODE_ENV, code_env, runs_on

# -- what an image can hold --------------------------------------------------------------------------------
# Host binaries linked into an image root by name. Ubuntu base images (the CUDA images' base) carry coreutils,
# dash/bash, grep, sed, mawk, findutils, hostname, debianutils `which`; not procps (no `ps`).
UBUNTU_BIN = ("sh", "bash", "cat", "echo", "ls", "grep", "sed", "awk", "head", "tail", "sleep", "env", "true",
              "false", "test", "mkdir", "rm", "rmdir", "cp", "mv", "ln", "tr", "cut", "sort", "uniq", "wc", "date",
              "hostname", "id", "uname", "tee", "touch", "chmod", "xargs", "find", "timeout", "seq", "printf",
              "basename", "dirname", "stat", "readlink", "realpath", "pwd", "nproc", "whoami", "df", "du", "od",
              "expr", "yes", "nohup", "mktemp", "which", "dd", "sync", "stdbuf")
# busybox: the applets of `busybox --list` that matter to a probe script (busybox.net: one binary, applet links).
BUSYBOX_BIN = ("sh", "ash", "cat", "echo", "ls", "grep", "sed", "awk", "head", "tail", "sleep", "env", "true",
               "false", "test", "mkdir", "rm", "rmdir", "cp", "mv", "ln", "tr", "cut", "sort", "uniq", "wc", "date",
               "hostname", "id", "uname", "tee", "touch", "chmod", "xargs", "find", "timeout", "seq", "printf",
               "basename", "dirname", "stat", "readlink", "realpath", "pwd", "nproc", "whoami", "df", "du", "od",
               "expr", "yes", "nohup", "mktemp", "which", "dd", "sync", "ps", "kill", "wget", "nslookup", "ping")
UBUNTU_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# nvidia/cuda images: gitlab.com/nvidia/container-images/cuda dist/<ver>/ubuntu2204/base/Dockerfile
# (`ENV PATH /usr/local/nvidia/bin:/usr/local/cuda/bin:${PATH}`, `ENV NVIDIA_VISIBLE_DEVICES=all`,
# `ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility`); runtime/ adds the CUDA libraries only, no python3.
CUDA_PATH = f"/usr/local/nvidia/bin:/usr/local/cuda/bin:{UBUNTU_PATH}"
CUDA_ENV = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
# What the NVIDIA container runtime injects (nvidia-container-cli: utility capability -> nvidia-smi in /usr/bin).
DRIVER_TOOLS = {"/usr/bin/nvidia-smi": "fake:nvidia-smi"}

PYTHON = "python3"                 # provider: the host interpreter, no torch
PYTHON_TORCH = "python3+torch"     # provider: the host interpreter with the fake torch on its path


@dataclass(frozen=True)
class Image:
    """One catalog entry: the references it matches, its PATH and ENV, and its files (absolute path -> provider:
    `host:<name>` a host binary, `fake:<tool>` a fake tool wrapper, `python3` / `python3+torch`)."""

    key: str
    patterns: tuple[str, ...]
    source: str
    path: str = UBUNTU_PATH
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()   # Dockerfile ENTRYPOINT (replaced by a pod's `command`)
    size_gb: float = 0.0               # unpacked on the node's disk (0: small next to a node's root volume)
    cmd: tuple[str, ...] = ()          # Dockerfile CMD (replaced by a pod's `args`, dropped with its `command`)
    # CUDA the image is built for, which sets its NVIDIA_REQUIRE_CUDA: "12.9", or "tag" (read from the tag), or
    # "tag:12.9" (from the tag, else 12.9: a tag like `latest` names none)
    cuda: str | None = None

    def env_for(self, ref: str) -> dict[str, str]:
        """The image's ENV for this reference, NVIDIA_REQUIRE_CUDA included where NVIDIA's CUDA base images set it
        (the runtime refuses the container on a driver that satisfies none of it: cuda_require.py)."""
        cuda = self.cuda
        if cuda is not None and cuda.startswith("tag"):
            cuda = cuda_of_tag(ref) or cuda.partition(":")[2] or None
        return {**self.env, "NVIDIA_REQUIRE_CUDA": require_cuda(cuda)} if cuda else dict(self.env)
    # GPU code the image's CUDA programs carry: compute capabilities with a cubin (`code=sm_XY`) and with PTX
    # (`code=compute_XY`). Empty `sass` and `ptx`: not known, every GPU runs it. See runs_on.
    sass: tuple[str, ...] = ()
    ptx: tuple[str, ...] = ()

    def runs_on(self, compute_cap: str) -> bool:
        """Whether the image's kernels run on a GPU of `compute_cap` (fake/nccl_kernels.runs_on: CUDA's binary
        compatibility)."""
        return runs_on(self.gpu_code, compute_cap)

    @property
    def gpu_code(self) -> str:
        """sass/ptx in the form the kubelet hands to the fake tools ("" when not known)."""
        return code_env(self.sass, self.ptx) if self.sass or self.ptx else ""

    def runs_program(self, container: dict[str, object]) -> bool:
        """Whether a container of this image runs a program to completion. False: an image whose entrypoint the
        catalog does not know (device plugins, operators) or a bare shell CMD waiting on a terminal; the kubelet
        keeps those Running as daemons."""
        if container.get("command"):
            return True
        if container.get("args"):
            return bool(self.entrypoint or self.cmd)
        return bool(self.entrypoint) or self.cmd not in ((), ("sh",), ("bash",))

    def matches(self, image: str) -> bool:
        return any(fnmatch.fnmatchcase(image, p) for p in self.patterns)


def _host(names: tuple[str, ...], *dirs: str) -> dict[str, str]:
    return {f"{d}/{n}": f"host:{n}" for d in dirs for n in names}


UBUNTU = _host(UBUNTU_BIN, "/usr/bin", "/bin")          # Ubuntu 22.04 merges /bin into /usr/bin
NCCL_TESTS_DIR = "/opt/nccl-tests/build"

CATALOG: tuple[Image, ...] = (
    Image("cuda", ("nvidia/cuda:*", "docker.io/nvidia/cuda:*", "nvcr.io/nvidia/cuda:*"),
          "gitlab.com/nvidia/container-images/cuda dist/*/ubuntu2204/{base,runtime,devel}/Dockerfile: Ubuntu 22.04 "
          "+ CUDA libraries (devel: + nvcc); no python3, no libfabric, no nccl-tests; ENV NVIDIA_REQUIRE_CUDA of the "
          "tag's CUDA version",
          path=CUDA_PATH, env=dict(CUDA_ENV), files=dict(UBUNTU), cuda="tag"),
    Image("nccl-tests", ("public.ecr.aws/hpc-cloud/nccl-tests:*",),
          "aws-samples/awsome-distributed-training@7217859f67bc693c52ff175ccc6082c41dbd7a1b "
          "micro-benchmarks/nccl-tests/nccl-tests.Dockerfile: FROM nvcr.io/nvidia/cuda:*-devel-ubuntu22.04, "
          "openssh-client/server, python3 (+pip awscli pynvml), EFA installer (libfabric fi_info under "
          "/opt/amazon/efa/bin, Open MPI under /opt/amazon/openmpi/bin), nccl-tests built in /opt/nccl-tests/build "
          "(not on PATH); ENV PATH=/opt/amazon/openmpi/bin/:/opt/amazon/efa/bin:/usr/bin:/usr/local/bin:$PATH. "
          "NCCL and nccl-tests are both built with NVCC_GENCODE=\"-gencode=arch=compute_80,code=sm_80 ... "
          "compute_90,code=sm_90 -gencode=arch=compute_100,code=sm_100\" (every revision since 56c5cfcd, May 2025; "
          "sm_80..sm_90 before): cubins for 8.0, 8.6, 8.9, 9.0 and 10.0, no PTX, so no T4 (7.5) and no RTX PRO 6000 "
          "Blackwell (12.0)",
          sass=("8.0", "8.6", "8.9", "9.0", "10.0"),
          path="/opt/gdrcopy/bin:/opt/amazon/openmpi/bin/:/opt/amazon/efa/bin:/usr/bin:/usr/local/bin:" + CUDA_PATH,
          env=dict(CUDA_ENV),
          files={**UBUNTU, "/opt/amazon/efa/bin/fi_info": "fake:fi_info",
                 "/opt/amazon/openmpi/bin/mpirun": "fake:mpirun", "/opt/amazon/openmpi/bin/mpiexec": "fake:mpiexec",
                 "/usr/sbin/sshd": "fake:sshd", "/usr/bin/python3": PYTHON,
                 **{f"{NCCL_TESTS_DIR}/{p}": f"fake:{p}" for p in COLLECTIVES}},
          # the tag names the CUDA base (cuda12.8.1-efa...: FROM nvcr.io/nvidia/cuda:12.8.1-devel); else the
          # Dockerfile's ARG CUDA_VERSION=12.9.1 at that commit
          cuda="tag:12.9"),
    Image("pytorch", ("nvcr.io/nvidia/pytorch:*",),
          "NGC PyTorch release notes (docs.nvidia.com/deeplearning/frameworks/pytorch-release-notes): Ubuntu + CUDA "
          "base (NVIDIA_VISIBLE_DEVICES=all inherited), python3 with torch in /usr/local/lib/python3.*/dist-packages; "
          "its NVIDIA_REQUIRE_CUDA is not modelled (no capture of the image's config found)",
          path="/usr/local/lib/python3/dist-packages/torch_tensorrt/bin:/usr/local/mpi/bin:" + CUDA_PATH,
          env=dict(CUDA_ENV),
          files={**UBUNTU, "/usr/bin/python3": PYTHON_TORCH, "/usr/bin/python": PYTHON_TORCH,
                 "/usr/local/bin/python": PYTHON_TORCH},
          # "nvcr.io/nvidia/pytorch:23.03-py3 accounting for ~20GB" (d4l3k/torchdrive pull request #4)
          size_gb=20.0),
    Image("cuda-sample", ("nvcr.io/nvidia/k8s/cuda-sample:vectoradd-*",),
          "NVIDIA GPU Operator docs, 'Running Sample GPU Applications': nvcr.io/nvidia/k8s/cuda-sample:"
          "vectoradd-cuda12.5.0-ubuntu22.04 runs /cuda-samples/vectorAdd (NVIDIA/cuda-samples "
          "Samples/0_Introduction/vectorAdd), log ending `Test PASSED` / `Done`; CUDA base env; no python3",
          path=CUDA_PATH, env=dict(CUDA_ENV),
          files={**UBUNTU, "/cuda-samples/vectorAdd": "fake:vectorAdd"}, cmd=("/cuda-samples/vectorAdd",),
          cuda="tag"),      # vectoradd-cuda12.5.0: built on the CUDA 12.5 base
    Image("dcgm", ("*/dcgm:*", "dcgm:*"),
          "NVIDIA/DCGM@72fa3feaa67d716a75323a8f47c34ff3ee73f824 docker/Dockerfile.ubuntu22.04 "
          "(nvcr.io/nvidia/cloud-native/dcgm): FROM nvcr.io/nvidia/cuda:*-base-ubuntu22.04, datacenter-gpu-manager-4 "
          "installs dcgmi and nv-hostengine in /usr/bin, ENV NVIDIA_VISIBLE_DEVICES=all, ENV "
          "NVIDIA_DISABLE_REQUIRE=\"true\" (its 13.0.1 base's NVIDIA_REQUIRE_CUDA is not enforced); nvidia-smi only as "
          "the runtime injects it. The 4.2.3 image (@6e947dc) installs datacenter-gpu-manager-4-cuda12, whose package "
          "holds /usr/bin/dcgmproftester12 (scripts/verify_package_contents/datacenter-gpu-manager-cuda12_amd64.deb.txt)",
          path=CUDA_PATH, env={**CUDA_ENV, "NVIDIA_DISABLE_REQUIRE": "true"}, cuda="13.0",
          files={**UBUNTU, "/usr/bin/dcgmi": "fake:dcgmi", "/usr/bin/nv-hostengine": "fake:nv-hostengine",
                 "/usr/bin/dcgmproftester12": "fake:dcgmproftester12"}),
    Image("busybox", ("busybox", "busybox:*", "docker.io/library/busybox:*", "docker.io/busybox:*"),
          "docker-library/busybox: one static busybox binary, its applets linked in /bin; nothing else; CMD [\"sh\"]",
          files=_host(BUSYBOX_BIN, "/bin"), cmd=("sh",)),
)
# An image not in the catalog: a shell and coreutils only (its own entrypoint is "not found", as a real runtime
# reports a command the image does not contain).
UNKNOWN = Image("unknown", ("*",), "not in the catalog: a shell and coreutils only", files=dict(UBUNTU))


def scenario_images(entries: dict[str, dict[str, str]]) -> tuple[Image, ...]:
    """A scenario's `kubelet.images` entries: a shell and coreutils plus the files it lists."""
    return tuple(Image(f"scenario-{i}", (glob,), "scenario kubelet.images", files={**UBUNTU, **files})
                 for i, (glob, files) in enumerate(entries.items()))


def lookup(image: str, extra: tuple[Image, ...] = ()) -> Image:
    """The catalog entry of an image reference (scenario entries first), UNKNOWN when none matches."""
    return next((i for i in extra + CATALOG if i.matches(image)), UNKNOWN)


def _wrapper(dest: Path, body: str) -> Path:
    dest.write_text(body, encoding="utf-8")
    dest.chmod(0o755)
    return dest


class ImageRoots:
    """Builds (once) and returns the directory a container of an image runs against; `driver`: with what the
    NVIDIA container runtime injects (a GPU was given, or the runtime honoured NVIDIA_VISIBLE_DEVICES)."""

    def __init__(self, root: Path, tools_bin: Path) -> None:
        self.root = Path(root)
        self.tools_bin = Path(tools_bin)
        self._built: dict[tuple[str, bool], Path] = {}
        pybin = self.root / "_python"
        pybin.mkdir(parents=True, exist_ok=True)
        self._python = {
            PYTHON: _wrapper(pybin / "python3", f'#!/bin/sh\nexec {sys.executable} -s "$@"\n'),
            PYTHON_TORCH: _wrapper(pybin / "python3-torch", f'#!/bin/sh\nPYTHONPATH={PYLIB_DIR}'
                                   f'${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} -s "$@"\n'),
        }

    def _target(self, provider: str) -> Path | None:
        kind, _, name = provider.partition(":")
        if provider in self._python:
            return self._python[provider]
        if kind == "fake":
            return self.tools_bin / name
        found = shutil.which(name, path=os.defpath + ":/usr/bin:/bin")
        return Path(found) if found else None

    def get(self, image: Image, driver: bool) -> Path:
        key = (image.key, driver)
        if key in self._built:
            return self._built[key]
        top = self.root / (image.key + ("+nvidia" if driver else ""))
        files = {**image.files, **(DRIVER_TOOLS if driver else {})}
        for path, provider in files.items():
            target = self._target(provider)
            if target is None:
                continue
            link = top / path.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(target)
        for entry in image.path.split(":"):     # PATH entries exist as (maybe empty) directories
            if entry.startswith("/"):
                (top / entry.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self._built[key] = top
        return top


def map_path_list(path: str, root: Path) -> str:
    """A container PATH with every absolute entry inside the image root (relative entries dropped)."""
    return ":".join(str(root / e.strip("/")) for e in path.split(":") if e.startswith("/"))


__all__ = ["CATALOG", "DRIVER_TOOLS", "CODE_ENV", "Image", "ImageRoots", "TOOLS", "UNKNOWN", "lookup", "map_path_list"]
