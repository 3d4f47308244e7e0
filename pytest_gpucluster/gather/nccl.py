"""Multi-node NCCL runs on a cluster: MPIJobs for node groups in waves of disjoint groups (first round, localisation
rounds, the whole-type run), and the localisation loop (plan and attribution: checks/nccl_localise.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import yaml

from pytest_gpucluster.checks import Status
from pytest_gpucluster.checks.nccl import NcclRun, bandwidth, correctness, network, max_bytes, size_arg
from pytest_gpucluster.checks.nccl_localise import (
    MAX_EXTRA_ROUNDS, Localisation, Outcome, Trial, next_round, suspects_and_partners, zone_of,
)
from pytest_gpucluster.checks.nccl_nodes import Coverage, NodeGroup, cannot_run, gpus_of, waves
from pytest_gpucluster.checks.nccl_run import COMPUTE_CAP
from pytest_gpucluster.kube import mpijob
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import NodeInfo
from pytest_gpucluster.kube.placement import tolerations_for
from pytest_gpucluster.kube.plugins import Plugins, gpus_to_request
from pytest_gpucluster.profile import Profile

GFD_MAJOR, GFD_MINOR, GFD_PRODUCT = "nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor", "nvidia.com/gpu.product"


def gpu_facts(nodes: Sequence[NodeInfo]) -> dict[str, str]:
    """The GPUs' compute capability and product from GPU Feature Discovery's node labels (what an image must carry
    kernels for); empty where GFD does not label the nodes."""
    caps = sorted({f"{n.labels[GFD_MAJOR]}.{n.labels.get(GFD_MINOR, '0')}" for n in nodes if GFD_MAJOR in n.labels})
    products = sorted({n.labels[GFD_PRODUCT] for n in nodes if GFD_PRODUCT in n.labels})
    return {**({COMPUTE_CAP: ", ".join(caps)} if caps else {}),
            **({"gpu product": ", ".join(products)} if products else {})}


def image_for(profile: Profile, instance_type: str, default: str) -> str:
    """The nccl-tests image for a type: its profile's nccl.image (an image built for its GPUs), else the run's."""
    inst = profile.for_instance(instance_type)
    return (inst.nccl_image if inst is not None and inst.nccl_image else None) or default


@dataclass
class MultiNodeRunner:
    """Runs node groups as MPIJobs (fixtures/mpijob-nccl.yaml), disjoint groups at once, each group once."""

    cluster: Cluster
    profile: Profile
    plugins: Plugins
    namespace: str
    run_id: str
    default_image: str
    timeout_s: float
    coverage: Coverage | None = None
    cache: dict[str, NcclRun] = field(default_factory=dict)

    def job_for(self, group: NodeGroup) -> dict[str, Any]:
        return mpijob.render(
            group.nodes, name=mpijob.job_name(group.instance_type, [n.name for n in group.nodes], self.run_id),
            namespace=self.namespace, run_id=self.run_id,
            image=image_for(self.profile, group.instance_type, self.default_image),
            gpus=min(gpus_of(n) for n in group.nodes), efa=min(n.efa_allocatable for n in group.nodes),
            max_size=size_arg(max_bytes(self.profile.for_instance(group.instance_type), len(group.nodes))),
            deadline_s=int(self.timeout_s),
            tolerations=tolerations_for(group.nodes, extra=self.profile.gpu_tolerations()))

    def run_wave(self, wave: Sequence[NodeGroup]) -> float:
        """Every group of the wave at once (disjoint nodes); a group that could never schedule is not submitted.
        Returns the wave's wall time in seconds."""
        started = time.monotonic()
        gpus_now = gpus_to_request(self.cluster, self.plugins, sorted({n.name for g in wave for n in g.nodes}))
        blocked = {g.id: cannot_run(g, gpus_now) for g in wave}
        jobs = {g.id: self.job_for(g) for g in wave if blocked[g.id] is None}
        done = mpijob.run_all(self.cluster, list(jobs.values()), timeout_s=self.timeout_s + 30)
        for group in wave:
            gpus = min(gpus_of(n) for n in group.nodes)
            shown = {"nodes": ", ".join(n.name for n in group.nodes),
                     "image": image_for(self.profile, group.instance_type, self.default_image),
                     **({"multi_node_coverage": self.coverage.text(group.instance_type)} if self.coverage else {}),
                     **gpu_facts(group.nodes)}
            job = jobs.get(group.id)
            if job is None:
                self.cache[group.id] = NcclRun(group.id, group.instance_type, len(group.nodes), gpus,
                                               "(not submitted)", outcome=blocked[group.id] or "", facts=shown)
                continue
            result = done[job["metadata"]["name"]]
            self.cache[group.id] = NcclRun(
                group.id, group.instance_type, len(group.nodes), gpus, mpijob.launcher_command(job),
                log=result.log, outcome=result.outcome, manifest=yaml.safe_dump(job, sort_keys=False),
                facts={**result.facts, **shown, "efa_per_worker": min(n.efa_allocatable for n in group.nodes)},
                node_names=tuple(n.name for n in group.nodes), hosts=result.workers).parse()
        return time.monotonic() - started

    def run_groups(self, groups: Sequence[NodeGroup]) -> float:
        """Every group not yet run, wave by wave; the wall time in seconds."""
        todo = [g for g in groups if g.id not in self.cache]
        return sum(self.run_wave(w) for w in waves(todo))

    def get(self, group: NodeGroup, all_groups: Sequence[NodeGroup] = ()) -> NcclRun:
        """The group's run; the first call runs the group's whole wave (of `all_groups`) at once."""
        if group.id not in self.cache:
            self.run_wave(next((w for w in waves(list(all_groups)) if any(g.id == group.id for g in w)), [group]))
        return self.cache[group.id]


