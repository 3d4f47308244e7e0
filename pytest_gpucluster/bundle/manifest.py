"""The manifest: every file of a report folder with its sha256, as an in-toto Statement v1 whose predicate is the
run's verdict, profile sha256, tool version and fingerprint (https://github.com/in-toto/attestation/blob/main/spec/v1/
statement.md). Written last, after every other file of the folder; `verify.py` checks it."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://pytest-gpucluster/acceptance-report/v1"
MANIFEST = "manifest.intoto.json"            # the Statement (always written)
ENVELOPE = "manifest.intoto.dsse.json"       # the Statement signed: a DSSE envelope (--gpucluster-sign)
PAYLOAD_TYPE = "application/vnd.in-toto+json"   # DSSE payloadType of an in-toto Statement (in-toto spec)
SEAL_FILES = frozenset({MANIFEST, ENVELOPE})
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """A manifest that cannot be read or is not a Statement of this tool."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_files(root: Path) -> Iterator[str]:
    """Every regular file under `root` but the seal itself, as sorted POSIX paths relative to `root`."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel not in SEAL_FILES:
            yield rel


def predicate(summary: dict[str, Any], signer: dict[str, str] | None = None) -> dict[str, Any]:
    """What the files are evidence of: the verdict and what it was judged with (from summary.json)."""
    profile = summary.get("profile") or {}
    return {
        "run_id": summary.get("run_id"),
        "verdict": summary.get("verdict"),
        "verdict_reasons": summary.get("verdict_reasons") or [],
        "partial": summary.get("partial") or [],
        "started": summary.get("started"),
        "finished": summary.get("finished"),
        "simulated": summary.get("simulated"),
        "profile": {"path": profile.get("path"), "sha256": profile.get("sha256")},
        "tool": summary.get("tool") or {},
        "fingerprint": summary.get("fingerprint") or {},
        **({"rejudged": summary["rejudged"]} if summary.get("rejudged") else {}),
        "signer": signer,               # {"keyid", "public_key"} of the signature beside it, or None: unsigned
    }


def statement(root: Path, summary: dict[str, Any], signer: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": rel, "digest": {"sha256": sha256_file(root / rel)}} for rel in folder_files(root)],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate(summary, signer),
    }


def encode(doc: dict[str, Any]) -> bytes:
    """The Statement's bytes: what is written to MANIFEST and what the envelope signs (byte for byte)."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def read_statement(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{where}: not a JSON document ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE or doc.get("predicateType") != PREDICATE_TYPE:
        raise ManifestError(f"{where}: not an in-toto Statement v1 of pytest-gpucluster (expected _type "
                            f"{STATEMENT_TYPE} and predicateType {PREDICATE_TYPE})")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance((s.get("digest") or {}).get("sha256"),
                                                                                 str) for s in subjects):
        raise ManifestError(f"{where}: subject must list {{name, digest: {{sha256}}}} for every file")
    return doc
