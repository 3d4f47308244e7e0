"""Scale benchmark of the GPU visibility fleet (suites/test_gpu_visibility.py): wall time and API requests on sims of 2/20/200 GPU nodes.

    python benchmarks/fleet_scale.py [--nodes 2 20 200]

For each size: start the `healthy` scenario with that many p5.48xlarge nodes (scenario override `gpu_nodes`),
wait until every GPU node advertises its GPUs, then run the suite's own nvidia-smi fleet (one pod per node taking
all 8 GPUs, query CSV + table) through the plugin's FleetRunner and print wall seconds and API requests (counted
by the simulated apiserver).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from pytest_gpucluster.kube import watching
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.fleets import FleetRunner
from pytest_gpucluster.kube.probes import ProbeContext, ProbeSpec
from pytest_gpucluster.profile import load_profile
from pytest_gpucluster.sim.launcher import SimCluster
from pytest_gpucluster.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
GPU = "nvidia.com/gpu"


def visibility_suite() -> ModuleType:
    """suites/test_gpu_visibility.py, for its probe command and fleet key (the benchmark runs exactly that fleet)."""
    spec = importlib.util.spec_from_file_location("gpu_visibility_suite", ROOT / "suites" / "test_gpu_visibility.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def measure(nodes: int, suite: ModuleType) -> dict[str, float]:
    scenario = load_scenario("healthy", overrides={"gpu_nodes": nodes, "name": f"fleet-scale-{nodes}"})
    with tempfile.TemporaryDirectory(prefix="gpucluster-bench-") as tmp, \
            SimCluster(scenario, workdir=Path(tmp), aws=False) as sim:
        cluster = Cluster.connect(sim.kubeconfig_path, read_timeout_s=120)   # 200 nodes: the sim boots busy
        try:
            names = [n["metadata"]["name"] for n in cluster.items("nodes") if
                     n["metadata"]["labels"].get("node.kubernetes.io/instance-type") == "p5.48xlarge"]
            watching.eventually(cluster, "nodes", None, lambda objs: all(
                (objs[n].get("status") or {}).get("allocatable", {}).get(GPU) == "8" for n in names if n in objs),
                timeout_s=120, description=f"{GPU}=8 on {nodes} nodes")
            namespace = "gpucluster-bench"
            cluster.create("namespaces", {"metadata": {"name": namespace}})
            profile = load_profile()
            ctx = ProbeContext(namespace=namespace, run_id="bench", cuda_image="nvidia/cuda:13.0.2-runtime-ubuntu22.04",
                               timeout_s=600, gpu_tolerations=profile.gpu_tolerations())
            specs = {n: ProbeSpec(name="nvidia-smi", command=["sh", "-c", suite.SMI_SCRIPT], node=n, gpus=8)
                     for n in names}
            before = sim.stats()["requests_total"]
            t0 = time.perf_counter()
            results = FleetRunner(cluster, ctx).run(suite.SMI_FLEET_KEY, specs)
            wall = time.perf_counter() - t0
            requests = sim.stats()["requests_total"] - before
        finally:
            cluster.close()
    ok = sum(1 for r in results.values() if r.ok)
    if ok != nodes:
        bad = [r.describe() for r in results.values() if not r.ok][:3]
        raise SystemExit(f"fleet on {nodes} nodes: {ok} probes succeeded, expected {nodes}: {bad}")
    return {"nodes": nodes, "wall_s": wall, "requests": requests, "per_node": requests / nodes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 20, 200])
    args = parser.parse_args(argv)
    suite = visibility_suite()
    rows = [measure(n, suite) for n in args.nodes]
    print(f"{'nodes':>6} {'wall s':>8} {'API requests':>13} {'requests/node':>14} {'wall s/node':>12}")
    for row in rows:
        print(f"{row['nodes']:>6} {row['wall_s']:>8.2f} {row['requests']:>13.0f} {row['per_node']:>14.2f} "
              f"{row['wall_s'] / row['nodes']:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
