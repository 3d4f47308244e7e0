"""Load benchmark of the simulated apiserver: node creation, list latency and watch fan-out at 10/100/1000 nodes."""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from typing import Any

from kubernetes import client, config, watch

from pytest_gpucluster.sim.launcher import SimCluster
from pytest_gpucluster.sim.store import Store

NODE_INFO = {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://1.7.27",
             "kernelVersion": "6.1", "kubeProxyVersion": "v1.32.3", "kubeletVersion": "v1.32.3", "machineID": "m",
             "operatingSystem": "linux", "osImage": "Amazon Linux 2023", "systemUUID": "s"}


def node(i: int) -> dict[str, Any]:
    gpu = i % 2 == 0
    res = {"cpu": "192", "memory": "2097152Ki", "pods": "110", **({"nvidia.com/gpu": "8",
                                                                  "vpc.amazonaws.com/efa": "32"} if gpu else {})}
    return {"metadata": {"name": f"ip-10-0-{i // 250}-{i % 250}.us-west-2.compute.internal", "labels": {
                "node.kubernetes.io/instance-type": "p5.48xlarge" if gpu else "m6i.xlarge",
                "karpenter.sh/nodepool": "gpu" if gpu else "cpu", "topology.kubernetes.io/zone": "us-west-2a"}},
            "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}] if gpu else []},
            "status": {"capacity": res, "allocatable": dict(res), "nodeInfo": NODE_INFO,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def create_nodes(store: Store, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        store.create("nodes", node(i))
    return time.perf_counter() - t0


def run(n: int, watchers: int, updates: int) -> dict[str, float]:
    with SimCluster(None, bookmark_interval=60) as sim:
        create_s = sim.call(create_nodes, sim.store, n)
        api = client.CoreV1Api(config.new_client_from_config(str(sim.kubeconfig_path)))
        lists = []
        for _ in range(3):
            t0 = time.perf_counter()
            items = api.list_node(_preload_content=False).data
            lists.append(time.perf_counter() - t0)
        typed_t0 = time.perf_counter()
        assert len(api.list_node().items) == n
        typed_s = time.perf_counter() - typed_t0
        rv = api.list_node(limit=1).metadata.resource_version
        received = [0] * watchers
        done = threading.Barrier(watchers + 1, timeout=120)

        def watcher(k: int) -> None:
            w = watch.Watch()
            for _ in w.stream(api.list_node, resource_version=rv, timeout_seconds=120,
                              label_selector="karpenter.sh/nodepool"):
                received[k] += 1
                if received[k] == updates:
                    w.stop()
            done.wait()
        threads = [threading.Thread(target=watcher, args=(k,), daemon=True) for k in range(watchers)]
        for t in threads:
            t.start()
        while sim.stats()["watches"] < watchers:
            time.sleep(0.01)

        def touch(store: Store) -> None:
            for i in range(updates):
                name = node(i % n)["metadata"]["name"]
                store.mutate("nodes", None, name, lambda o, i=i: o["metadata"]["labels"].__setitem__("bench", str(i)))
        t0 = time.perf_counter()
        sim.call(touch, sim.store)
        done.wait()
        fanout_s = time.perf_counter() - t0
        stats = sim.stats()
        return {"nodes": n, "create_s": create_s, "list_s": statistics.median(lists), "list_bytes": len(items),
                "typed_list_s": typed_s, "watchers": watchers, "events": watchers * updates, "fanout_s": fanout_s,
                "requests_per_node": stats["requests_total"] / n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--updates", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"{'nodes':>6} {'create':>9} {'list(raw)':>10} {'list MB':>8} {'list(typed)':>12} "
          f"{'watchers':>8} {'events':>7} {'fan-out':>9} {'ev/s':>8} {'req/node':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        r = run(n, args.watchers, min(args.updates, max(n, 1) * 10))
        print(f"{r['nodes']:>6} {r['create_s'] * 1000:>7.0f}ms {r['list_s'] * 1000:>8.0f}ms "
              f"{r['list_bytes'] / 1e6:>8.2f} {r['typed_list_s'] * 1000:>10.0f}ms {r['watchers']:>8} "
              f"{r['events']:>7} {r['fanout_s'] * 1000:>7.0f}ms {r['events'] / r['fanout_s']:>8.0f} "
              f"{r['requests_per_node']:>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
