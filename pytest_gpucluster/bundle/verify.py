"""`gpucluster verify REPORT_DIR [--key PUB]`: every file of the folder is the one the manifest lists (same sha256,
none missing, none added) and the signature, if any, holds. Exit 0 only then; 1 names the first file that differs
or why the signature fails; 2 when the folder has no manifest or it cannot be read."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .manifest import ENVELOPE, MANIFEST, ManifestError, folder_files, read_statement, sha256_file
from .signing import (SigningError, check_envelope, envelope_payload, fingerprint, load_public_key,
                      public_key_from_pem)

__all__ = ["add_arguments", "run", "verify_folder", "Verification"]


@dataclass
class Verification:
    ok: bool
    problems: list[str] = field(default_factory=list)
    files: int = 0
    signed_by: str | None = None        # keyid of the signature that holds
    key_checked: bool = False           # the signature was checked against a key the buyer gave (--key)
    verdict: str | None = None
    run_id: str | None = None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read as JSON ({exc})") from exc


def _statement(root: Path, key_path: str | None, result: Verification) -> dict[str, Any] | None:
    """The Statement to check the files against: the signed payload when there is an envelope (the signature must
    hold), the plain manifest otherwise (unless a key was given: then a signature is required)."""
    envelope_path, manifest_path = root / ENVELOPE, root / MANIFEST
    if not envelope_path.exists():
        if key_path:
            result.problems.append(f"{ENVELOPE} is missing: the folder is not signed, --key {key_path} cannot be "
                                   "checked (the vendor runs with --gpucluster-sign KEY)")
            return None
        if not manifest_path.exists():
            raise ManifestError(f"{root}: no {MANIFEST}: not a report folder of pytest-gpucluster >= this version, "
                                "or the run did not finish")
        return read_statement(manifest_path.read_bytes(), str(manifest_path))
    envelope = _load_json(envelope_path)
    if not isinstance(envelope, dict):
        raise ManifestError(f"{envelope_path}: not a DSSE envelope")
    claimed = read_statement(envelope_payload(envelope), f"{envelope_path} payload")
    signer = (claimed.get("predicate") or {}).get("signer") or {}
    try:
        if key_path:
            public_key = load_public_key(key_path)
            result.key_checked = True
        else:           # integrity only: the key named in the signed statement, not one the buyer trusts
            public_key = public_key_from_pem(str(signer.get("public_key", "")), "the signed manifest's signer")
        payload = check_envelope(envelope, public_key)
    except (SigningError, ValueError) as exc:
        result.problems.append(f"signature: {exc}")
        return None
    result.signed_by = fingerprint(public_key)
    if manifest_path.exists() and manifest_path.read_bytes() != payload:
        result.problems.append(f"{MANIFEST} differs from the signed statement in {ENVELOPE}")
    return read_statement(payload, f"{envelope_path} payload")


def verify_folder(root: Path, key_path: str | None = None) -> Verification:
    result = Verification(ok=False)
    doc = _statement(root, key_path, result)
    if doc is None:
        return result
    pred = doc.get("predicate") or {}
    result.verdict, result.run_id = pred.get("verdict"), pred.get("run_id")
    listed = {s["name"]: s["digest"]["sha256"] for s in doc["subject"]}
    result.files = len(listed)
    present = set(folder_files(root))
    for name in sorted(set(listed) | present):
        if name not in present:
            result.problems.append(f"{name}: listed in the manifest but missing from the folder")
        elif name not in listed:
            result.problems.append(f"{name}: in the folder but not in the manifest (added after the run)")
        elif sha256_file(root / name) != listed[name]:
            result.problems.append(f"{name}: sha256 differs from the manifest (changed after the run)")
        if result.problems:
            break
    result.ok = not result.problems
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report_dir", metavar="REPORT_DIR", help="a report folder (report.html, summary.json, ...)")
    parser.add_argument("--key", metavar="PUB", default=None,
                        help="the signer's Ed25519 public key (PEM): the folder must be signed by it")


def run(args: argparse.Namespace) -> int:
    root = Path(args.report_dir)
    if not root.is_dir():
        print(f"gpucluster verify: {root} is not a folder (expected a report folder)", file=sys.stderr)
        return 2
    try:
        result = verify_folder(root, args.key)
    except (ManifestError, SigningError) as exc:
        print(f"gpucluster verify: {exc}", file=sys.stderr)
        return 2
    if not result.ok:
        print(f"gpucluster verify: NOT VERIFIED: {result.problems[0]}", file=sys.stderr)
        return 1
    if result.signed_by is None:
        how = "not signed (the files match the manifest, but anyone could have rewritten both)"
    elif result.key_checked:
        how = f"signed by the given key sha256:{result.signed_by}"
    else:
        how = (f"signed by key sha256:{result.signed_by} (named in the manifest; pass --key with the vendor's "
               "public key to check it is theirs)")
    print(f"verified: {result.files} files of run {result.run_id} ({result.verdict}) match the manifest; {how}")
    return 0
