"""A simulated-cluster scenario from a report folder's recording (`gpucluster sim --from-report`): the recorded nodes
(names, instance types, zones, labels, taints, driver), NodePools and NodeClasses, the operators the recording shows,
and each node's recorded probe outputs as per-node `tool_output` files, so what a cluster printed replays on the
simulator. Pure: a Recording in, the scenario mapping, its files and what could not be taken out (no sim import:
`sim/cli.py` writes and validates it)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..gather.gpu_visibility import ISOLATION_SCRIPT, TABLE_MARK, read_listing, split_output
from ..checks.probe_output import split_sections
from ..kube.objects import GPU_RESOURCE
from .recording import read_gz
from .replay import Recording

# Labels the simulated cluster sets itself (from the instance type, the NodePool, GFD, EKS): a recorded copy would
# only repeat them. Unprefixed and other prefixed labels are the cluster owner's and are kept.
SIM_SET_LABEL_DOMAINS = ("kubernetes.io", "k8s.aws", "karpenter.sh", "nvidia.com", "amazonaws.com")
# Taints controllers put on and take off (node lifecycle, Karpenter disruption): the scenario's nodes start without
# them, as a fresh replay should; a node in transition is a recorded state, not a property of the node.
TRANSIENT_TAINTS = ("node.kubernetes.io/", "karpenter.sh/disrupted", "karpenter.sh/unregistered",
                    "node.cloudprovider.kubernetes.io/")
# A probe's section (checks/probe_output.split_sections) -> the fake tool key that printed it (sim tool_output keys).
SECTION_TOOLS = {"smi-q": "nvidia-smi q", "nvlink": "nvidia-smi nvlink", "topo": "nvidia-smi topo", "dmesg": "dmesg",
                 "fi_info": "fi_info"}
_PERF = re.compile(r"\b(\w+_perf)\b")
NO_OUTPUT = "no recorded output"      # a placement probe (`true`): nothing to replay, nothing lost


@dataclass
class Built:
    """The scenario mapping, the output files it names (path relative to the scenario file -> text) and the gaps."""

    scenario: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    gaps: list[str] = field(default_factory=list)


def _items(recording: Recording, path: str) -> list[dict[str, Any]] | None:
    """The items of the first recorded unfiltered list of `path` (the cluster as the run found it, before its own
    NodePools and nodes; a list by label or field selector shows only part of it); None when never listed."""
    for c in recording.calls:
        query = c.get("query") or {}
        if (c.get("verb") == "GET" and c.get("path") == path and isinstance(c.get("result"), dict)
                and "items" in c["result"] and not query.get("label_selector") and not query.get("labelSelector")
                and not query.get("field_selector") and not query.get("fieldSelector")):
            return list(c["result"]["items"])
    return None


def _taint(t: dict[str, Any]) -> dict[str, Any]:
    return {k: t[k] for k in ("key", "value", "effect") if t.get(k) is not None}


def _own_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items()
            if "/" not in k or not k.split("/", 1)[0].endswith(SIM_SET_LABEL_DOMAINS)}


def _node_group(node: dict[str, Any]) -> dict[str, Any]:
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    labels = dict(meta.get("labels") or {})
    group: dict[str, Any] = {"instance_type": labels.get("node.kubernetes.io/instance-type", "unknown"), "count": 1,
                             "names": [meta.get("name")]}
    optional = {"zone": labels.get("topology.kubernetes.io/zone"), "nodepool": labels.get("karpenter.sh/nodepool"),
                "capacity_type": labels.get("karpenter.sh/capacity-type"),
                "driver_version": labels.get("nvidia.com/cuda.driver-version.full"),
                "cuda_version": labels.get("nvidia.com/cuda.runtime-version.full")}
    group.update({k: v for k, v in optional.items() if v})
    if "bottlerocket" in str((node.get("status") or {}).get("nodeInfo", {}).get("osImage", "")).lower():
        group["os"] = "bottlerocket"
    own = _own_labels(labels)
    if own:
        group["labels"] = own
    taints = [_taint(t) for t in spec.get("taints") or [] if not str(t.get("key", "")).startswith(TRANSIENT_TAINTS)]
    if taints:
        group["taints"] = taints
    return group


def _nodepool(item: dict[str, Any]) -> dict[str, Any]:
    spec = item.get("spec") or {}
    template = spec.get("template") or {}
    tspec = template.get("spec") or {}
    out: dict[str, Any] = {"name": item["metadata"]["name"], "nodeclass": (tspec.get("nodeClassRef") or {}).get("name",
                                                                                                              "default")}
    requirements = []
    for r in tspec.get("requirements") or []:
        if r.get("key") == "node.kubernetes.io/instance-type" and r.get("operator") == "In":
            out["instance_types"] = list(r.get("values") or [])
        elif r.get("key") == "karpenter.sh/capacity-type" and r.get("operator") == "In":
            out["capacity_types"] = list(r.get("values") or [])
        else:
            requirements.append({k: r[k] for k in ("key", "operator", "values") if k in r})
    if requirements:
        out["requirements"] = requirements
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        out["labels"] = dict(labels)
    for key, name in (("taints", "taints"), ("startupTaints", "startup_taints")):
        if tspec.get(key):
            out[name] = [_taint(t) for t in tspec[key]]
    if spec.get("limits"):
        out["limits"] = {k: str(v) for k, v in spec["limits"].items()}
    disruption = spec.get("disruption") or {}
    if disruption:
        out["disruption"] = {k: v for k, v in (("consolidation_policy", disruption.get("consolidationPolicy")),
                                               ("consolidate_after", disruption.get("consolidateAfter")),
                                               ("budgets", disruption.get("budgets"))) if v is not None}
    if spec.get("weight") is not None:
        out["weight"] = int(spec["weight"])
    if tspec.get("expireAfter"):
        out["expire_after"] = str(tspec["expireAfter"])
    return out


def _operators(recording: Recording, gaps: list[str]) -> dict[str, Any]:
    """The device plugins and operators the recorded DaemonSet list and CRD reads show."""
    out: dict[str, Any] = {}
    daemonsets = _items(recording, "/apis/apps/v1/daemonsets")
    if daemonsets is None:
        gaps.append("operators: the recording lists no DaemonSets; the scenario keeps the default plugins")
    else:
        names = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in daemonsets}
        plugin = [k for k in names if "nvidia-device-plugin" in k[1]]
        if not plugin:
            out["nvidia_device_plugin"] = "none"
        elif plugin[0][0] == "gpu-operator":
            out["nvidia_device_plugin"] = "gpu-operator"
        elif plugin[0][1] == "nvidia-device-plugin-daemonset":       # the static manifest's name (upstream README)
            out["nvidia_device_plugin"] = "static"
        else:
            out["nvidia_device_plugin"] = "helm"                      # the chart's <release>-nvidia-device-plugin
        out["gpu_feature_discovery"] = any("gpu-feature-discovery" in k[1] for k in names)
        efa = [d for k, d in names.items() if "efa-k8s-device-plugin" in k[1]]
        if efa:
            tolerations = efa[0]["spec"]["template"]["spec"].get("tolerations") or []
            out["efa_device_plugin"] = {"installed": True, "tolerates_gpu_taint": any(
                t.get("key") == GPU_RESOURCE or (t.get("operator") == "Exists" and not t.get("key"))
                for t in tolerations)}
        else:
            out["efa_device_plugin"] = {"installed": False}
    policies = _items(recording, "/apis/nvidia.com/v1/clusterpolicies")
    if policies:
        state = str((policies[0].get("status") or {}).get("state", "ready"))
        out["gpu_operator"] = {"installed": True, "state": state if state in ("ready", "notReady") else "ignored"}
    crd = [c for c in recording.calls if c.get("verb") == "GET" and str(c.get("path", "")).endswith(
        "/customresourcedefinitions/mpijobs.kubeflow.org")]
    if crd:
        out["mpi_operator"] = "result" in crd[-1]
    else:
        gaps.append("operators: the recording does not show whether the MPI operator is installed; the scenario "
                    "keeps it installed")
    runtime = _runtime(recording)
    if runtime is None:
        gaps.append("operators: the recording holds no GPU-isolation probe that shows how the NVIDIA runtime hands GPUs "
                    "to containers; the scenario keeps the upstream defaults (envvar, accepted from unprivileged "
                    "pods), which leak GPUs to pods that did not ask for them")
    else:
        out["nvidia_runtime"] = runtime
    return out


def _runtime(recording: Recording) -> dict[str, Any] | None:
    """The NVIDIA runtime's hand-over as the recorded GPU-isolation probes show it: a pod without a GPU request in the
    CUDA image (NVIDIA_VISIBLE_DEVICES=all) that saw no GPU means the runtime ignored the variable (the hardened
    settings); one that saw a GPU means it honoured it (the upstream defaults). None: no such probe recorded."""
    seen: list[bool] = []
    for rel in (recording.index.get("nodes") or {}).values():
        for probe in read_gz(recording.root / rel).get("probes") or []:
            command = " ".join(str(a) for a in probe.get("command") or [])
            limits = (probe.get("resources") or {}).get("limits") or {}
            text = recording.output(probe.get("output"))
            if ISOLATION_SCRIPT in command and GPU_RESOURCE not in limits and isinstance(text, str) and text:
                listing = read_listing(text)
                if listing.env not in (None, "<unset>", "void", "none", ""):
                    seen.append(bool(listing.gpus or listing.gpu_devices))
    if not seen:
        return None
    if any(seen):
        return {"device_list_strategy": "envvar", "accept_envvar_when_unprivileged": True}
    return {"device_list_strategy": "volume-mounts", "accept_envvar_when_unprivileged": False}


def _probe_outputs(recording: Recording, probe: dict[str, Any]) -> tuple[dict[str, tuple[str, int]], str | None]:
    """The tool key -> (recorded output, exit code) a probe pod's log holds; or why none could be taken."""
    text = recording.output(probe.get("output"))
    if not isinstance(text, str) or not text:
        return {}, NO_OUTPUT
    command = " ".join(str(a) for a in probe.get("command") or [])
    rc = probe.get("exit_code")
    if TABLE_MARK in command:
        # the GPU-visibility probe (gather/gpu_visibility.SMI_SCRIPT): the query's exit code is the pod's; the table's own
        # is not in the log
        query, table = split_output(text)
        return {"nvidia-smi query": (query + "\n", int(rc or 0)), "nvidia-smi": (table + "\n", 0)}, \
            None if not rc else "the nvidia-smi table's own exit code is not in the log: it replays with 0"
    if ISOLATION_SCRIPT in command:
        return {}, ("a GPU-isolation probe: read for how the NVIDIA runtime hands over GPUs (operators.nvidia_runtime); "
                    "its nvidia-smi -L is what that pod saw, not what the node's other pods see")
    sections = split_sections(text)
    if not sections:
        for whole in ("dcgmi diag", "vectorAdd"):
            if whole in command:
                return {whole: (text, int(rc or 0))}, None
        if "mpirun" in command or _PERF.search(command) or "[1,0]<stdout>" in text:
            return {}, ("nccl-tests name each rank's host (the recorded pod); a replayed pod has another name, and "
                        "the NCCL checks rightly refuse ranks on a host that is not the job's: not replayed")
        return {}, "its command prints no output the fakes replay"
    out: dict[str, tuple[str, int]] = {}
    for name, (body, code) in sections.items():
        tool = SECTION_TOOLS.get(name)
        if tool is None and name == "cuda" and "dcgmproftester12" in command:
            tool = "dcgmproftester12"
        if tool is not None:
            # the splitter drops the newline that ends the section's output before its `### rc=` line
            out[tool] = (body + "\n" if body else body, code)
    return out, None if out else "none of its sections is a tool the fakes replay"


