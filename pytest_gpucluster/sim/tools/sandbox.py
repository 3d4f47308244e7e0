"""A simulated container's sandbox: scratch dir, scrubbed env, argv (sh -c / exec form) and process control."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any, Callable

from . import PYLIB_DIR, map_paths

SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash", "/usr/bin/bash", "/usr/bin/sh")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class StartError(Exception):
    """The container could not start (what containerd reports as StartError, exit code 128)."""


def prepare_scratch(root: Path, efa_devices: list[str]) -> Path:
    """Create the pod's scratch dir with `dev/infiniband/uverbsN` for each EFA device it was given."""
    root.mkdir(parents=True, exist_ok=True)
    ib = root / "dev" / "infiniband"
    ib.mkdir(parents=True, exist_ok=True)
    for i, _ in enumerate(efa_devices):
        (ib / f"uverbs{i}").touch()
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
                  scratch: Path, tools_bin: Path, hostname: str, gpu_uuids: list[str]) -> dict[str, str]:
    """The scrubbed environment: the pod's env values plus what the runtime and device plugin set."""
    env: dict[str, str] = {}
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
    path = env.get("PATH") or "/usr/bin:/bin"
    env["PATH"] = f"{tools_bin}:{path}"
    env["HOME"] = str(scratch)
    env["HOSTNAME"] = hostname
    env["GPUCLUSTER_SIM_CONTEXT"] = str(scratch / ".sim-context.json")
    env["PYTHONPATH"] = ":".join(p for p in (str(PYLIB_DIR), env.get("PYTHONPATH", "")) if p)
    if gpu_uuids:                      # the NVIDIA device plugin (envvar strategy, uuid ids)
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(gpu_uuids)
    else:
        env.pop("NVIDIA_VISIBLE_DEVICES", None)
    return env


def shell_prelude(memlock: str) -> str:
    """Prepended to `sh -c` scripts: `ulimit -l` answers what a node's container runtime grants
    (EKS AMIs run containerd with memlock unlimited, which EFA needs); this machine's own limit
    cannot be raised without privileges. A numeric value is also applied for real (lowering works)."""
    lower = f"command ulimit -l {memlock} 2>/dev/null; " if memlock.isdigit() else ""
    return (f'{lower}ulimit() {{ case "$*" in "-l"|"-Sl"|"-Hl") echo {memlock};; '
            '*) command ulimit "$@";; esac; }\n')


def container_argv(container: dict[str, Any], env: dict[str, str], *, tools_bin: Path, scratch: Path,
                   memlock: str) -> list[str]:
    """argv to exec: `sh -c` scripts through /bin/sh (or bash) with the `ulimit` prelude, exec form resolved
    on the pod's PATH. StartError when the executable does not exist (like containerd)."""
    full = [expand_refs(str(a), env) for a in (container.get("command") or []) + (container.get("args") or [])]
    full = [map_paths(a, tools_bin, scratch) for a in full]
    exe = full[0]
    if exe in SHELLS:
        exe = "/bin/bash" if "bash" in exe else "/bin/sh"
        if len(full) > 2 and full[1] == "-c":
            return [exe, "-c", shell_prelude(memlock) + full[2], *full[3:]]
    elif "/" in exe:
        if not os.path.exists(exe):
            raise StartError(f'exec: "{full[0]}": stat {full[0]}: no such file or directory')
    else:
        found = shutil.which(exe, path=env.get("PATH"))
        if found is None:
            raise StartError(f'exec: "{exe}": executable file not found in $PATH')
        exe = found
    return [exe, *full[1:]]


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
