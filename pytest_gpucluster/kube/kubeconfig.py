"""Find and load cluster credentials the way kubectl does (KUBECONFIG paths, ~/.kube/config, in-cluster)."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeconfigError(Exception):
    """No usable credentials: says where we looked."""


@dataclass
class Credentials:
    """A loaded client configuration plus where it came from."""

    configuration: client.Configuration
    server: str
    source: str                   # "kubeconfig:<paths>" or "in-cluster"
    context: str | None
    paths: list[Path]             # kubeconfig files (empty in-cluster)


def kubeconfig_paths(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """kubectl precedence: --kubeconfig, then $KUBECONFIG (os.pathsep-separated), then ~/.kube/config."""
    if explicit:
        return [Path(explicit).expanduser()]
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SA_DIR / "token").exists()


def load(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None, *,
         connect_timeout_s: float = 3.0) -> Credentials:
    """Load credentials; in-cluster service account only when no kubeconfig is given or present."""
    paths = kubeconfig_paths(kubeconfig)
    existing = [p for p in paths if p.exists()]
    cfg = client.Configuration()
    if kubeconfig and not existing:
        raise KubeconfigError(f"--kubeconfig {kubeconfig}: file not found; pass the kubeconfig that kubectl uses, "
                              "or --sim to try the simulated cluster")
    if existing:
        try:
            config.load_kube_config(config_file=os.pathsep.join(str(p) for p in existing),
                                    context=context, client_configuration=cfg)
        except (ConfigException, yaml.YAMLError, OSError, ValueError, KeyError) as exc:
            where = ", ".join(str(p) for p in existing)
            raise KubeconfigError(f"cannot load kubeconfig {where}"
                                  f"{f' (context {context})' if context else ''}: {exc}") from exc
        source = "kubeconfig:" + os.pathsep.join(str(p) for p in existing)
    elif in_cluster():
        try:
            config.load_incluster_config(client_configuration=cfg)
        except ConfigException as exc:
            raise KubeconfigError(f"in-cluster service account config is incomplete: {exc}") from exc
        source = "in-cluster"
    else:
        looked = ", ".join(str(p) for p in paths)
        raise KubeconfigError(f"no Kubernetes credentials: looked for {looked} and an in-cluster service "
                              "account. Pass --kubeconfig PATH, or --sim to use the simulated cluster.")
    cfg.retries = 0   # retries are ours (retry.py); urllib3 must not add hidden ones
    return Credentials(cfg, cfg.host, source, context or _current_context(existing), existing)


def _current_context(paths: list[Path]) -> str | None:
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("current-context"):
            return str(data["current-context"])
    return None


def write_standalone(creds: Credentials, dest: Path) -> Path:
    """Write one self-contained kubeconfig for kubectl-based tools (pytest-kubernetes) pointing at the same
    cluster and context. A copy, because pytest-kubernetes deletes the kubeconfig file it was given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if creds.source == "in-cluster":
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
            "clusters": [{"name": "in-cluster", "cluster": {
                "server": f"https://{host}:{port}", "certificate-authority": str(SA_DIR / "ca.crt")}}],
            "users": [{"name": "sa", "user": {"tokenFile": str(SA_DIR / "token")}}],
            "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "sa"}}],
        }
        dest.write_text(yaml.safe_dump(doc))
        dest.chmod(0o600)
        return dest
    kubectl = shutil.which("kubectl")
    if kubectl:
        cmd = [kubectl, "config", "view", "--raw", "--minify", "--flatten"]
        if creds.context:
            cmd += ["--context", creds.context]
        env = dict(os.environ, KUBECONFIG=os.pathsep.join(str(p) for p in creds.paths))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            dest.write_text(proc.stdout)
            dest.chmod(0o600)
            return dest
    # No kubectl: copy the first file and select the context (relative cert paths may then break).
    data = yaml.safe_load(creds.paths[0].read_text()) or {}
    if creds.context:
        data["current-context"] = creds.context
    dest.write_text(yaml.safe_dump(data))
    dest.chmod(0o600)
    return dest
