"""The map stays in step with the code, the way docs/options.md does: docs/design.md lists every module of the package
(outside the simulated cluster) and every file its per-area table names exists. Lists that grow with every check
(scenarios, fault kinds, tiers, required items, the fault matrix) are not copied into the docs: each lives where it is
declared and a command prints it (`gpucluster sim --list`, `gpucluster sim --faults`, `gpucluster profile show`,
`python -m tests.reliability.suite_runs`); the docs name examples, and every scenario, fault kind, check and required
item they name exists."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from pytest_gpucluster.sim.faults import fault_kinds
from pytest_gpucluster.sim.scenario import list_scenarios

from tests.packaging.module_map import BEGIN, END, ROOT, module_map_markdown

DESIGN = ROOT / "docs" / "design.md"
DOCS = ROOT / "docs"
PROFILE = ROOT / "pytest_gpucluster" / "profiles" / "default.yaml"
# Placeholders in the docs' format examples (`test_x.py::test_y`), and dcgmi's JSON key `test_summary`
PLACEHOLDERS = {"test_x", "test_y", "test_function", "test_summary"}


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


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end > 0 else None]


def test_the_scenarios_and_fault_kinds_the_docs_name_exist() -> None:
    scenarios, reliability = (DOCS / "scenarios.md").read_text(), (DOCS / "reliability.md").read_text()
    text = "".join([_section(scenarios, "## Shipped scenarios"), _section(scenarios, "## Faults"),
                    _section(reliability, "## Fault matrix")])
    known = {name for name, _ in list_scenarios()} | set(fault_kinds()) | {"nv-hostengine"}
    named = set(re.findall(r"`([a-z0-9]+(?:-[a-z0-9]+)+)`", text))
    assert sorted(named - known) == [], "docs name scenarios or fault kinds that do not exist"


def test_the_checks_and_required_items_the_docs_name_exist() -> None:
    defined = {name for path in [*ROOT.joinpath("suites").rglob("test_*.py"), *ROOT.joinpath("tests").rglob("*.py")]
               for name in re.findall(r"^\s*(?:async )?def (test_\w+)", path.read_text(), re.M)}
    required = set(yaml.safe_load(PROFILE.read_text())["required"])
    missing = {}
    for doc in sorted(DOCS.glob("*.md")):
        text = doc.read_text()
        tests = set(re.findall(r"(?:`|::)(test_[a-z0-9_]+)(?![\w.])", text)) - PLACEHOLDERS - defined
        items = {i for i in re.findall(r"`(node-health-[a-z-]+)`", text) if i not in required}
        if tests or items:
            missing[doc.name] = sorted(tests | items)
    assert missing == {}, "docs name checks or required items that do not exist (renamed? removed?)"


def test_every_node_health_check_has_its_line_in_the_area_doc() -> None:
    suite = (ROOT / "suites" / "test_node_health.py").read_text()
    doc = (DOCS / "node-health.md").read_text()
    checks = re.findall(r"^def (test_\w+)", suite, re.M)
    assert checks and [c for c in checks if f"`{c}`" not in doc] == [], (
        "docs/node-health.md has a line per check (step 8 of 'How to add a check'): add the missing ones")
