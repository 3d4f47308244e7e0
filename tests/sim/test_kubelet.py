"""The simulated kubelet: pods to Succeeded/Failed with logs, deadlines, deletion, image pulls, devices, MPI."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from pytest_gpucluster.sim.controllers.base import parse_rfc3339
from pytest_gpucluster.sim.kubelet import Kubelet
from pytest_gpucluster.sim.scenario import Scenario, load_scenario
from pytest_gpucluster.sim.seed import seed_store
from pytest_gpucluster.sim.store import Store

CUDA = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
NCCL = "public.ecr.aws/hpc-cloud/nccl-tests:latest"
PYTORCH = "nvcr.io/nvidia/pytorch:25.01-py3"


class World:
    """A seeded store plus a running kubelet; pods are bound by hand (no scheduler)."""

    def __init__(self, scenario: str | Scenario, workdir: Path) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.store = Store()
        seed_store(self.store, self.scenario)
        self.kubelet = Kubelet(self.store, self.scenario, workdir)
        self.nodes = self.scenario.expand_nodes()

    def gpu_node(self, i: int = 0) -> str:
        return self.scenario.gpu_nodes()[i].name

    def cpu_node(self) -> str:
        return next(n.name for n in self.nodes if not n.instance.is_gpu)

    def pod(self, name: str, command: list[str] | None, *, node: str | None = None, gpus: int = 0, efa: int = 0,
            image: str = CUDA, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
            env: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
        container: dict[str, Any] = {"name": "main", "image": image}
        if command is not None:
            container["command"] = command
        limits = {k: str(v) for k, v in (("nvidia.com/gpu", gpus), ("vpc.amazonaws.com/efa", efa)) if v}
        if limits:
            container["resources"] = {"limits": limits, "requests": dict(limits)}
        if env:
            container["env"] = env
        body = {"metadata": {"name": name, "namespace": "default", "labels": labels or {},
                             "annotations": annotations or {}},
                "spec": {"nodeName": node or self.gpu_node(), "restartPolicy": "Never",
                         "containers": [container], **spec}}
        return self.store.create("pods", body)

    async def wait_pod(self, name: str, predicate: Callable[[dict[str, Any]], bool],
                       timeout: float = 10.0) -> dict[str, Any]:
        """Watch the pod until `predicate` holds (TimeoutError with its last status otherwise)."""
        last: dict[str, Any] = {}
        watch = self.store.watch("pods", "default", field_selector=f"metadata.name={name}")
        try:
            async with asyncio.timeout(timeout):
                async for _, obj in watch:
                    last = obj
                    if predicate(obj):
                        return obj
        except TimeoutError:
            raise AssertionError(f"pod {name} never matched; last status: {last.get('status')}") from None
        finally:
            watch.close()
        raise AssertionError(f"watch on {name} ended")

    async def wait_gone(self, name: str, timeout: float = 10.0) -> None:
        watch = self.store.watch("pods", "default", field_selector=f"metadata.name={name}")
        try:
            async with asyncio.timeout(timeout):
                async for etype, _ in watch:
                    if etype == "DELETED":
                        return
        finally:
            watch.close()

    def log(self, name: str, container: str = "main") -> str:
        path = self.kubelet.log_path("default", name, container)
        return path.read_text() if path.exists() else ""

    def events(self, name: str) -> list[tuple[str, str]]:
        items, _ = self.store.list("events", "default", field_selector=f"involvedObject.name={name}")
        return [(e["reason"], e["message"]) for e in items]


def phase(p: str) -> Callable[[dict[str, Any]], bool]:
    return lambda pod: (pod.get("status") or {}).get("phase") == p


def run_world(scenario: str | Scenario, workdir: Path, body: Callable[[World], Awaitable[None]]) -> None:
    """Run `body` with a live kubelet; the kubelet's own errors fail the test."""
    async def main() -> None:
        world = World(scenario, workdir)
        task = asyncio.create_task(world.kubelet.run())
        try:
            await body(world)
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
    asyncio.run(main())


