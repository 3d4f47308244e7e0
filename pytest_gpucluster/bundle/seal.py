"""Sealing a finished report folder: the manifest written after every other file (and before the upload), signed
when the run was given a key."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .manifest import ENVELOPE, MANIFEST, encode, statement
from .signing import Signer


def seal(root: Path, summary: dict[str, Any], signer: Signer | None = None) -> list[Path]:
    """Write MANIFEST (and ENVELOPE when signing) in `root`; returns the files written. Any file written into the
    folder after this call makes `gpucluster verify` fail, by design."""
    doc = statement(root, summary, signer.identity() if signer else None)
    payload = encode(doc)
    written = [root / MANIFEST]
    (root / MANIFEST).write_bytes(payload)
    if signer is not None:
        (root / ENVELOPE).write_text(json.dumps(signer.sign(payload), indent=2) + "\n", encoding="utf-8")
        written.append(root / ENVELOPE)
    return written
