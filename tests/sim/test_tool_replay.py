"""Recorded outputs on the simulated cluster: every fake tool prints a scenario's recorded output for its node verbatim,
with the recorded exit code, before any fault or generated output; a node's own outputs override its group's."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_gpucluster.sim.scenario import Scenario, ScenarioError, load_scenario
from pytest_gpucluster.sim.tools import gated, install_tools
from tests.sim.test_tools import Pod

DATA = Path(__file__).resolve().parents[1] / "data"
# tool key -> (a real capture from tests/data, the command line the probe runs). Where tests/data holds no capture of
# the tool itself (vectorAdd, dcgmproftester12, mpirun's whole job) another real capture stands in: the point is that
# the bytes come out unchanged, whatever they are.
CASES = {
    "dcgmi diag": ("dcgm-diag/dcgm253-441-b200-pcie-fail.txt", ["dcgmi", "diag", "-r", "2", "-j"]),
    "dmesg": ("xid/dmesg-raw-fallen-off-bus-no-xid-nvsentinel155.log", ["dmesg"]),
    "nvidia-smi nvlink": ("nvlink/a100-80gb-all-inactive-azure.txt", ["nvidia-smi", "nvlink", "-s"]),
    "nvidia-smi topo": ("topo/h100-x4-nv6-4nic-nccl-issue1617.txt", ["nvidia-smi", "topo", "-m"]),
    "nvidia-smi q": ("nvidia-smi-health/q-l40s-595-idle.txt", ["nvidia-smi", "-q"]),
    "nvidia-smi q -d PAGE_RETIREMENT": ("nvidia-smi-health/q-d-page-retirement-azure-8gpu-535-bad.txt",
                                        ["nvidia-smi", "-q", "-d", "PAGE_RETIREMENT"]),
    "mpirun": ("nccl-tests/mpirun-not-enough-slots-banner-ompi-issue1571.txt",
               ["mpirun", "-np", "16", "all_reduce_perf", "-b", "8", "-e", "1G"]),
    "all_reduce_perf": ("nccl-tests/allreduce-p5-2node-eks-mpirun-elided.txt", ["all_reduce_perf", "-g", "8"]),
    "vectorAdd": ("nvidia-smi/error-couldnt-communicate-with-driver.txt", ["vectorAdd"]),
    "dcgmproftester12": ("nvidia-smi/error-couldnt-communicate-with-driver.txt",
                         ["dcgmproftester12", "--no-dcgm-validation", "-t", "1007", "-d", "1"]),
    "fi_info": ("fi_info/efa-p4de-4domains-rdm-v119.txt", ["fi_info", "-p", "efa"]),
}


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bin")
    tools = install_tools(root / "image")
    hostlog = gated.install(root / "gated")["hostlog"]
    # one directory on PATH: the image's tools plus dmesg, as a privileged pod mounting /dev/kmsg gets it
    (tools / "dmesg").write_bytes((hostlog / "dmesg").read_bytes())
    (tools / "dmesg").chmod(0o755)
    return tools


def _scenario(tmp: Path, base: str, body: str) -> Scenario:
    path = tmp / "replayed.yaml"
    path.write_text(f"extends: {base}\ndescription: recorded outputs\n{body}")
    return load_scenario(path)


def _node_outputs(tmp: Path, tool: str, sample: str, exit_code: int, base: str = "healthy") -> Scenario:
    """`base` with its first GPU node named and given `sample` as its own recorded output of `tool`."""
    return _scenario(tmp, base, "nodes:\n  - instance_type: p5.48xlarge\n    count: 2\n    zone: us-west-2a\n"
                                "    nodepool: gpu\n    names: [ip-10-0-7-1.us-west-2.compute.internal, "
                                "ip-10-0-7-2.us-west-2.compute.internal]\n"
                                "    taints: [{key: nvidia.com/gpu, effect: NoSchedule}]\n"
                                "    node_outputs:\n      ip-10-0-7-1.us-west-2.compute.internal:\n"
                                f"        tool_output: {{'{tool}': '{DATA / sample}'}}\n"
                                f"        exit_codes: {{'{tool}': {exit_code}}}\n"
                                "  - {instance_type: m6i.2xlarge, count: 1, zone: us-west-2a}\n")


@pytest.mark.parametrize("tool", sorted(CASES))
def test_each_fake_prints_a_recorded_output_verbatim_with_its_exit_code(bin_dir: Path, tmp_path: Path,
                                                                        tool: str) -> None:
    sample, argv = CASES[tool]
    scenario = _node_outputs(tmp_path, tool, sample, 3)
    out = Pod(bin_dir, tmp_path, scenario, node="ip-10-0-7-1.us-west-2.compute.internal").run(*argv)
    assert out.stdout == (DATA / sample).read_text(encoding="utf-8"), out.stderr
    assert out.returncode == 3
    # the other node of the group has no recorded output: it renders its own
    (tmp_path / "other").mkdir()
    other = Pod(bin_dir, tmp_path / "other", scenario, node="ip-10-0-7-2.us-west-2.compute.internal").run(*argv)
    assert other.stdout != out.stdout


def test_a_recorded_output_wins_over_the_scenarios_faults(bin_dir: Path, tmp_path: Path) -> None:
    """What a node printed is what it printed: the dcgm-diag-fail fault's generated failure does not replace a
    recorded pass (a fault is the simulator's invention; the recording is the node's own word)."""
    sample = "dcgm-diag/dcgm124-442-a10g-level2-pass.txt"
    scenario = _scenario(tmp_path, "dcgm-diag-fail",
                         f"nodes:\n  - instance_type: p5.48xlarge\n    count: 2\n    zone: us-west-2a\n"
                         f"    nodepool: gpu\n    tool_output: {{dcgmi diag: '{DATA / sample}'}}\n"
                         "    taints: [{key: nvidia.com/gpu, effect: NoSchedule}]\n")
    out = Pod(bin_dir, tmp_path, scenario, node=1).run("dcgmi", "diag", "-r", "2", "-j")
    assert (out.stdout, out.returncode) == ((DATA / sample).read_text(encoding="utf-8"), 0)


@pytest.mark.parametrize("body, message", [
    ("    tool_output: {nvidia-smi -L: x.txt}\n", "no tool the fakes replay"),
    ("    names: [a, b]\n", "names lists 2 node"),
    ("    names: [a]\n    node_outputs: {b: {tool_output: {}}}\n", "not one of this group's names"),
    ("    tool_output: {}\n    node_outputs: {a: {exit_codes: {dmesg: 1}}}\n", "no tool_output for it"),
])
def test_recorded_outputs_are_validated(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "x.txt").write_text("")
    path = tmp_path / "bad.yaml"
    path.write_text("description: x\nnodes:\n  - instance_type: p5.48xlarge\n" + body)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)
