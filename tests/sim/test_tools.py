"""The fake tools (nvidia-smi, fi_info, nccl-tests, mpirun, torch) as pods run them, checked with the project's parsers."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_gpucluster.parsers import parse_fi_info, parse_nccl, parse_nvidia_smi
from pytest_gpucluster.sim.scenario import SAMPLES_DIR, Scenario, load_scenario
from pytest_gpucluster.sim.tools import PYLIB_DIR, install_tools, map_paths
from pytest_gpucluster.sim.tools.context import build_context, node_context, write_context

SAMPLES = SAMPLES_DIR     # packaged copies of shared/samples files


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_tools(tmp_path_factory.mktemp("bin"))


class Pod:
    """A context file for one pod on one scenario node, and a runner for commands in it."""

    def __init__(self, bin_dir: Path, tmp: Path, scenario: Scenario, node: int | str = 0, gpus: int = 8,
                 efa: int = 32, workers: list[dict[str, Any]] | None = None) -> None:
        self.bin, self.scratch = bin_dir, tmp
        spec = scenario.node(node)
        efa_devices = spec.hardware.efa_devices[:efa]
        ctx = build_context(scenario, {"metadata": {"name": "probe-0", "namespace": "default"}}, spec,
                            [g.index for g in spec.hardware.gpus[:gpus]], efa_devices, workers)
        self.path = write_context(tmp, ctx)

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.scratch),
                "GPUCLUSTER_SIM_CONTEXT": str(self.path), "PYTHONPATH": str(PYLIB_DIR), **(env or {})}
        return subprocess.run(list(argv), capture_output=True, text=True, env=full, timeout=30, cwd=self.scratch)


@pytest.fixture(scope="module")
def healthy() -> Scenario:
    return load_scenario("healthy")


def test_nvidia_smi_table_matches_the_580_layout_and_parses(bin_dir: Path, tmp_path: Path, healthy: Scenario) -> None:
    out = Pod(bin_dir, tmp_path, healthy, gpus=1).run("nvidia-smi")
    assert out.returncode == 0
    sample = (SAMPLES / "nvidia-smi" / "h100-eks-p5-580-pod-idle.txt").read_text().splitlines()
    lines = out.stdout.splitlines()
    # same layout as the real 580 output: every line but the clock, temperature/power and bus id
    assert len(lines) == len(sample)
    assert [len(line) for line in lines[1:]] == [len(line) for line in sample[1:]]
    result = parse_nvidia_smi(out.stdout)
    assert [g.name for g in result.gpus] == ["NVIDIA H100 80GB HBM3"]
    assert result.gpus[0].memory_total_mib == 81559
    assert result.driver_version == "580.105.08"


def test_nvidia_smi_list_and_query_show_only_allocated_gpus(bin_dir: Path, tmp_path: Path, healthy: Scenario) -> None:
    pod = Pod(bin_dir, tmp_path, healthy, gpus=3)
    listing = parse_nvidia_smi(pod.run("nvidia-smi", "-L").stdout)
    assert [g.index for g in listing.gpus] == [0, 1, 2]
    csv = pod.run("nvidia-smi", "--query-gpu=index,name,uuid,pci.bus_id,memory.total,mig.mode.current,"
                  "ecc.errors.uncorrected.volatile.total", "--format=csv")
    assert csv.returncode == 0
    parsed = parse_nvidia_smi(csv.stdout)
    assert [g.bus_id for g in parsed.gpus] == ["00000000:53:00.0", "00000000:64:00.0", "00000000:75:00.0"]
    assert {g.memory_total_mib for g in parsed.gpus} == {81559}
    bare = pod.run("nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits").stdout
    assert bare.splitlines() == ["81559"] * 3
    apps = pod.run("nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv")
    assert apps.returncode == 0 and apps.stdout.splitlines() == ["pid, used_memory"]
    full = pod.run("nvidia-smi", "-q", "-d", "MEMORY")
    assert full.returncode == 0 and "FB Memory Usage" in full.stdout and "Attached GPUs" in full.stdout


@pytest.mark.parametrize("argv, code, text", [
    (["--bogus"], 2, "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."),
    (["--query-gpu=index"], 2, "Invalid combination of input arguments."),
    (["--query-gpu=not.a.field", "--format=csv"], 2, 'Field "not.a.field" is not a valid field to query.'),
])
def test_nvidia_smi_rejects_bad_arguments(bin_dir: Path, tmp_path: Path, healthy: Scenario,
                                          argv: list[str], code: int, text: str) -> None:
    out = Pod(bin_dir, tmp_path, healthy).run("nvidia-smi", *argv)
    assert out.returncode == code and text in out.stdout


def test_nvidia_smi_faults(bin_dir: Path, tmp_path: Path) -> None:
    missing = load_scenario("gpu-missing")
    node = missing.fault_nodes(missing.faults[0])[0]
    assert len(parse_nvidia_smi(Pod(bin_dir, tmp_path, missing, node).run("nvidia-smi").stdout).gpus) == 7
    broken = load_scenario("driver-unreachable")
    node = broken.fault_nodes(broken.faults[0])[0]
    out = Pod(bin_dir, tmp_path, broken, node).run("nvidia-smi", "-L")
    assert out.returncode == 9
    assert out.stdout.startswith("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    assert parse_nvidia_smi(out.stdout).error is not None


def test_fi_info_lists_allocated_efa_devices(bin_dir: Path, tmp_path: Path, healthy: Scenario) -> None:
    pod = Pod(bin_dir, tmp_path, healthy, efa=4)
    rdm = pod.run("fi_info", "-p", "efa", "-t", "FI_EP_RDM")
    assert rdm.returncode == 0
    result = parse_fi_info(rdm.stdout)
    assert result.nic_count() == 4 and result.endpoint_types() == ["FI_EP_RDM"]
    assert result.fabrics() == ["efa", "efa-direct"]
    every = parse_fi_info(pod.run("fi_info", "-p", "efa").stdout)
    assert every.endpoint_types() == ["FI_EP_DGRAM", "FI_EP_RDM"] and every.nic_count() == 4
    assert "libfabric api: 2.1" in pod.run("fi_info", "--version").stdout


def test_fi_info_without_efa_and_bad_flags(bin_dir: Path, tmp_path: Path, healthy: Scenario) -> None:
    none = Pod(bin_dir, tmp_path, healthy, efa=0).run("fi_info", "-p", "efa")
    assert none.returncode == 1 and "fi_getinfo: -61 (No data available)" in none.stderr
    absent = load_scenario("efa-absent")
    node = absent.fault_nodes(absent.faults[0])[0]
    out = Pod(bin_dir, tmp_path, absent, node).run("fi_info", "-p", "efa")
    assert out.returncode == 1 and parse_fi_info(out.stdout + out.stderr).error is not None
    bad = Pod(bin_dir, tmp_path, healthy).run("fi_info", "-Z")
    assert bad.returncode == 1 and "invalid option" in bad.stderr


def test_all_reduce_single_node_parses_with_nvlink_bandwidth(bin_dir: Path, tmp_path: Path, healthy: Scenario) -> None:
    out = Pod(bin_dir, tmp_path, healthy).run("all_reduce_perf", "-b", "8", "-e", "1G", "-f", "2", "-g", "8")
    assert out.returncode == 0, out.stderr
    result = parse_nccl(out.stdout)
    coll = result.collective("all_reduce")
    assert coll is not None and len(coll.rows) == 28
    assert 400 < (result.peak_busbw or 0) < 460          # published 1x p5: 441.81 at 1 GB (nccl_curves.P5_1)
    assert "# Out of bounds values : 0 OK" in out.stdout


def test_nccl_tests_reject_bad_flags_and_too_many_gpus(bin_dir: Path, tmp_path: Path, healthy: Scenario) -> None:
    bad = Pod(bin_dir, tmp_path, healthy).run("all_reduce_perf", "-Q", "1")
    assert bad.returncode == 1 and "invalid option -- 'Q'" in bad.stdout and "USAGE: all_reduce_perf" in bad.stdout
    few = Pod(bin_dir, tmp_path, healthy, gpus=2).run("all_reduce_perf", "-g", "8")
    assert few.returncode != 0 and "Invalid number of GPUs: 8 requested but only 2 were found." in few.stderr


def _launcher(bin_dir: Path, tmp: Path, scenario: Scenario, efa: int = 32) -> Pod:
    workers = []
    for i, spec in enumerate(scenario.gpu_nodes()[:2]):
        w = node_context(scenario, spec, [g.index for g in spec.hardware.gpus], spec.hardware.efa_devices[:efa])
        w["host"] = f"nccl-worker-{i}"
        workers.append(w)
    cpu = next(n for n in scenario.expand_nodes() if not n.instance.is_gpu)
    return Pod(bin_dir, tmp, scenario, cpu.name, gpus=0, efa=0, workers=workers)


def _mpi_allreduce(pod: Pod) -> subprocess.CompletedProcess[str]:
    return pod.run("mpirun", "--allow-run-as-root", "-np", "16", "-N", "8", "-x", "NCCL_DEBUG=INFO",
                   "--mca", "pml", "ob1", "--bind-to", "none", "all_reduce_perf", "-b", "8", "-e", "4G", "-f", "2",
                   "-g", "1")


def test_mpirun_two_nodes_over_efa(bin_dir: Path, tmp_path: Path, healthy: Scenario) -> None:
    out = _mpi_allreduce(_launcher(bin_dir, tmp_path, healthy))
    assert out.returncode == 0, out.stderr
    assert all(line.startswith("[1,") for line in out.stdout.splitlines() if line)
    result = parse_nccl(out.stdout)
    assert result.transport == "efa" and result.gdrdma is True
    assert result.log.ofi_nics == 32 and result.log.nccl_version == "2.27.5+cuda12.8"
    assert 420 < (result.peak_busbw or 0) < 490           # published 2x p5: 465.87 at 4 GB (nccl_curves.P5_2)
    assert "Warning: Permanently added 'nccl-worker-1'" in out.stderr


@pytest.mark.parametrize("scenario, check", [
    ("nccl-socket-fallback", lambda r, healthy: r.transport == "socket" and (r.peak_busbw or 0) < 5),
    ("nccl-low-bandwidth", lambda r, healthy: 0.3 * healthy < (r.peak_busbw or 0) < 0.5 * healthy),
    ("nccl-wrong-results", lambda r, healthy: any(row.out_of_place.wrong for row in r.collective().rows
                                                  if row.out_of_place and row.out_of_place.wrong)),
])
def test_nccl_faults(bin_dir: Path, tmp_path: Path, healthy: Scenario, scenario: str, check: Any) -> None:
    base = parse_nccl(_mpi_allreduce(_launcher(bin_dir, tmp_path, healthy)).stdout).peak_busbw or 0
    out = _mpi_allreduce(_launcher(bin_dir, tmp_path, load_scenario(scenario)))
    assert check(parse_nccl(out.stdout), base), out.stdout[-2000:]


def test_nccl_wrong_results_fail_the_run(bin_dir: Path, tmp_path: Path) -> None:
    out = _mpi_allreduce(_launcher(bin_dir, tmp_path, load_scenario("nccl-wrong-results")))
    assert out.returncode == 5 and "# Out of bounds values : " in out.stdout and "FAILED" in out.stdout


def test_g5_single_efa_has_no_gdrdma(bin_dir: Path, tmp_path: Path) -> None:
    out = _mpi_allreduce(_launcher(bin_dir, tmp_path, load_scenario("g5-single-efa"), efa=1))
    result = parse_nccl(out.stdout)
    assert result.transport == "efa" and not result.gdrdma and result.log.ofi_nics == 1


def test_mpirun_refusals(bin_dir: Path, tmp_path: Path, healthy: Scenario) -> None:
    pod = _launcher(bin_dir, tmp_path, healthy)
    if os.geteuid() == 0:
        root = pod.run("mpirun", "-np", "2", "hostname")
        assert root.returncode == 1 and "mpirun has detected an attempt to run as root." in root.stderr
    unknown = pod.run("mpirun", "--allow-run-as-root", "--frobnicate", "x")
    assert unknown.returncode == 1 and 'unknown option "--frobnicate"' in unknown.stderr
    slots = pod.run("mpirun", "--allow-run-as-root", "-np", "64", "all_reduce_perf")
    assert slots.returncode == 1 and "There are not enough slots available" in slots.stderr


def test_mpirun_runs_any_program_per_rank_with_worker_context(bin_dir: Path, tmp_path: Path,
                                                              healthy: Scenario) -> None:
    out = _launcher(bin_dir, tmp_path, healthy).run("mpirun", "--allow-run-as-root", "-N", "1", "fi_info", "-p", "efa",
                                                     "-t", "FI_EP_RDM")
    assert out.returncode == 0
    assert parse_fi_info(out.stdout).nic_counts_by_host() == {"0": 32, "1": 32}


def test_torch_reports_allocated_gpus(bin_dir: Path, tmp_path: Path, healthy: Scenario) -> None:
    pod = Pod(bin_dir, tmp_path, healthy, gpus=4)
    code = "import torch; print(torch.cuda.is_available(), torch.cuda.device_count(), torch.cuda.get_device_name(0))"
    assert pod.run("python3", "-c", code, env={"NVIDIA_VISIBLE_DEVICES": "x"}).stdout.split() == \
        ["True", "4", "NVIDIA", "H100", "80GB", "HBM3"]
    assert pod.run("python3", "-c", "import torch; print(torch.cuda.device_count())").stdout.strip() == "0"


def test_torch_matmul_load_waits_for_the_gpu_instead_of_spinning_the_host(bin_dir: Path, tmp_path: Path,
                                                                         healthy: Scenario) -> None:
    """The node-health probe's load loop (gather/node_health.LOAD, here for 1 s): a 4096^3 matmul takes ~2 ms on an
    H100's FP32 units (67 TFLOPS), the 8 GPUs work in parallel and synchronize() waits for the queued work, so the
    loop gets through at most ~490 rounds a second; a matmul that cost nothing let it spin a host core instead."""
    code = ("import time, torch\nxs = [torch.randn(4096, 4096, device=f'cuda:{i}') for i in range(8)]\n"
            "t, rounds = time.time(), 0\nwhile time.time() - t < 1:\n    [x @ x for x in xs]\n"
            "    torch.cuda.synchronize()\n    rounds += 1\nprint(rounds)")
    out = Pod(bin_dir, tmp_path, healthy).run("python3", "-c", code, env={"NVIDIA_VISIBLE_DEVICES": "x"})
    assert out.returncode == 0, out.stderr
    assert 1 <= int(out.stdout) <= 500, out.stdout


def test_tool_output_override_replays_a_real_file(bin_dir: Path, tmp_path: Path) -> None:
    sample = SAMPLES / "nvidia-smi" / "h100-x8-550-no-date-no-procs.txt"
    scenario_file = tmp_path / "replay.yaml"
    scenario_file.write_text("extends: healthy\ndescription: replay\nnodes:\n  - instance_type: p5.48xlarge\n"
                             "    tool_output: {nvidia-smi: 'sample:nvidia-smi/h100-x8-550-no-date-no-procs.txt'}\n")
    scenario = load_scenario(scenario_file)
    assert Pod(bin_dir, tmp_path, scenario).run("nvidia-smi").stdout == sample.read_text()


def test_absolute_tool_paths_and_infiniband_are_mapped(tmp_path: Path) -> None:
    text = "/usr/sbin/sshd -De & /opt/nccl-tests/build/all_reduce_perf -g 8; ls /dev/infiniband/uverbs*"
    mapped = map_paths(text, tmp_path / "img", tmp_path / "pod")
    assert mapped == (f"{tmp_path}/img/usr/sbin/sshd -De & {tmp_path}/img/opt/nccl-tests/build/all_reduce_perf -g 8; "
                      f"ls {tmp_path}/pod/dev/infiniband/uverbs*")


# -- bandwidth from published runs (issue 14) ------------------------------------------------------------------
def _ranks(itype: str, nodes: int, zones: tuple[str, ...] = ("us-west-2a",),
           faults: dict[int, list[dict[str, Any]]] | None = None) -> list[Any]:
    from pytest_gpucluster.sim.hardware import instance_type, node_hardware
    from pytest_gpucluster.sim.tools.fake import nccl as fake
    ranks = []
    for h in range(nodes):
        hw = node_hardware(instance_type(itype), f"node-{h}")
        node = {"hardware": hw.to_dict(), "allocated": {"gpus": [g.index for g in hw.gpus], "efa": hw.efa_devices},
                "faults": (faults or {}).get(h, []), "zone": zones[h % len(zones)], "private_ip": f"10.0.0.{h + 4}"}
        for g in hw.gpus:
            ranks.append(fake.Rank(len(ranks), f"node-{h}", node, g.__dict__, 25 + g.index, len(ranks)))
    return ranks


def _allreduce(ranks: list[Any]) -> str:
    from pytest_gpucluster.sim.tools.fake import nccl as fake
    args = fake.parse_args(["-b", "8", "-e", "16G", "-f", "2"], "all_reduce_perf")
    out, _, _ = fake.generate("all_reduce_perf", args, ranks, fake.config({}), {"NCCL_DEBUG": "INFO"})
    return "\n".join(line for _, line in out)


@pytest.mark.parametrize("itype,nodes", [(t, n) for t in sorted(__import__(
    "pytest_gpucluster.sim.tools.fake.nccl_curves", fromlist=["CURVES"]).CURVES) for n in (1, 2)])
def test_every_simulated_type_meets_its_profile_floors_below_its_ceiling(itype: str, nodes: int) -> None:
    from pytest_gpucluster.checks.nccl import NcclRun, bandwidth, physical_ceiling
    from pytest_gpucluster.profile import load_profile
    inst = load_profile().for_instance(itype)
    run = NcclRun(f"sim/{itype}", itype, nodes, 8, "all_reduce_perf", log=_allreduce(_ranks(itype, nodes))).parse()
    verdict = bandwidth(run, inst)
    assert verdict.ok, verdict.message
    ceiling, how = physical_ceiling(inst, nodes, 8)
    assert ceiling is not None and (run.table.peak_busbw or 0) <= ceiling, how    # type: ignore[union-attr]


def test_nccl_falls_back_to_socket_across_availability_zones() -> None:
    same = parse_nccl(_allreduce(_ranks("p5.48xlarge", 2, ("us-west-2a",))))
    across = parse_nccl(_allreduce(_ranks("p5.48xlarge", 2, ("us-west-2a", "us-west-2b"))))
    assert same.transport == "efa" and across.transport == "socket"
    assert (across.peak_busbw or 0) < 5 < 400 < (same.peak_busbw or 0)


def test_a_slow_efa_on_one_node_slows_the_multi_node_run_only() -> None:
    slow = {1: [{"kind": "efa-slow", "params": {"factor": 0.3}}]}
    base = parse_nccl(_allreduce(_ranks("p5.48xlarge", 2))).peak_busbw or 0
    degraded = parse_nccl(_allreduce(_ranks("p5.48xlarge", 2, faults=slow))).peak_busbw or 0
    assert 0.25 * base < degraded < 0.35 * base
    one = _ranks("p5.48xlarge", 1, faults={0: slow[1]})
    assert (parse_nccl(_allreduce(one)).peak_busbw or 0) > 400


# -- an image without kernels for the GPU (issue 24 item 5) -----------------------------------------------------
@pytest.mark.parametrize("itype,runs", [("g4dn.12xlarge", False), ("g7e.12xlarge", False), ("g6e.12xlarge", True),
                                        ("p6-b300.48xlarge", True)])
def test_all_reduce_fails_as_nccl_does_where_the_image_has_no_kernel(itype: str, runs: bool) -> None:
    """AWS's nccl-tests image (cubins for 8.0-10.0): on a T4 (7.5) or an RTX PRO 6000 Blackwell (12.0) NCCL's first
    collective WARNs 'Cuda failure' and nccl-tests stops before its first row with 'Test NCCL failure', exit 3."""
    from pytest_gpucluster.options import DEFAULT_NCCL_IMAGE
    from pytest_gpucluster.sim.tools.fake import nccl as fake
    from pytest_gpucluster.sim.tools.images import lookup
    ranks = _ranks(itype, 1)
    for r in ranks:
        r.node["gpu_code"] = lookup(DEFAULT_NCCL_IMAGE).gpu_code
    args = fake.parse_args(["-b", "8", "-e", "1G", "-f", "2", "-g", str(len(ranks))], "all_reduce_perf")
    out, _, code = fake.generate("all_reduce_perf", args, ranks, fake.config({}), {"NCCL_DEBUG": "INFO"})
    text = "\n".join(line for _, line in out)
    if runs:
        assert code == 0 and parse_nccl(text).collective("all_reduce") is not None
        return
    assert code == 3 and parse_nccl(text).collective("all_reduce") is None
    assert "enqueue.cc:1558 NCCL WARN Cuda failure 'no kernel image is available for execution on the device'" in text
    assert ("Test NCCL failure common.cu:411 'unhandled cuda error (run with NCCL_DEBUG=INFO for details) / Cuda "
            "failure 'no kernel image is available for execution on the device''") in text        # -g > 1: group end
    assert text.rstrip().endswith("Test failure common.cu:937")                                 # main() in 2.16.4


@pytest.mark.parametrize("nodes", [4, 8])
def test_a_ring_over_many_nodes_keeps_the_published_share_of_its_lower_ceiling(nodes: int) -> None:
    """No published run of more than 2 nodes: the 2-node run is stretched to the same share of the N-node network
    ceiling (B_net x N/(N-1) x (n-1)/n), which falls with N, so the simulated figure stays below it."""
    from pytest_gpucluster.checks.nccl import physical_ceiling
    from pytest_gpucluster.profile import load_profile
    two = parse_nccl(_allreduce(_ranks("p5.48xlarge", 2)))
    many = parse_nccl(_allreduce(_ranks("p5.48xlarge", nodes)))
    inst = load_profile().for_instance("p5.48xlarge")
    c2, cn = physical_ceiling(inst, 2, 8)[0], physical_ceiling(inst, nodes, 8)[0]
    assert c2 is not None and cn is not None
    share2, share = (two.busbw_at(2 << 30) or 0) / c2, (many.busbw_at(2 << 30) or 0) / cn
    assert abs(share - share2) < 0.05 and (many.peak_busbw or 0) < cn


def test_a_security_group_without_its_self_rule_fails_nccl_across_nodes_only() -> None:
    sg = {h: [{"kind": "aws-sg-no-self-rule", "params": {}}] for h in range(2)}
    across = _allreduce(_ranks("p5.48xlarge", 2, faults=sg))
    assert parse_nccl(across).collective("all_reduce") is None
    assert "NCCL WARN NET/OFI Unable to insert remote address into address vector for device 1. RC: 0" in across
    assert "Test NCCL failure all_reduce.cu:44 'internal error - please report this issue to the NCCL developers" in across
    assert parse_nccl(_allreduce(_ranks("p5.48xlarge", 1, faults={0: sg[0]}))).collective("all_reduce") is not None