def build(recording: Recording, outputs_dir: str) -> Built:
    """The scenario of `recording`; output files under `outputs_dir` (relative to the scenario file)."""
    index, gaps = recording.index, []
    nodes = _items(recording, "/api/v1/nodes")
    if not nodes:
        raise ValueError(f"{recording.root}: the recording holds no node list (GET /api/v1/nodes): nothing to build "
                         "a cluster from")
    labels = [dict(n["metadata"].get("labels") or {}) for n in nodes]
    region = next((lab["topology.kubernetes.io/region"] for lab in labels if "topology.kubernetes.io/region" in lab),
                  "us-west-2")
    zones = sorted({lab["topology.kubernetes.io/zone"] for lab in labels if "topology.kubernetes.io/zone" in lab})
    version = re.match(r"v?(\d+\.\d+)", str((index.get("server") or {}).get("gitVersion", "")))
    cluster: dict[str, Any] = {"region": region, **({"zones": zones} if zones else {}),
                               **({"kubernetes_version": version.group(1)} if version else {})}
    pools = _items(recording, "/apis/karpenter.sh/v1/nodepools")
    if pools and any(((p.get("spec") or {}).get("template") or {}).get("spec", {}).get("nodeClassRef", {}).get("group")
                     == "eks.amazonaws.com" for p in pools):
        cluster["auto_mode"] = True
    scenario: dict[str, Any] = {
        "description": f"Replayed from run {index.get('run_id')} recorded {(index.get('recorded') or {}).get('started')}"
                       f" ({'simulated scenario ' + str(index['scenario']) if index.get('simulated') else 'a cluster'})",
        "cluster": cluster, "nodes": [_node_group(n) for n in nodes]}
    if pools is not None:
        scenario["nodepools"] = [_nodepool(p) for p in pools]
        scenario["nodeclasses"] = [{"name": n} for n in sorted({p["nodeclass"] for p in scenario["nodepools"]})]
    else:
        gaps.append("nodepools: the recording lists no NodePools; the scenario has none")
    scenario["operators"] = _operators(recording, gaps)
    files: dict[str, str] = {}
    by_name = {g["names"][0]: g for g in scenario["nodes"]}
    for node, rel in sorted((index.get("nodes") or {}).items()):
        for probe in read_gz(recording.root / rel).get("probes") or []:
            taken, why = _probe_outputs(recording, probe)
            if why is not None and why != NO_OUTPUT:
                gaps.append(f"{node}: probe {probe.get('pod')} ({probe.get('image')}): {why}")
            group = by_name.get(node)
            for tool, (text, code) in taken.items():
                if group is None:
                    gaps.append(f"{node}: not in the recorded node list; its {tool} output is left out")
                    continue
                own = group.setdefault("node_outputs", {}).setdefault(node, {"tool_output": {}, "exit_codes": {}})
                if tool in own["tool_output"]:
                    gaps.append(f"{node}: {tool} printed by several probes; the first ({own['tool_output'][tool]}) "
                                f"is replayed")
                    continue
                path = f"{outputs_dir}/{node}/{tool.replace(' ', '_')}.txt"
                files[path], own["tool_output"][tool] = text, path
                if code:
                    own["exit_codes"][tool] = code
    overlays = (index.get("profile") or {}).get("overlays") or []
    profile: dict[str, Any] = {}
    for _, overlay in overlays:
        profile = _merge(profile, overlay)
    if profile:
        scenario["profile"] = profile
    if (index.get("options") or {}).get("profile"):
        gaps.append(f"profile: the run's own --gpucluster-profile ({index['options']['profile']}) is not in the "
                    "recording: pass it again when running the scenario")
    if any("dmesg" in (g.get("node_outputs") or {}).get(n, {}).get("tool_output", {})
           for g in scenario["nodes"] for n in g["names"]):
        gaps.append("dmesg: its timestamps are seconds since the recorded node booted; a simulated node's uptime is "
                    "this machine's, so an Xid's age differs from the recorded one")
    gaps.append("aws: the recorded AWS answers are not simulated (aws.enabled false): the aws checks skip")
    return Built(scenario, files, gaps)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out
