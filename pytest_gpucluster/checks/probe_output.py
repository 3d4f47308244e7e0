"""THE probe-output convention, written and read once for every area: a probe script prints each of its outputs as a
section, `### <name>`, the output, then `### rc=<exit code>` (`section` writes one: gather/efa.py, gather/node_health.py;
`split_sections` reads them back; a section that never printed its `### rc=` line did not finish and is absent, never
empty), and the verdict for a probe pod that did not run."""
from __future__ import annotations

import re

from .verdict import Verdict

_SECTION = re.compile(r"^### (?P<name>[\w-]+)\n(?P<body>.*?)^### rc=(?P<rc>\d+)$", re.M | re.S)


def section(name: str, command: str) -> str:
    """The shell that prints `command`'s output as section `name`, closed by its exit code."""
    return f"echo '### {name}'; {command}; echo \"### rc=$?\""


def split_sections(logs: str) -> dict[str, tuple[str, int]]:
    """The probe script's sections: name -> (output, exit code)."""
    return {m["name"]: (m["body"].rstrip("\n"), int(m["rc"])) for m in _SECTION.finditer(logs)}


def not_run(subject: str, what: str, describe: str, namespace: str | None, pod: str, expected: str = "") -> Verdict:
    """A probe pod that was admitted (or not) but never printed its result: a failure, like every probe's."""
    return Verdict.failed(subject, expected or f"the {what} probe pod to run and print its sections", describe,
                          f"Look at `kubectl -n {namespace} describe pod {pod}` (kept only with --gpucluster-keep) "
                          "and the node's events.", summary=f"{what} probe did not run")
