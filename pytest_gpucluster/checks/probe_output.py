"""What the probe pods print, read once for every area: the sections a probe script writes (`### <name>` ... `### rc=N`,
kube/healthprobes.py and the EFA probe in suites/test_efa.py) and the verdict for a probe pod that did not run."""
from __future__ import annotations

import re

from .verdict import Verdict

_SECTION = re.compile(r"^### (?P<name>[\w-]+)\n(?P<body>.*?)^### rc=(?P<rc>\d+)$", re.M | re.S)


def split_sections(logs: str) -> dict[str, tuple[str, int]]:
    """The probe script's sections: name -> (output, exit code)."""
    return {m["name"]: (m["body"].rstrip("\n"), int(m["rc"])) for m in _SECTION.finditer(logs)}


def not_run(subject: str, what: str, describe: str, namespace: str | None, pod: str, expected: str = "") -> Verdict:
    """A probe pod that was admitted (or not) but never printed its result: a failure, like every probe's."""
    return Verdict.failed(subject, expected or f"the {what} probe pod to run and print its sections", describe,
                          f"Look at `kubectl -n {namespace} describe pod {pod}` (kept only with --gpucluster-keep) "
                          "and the node's events.", summary=f"{what} probe did not run")
