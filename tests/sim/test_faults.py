"""Fault kinds are declared once, beside the code that makes them happen, and the declarations stay in step with that
code: every kind the simulated cluster reads is declared, every declared kind is read, and every module that declares
kinds is one sim/faults.py collects."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_gpucluster.sim import faults
from pytest_gpucluster.sim.scenario import ScenarioError, load_scenario
from pytest_gpucluster.sim.tools.fake.fault import CLUSTER, EVERY_NODE, FIRST_GPU_NODE

SIM = Path(faults.__file__).parent
PACKAGE = SIM.parent.parent
# How the simulated cluster asks for a fault: fault(ctx, "x"), _fault(node, "x"), _gpu_fault(ctx, "x", gpu),
# faults(node, "x"), _faults(name, "x"), faults_for("x"), has_fault("x"), f.get("kind") == "x" / in ("x", "y")
_READ = re.compile(r"""(?:\bfaults?|_faults?|_gpu_fault|faults_for|has_fault)\((?:[\w.]+, )?"([a-z][a-z0-9-]+)\"""")
_KIND_COMPARED = re.compile(r"""get\("kind"\)\s*(?:==|!=|in)\s*\(?((?:"[a-z0-9-]+",?\s*)+)""")


def _sources() -> dict[Path, str]:
    return {p: p.read_text() for p in SIM.rglob("*.py")}


def _read_kinds() -> dict[str, set[str]]:
    """kind -> the files that read it."""
    out: dict[str, set[str]] = {}
    for path, text in _sources().items():
        kinds = set(_READ.findall(text))
        for group in _KIND_COMPARED.findall(text):
            kinds |= set(re.findall(r'"([a-z0-9-]+)"', group))
        for kind in kinds:
            out.setdefault(kind, set()).add(str(path.relative_to(PACKAGE)))
    return out


def test_every_fault_kind_the_sim_reads_is_declared() -> None:
    read = _read_kinds()
    undeclared = {k: sorted(v) for k, v in read.items()
                  if k not in faults.fault_kinds() and not k.startswith(faults.AWS_PREFIX)}
    assert undeclared == {}, (f"fault kinds read but not declared (add a FaultKind to the FAULTS of the module that "
                              f"makes the fault happen): {undeclared}")


def test_every_declared_fault_kind_is_read_somewhere() -> None:
    read = _read_kinds()
    unused = sorted(k for k in faults.fault_kinds() if k not in read)
    assert unused == [], f"declared fault kinds nothing reads (a scenario naming them would silently do nothing): {unused}"


def test_every_module_declaring_fault_kinds_is_collected() -> None:
    declaring = sorted(str(p.relative_to(PACKAGE).with_suffix("")).replace("/", ".") for p, text in _sources().items()
                       if re.search(r"^FAULTS = \(", text, re.M))
    assert declaring == sorted(faults.DECLARED_IN), ("sim/faults.py DECLARED_IN must list exactly the modules with a "
                                                     f"module-level FAULTS: {declaring}")


def test_declarations_are_complete() -> None:
    for kind, fault in faults.fault_kinds().items():
        assert fault.kind == kind and re.fullmatch(r"[a-z][a-z0-9-]+", kind)
        assert fault.target in (FIRST_GPU_NODE, EVERY_NODE, CLUSTER), kind
        assert len(fault.effect) > 20, f"{kind}: say what the cluster shows with it"
        assert not kind.startswith(faults.AWS_PREFIX), f"{kind}: aws-* kinds belong to sim/aws.py"


def test_a_fault_without_nodes_hits_the_first_gpu_node_only_where_declared() -> None:
    scenario = load_scenario("persistence-off")
    fault = scenario.faults_for("persistence-off")[0]
    assert scenario.fault_nodes(fault) == [scenario.node(1).name]       # named: node 1
    healthy = load_scenario("healthy")
    first = healthy.gpu_nodes()[0].name
    assert "persistence-off" in faults.first_gpu_node_kinds() and "nccl-low-bandwidth" not in faults.first_gpu_node_kinds()
    assert healthy.fault_nodes(type(fault)(kind="persistence-off")) == [first]
    assert healthy.fault_nodes(type(fault)(kind="nccl-low-bandwidth")) == []


@pytest.mark.parametrize(("fault", "message"), [
    ("{kind: persistence-of, gpu_index: 3}", "unknown fault kind 'persistence-of'"),
    ("{kind: persistence-off, gpu: 3}", "fault 'persistence-off' has no parameter 'gpu' (allowed: gpu_index)"),
    ("{kind: api-flaky}", "unknown fault kind 'api-flaky'"),
])
def test_scenarios_name_only_declared_kinds_and_parameters(tmp_path: Path, fault: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"description: bad\nextends: healthy\nfaults:\n  - {fault}\n")
    with pytest.raises(ScenarioError, match=re.escape(message)):
        load_scenario(str(path))


def test_gpucluster_sim_faults_prints_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_gpucluster.sim.cli import main
    assert main(["--faults"]) == 0
    out = capsys.readouterr().out
    assert [k for k in faults.fault_kinds() if f"| `{k}` |" not in out] == []
    assert "| `aws-*` |" in out
