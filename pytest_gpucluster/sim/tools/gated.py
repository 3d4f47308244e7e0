"""Tools a simulated pod gets only from its image or its privileges (not on every pod's PATH): dcgmi and nv-hostengine
in NVIDIA's DCGM image, dmesg in a privileged pod that mounts the node's /dev/kmsg (the node-health kernel-log reader)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import TOOLS_DIR

# group -> tool -> python call run by the wrapper
GATED: dict[str, dict[str, str]] = {
    "dcgm": {"dcgmi": "from fake.health import dcgmi; sys.exit(dcgmi(sys.argv[1:]))",
             "nv-hostengine": "from fake.health import nv_hostengine; sys.exit(nv_hostengine(sys.argv[1:]))"},
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
            path.write_text(f"#!{sys.executable} -IS\nimport sys\nsys.path.insert(0, {str(TOOLS_DIR)!r})\n{call}\n",
                            encoding="utf-8")
            path.chmod(0o755)
        out[group] = dest
    return out


def is_dcgm_image(image: str) -> bool:
    """nvcr.io/nvidia/cloud-native/dcgm:<tag>, nvidia/dcgm:<tag> (the repository's last path element is `dcgm`)."""
    repo = image.split("@", 1)[0]
    repo = repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo
    return repo.rsplit("/", 1)[-1] == "dcgm"


def reads_host_log(container: dict[str, Any], pod: dict[str, Any]) -> bool:
    privileged = bool((container.get("securityContext") or {}).get("privileged"))
    volumes = {v.get("name"): (v.get("hostPath") or {}).get("path") for v in (pod.get("spec") or {}).get("volumes") or []}
    mounted = {volumes.get(m.get("name")) for m in container.get("volumeMounts") or []}
    return privileged and "/dev/kmsg" in mounted


def path_for(container: dict[str, Any], pod: dict[str, Any], bins: dict[str, Path], path: str) -> str:
    """The container's PATH with the gated tools its image / privileges give it in front."""
    extra = []
    if is_dcgm_image(str(container.get("image", ""))):
        extra.append(str(bins["dcgm"]))
    if reads_host_log(container, pod):
        extra.append(str(bins["hostlog"]))
    return ":".join(extra + [path]) if extra else path
