"""The hand-off folder: the files through which a started simulated cluster tells the plugin where it is.

The simulated cluster writes it (kubeconfig, AWS settings, the scenario's profile overlay, then
handoff.json naming them); the plugin reads it. Neither side imports the other: this module is the
contract between them (and names what the `sim` extra installs), and it imports nothing of either.
"""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

MANIFEST = "handoff.json"
KUBECONFIG = "kubeconfig"
AWS_SETTINGS = "aws.json"
PROFILE_OVERLAY = "profile.yaml"
FORMAT_VERSION = 1


class HandoffError(ValueError):
    """A hand-off folder that is incomplete or unreadable; the message names the file and what is wrong."""


@dataclass(frozen=True)
class AwsSettings:
    """Where the simulated AWS account answers and the credentials it issued."""

    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def as_env(self) -> dict[str, str]:
        """The AWS_* names `aws.session.open_session(env=...)` reads (never written to os.environ)."""
        env = {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": self.region,
               "AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AwsSettings:
        """From the AWS_* names of a running account (the simulated cluster's `aws_env`)."""
        return cls(env["AWS_ENDPOINT_URL"], env["AWS_DEFAULT_REGION"], env["AWS_ACCESS_KEY_ID"],
                   env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN") or None)


@dataclass(frozen=True)
class Handoff:
    """What a started simulated cluster handed over."""

    folder: Path
    scenario_name: str
    server_url: str
    kubeconfig_path: Path
    aws: AwsSettings | None = None
    profile_overlay: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()


def write_handoff(folder: str | os.PathLike[str], *, scenario_name: str, server_url: str, kubeconfig: bytes,
                  aws: AwsSettings | None = None, profile_overlay: Mapping[str, Any] | None = None,
                  warnings: tuple[str, ...] | list[str] = ()) -> Path:
    """Write the folder; handoff.json comes last (atomically), so a reader that sees it sees every file."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    _write_private(root / KUBECONFIG, kubeconfig)
    manifest: dict[str, Any] = {"version": FORMAT_VERSION, "scenario": scenario_name, "server_url": server_url,
                                "kubeconfig": KUBECONFIG, "aws": None, "profile": None, "warnings": list(warnings)}
    if aws is not None:
        settings = {"endpoint_url": aws.endpoint_url, "region": aws.region, "access_key_id": aws.access_key_id,
                    "secret_access_key": aws.secret_access_key, "session_token": aws.session_token}
        _write_private(root / AWS_SETTINGS, json.dumps(settings, indent=2).encode())
        manifest["aws"] = AWS_SETTINGS
    if profile_overlay:
        (root / PROFILE_OVERLAY).write_text(yaml.safe_dump(_plain(profile_overlay), sort_keys=False))
        manifest["profile"] = PROFILE_OVERLAY
    fd, tmp = tempfile.mkstemp(prefix=".handoff-", dir=root)
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2)
    os.replace(tmp, root / MANIFEST)
    return root / MANIFEST


def read_handoff(folder: str | os.PathLike[str]) -> Handoff:
    """Read a hand-off folder; HandoffError (file, what is wrong) when it is incomplete or malformed."""
    root = Path(folder)
    manifest = _json_object(root / MANIFEST, "the hand-off manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise HandoffError(f"{root / MANIFEST}: format version {manifest.get('version')!r}, expected "
                           f"{FORMAT_VERSION}: the simulated cluster comes from another pytest-gpucluster version")
    scenario = _string(manifest, "scenario", root / MANIFEST)
    server_url = _string(manifest, "server_url", root / MANIFEST)
    kubeconfig = _named_file(root, manifest, "kubeconfig")
    if kubeconfig is None:
        raise HandoffError(f"{root / MANIFEST}: names no kubeconfig")
    aws = None
    aws_file = _named_file(root, manifest, "aws")
    if aws_file is not None:
        data = _json_object(aws_file, "the AWS settings")
        aws = AwsSettings(_string(data, "endpoint_url", aws_file), _string(data, "region", aws_file),
                          _string(data, "access_key_id", aws_file), _string(data, "secret_access_key", aws_file),
                          session_token=data.get("session_token") or None)
    overlay = None
    profile_file = _named_file(root, manifest, "profile")
    if profile_file is not None:
        try:
            overlay = yaml.safe_load(profile_file.read_text())
        except yaml.YAMLError as exc:
            raise HandoffError(f"{profile_file}: invalid YAML in the scenario's profile overlay: {exc}") from exc
        if not isinstance(overlay, dict):
            raise HandoffError(f"{profile_file}: expected a mapping (profile keys), found {type(overlay).__name__}")
    warnings = manifest.get("warnings") or []
    if not isinstance(warnings, list):
        raise HandoffError(f"{root / MANIFEST}: 'warnings' must be a list, found {type(warnings).__name__}")
    return Handoff(root, scenario, server_url, kubeconfig, aws, overlay, tuple(str(w) for w in warnings))


def _plain(value: Any) -> Any:
    """Plain dicts and lists (a scenario's mappings may be subclasses carrying line numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise HandoffError(f"{path}: {what} is missing (the simulated cluster did not finish writing its "
                           "hand-off folder)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HandoffError(f"{path}: {what} is not valid JSON: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise HandoffError(f"{path}: {what} must be a JSON object, found {type(data).__name__}")
    return data


def _string(data: Mapping[str, Any], key: str, path: Path) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise HandoffError(f"{path}: {key!r} must be a non-empty string, found {value!r}")
    return value


def _named_file(root: Path, manifest: Mapping[str, Any], key: str) -> Path | None:
    """The file the manifest names under `key` (None when it names none); it must exist in the folder."""
    name = manifest.get(key)
    if name is None:
        return None
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise HandoffError(f"{root / MANIFEST}: {key!r} must name a file in the hand-off folder, found {name!r}")
    path = root / name
    if not path.is_file():
        raise HandoffError(f"{path}: named by {MANIFEST} ({key!r}) but missing")
    return path


# -- what starting the simulated cluster needs installed (the `sim` extra) ------------------------------------
SIM_EXTRA_MODULES = ("aiohttp", "moto", "cryptography")


def missing_sim_module() -> str | None:
    """The first module of the `sim` extra that cannot be imported, or None. Looks, does not import."""
    for name in SIM_EXTRA_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):   # a blocked or half-installed module
            return name
    return None


def sim_extra_message(what: str, module: str) -> str:
    return f"{what} needs the simulated cluster: pip install 'pytest-gpucluster[sim]' (missing module {module})"
