"""The simulated kubelet: runs bound pods' containers as local processes and reports pod and node status."""
from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from .controllers.base import rfc3339, set_condition
from .errors import Forbidden, NotFound
from .hardware import UnknownInstanceType
from .kubelet_pods import Container, PodRun, digest, pod_ip, requests_of, status_writer
from .scenario import NodeSpec, Scenario
from .store import fast_copy
from .tools import cuda_require, gated, images, install_tools, sandbox
from .tools.context import build_context, node_context, write_context
from .tools.fake.fault import FIRST_GPU_NODE, FaultKind

GPU, EFA = "nvidia.com/gpu", "vpc.amazonaws.com/efa"

FAULTS = (
    FaultKind("node-not-ready", {}, FIRST_GPU_NODE, "the node's Ready condition is False (KubeletNotReady)"),
    FaultKind("memlock-limited", {"limit_kb": "64"}, FIRST_GPU_NODE,
              "`ulimit -l` in the node's pods prints that limit, and it is applied"),
)

BEHAVIOUR = "sim.gpucluster.io/behaviour"
MPI_ROLE_LABELS = ("training.kubeflow.org/job-role", "mpi-job-role")
MPI_JOB_LABELS = ("training.kubeflow.org/job-name", "mpi-job-name")
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
STARTUP_WINDOW_S = 1.0     # a container process counts as starting (holds a start slot) for at most this long


