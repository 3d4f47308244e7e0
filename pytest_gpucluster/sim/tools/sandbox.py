"""A simulated container's sandbox: scratch dir, scrubbed env, argv (sh -c / exec form) and process control."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any, Callable

from . import map_paths
from .images import map_path_list

SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash", "/usr/bin/bash", "/usr/bin/sh")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class StartError(Exception):
    """The container could not start (what containerd reports as StartError, exit code 128)."""


# What the NVIDIA container runtime mounts into a container it injects the driver into: the control nodes
# (NVIDIA/nvidia-container-toolkit@d34b3046 pkg/nvcdi/common-nvml.go controlDeviceNodeDiscoverer) and
# /dev/nvidia<minor> for each GPU it exposes (the node's minor numbers, not renumbered from 0).
NVIDIA_CONTROL_NODES = ("nvidia-modeset", "nvidia-uvm-tools", "nvidia-uvm", "nvidiactl")


def prepare_scratch(root: Path, efa_devices: list[str], gpus: list[int] | None = None) -> Path:
    """Create the pod's scratch dir with `dev/infiniband/uverbsN` for each EFA device it was given and, where the
    runtime exposes GPUs (`gpus`, node indexes), the NVIDIA device nodes (`/dev/nvidia*` in a command maps here)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)        # the container's own /tmp (tools.map_paths)
    dev = root / "dev"
    ib = dev / "infiniband"
    ib.mkdir(parents=True, exist_ok=True)
    for i, _ in enumerate(efa_devices):
        (ib / f"uverbs{i}").touch()
    for name in [*NVIDIA_CONTROL_NODES, *(f"nvidia{i}" for i in gpus or [])] if gpus else []:
        (dev / name).touch()
    return root


def expand_refs(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion in command/args (`$$` escapes; unknown references stay as written)."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))
    return _VAR_REF.sub(sub, text)


def container_env(container: dict[str, Any], resolve: Callable[[dict[str, Any]], str | None], *,
                  scratch: Path, image_root: Path, image_env: dict[str, str], image_path: str, hostname: str,
                  visible_devices: str | None) -> dict[str, str]:
    """The scrubbed environment: the image's ENV, the pod's env values over it, then what the runtime and the
    device plugin set. PATH (the pod's, else the image's) is mapped into the image root. `visible_devices`: the
    NVIDIA_VISIBLE_DEVICES the device plugin sets for the GPUs it gave (None: no GPU given, the image's value stays)."""
    env: dict[str, str] = dict(image_env)
    for item in container.get("env") or []:
        name = item.get("name")
        if not name:
            continue
        if "value" in item:
            env[name] = expand_refs(str(item.get("value") or ""), env)
        elif item.get("valueFrom"):
            value = resolve(item["valueFrom"])
            if value is not None:
                env[name] = value
    env["PATH"] = map_path_list(env.get("PATH") or image_path, image_root)
    env["HOME"] = str(scratch)
    env["HOSTNAME"] = hostname
    env["GPUCLUSTER_SIM_CONTEXT"] = str(scratch / ".sim-context.json")
    if visible_devices is not None:
        env["NVIDIA_VISIBLE_DEVICES"] = visible_devices
    return env


def shell_prelude(memlock: str) -> str:
    """Prepended to `sh -c` scripts: `ulimit -l` answers what a node's container runtime grants
    (EKS AMIs run containerd with memlock unlimited, which EFA needs); this machine's own limit
    cannot be raised without privileges. A numeric value is also applied for real (lowering works)."""
    lower = f"command ulimit -l {memlock} 2>/dev/null; " if memlock.isdigit() else ""
    return (f'{lower}ulimit() {{ case "$*" in "-l"|"-Sl"|"-Hl") echo {memlock};; '
            '*) command ulimit "$@";; esac; }; ')     # same line: the script's errors keep their line numbers


def container_argv(container: dict[str, Any], env: dict[str, str], *, image_root: Path, scratch: Path,
                   memlock: str, entrypoint: tuple[str, ...] = (), cmd: tuple[str, ...] = ()) -> list[str]:
    """argv to exec: `sh -c` scripts through the image's /bin/sh (or bash) with the `ulimit` prelude, exec form
    resolved in the image (PATH or absolute path). StartError when the image has no such executable (containerd).
    Kubernetes semantics: `command` replaces the image's ENTRYPOINT (and drops its CMD); `args` replace its CMD."""
    if container.get("command"):
        given = list(container["command"]) + list(container.get("args") or [])
    else:
        given = list(entrypoint) + list(container.get("args") or cmd)
    if not given:
        raise StartError("exec: no command: the image has no ENTRYPOINT/CMD and the pod gives none")
    expanded = [expand_refs(str(a), env) for a in given]
    full = [map_paths(a, image_root, scratch) for a in expanded]
    exe = full[0]
    if "/" in exe:
        if not exe.startswith(str(image_root)) or not os.path.exists(exe):
            raise StartError(f'exec: "{expanded[0]}": stat {expanded[0]}: no such file or directory')
    elif shutil.which(exe, path=env.get("PATH")) is None:
        raise StartError(f'exec: "{exe}": executable file not found in $PATH')
    # a bare name stays bare: the process is started through the container's PATH (its $0 as given, `sh: 1: ...`)
    if expanded[0] in SHELLS and len(full) > 2 and full[1] == "-c":
        return [exe, "-c", shell_prelude(memlock) + full[2], *full[3:]]
    return full


def start_error_message(detail: str) -> str:
    return ("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
            f"failed: unable to start container process: {detail}: unknown")


async def spawn(argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> asyncio.subprocess.Process:
    """Start the container process in its own session, stdout+stderr appended to its log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=str(cwd),
            start_new_session=True)


def signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signal the container's whole process group (it is its own session leader)."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


async def stop(proc: asyncio.subprocess.Process, grace: float) -> int:
    """SIGTERM the group, SIGKILL after `grace` seconds; the exit code as the runtime reports it."""
    signal_group(proc, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=max(grace, 0.0))
    except asyncio.TimeoutError:
        signal_group(proc, signal.SIGKILL)
        await proc.wait()
    return exit_code(proc.returncode)


def exit_code(returncode: int | None) -> int:
    """asyncio's -N (killed by signal N) -> 128+N as container runtimes report it."""
    if returncode is None:
        return 0
    return 128 - returncode if returncode < 0 else returncode


def remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
