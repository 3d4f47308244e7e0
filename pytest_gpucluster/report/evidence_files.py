"""The evidence folder beside the report: every check's complete raw evidence, one gzip text file per node."""
from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

FOLDER = "evidence"
CLUSTER_FILE = "cluster"          # checks that name no node (NodePools, AWS account)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(node: str | None) -> str:
    """`ip-10-0-3-17.ec2.internal` -> `evidence/ip-10-0-3-17.ec2.internal.txt.gz` (relative to the report)."""
    stem = _UNSAFE.sub("_", node or CLUSTER_FILE).strip("._") or CLUSTER_FILE
    return f"{FOLDER}/{stem}.txt.gz"


def check_text(nodeid: str, outcome: str, message: str | None, longrepr: str | None,
               evidence: dict[str, Any]) -> str:
    """One check as plain text: outcome, failure, measurements, facts, every raw output in full, events, conditions."""
    out = [f"{'=' * 100}", f"{nodeid}", f"outcome: {outcome}"]
    if message:
        out.append(f"message: {message}")
    if longrepr and longrepr.strip() != (message or "").strip():
        out += ["", "failure:", longrepr.rstrip()]
    ms = evidence.get("measurements") or []
    if ms:
        out += ["", "measurements:"]
        for m in ms:
            crit = "" if m.get("threshold") is None else f"  criterion {m['op']} {m['threshold']:g}"
            verdict = "" if m.get("pass") is None else ("  pass" if m["pass"] else "  FAIL")
            source = f"  ({m['source']})" if m.get("source") else ""
            out.append(f"  {m['name']} = {m['value']:g} {m['unit']}{crit}{verdict}{source}")
    facts = evidence.get("facts") or {}
    if facts:
        out += ["", "facts:"] + [f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}"
                                 for k, v in facts.items()]
    for comp, version in (evidence.get("versions") or {}).items():
        out.append(f"version {comp}: {version}")
    for a in evidence.get("attachments") or []:
        out += ["", f"--- {a['title']} ({a.get('kind', 'text')}) ---", str(a["text"]).rstrip()]
    for e in evidence.get("events") or []:
        out.append(f"event: {e.get('type')} {e.get('reason')} {e.get('object')} x{e.get('count')} "
                   f"{e.get('lastTimestamp')}: {e.get('message')}")
    for node, conds in (evidence.get("conditions") or {}).items():
        for c in conds:
            out.append(f"condition {node}: {c.get('type')}={c.get('status')} {c.get('reason') or ''} "
                       f"{c.get('message') or ''}".rstrip())
    for p in evidence.get("plots") or []:
        out.append(f"plot: {p['title']} (SVG in report.html when the check's row is kept)")
    return "\n".join(out) + "\n\n"


class EvidenceFolder:
    """Appends each finished check to the text file of every node it names; gzips them all at the end.

    Files are written as the run goes (nothing of a passing node stays in memory) and compressed once in
    `finish()`, so a 1,000-node run holds no open file per node."""

    def __init__(self, report_dir: Path) -> None:
        self.root = report_dir
        self.dir = report_dir / FOLDER
        self.files: set[str] = set()

    def add(self, nodes: Iterable[str | None], text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for node in dict.fromkeys(nodes):
            rel = file_name(node)
            self.files.add(rel)
            with (self.root / rel.removesuffix(".gz")).open("a", encoding="utf-8") as f:
                f.write(text)

    def finish(self) -> list[Path]:
        """Compress every file (`.txt` -> `.txt.gz`); returns the gzip files."""
        done = []
        for rel in sorted(self.files):
            plain, packed = self.root / rel.removesuffix(".gz"), self.root / rel
            if not plain.exists():
                continue
            with plain.open("rb") as src, gzip.open(packed, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst)
            plain.unlink()
            done.append(packed)
        return done


def summarise(text: str, link: str, head: int = 4, tail: int = 2) -> str:
    """First and last lines of a long output and where the whole text is."""
    lines = text.splitlines()
    if len(lines) <= head + tail + 2:
        return text
    return "\n".join([*lines[:head], f"[... {len(lines) - head - tail} lines: full text in {link} ...]",
                      *lines[-tail:]])
