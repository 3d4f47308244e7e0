"""The map and the fault kinds in docs stay in step with the code, the way docs/options.md does: docs/design.md lists
every module of the package (outside the simulated cluster) and every file its per-area table names exists;
docs/scenarios.md has a row for every fault kind and every shipped scenario."""
from __future__ import annotations

import re
from pathlib import Path

from pytest_gpucluster.sim.scenario_schema import KNOWN_FAULTS

from tests.packaging.module_map import BEGIN, END, ROOT, module_map_markdown

DESIGN = ROOT / "docs" / "design.md"
SCENARIOS_DOC = ROOT / "docs" / "scenarios.md"


def test_the_map_lists_every_module() -> None:
    text = DESIGN.read_text()
    assert BEGIN in text and END in text, f"docs/design.md lost its generated module list markers ({BEGIN})"
    shown = text[text.index(BEGIN):text.index(END) + len(END)]
    assert shown == module_map_markdown(), (
        "docs/design.md's module list is out of step with the package: regenerate it with "
        "`python -m tests.packaging.module_map` and paste it between the markers")


def test_every_file_the_per_area_table_names_exists() -> None:
    text = DESIGN.read_text()
    table = [line for line in text[text.index("## How to add a check"):].splitlines() if line.startswith("| ")][1:]
    assert len(table) >= 8, "the per-area table of 'How to add a check' is gone"
    named = {p for line in table for p in re.findall(r"`([\w/.-]+(?:\.py|\.yaml|\.md|/))`", line)}
    assert named
    missing = [p for p in sorted(named) if not any((base / p).exists() for base in (ROOT, ROOT / "pytest_gpucluster"))]
    assert missing == [], f"docs/design.md's per-area table names files that do not exist: {missing}"


def _rows(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("|")]


def test_every_fault_kind_and_scenario_has_a_row_in_docs() -> None:
    rows = _rows(SCENARIOS_DOC)
    kinds = [k for k in KNOWN_FAULTS if not any(line.startswith(f"| `{k}` |") for line in rows)]
    assert kinds == [], f"fault kinds without a row in docs/scenarios.md's fault table: {kinds}"
    shipped = sorted(p.stem for p in (ROOT / "pytest_gpucluster" / "sim" / "scenarios").glob("*.yaml"))
    scenarios = [s for s in shipped if not any(f"`{s}`" in line for line in rows)]
    assert scenarios == [], f"shipped scenarios docs/scenarios.md does not describe: {scenarios}"