def group_outcome(run: NcclRun, profile: Profile) -> tuple[Outcome, str]:
    """What a group's run shows for localisation: FAIL if any judge fails, PASS if one passes, else NOT SHOWN."""
    inst = profile.for_instance(run.instance_type)
    verdicts = [correctness(run), network(run, inst), bandwidth(run, inst)]
    peak = run.table.peak_busbw if run.table is not None else None
    figure = f"peak {peak:g} GB/s" if peak is not None else "no result table"
    failed = [v for v in verdicts if v.status is Status.FAIL]
    if failed:
        what = failed[0].summary or failed[0].observed.split(";")[0].split("\n")[0][:120]
        return Outcome.FAIL, f"{what}, {figure}"
    if any(v.status is Status.PASS for v in verdicts):
        transport = run.result.transport if run.result is not None else None
        return Outcome.PASS, f"{figure}, transport {transport or 'unknown'}"
    return Outcome.NOT_SHOWN, verdicts[0].observed.split("\n")[0][:200]


def localise(runner: MultiNodeRunner, groups: Sequence[NodeGroup]) -> tuple[Localisation, dict[str, list[str]]]:
    """Run the first round (every group), then up to MAX_EXTRA_ROUNDS rounds pairing each node of a failed group
    with a good partner of its type and zone (checks/nccl_localise.py). Returns the trials and, per "type/zone",
    the good partners there were."""
    loc = Localisation()
    runner.run_groups(groups)
    nodes = {n.name: n for g in groups for n in g.nodes}
    for group in groups:
        loc.add(Trial(1, group, *group_outcome(runner.cache[group.id], runner.profile)))
    for itype in {g.instance_type for g in groups}:
        inst = runner.profile.for_instance(itype)
        loc.rounds[itype], loc.enabled[itype] = 1, bool(inst.nccl_localise if inst is not None else True)
    for extra in range(1, MAX_EXTRA_ROUNDS + 1):
        plan = [pair for (itype, _), (suspects, partners) in suspects_and_partners(nodes.values(), loc).items()
                if loc.enabled.get(itype, True) for pair in next_round(suspects, partners, loc)]
        if not plan:
            break
        seconds = runner.run_groups(plan)
        for pair in plan:
            loc.add(Trial(extra + 1, pair, *group_outcome(runner.cache[pair.id], runner.profile)))
        for itype in {p.instance_type for p in plan}:
            loc.rounds[itype] = extra + 1
            used = sum(len(p.nodes) for p in plan if p.instance_type == itype)
            loc.node_minutes[itype] = loc.node_minutes.get(itype, 0.0) + seconds * used / 60
    good = {f"{itype}/{zone}": [n.name for n in partners]
            for (itype, zone), (_, partners) in suspects_and_partners(nodes.values(), loc).items()}
    for node in nodes.values():
        good.setdefault(f"{node.instance_type}/{zone_of(node)}", [])
    return loc, good
