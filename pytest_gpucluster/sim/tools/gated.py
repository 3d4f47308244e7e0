"""Tools a simulated pod gets only from its privileges (not from its image: see images.py, where dcgmi and
nv-hostengine live in NVIDIA's DCGM image): dmesg in a privileged pod that mounts the node's /dev/kmsg (the node-health
kernel-log reader)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import wrapper_text

# group -> tool -> python call run by the wrapper
GATED: dict[str, dict[str, str]] = {
    "hostlog": {"dmesg": "from fake.health import dmesg; sys.exit(dmesg(sys.argv[1:]))"},
}


def install(root: Path) -> dict[str, Path]:
    """One bin directory per group, each with its wrappers (started with this interpreter, -I -S)."""
    out = {}
    for group, tools in GATED.items():
        dest = root / group
        dest.mkdir(parents=True, exist_ok=True)
        for name, call in tools.items():
            path = dest / name
            path.write_text(wrapper_text(name, call), encoding="utf-8")
            path.chmod(0o755)
        out[group] = dest
    return out


def reads_host_log(container: dict[str, Any], pod: dict[str, Any]) -> bool:
    privileged = bool((container.get("securityContext") or {}).get("privileged"))
    volumes = {v.get("name"): (v.get("hostPath") or {}).get("path") for v in (pod.get("spec") or {}).get("volumes") or []}
    mounted = {volumes.get(m.get("name")) for m in container.get("volumeMounts") or []}
    return privileged and "/dev/kmsg" in mounted


def path_for(container: dict[str, Any], pod: dict[str, Any], bins: dict[str, Path], path: str) -> str:
    """The container's PATH with the gated tools its privileges give it in front."""
    extra = []
    if reads_host_log(container, pod):
        extra.append(str(bins["hostlog"]))
    return ":".join(extra + [path]) if extra else path