# ---- tests ----------------------------------------------------------------------------------
def test_pod_succeeds_with_logs_events_and_status(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.pod("hello", ["sh", "-c", "echo hello from $HOSTNAME; nvidia-smi -L"], gpus=2)
        pod = await w.wait_pod("hello", phase("Succeeded"))
        status = pod["status"]
        node = w.scenario.node(w.gpu_node())
        assert status["hostIP"] == node.private_ip and status["podIP"].startswith("10.0.")
        term = status["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 0 and term["reason"] == "Completed" and term["finishedAt"]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "PodCompleted"
        assert all(c.get("lastTransitionTime") for c in status["conditions"])
        log = w.log("hello")
        assert "hello from hello" in log
        assert log.count("GPU ") == 2 and "NVIDIA H100 80GB HBM3" in log
        reasons = [r for r, _ in w.events("hello")]
        assert reasons[:1] == ["Pulling"] and {"Pulled", "Created", "Started"} <= set(reasons)
        pulled = dict(w.events("hello"))["Pulled"]
        assert pulled.startswith(f'Successfully pulled image "{CUDA}" in ') and "Image size: " in pulled
    run_world("healthy", tmp_path, body)


def test_pod_fails_with_its_exit_code(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.pod("boom", ["sh", "-c", "echo about to fail >&2; exit 3"], node=w.cpu_node())
        pod = await w.wait_pod("boom", phase("Failed"))
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (3, "Error")
        assert "about to fail" in w.log("boom")
    run_world("healthy", tmp_path, body)


def test_active_deadline_fails_the_pod(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.pod("slow", ["sleep", "30"], node=w.cpu_node(), activeDeadlineSeconds=1)
        pod = await w.wait_pod("slow", phase("Failed"), timeout=6)
        assert pod["status"]["reason"] == "DeadlineExceeded"
        assert ("DeadlineExceeded", "Pod was active on the node longer than the specified deadline") in w.events("slow")
    run_world("healthy", tmp_path, body)


def test_deletion_kills_the_process_and_removes_the_pod(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.pod("sleeper", ["sh", "-c", "echo started; sleep 30"], node=w.cpu_node())
        await w.wait_pod("sleeper", phase("Running"))
        proc = w.kubelet.runs[next(iter(w.kubelet.runs))].containers[0].proc
        assert proc is not None
        w.store.delete("pods", "default", "sleeper")
        await w.wait_gone("sleeper", timeout=8)
        assert proc.returncode is not None
        assert ("Killing", "Stopping container main") in w.events("sleeper")
    run_world("healthy", tmp_path, body)


def test_unpullable_image_reports_err_image_pull(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        image = "example.com/team/does-not-exist:1.0"
        w.pod("nopull", ["true"], node=w.cpu_node(), image=image)
        pod = await w.wait_pod("nopull", lambda p: any(
            (c["state"].get("waiting") or {}).get("reason") == "ErrImagePull"
            for c in (p.get("status") or {}).get("containerStatuses") or []))
        waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
        assert image in waiting["message"] and pod["status"]["phase"] == "Pending"
    run_world("healthy", tmp_path, body)


def test_missing_executable_is_a_start_error(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.pod("noexe", ["no-such-binary", "--flag"], node=w.cpu_node())
        pod = await w.wait_pod("noexe", phase("Failed"))
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["reason"] == "StartError" and term["exitCode"] == 128
        assert 'exec: "no-such-binary": executable file not found in $PATH' in term["message"]
    run_world("healthy", tmp_path, body)


def test_env_is_scrubbed_and_gpus_are_not_leaked(tmp_path: Path, monkeypatch: Any) -> None:
    """healthy is hardened: the CUDA image's NVIDIA_VISIBLE_DEVICES=all stays in the env, but the runtime ignores it
    in an unprivileged pod, so nothing is injected (no nvidia-smi); a GPU pod gets the volume-mounts marker."""
    monkeypatch.setenv("GPUCLUSTER_TEST_SECRET", "leaked")
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")

    async def body(w: World) -> None:
        w.pod("cpu", ["sh", "-c", 'echo "nvd=[$NVIDIA_VISIBLE_DEVICES]"; env; nvidia-smi; echo "rc=$?"'],
              node=w.gpu_node(), env=[{"name": "FROM_POD", "value": "yes"},
                                      {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}])
        w.pod("gpu", ["sh", "-c", 'echo "nvd=[$NVIDIA_VISIBLE_DEVICES]"'], gpus=3)
        await w.wait_pod("cpu", phase("Succeeded"))
        await w.wait_pod("gpu", phase("Succeeded"))
        log = w.log("cpu")
        assert "nvd=[all]" in log and "GPUCLUSTER_TEST_SECRET" not in log
        assert "FROM_POD=yes" in log and f"MY_NODE={w.gpu_node()}" in log
        assert "sh: 1: nvidia-smi: not found" in log and "rc=127" in log
        assert "nvd=[/var/run/nvidia-container-devices]" in w.log("gpu")
    run_world("healthy", tmp_path, body)


DEVICES = 'for d in /dev/nvidia*; do [ -e "$d" ] && echo "${d##*/}"; done; true'


def test_device_nodes_are_what_the_runtime_injects(tmp_path: Path) -> None:
    """/dev/nvidia<minor> for each exposed GPU (the node's numbering) plus the control nodes; nothing in a pod without
    a GPU on a hardened node; an image asking only for `compute` gets the device nodes but no nvidia-smi."""
    async def body(w: World) -> None:
        w.pod("two", ["sh", "-c", DEVICES], gpus=2)
        w.pod("none", ["sh", "-c", DEVICES])
        w.pod("compute", ["sh", "-c", f"{DEVICES}; nvidia-smi -L; echo rc=$?"], gpus=1, node=w.gpu_node(1),
              env=[{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute"}])
        for name in ("two", "none", "compute"):
            await w.wait_pod(name, phase("Succeeded"))
        assert sorted(w.log("two").split()) == ["nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidia0",
                                                "nvidia1", "nvidiactl"]
        assert w.log("none").strip() == ""
        assert "nvidia0" in w.log("compute") and "rc=127" in w.log("compute")
    run_world("healthy", tmp_path, body)


def test_the_runtime_refuses_an_image_whose_cuda_the_driver_cannot_run(tmp_path: Path) -> None:
    """On driver 560.35.05 a CUDA 13.0 image given a GPU is refused at start (StartError, nvidia-container-cli's
    requirement error); NVIDIA_DISABLE_REQUIRE=true, an image whose branches list 560, or a pod the runtime leaves
    alone (no GPU on a hardened node) start."""
    async def body(w: World) -> None:
        cuda13 = "nvidia/cuda:13.0.2-runtime-ubuntu22.04"
        w.pod("refused", ["nvidia-smi", "-L"], gpus=1, image=cuda13)
        w.pod("disabled", ["nvidia-smi", "-L"], gpus=1, image=cuda13,
              env=[{"name": "NVIDIA_DISABLE_REQUIRE", "value": "true"}])
        w.pod("nccl", ["sh", "-c", "nvidia-smi -L"], gpus=1, image=NCCL)
        w.pod("nogpu", ["sh", "-c", "echo ok"], image=cuda13)
        pod = await w.wait_pod("refused", phase("Failed"))
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["reason"] == "StartError" and term["exitCode"] == 128
        assert ("error running prestart hook #0: exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\n"
                "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=13.0, please update your "
                "driver to a newer version, or use an earlier cuda container: unknown") in term["message"]
        for name in ("disabled", "nccl", "nogpu"):
            await w.wait_pod(name, phase("Succeeded"))
        assert "GPU 0:" in w.log("disabled") and "GPU 0:" in w.log("nccl")
    run_world("al2023-nvidia-560", tmp_path, body)


def test_daemon_pods_run_until_deleted_or_crashloop(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.pod("plugin", None, image="nvcr.io/nvidia/k8s-device-plugin:v0.17.1")
        w.pod("broken", None, image="nvcr.io/nvidia/k8s-device-plugin:v0.17.1",
              annotations={"sim.gpucluster.io/behaviour": "crashloop"})
        w.pod("unready", None, image="nvcr.io/nvidia/k8s-device-plugin:v0.17.1",
              annotations={"sim.gpucluster.io/behaviour": "never-ready"})
        pod = await w.wait_pod("plugin", lambda p: any(c["type"] == "Ready" and c["status"] == "True"
                                                       for c in (p.get("status") or {}).get("conditions") or []))
        assert pod["status"]["phase"] == "Running"
        crash = await w.wait_pod("broken", lambda p: any(
            (c["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff"
            for c in (p.get("status") or {}).get("containerStatuses") or []))
        assert crash["status"]["containerStatuses"][0]["restartCount"] >= 1
        unready = await w.wait_pod("unready", phase("Running"))
        assert not unready["status"]["containerStatuses"][0]["ready"]
    run_world("healthy", tmp_path, body)


def test_torch_and_infiniband_reflect_the_allocation(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.pod("torch", ["python3", "-c", "import torch; print(torch.cuda.device_count(), torch.cuda.get_device_name(0))"],
              gpus=4, efa=2, image=PYTORCH)
        w.pod("ib", ["sh", "-c", "ls /dev/infiniband; fi_info -p efa -t FI_EP_RDM | grep -c domain; ulimit -l"],
              gpus=1, efa=2, image=NCCL)
        await w.wait_pod("torch", phase("Succeeded"))
        await w.wait_pod("ib", phase("Succeeded"))
        assert w.log("torch").strip() == "4 NVIDIA H100 80GB HBM3"
        lines = w.log("ib").split()
        assert lines == ["uverbs0", "uverbs1", "4", "unlimited"]     # 2 devices x (efa-direct, efa) rdm
    big_disk = tmp_path / "big-disk.yaml"       # NGC PyTorch (~20 GB) needs more than the default 20 GiB root volume
    big_disk.write_text("extends: healthy\ndescription: 100 GiB root volumes\nkubelet: {root_volume_gib: 100}\n")
    run_world(str(big_disk), tmp_path, body)


def test_an_image_larger_than_the_root_volume_does_not_pull(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.pod("torch", ["python3", "-c", "print(1)"], gpus=1, image=PYTORCH)
        pod = await w.wait_pod("torch", lambda p: "no space left on device" in str(p["status"]))
        assert "failed to pull and unpack image" in str(pod["status"])
    run_world("healthy", tmp_path, body)


def test_memlock_limited_fault_shows_in_ulimit(tmp_path: Path) -> None:
    scenario_file = tmp_path / "memlock.yaml"
    scenario_file.write_text("extends: healthy\ndescription: memlock\nfaults:\n  - {kind: memlock-limited, limit_kb: 64}\n")

    async def body(w: World) -> None:
        w.pod("limits", ["sh", "-c", "ulimit -l; ulimit -n >/dev/null && echo nofile-ok"])
        await w.wait_pod("limits", phase("Succeeded"))
        assert w.log("limits").split() == ["64", "nofile-ok"]
    run_world(load_scenario(scenario_file), tmp_path, body)


def test_gpu_missing_fault_hides_one_gpu_on_its_node(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        faulty = w.scenario.fault_nodes(w.scenario.faults_for("gpu-missing")[0])[0]
        w.pod("smi", ["nvidia-smi", "-L"], node=faulty, gpus=8)
        await w.wait_pod("smi", phase("Succeeded"))
        assert w.log("smi").count("GPU ") == 7
    run_world("gpu-missing", tmp_path, body)


def test_mpi_launcher_runs_nccl_tests_across_the_workers(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        job = {"training.kubeflow.org/job-name": "nccl"}
        for i in range(2):
            w.pod(f"nccl-worker-{i}", ["/usr/sbin/sshd", "-De"], node=w.gpu_node(i), gpus=8, efa=32, image=NCCL,
                  labels={**job, "training.kubeflow.org/job-role": "worker"})
            await w.wait_pod(f"nccl-worker-{i}", phase("Running"))
        w.pod("nccl-launcher", ["mpirun", "--allow-run-as-root", "-np", "16", "-x", "NCCL_DEBUG=INFO",
                                "/opt/nccl-tests/build/all_reduce_perf", "-b", "8", "-e", "1G", "-f", "2", "-g", "1"],
              node=w.cpu_node(), image=NCCL, labels={**job, "training.kubeflow.org/job-role": "launcher"})
        await w.wait_pod("nccl-launcher", phase("Succeeded"))
        log = w.log("nccl-launcher")
        assert "[1,0]<stdout>:#  Rank 15 Group  0 Pid" in log and "on nccl-worker-1 device  7" in log
        assert "NET/OFI Selected provider is efa, fabric is efa (found 32 nics)" in log
        assert "via NET/Libfabric/0/GDRDMA" in log
        assert "# Out of bounds values : 0 OK" in log
    run_world("healthy", tmp_path, body)


def test_plugin_restarted_once_at_boot_reports_one_old_restart_and_is_ready(tmp_path: Path) -> None:
    """Scenario plugin-restarted-once: restartCount 1, lastState terminated 2 h ago, Running and Ready now."""
    async def body(w: World) -> None:
        w.pod("plugin", None, image="nvcr.io/nvidia/k8s-device-plugin:v0.17.1",
              annotations={"sim.gpucluster.io/behaviour": "restarted-once:120"})
        pod = await w.wait_pod("plugin", lambda p: any(c["type"] == "Ready" and c["status"] == "True"
                                                       for c in (p.get("status") or {}).get("conditions") or []))
        status = pod["status"]["containerStatuses"][0]
        finished = parse_rfc3339(status["lastState"]["terminated"]["finishedAt"])
        assert status["restartCount"] == 1 and finished is not None and time.time() - finished > 7000
    run_world("healthy", tmp_path, body)


def test_nccl_tests_without_efa_print_aws_ofi_nccl_startup_warnings(tmp_path: Path) -> None:
    """Issue 14: in a pod with no EFA device, aws-ofi-nccl's real start-up WARN lines, then NCCL carries on inside
    the node (P2P over NVLink); with the node's EFA devices, none."""
    perf = ["/opt/nccl-tests/build/all_reduce_perf", "-b", "8", "-e", "1M", "-f", "2", "-g", "8"]
    warns = ["NCCL WARN NET/OFI Unable to find a protocol that worked.  Failing initialization.",
             "NCCL WARN NET/OFI aws-ofi-nccl initialization failed", "NCCL WARN NET/OFI Initializing plugin failed"]

    async def body(w: World) -> None:
        debug = [{"name": "NCCL_DEBUG", "value": "INFO"}]
        w.pod("no-efa", perf, gpus=8, image=NCCL, env=debug)
        w.pod("efa", perf, node=w.gpu_node(1), gpus=8, efa=32, image=NCCL, env=debug)
        await w.wait_pod("no-efa", phase("Succeeded"))
        await w.wait_pod("efa", phase("Succeeded"))
        lonely, wired = w.log("no-efa"), w.log("efa")
        assert all(warn in lonely for warn in warns) and "via P2P/CUMEM" in lonely and "# Out of bounds values : 0 OK" \
            in lonely, lonely
        assert "NCCL WARN" not in wired and "Selected provider is efa" in wired
    run_world("healthy", tmp_path, body)


def test_launcher_before_its_workers_have_ips_fails_to_resolve_them(tmp_path: Path) -> None:
    """Issue 14, the AtStartup launcher race: a worker hostname resolves only once the worker pod has an IP (headless
    Service, publishNotReadyAddresses); before, Open MPI's ssh launch fails as in a real launcher log."""
    async def body(w: World) -> None:
        job = {"training.kubeflow.org/job-name": "nccl"}
        w.store.create("configmaps", {"metadata": {"name": "nccl-config", "namespace": "default"}, "data": {
            "hostfile": "nccl-worker-0.nccl.default.svc slots=8\nnccl-worker-1.nccl.default.svc slots=8\n"}})
        w.pod("nccl-worker-0", ["/usr/sbin/sshd", "-De"], node=w.gpu_node(0), gpus=8, efa=32, image=NCCL,
              labels={**job, "training.kubeflow.org/job-role": "worker"})
        await w.wait_pod("nccl-worker-0", phase("Running"))
        body_ = {"metadata": {"name": "nccl-worker-1", "namespace": "default",
                              "labels": {**job, "training.kubeflow.org/job-role": "worker"}},
                 "spec": {"containers": [{"name": "main", "image": NCCL, "command": ["/usr/sbin/sshd", "-De"]}]}}
        w.store.create("pods", body_)                                    # not scheduled yet: no IP, no DNS record
        w.pod("nccl-launcher", ["mpirun", "--allow-run-as-root", "-np", "16", "/opt/nccl-tests/build/all_reduce_perf"],
              node=w.cpu_node(), image=NCCL, labels={**job, "training.kubeflow.org/job-role": "launcher"})
        pod = await w.wait_pod("nccl-launcher", phase("Failed"))
        log = w.log("nccl-launcher")
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
        assert "ssh: Could not resolve hostname nccl-worker-1.nccl.default.svc: Name or service not known" in log
        assert "nccl-worker-0" not in log and "ORTE was unable to reliably start one or more daemons." in log
    run_world("healthy", tmp_path, body)


def test_a_scenario_can_declare_an_image_the_catalog_lacks(tmp_path: Path) -> None:
    scenario_file = tmp_path / "own.yaml"
    scenario_file.write_text("extends: healthy\ndescription: own image\nkubelet:\n  images:\n"
                             "    'registry.example.com/team/nccl:*': {/opt/efa/bin/fi_info: 'fake:fi_info'}\n")

    async def body(w: World) -> None:
        w.pod("own", ["sh", "-c", "/opt/efa/bin/fi_info -p efa; echo rc=$?; python3; echo rc=$?"], gpus=1, efa=1,
              image="registry.example.com/team/nccl:1")
        await w.wait_pod("own", phase("Succeeded"))
        log = w.log("own")
        assert "provider: efa" in log and "rc=0" in log and "python3: not found" in log and "rc=127" in log
    run_world(load_scenario(scenario_file), tmp_path, body)


def test_long_running_containers_do_not_starve_the_pods_they_wait_for(tmp_path: Path) -> None:
    """Issue 27: more MPI workers (sshd, running until their launcher ends) than the host's start slots must not keep
    the launcher in ContainerCreating. Every node's kubelet starts containers independently; the start slots only
    bound how many processes start at once on this machine."""
    scenario_file = tmp_path / "few-slots.yaml"
    scenario_file.write_text("extends: healthy\ndescription: two start slots\nkubelet:\n  max_starting_containers: 2\n")

    async def body(w: World) -> None:
        for i in range(3):
            w.pod(f"worker-{i}", ["/usr/sbin/sshd", "-De"], node=w.gpu_node(i % 2), image=NCCL)
        for i in range(3):
            await w.wait_pod(f"worker-{i}", phase("Running"))
        w.pod("launcher", ["sh", "-c", "echo launched"], node=w.cpu_node())
        await w.wait_pod("launcher", phase("Succeeded"))
        assert "launched" in w.log("launcher")
        assert all(w.kubelet.runs[uid].containers[0].proc is not None for uid in w.kubelet.runs
                   if w.kubelet.runs[uid].name.startswith("worker-"))
    run_world(load_scenario(scenario_file), tmp_path / "work", body)


def test_each_container_has_its_own_tmp(tmp_path: Path) -> None:
    """A container's /tmp is its own writable layer: two pods writing the same /tmp file never see each other's."""
    async def body(w: World) -> None:
        for name in ("one", "two"):
            w.pod(name, ["sh", "-c", f"echo {name} > /tmp/out; sleep 1; cat /tmp/out"], node=w.cpu_node())
        for name in ("one", "two"):
            await w.wait_pod(name, phase("Succeeded"))
            assert w.log(name).strip() == name
    run_world("healthy", tmp_path, body)