class Kubelet:
    """Every node's kubelet in one: watches pods bound to nodes and runs them; keeps node status."""

    name = "kubelet"

    def __init__(self, store: Any, scenario: Scenario | None, workdir: Path) -> None:
        self.store = store
        self.scenario = scenario
        self.workdir = Path(workdir)
        self.tools_bin = install_tools(self.workdir / "bin")
        self.gated_bins = gated.install(self.workdir / "bin-gated")     # dmesg (privileged host-log reader)
        self.image_roots = images.ImageRoots(self.workdir / "images", self.tools_bin)
        self.kubelet_spec = scenario.kubelet if scenario is not None else None
        self.extra_images = images.scenario_images(self.kubelet_spec.images if self.kubelet_spec else {})
        self.runs: dict[str, PodRun] = {}
        self.allocations: dict[str, dict[str, tuple[list[int], list[str]]]] = {}   # node -> uid -> alloc
        self._node_specs: dict[str, NodeSpec | None] = {}
        self._queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] | None = None
        self._error: BaseException | None = None
        self._slots: asyncio.Semaphore | None = None

    # ---- plumbing --------------------------------------------------------------------------
    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """Where `pods/log` reads a container's output (design.md: `<workdir>/logs/<ns>_<pod>/<c>.log`)."""
        return self.workdir / "logs" / f"{namespace}_{pod}" / f"{container}.log"

    def _on_change(self, event_type: str, key: str, obj: dict[str, Any]) -> None:
        if key in ("pods", "nodes") and self._queue is not None:
            self._queue.put_nowait((event_type, key, obj))   # stored objects are replaced, never edited

    async def run(self) -> None:
        self._queue = asyncio.Queue()
        # A host-protection bound, not a kubelet's: every node's kubelet starts its pods' containers independently
        # (no cluster-wide limit exists; maxPods is the scheduler's, per node), but here every node shares this
        # machine. A container process holds a slot only until it exits or has run for STARTUP_WINDOW_S: a burst of
        # fleet pods cannot start thousands of interpreters at once, and long-running containers (MPI workers' sshd,
        # daemons) never hold slots that the pods they wait for (their launcher) need.
        self._slots = asyncio.Semaphore(self.kubelet_spec.max_starting_containers if self.kubelet_spec else 64)
        unsubscribe = self.store.subscribe(self._on_change, copy=False)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            for pod in self.store.list("pods")[0]:
                self._dispatch("ADDED", pod)
            while True:
                event_type, key, obj = await self._queue.get()
                if self._error is not None:
                    raise self._error
                if key == "pods":
                    self._dispatch(event_type, obj)
                elif event_type == "ADDED":
                    self._node_specs.pop(obj["metadata"]["name"], None)
        finally:
            unsubscribe()
            heartbeat.cancel()
            tasks = [heartbeat]
            for run in list(self.runs.values()):
                self._kill_now(run)
                if run.task is not None:
                    run.task.cancel()
                    tasks.append(run.task)
            await asyncio.gather(*tasks, return_exceptions=True)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        if self._error is None:
            self._error = task.exception()
            if self._queue is not None:
                self._queue.put_nowait(("ERROR", "", {}))

    def _kill_now(self, run: PodRun) -> None:
        for c in run.init_containers + run.containers:
            if c.proc is not None:
                sandbox.signal_group(c.proc, signal.SIGKILL)

    # ---- pod events ------------------------------------------------------------------------
    def _dispatch(self, event_type: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid = meta.get("uid", "")
        run = self.runs.get(uid)
        if event_type == "DELETED":
            if run is not None:
                run.done = True
                self._kill_now(run)
                if run.task is not None:
                    run.task.cancel()
                self._forget(run)
            return
        node = spec.get("nodeName")
        if not node:
            return
        deleting = bool(meta.get("deletionTimestamp"))
        if run is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            if deleting:
                self._delete_pod(meta["namespace"], meta["name"])
                return
            self._start(pod)
        elif deleting and not run.terminate.is_set():
            run.terminate.set()

    def _start(self, pod: dict[str, Any]) -> None:
        pod = fast_copy(pod)   # the run keeps it: its own copy, not the store's object
        meta, spec = pod["metadata"], pod["spec"]
        node = spec["nodeName"]
        node_spec = self._node_spec(node)
        gpus, efa = self._allocate(node, meta["uid"], pod, node_spec)

        def containers(key: str) -> list[Container]:
            return [Container(c["name"], c.get("image", "")) for c in spec.get(key) or []]
        run = PodRun(meta["uid"], meta["namespace"], meta["name"], node, pod, containers("containers"),
                     containers("initContainers"), self.workdir / "pods" / f"{meta['namespace']}_{meta['name']}",
                     gpus, efa)
        self.runs[run.uid] = run
        run.task = asyncio.create_task(self._lifecycle(run, node_spec), name=f"kubelet:{run.namespace}/{run.name}")
        run.task.add_done_callback(self._task_done)

    def _forget(self, run: PodRun) -> None:
        self.runs.pop(run.uid, None)
        self.allocations.get(run.node, {}).pop(run.uid, None)
        # Removing a scratch dir (the EFA pods' 32 device files, the context, /tmp) on the loop thread blocked the API
        # for ~30 s when a 200-node run's teardown deleted its 2,200 pods at once. The dir is renamed first (a pod of
        # the same name may be created again at once and gets a fresh dir), then removed on a worker thread.
        try:
            gone = run.scratch.rename(run.scratch.with_name(f".gone-{run.uid}"))
        except OSError:
            return
        asyncio.get_running_loop().run_in_executor(None, sandbox.remove_scratch, gone)

    def _delete_pod(self, namespace: str, name: str) -> None:
        try:
            self.store.delete("pods", namespace, name, grace_seconds=0)
        except NotFound:
            pass

    # ---- nodes and devices -----------------------------------------------------------------
    def _node_spec(self, name: str) -> NodeSpec | None:
        if name in self._node_specs:
            return self._node_specs[name]
        spec: NodeSpec | None = None
        if self.scenario is not None:
            try:
                spec = self.scenario.node(name)
            except KeyError:
                spec = self.scenario.launched_node(name) or self._adopt(name)
        self._node_specs[name] = spec
        return spec

    def _adopt(self, name: str) -> NodeSpec | None:
        assert self.scenario is not None
        try:
            node = self.store.get("nodes", None, name)
        except NotFound:
            return None
        labels = node["metadata"].get("labels") or {}
        ip = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                   if a.get("type") == "InternalIP"), None)
        provider = (node.get("spec") or {}).get("providerID", "")
        try:
            return self.scenario.adopt_node(
                name, labels.get("node.kubernetes.io/instance-type", ""),
                labels.get("topology.kubernetes.io/zone", self.scenario.cluster.zones[0]), private_ip=ip,
                instance_id=provider.rsplit("/", 1)[-1] or None, nodepool=labels.get("karpenter.sh/nodepool"))
        except UnknownInstanceType:
            return None

    def _allocate(self, node: str, uid: str, pod: dict[str, Any],
                  spec: NodeSpec | None) -> tuple[list[int], list[str]]:
        """Lowest free GPU indices and EFA devices of the node, as the device plugins hand them out."""
        used = self.allocations.setdefault(node, {})
        taken_gpus = {i for g, _ in used.values() for i in g}
        taken_efa = {d for _, e in used.values() for d in e}
        hw = spec.hardware if spec is not None else None
        free_gpus = [g.index for g in hw.gpus if g.index not in taken_gpus] if hw else []
        free_efa = [d for d in hw.efa_devices if d not in taken_efa] if hw else []
        gpus = free_gpus[:requests_of(pod, GPU)]
        efa = free_efa[:requests_of(pod, EFA)]
        used[uid] = (gpus, efa)
        return gpus, efa

    def _faults(self, node: str, kind: str) -> list[Any]:
        if self.scenario is None:
            return []
        return [f for f in self.scenario.faults_on_node(node) if f.kind == kind]

    # ---- status and events -----------------------------------------------------------------
    def _event(self, run: PodRun, reason: str, message: str, type: str = "Normal") -> None:
        try:
            self.store.record_event(run.pod, reason, message, type=type, component="kubelet", host=run.node)
        except (Forbidden, NotFound):
            # The namespace is terminating or gone (e.g. "Killing" while `kubectl delete namespace` runs): the
            # apiserver refuses the Event and a real kubelet's recorder drops it without retrying
            # (client-go tools/record/event.go recordEvent: "Server rejected event (will not retry!)").
            return

    def _publish(self, run: PodRun) -> None:
        """Write phase, conditions, IPs and container statuses from the run's state."""
        if run.phase in ("Succeeded", "Failed"):
            # free the devices before the scheduler can see the pod terminal and bind the next one
            self.allocations.get(run.node, {}).pop(run.uid, None)
        host_ip = self._host_ip(run)
        ip = host_ip if (run.pod.get("spec") or {}).get("hostNetwork") else pod_ip(run.uid, host_ip)
        self.store.mutate("pods", run.namespace, run.name, status_writer(run, host_ip, ip, time.time()),
                          subresource="status")

    def _host_ip(self, run: PodRun) -> str:
        spec = self._node_spec(run.node)
        return spec.private_ip if spec is not None else "10.0.0.10"

    # ---- pod lifecycle ---------------------------------------------------------------------
    async def _lifecycle(self, run: PodRun, node_spec: NodeSpec | None) -> None:
        """Pull, start, wait; honour deletion and activeDeadlineSeconds; write the final status."""
        try:
            self._publish(run)
            spec = run.pod.get("spec") or {}
            deadline = spec.get("activeDeadlineSeconds")
            limit = self.kubelet_spec.hard_timeout_seconds if self.kubelet_spec else 600.0
            if deadline is not None:
                limit = min(limit, float(deadline))
            body = asyncio.create_task(self._execute(run, node_spec))
            # a pod deleted while this task is cancelled leaves body's NotFound unread: do not log it
            body.add_done_callback(lambda t: t.cancelled() or t.exception())
            stop = asyncio.create_task(run.terminate.wait())
            try:
                done, _ = await asyncio.wait({body, stop}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not body.done():
                    body.cancel()
            if body in done:
                body.result()
                return
            if stop in done:
                await self._terminate(run, spec)
                self.allocations.get(run.node, {}).pop(run.uid, None)
                self._delete_pod(run.namespace, run.name)
            else:
                await self._kill_all(run, grace=0.0)
                run.phase, run.reason, run.message = "Failed", "DeadlineExceeded", DEADLINE_MESSAGE
                self._publish(run)
                self._event(run, "DeadlineExceeded", DEADLINE_MESSAGE, "Warning")
            await asyncio.gather(body, return_exceptions=True)
        except NotFound:
            return            # the pod went away under us
        finally:
            self._kill_now(run)
            self.allocations.get(run.node, {}).pop(run.uid, None)

    async def _terminate(self, run: PodRun, spec: dict[str, Any]) -> None:
        grace = min(float(spec.get("terminationGracePeriodSeconds", 30)), 5.0)
        for c in run.containers:
            if "running" in c.state or c.proc is not None:
                self._event(run, "Killing", f"Stopping container {c.name}")
        await self._kill_all(run, grace=grace)

    async def _kill_all(self, run: PodRun, grace: float) -> None:
        now = rfc3339(time.time())
        for c in run.init_containers + run.containers:
            if c.proc is not None and c.proc.returncode is None:
                code = await sandbox.stop(c.proc, grace)
                started = (c.state.get("running") or {}).get("startedAt", now)
                c.state = {"terminated": {"exitCode": code, "reason": "Error", "startedAt": started,
                                          "finishedAt": now, "containerID": c.container_id}}
                c.ready = c.started = False

    async def _execute(self, run: PodRun, node_spec: NodeSpec | None) -> None:
        for c in run.init_containers + run.containers:
            await self._pull(run, c)
        self._prepare(run, node_spec)
        spec = run.pod.get("spec") or {}
        for c, cspec in zip(run.init_containers, spec.get("initContainers") or []):
            code = await self._run_once(run, c, cspec)
            if code != 0:
                run.phase, run.reason = "Failed", None
                self._publish(run)
                return
        self._publish(run)
        await asyncio.gather(*(self._run_container(run, c, cspec)
                               for c, cspec in zip(run.containers, spec.get("containers") or [])))
        codes = [c.state.get("terminated", {}).get("exitCode", 0) for c in run.containers]
        run.phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        self._publish(run)

    async def _pull(self, run: PodRun, c: Container) -> None:
        kspec = self.kubelet_spec
        seconds = kspec.pull_seconds(c.image) if kspec else 0.0
        free_gb = kspec.root_volume_gib * 2**30 / 1e9 - kspec.os_disk_gb if kspec else float("inf")
        too_big = images.lookup(c.image, self.extra_images).size_gb > free_gb
        if kspec is not None and (kspec.is_unpullable(c.image) or too_big):
            self._event(run, "Pulling", f'Pulling image "{c.image}"')
            await asyncio.sleep(seconds)
            detail = (f'rpc error: code = NotFound desc = failed to pull and unpack image "{c.image}": '
                      f'failed to resolve reference "{c.image}": {c.image}: not found')
            if too_big:     # containerd's words (aws/karpenter-provider-aws issue #3692)
                detail = (f'rpc error: code = Unknown desc = failed to pull and unpack image "{c.image}": failed to '
                          f'prepare extraction snapshot "extract-{digest(c.image, 9)}": failed to create prepare '
                          'snapshot dir: failed to create temp dir: mkdir /var/lib/containerd/io.containerd.'
                          'snapshotter.v1.overlayfs/snapshots/new-3844284403: no space left on device')
            c.state = {"waiting": {"reason": "ErrImagePull", "message": detail}}
            self._publish(run)
            self._event(run, "Failed", f'Failed to pull image "{c.image}": {detail}', "Warning")
            self._event(run, "Failed", "Error: ErrImagePull", "Warning")
            backoff = 1.0
            while True:
                await asyncio.sleep(backoff)
                c.state = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{c.image}"'}}
                self._publish(run)
                self._event(run, "BackOff", f'Back-off pulling image "{c.image}"')
                self._event(run, "Failed", "Error: ImagePullBackOff", "Warning")
                backoff = min(backoff * 2, 10.0)
        if seconds <= 0:
            self._event(run, "Pulled", f'Container image "{c.image}" already present on machine')
        else:
            self._event(run, "Pulling", f'Pulling image "{c.image}"')
            await asyncio.sleep(seconds)
            size = 100_000_000 + int(digest(c.image, 8), 16) % 4_000_000_000
            self._event(run, "Pulled", f'Successfully pulled image "{c.image}" in {seconds:.3g}s '
                                       f"({seconds:.3g}s including waiting). Image size: {size} bytes.")
        repo = c.image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in c.image.rsplit("/", 1)[-1] else c.image
        c.image_id = f"{repo}@sha256:{digest(c.image)}"

    def _prepare(self, run: PodRun, node_spec: NodeSpec | None) -> None:
        if self.scenario is None or node_spec is None:
            sandbox.prepare_scratch(run.scratch, run.efa)
            write_context(run.scratch, {"node": {"name": run.node, "hardware": {}},
                                        "allocated": {"gpus": [], "efa": []}, "faults": [], "workers": []})
            return
        workers = self._mpi_workers(run)
        run.exposed = self._exposed_gpus(run, node_spec)
        sandbox.prepare_scratch(run.scratch, run.efa, run.exposed)
        context = build_context(self.scenario, run.pod, node_spec, run.exposed, run.efa, workers)
        context["unresolved_hosts"] = self._unresolved_hosts(run)
        write_context(run.scratch, context)

    def _unresolved_hosts(self, run: PodRun) -> list[str]:
        """For an MPI launcher: the hostfile's hosts no DNS record answers for yet. The job's headless Service
        publishes not-ready addresses, so a worker's name resolves once its pod has an IP; before (not scheduled,
        image still pulling) ssh fails `Could not resolve hostname` - the launcher race of the AtStartup policy."""
        labels = run.pod["metadata"].get("labels") or {}
        job = next((labels[k] for k in MPI_JOB_LABELS if k in labels), None)
        if not job or next((labels[k] for k in MPI_ROLE_LABELS if k in labels), None) != "launcher":
            return []
        try:
            hostfile = (self.store.get("configmaps", run.namespace, f"{job}-config").get("data") or {}).get("hostfile")
        except NotFound:
            return []
        with_ip = {p["metadata"]["name"] for p in self._job_pods(run.namespace, job) if (p.get("status") or {}).get("podIP")}
        hosts = [line.split()[0] for line in (hostfile or "").splitlines() if line.strip()]
        return [h for h in hosts if h.split(".", 1)[0] not in with_ip]

    # ---- what the NVIDIA container runtime exposes -----------------------------------------------------------
    def _runtime(self) -> Any:
        return self.scenario.operators.nvidia_runtime if self.scenario is not None else None

    def _exposed_gpus(self, run: PodRun, node_spec: NodeSpec) -> list[int]:
        """The GPUs the runtime puts in the pod: those the device plugin gave; with none given, every GPU of the
        node when a container's NVIDIA_VISIBLE_DEVICES (from its image, e.g. `all` in every CUDA image) is honoured:
        the toolkit's default `accept-nvidia-visible-devices-envvar-when-unprivileged = true`, or a privileged
        container (NVIDIA/nvidia-container-toolkit internal/config/image: envvar devices are ignored for an
        unprivileged container only when that setting is false)."""
        if run.gpus or not node_spec.hardware.gpus:
            return list(run.gpus)
        runtime = self._runtime()
        for cspec in (run.pod.get("spec") or {}).get("containers") or []:
            privileged = bool((cspec.get("securityContext") or {}).get("privileged"))
            if not (privileged or (runtime is not None and runtime.accept_envvar_when_unprivileged)):
                continue
            value = self._env_value(cspec, "NVIDIA_VISIBLE_DEVICES")
            if value not in (None, "", "void", "none"):
                return [g.index for g in node_spec.hardware.gpus]
        return []

    def _env_value(self, cspec: dict[str, Any], name: str) -> str | None:
        ref = str(cspec.get("image", ""))
        value = images.lookup(ref, self.extra_images).env_for(ref).get(name)
        for item in cspec.get("env") or []:
            if item.get("name") == name and "value" in item:
                value = str(item.get("value") or "")
        return value

    def _check_requirements(self, run: PodRun, env: dict[str, str], node_spec: NodeSpec | None) -> None:
        """The NVIDIA runtime's prestart hook refuses a container it injects the driver into when the node's driver
        satisfies none of the image's NVIDIA_REQUIRE_CUDA (tools/cuda_require.py); the kubelet reports the hook's
        failure as runc prints it (MauriceNino/dashdot issue #1226: `error running prestart hook #0: exit status 1,
        stdout: , stderr: Auto-detected mode as 'legacy'` then nvidia-container-cli's line)."""
        if not run.exposed or node_spec is None:
            return
        hw = node_spec.hardware
        refused = cuda_require.refusal(env, hw.driver_version, hw.cuda_version)
        if refused:
            raise sandbox.StartError("error during container init: error running prestart hook #0: exit status 1, "
                                     f"stdout: , stderr: Auto-detected mode as 'legacy'\n{refused}")

    def _utility(self, cspec: dict[str, Any]) -> bool:
        """Whether the runtime injects the NVML tools (nvidia-smi): the `utility` driver capability, which an unset or
        empty NVIDIA_DRIVER_CAPABILITIES defaults to (NVIDIA/nvidia-container-toolkit@d34b3046
        cmd/nvidia-container-runtime/README.md: "empty or unset: use default driver capability: utility,compute").
        An image asking for `compute` only gets the device nodes and CUDA libraries, no nvidia-smi."""
        caps = {c.strip() for c in (self._env_value(cspec, "NVIDIA_DRIVER_CAPABILITIES") or "").split(",") if c.strip()}
        return not caps or bool(caps & {"utility", "all"})

    def _visible_devices_env(self, uuids: list[str]) -> str | None:
        """NVIDIA_VISIBLE_DEVICES as the device plugin sets it for the GPUs it gave (None: gave none). envvar: the
        UUIDs; volume-mounts: the mount root (NVIDIA/k8s-device-plugin internal/plugin/server.go
        deviceListAsVolumeMountsContainerPathRoot = "/var/run/nvidia-container-devices")."""
        if not uuids:
            return None
        runtime = self._runtime()
        if runtime is not None and runtime.device_list_strategy == "volume-mounts":
            return "/var/run/nvidia-container-devices"
        return ",".join(uuids)

    def _mpi_workers(self, run: PodRun) -> list[dict[str, Any]]:
        """For an MPI launcher pod: the worker pods of its job, with their nodes and allocations."""
        labels = run.pod["metadata"].get("labels") or {}
        role = next((labels[k] for k in MPI_ROLE_LABELS if k in labels), None)
        job = next((labels[k] for k in MPI_JOB_LABELS if k in labels), None)
        if role != "launcher" or not job or self.scenario is None:
            return []
        out = []
        pods = [p for p in self._job_pods(run.namespace, job)
                if any((p["metadata"].get("labels") or {}).get(k) == "worker" for k in MPI_ROLE_LABELS)]
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            node = str((pod.get("spec") or {}).get("nodeName") or "")
            spec = self._node_spec(node) if node else None
            if spec is None:
                continue
            gpus, efa = self.allocations.get(node, {}).get(pod["metadata"]["uid"], ([], []))
            worker = node_context(self.scenario, spec, gpus, efa)
            worker["host"] = pod["metadata"]["name"]
            ref = next((c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []), "")
            worker["gpu_code"] = images.lookup(ref, self.extra_images).gpu_code
            out.append(worker)
        return out

    def _job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The stored pods (read-only, not copied) of one MPI job: a hundred launchers of a 200-node run each copying
        every pod of the namespace made the loop quadratic."""
        return [p for p in self.store.iter_objects("pods") if p["metadata"].get("namespace") == namespace
                and any((p["metadata"].get("labels") or {}).get(k) == job for k in MPI_JOB_LABELS)]

    def _resolve(self, run: PodRun, value_from: dict[str, Any]) -> str | None:
        ref = value_from.get("fieldRef")
        if ref:
            path = str(ref.get("fieldPath", ""))
            if path.startswith("metadata.labels['") and path.endswith("']"):
                return (run.pod["metadata"].get("labels") or {}).get(path[len("metadata.labels['"):-2])
            host_ip = self._host_ip(run)
            fields = {"metadata.name": run.name, "metadata.namespace": run.namespace, "metadata.uid": run.uid,
                      "spec.nodeName": run.node, "status.hostIP": host_ip,
                      "status.podIP": pod_ip(run.uid, host_ip),
                      "spec.serviceAccountName": (run.pod.get("spec") or {}).get("serviceAccountName", "default")}
            return fields.get(path)
        ref = value_from.get("configMapKeyRef")
        if ref:
            try:
                cm = self.store.get("configmaps", run.namespace, ref.get("name", ""))
            except NotFound:
                return None
            return (cm.get("data") or {}).get(ref.get("key", ""))
        return None

    def _memlock(self, run: PodRun) -> str:
        for f in self._faults(run.node, "memlock-limited"):
            return str(int(f.params.get("limit_kb", 64)))
        return "unlimited"

    async def _run_once(self, run: PodRun, c: Container, cspec: dict[str, Any]) -> int:
        """Create, start and wait for one container process; its exit code (128 for StartError)."""
        node_spec = self._node_spec(run.node)
        uuids = []
        if node_spec is not None:
            by_index = {g.index: g.uuid for g in node_spec.hardware.gpus}
            uuids = [by_index[i] for i in run.gpus if i in by_index]
        image = images.lookup(c.image, self.extra_images)
        root = self.image_roots.get(image, driver=bool(run.exposed) and self._utility(cspec))
        env = sandbox.container_env(cspec, lambda vf: self._resolve(run, vf), scratch=run.scratch, image_root=root,
                                    image_env=image.env_for(c.image), image_path=image.path, hostname=run.name,
                                    visible_devices=self._visible_devices_env(uuids))
        env["PATH"] = gated.path_for(cspec, run.pod, self.gated_bins, env["PATH"])
        if image.gpu_code:                   # which GPUs the image's CUDA programs can run on (Image.sass/ptx)
            env[images.CODE_ENV] = image.gpu_code
        c.container_id = f"containerd://{digest(f'{run.uid}/{c.name}/{c.restarts}')}"
        started = rfc3339(time.time())
        try:
            self._check_requirements(run, env, node_spec)
            argv = sandbox.container_argv(cspec, env, image_root=root, scratch=run.scratch,
                                          memlock=self._memlock(run), entrypoint=image.entrypoint, cmd=image.cmd)
        except sandbox.StartError as exc:
            message = sandbox.start_error_message(str(exc))
            self._event(run, "Created", f"Created container: {c.name}")
            self._event(run, "Failed", f"Error: {message}", "Warning")
            c.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": message,
                                      "startedAt": "1970-01-01T00:00:00Z", "finishedAt": rfc3339(time.time()),
                                      "containerID": c.container_id}}
            self._publish(run)
            return 128
        assert self._slots is not None
        exited: asyncio.Future[int] | None = None
        try:
            async with self._slots:   # held while the process starts up, not for its whole life (see run())
                c.proc = await sandbox.spawn(argv, env, run.scratch, self.log_path(run.namespace, run.name, c.name))
                exited = asyncio.ensure_future(c.proc.wait())
                self._event(run, "Created", f"Created container: {c.name}")
                self._event(run, "Started", f"Started container {c.name}")
                c.state, c.started, c.ready = {"running": {"startedAt": started}}, True, True
                if c in run.containers:
                    run.phase = "Running"
                self._publish(run)
                await asyncio.wait({exited}, timeout=STARTUP_WINDOW_S)
            returncode = await exited
        finally:
            if exited is not None and not exited.done():
                exited.cancel()
        code = sandbox.exit_code(returncode)
        c.proc, c.ready, c.started = None, False, False
        c.state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                  "startedAt": started, "finishedAt": rfc3339(time.time()),
                                  "containerID": c.container_id}}
        self._publish(run)
        return code

    async def _run_container(self, run: PodRun, c: Container, cspec: dict[str, Any]) -> None:
        """A container with the pod's restartPolicy; containers that run no known program are daemons."""
        if not images.lookup(c.image, self.extra_images).runs_program(cspec):
            await self._daemon(run, c)
            return
        policy = (run.pod.get("spec") or {}).get("restartPolicy", "Always")
        backoff = 1.0
        while True:
            code = await self._run_once(run, c, cspec)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return
            await self._crash_backoff(run, c, backoff)
            backoff = min(backoff * 2, 10.0)

    async def _crash_backoff(self, run: PodRun, c: Container, seconds: float) -> None:
        c.last_state = {"terminated": dict(c.state.get("terminated") or {})}
        c.restarts += 1
        c.state = {"waiting": {"reason": "CrashLoopBackOff",
                               "message": f"back-off {int(seconds * 10)}s restarting failed container={c.name} "
                                          f"pod={run.name}_{run.namespace}({run.uid})"}}
        c.ready = False
        self._publish(run)
        self._event(run, "BackOff", f"Back-off restarting failed container {c.name} in pod "
                                    f"{run.name}_{run.namespace}({run.uid})", "Warning")
        await asyncio.sleep(seconds)

    async def _daemon(self, run: PodRun, c: Container) -> None:
        """Images whose entrypoint we cannot run (device plugins, operators): Running until deleted,
        or CrashLoopBackOff / Running-not-Ready per the `sim.gpucluster.io/behaviour` annotation."""
        behaviour = (run.pod["metadata"].get("annotations") or {}).get(BEHAVIOUR)
        c.container_id = f"containerd://{digest(f'{run.uid}/{c.name}')}"
        self._event(run, "Created", f"Created container: {c.name}")
        self._event(run, "Started", f"Started container {c.name}")
        started = rfc3339(time.time())
        if behaviour and behaviour.startswith("restarted-once:"):
            # restarted once at boot, long ago (e.g. the driver was not loaded yet), Running and Ready since
            boot = time.time() - float(behaviour.split(":", 1)[1]) * 60
            c.restarts, started = 1, rfc3339(boot + 12)
            c.last_state = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": rfc3339(boot),
                                           "finishedAt": rfc3339(boot + 2), "containerID": c.container_id}}
        c.state, c.started, c.ready = {"running": {"startedAt": started}}, True, behaviour != "never-ready"
        run.phase = "Running"
        self._publish(run)
        if behaviour != "crashloop":
            await asyncio.Event().wait()
        backoff = 1.0
        while True:
            await asyncio.sleep(0.2)
            c.state = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started,
                                      "finishedAt": rfc3339(time.time()), "containerID": c.container_id}}
            await self._crash_backoff(run, c, backoff)
            backoff = min(backoff * 2, 10.0)
            started = rfc3339(time.time())
            c.state, c.started = {"running": {"startedAt": started}}, True
            self._publish(run)

    # ---- node status -----------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        """Apply `node-not-ready` at once, then refresh the nodes' condition heartbeats periodically
        (nodeStatusReportFrequency; real heartbeats go to Leases, which the sim does not serve)."""
        interval = self.kubelet_spec.heartbeat_seconds if self.kubelet_spec else 300.0
        first = True
        while True:
            for node in self.store.list("nodes")[0]:
                if not first or self._faults(node["metadata"]["name"], "node-not-ready"):
                    self._node_status(node)
            first = False
            await asyncio.sleep(interval)

    def _node_status(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        if node["metadata"].get("deletionTimestamp"):
            return
        broken = bool(self._faults(name, "node-not-ready"))
        now = time.time()

        def write(obj: dict[str, Any]) -> None:
            status = obj.setdefault("status", {})
            conditions = status.setdefault("conditions", [])
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if broken:
                set_condition(conditions, "Ready", "False", "KubeletNotReady",
                              "PLEG is not healthy: pleg was last seen active 3m0s ago; threshold is 3m0s", now=now)
            if ready is not None or broken:
                for cond in conditions:
                    cond["lastHeartbeatTime"] = rfc3339(now)
        try:
            self.store.mutate("nodes", None, name, write, subresource="status")
        except NotFound:
            pass
