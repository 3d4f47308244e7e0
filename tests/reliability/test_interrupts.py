"""Nothing lost, nothing left: SIGINT/SIGTERM/SIGKILL at seeded random points, and two runs on one cluster."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_gpucluster.kube.probes import DEADLINE_SLACK_S
from pytest_gpucluster.sim.launcher import SimCluster

from .conftest import Arrival, labelled_objects, sim_target, summary_of
from .suite_runs import ROOT, env_for_child, plugin_args, start_suites, stop_process

SEED = int(os.environ.get("GPUCLUSTER_INTERRUPT_SEED", "1009"))


@dataclass(frozen=True)
class Phase:
    """A point of a run to interrupt: which tests run, which object's arrival says the phase started."""

    name: str
    paths: tuple[str, ...]
    extra: tuple[str, ...]
    key: str                 # store key of the object that marks the phase
    max_delay_s: float       # the signal lands uniformly in [0, max_delay_s) after that object appeared


# Images under .../slow-pull/ take 5 s to pull on the healthy scenario, so each phase lasts well beyond the
# latest signal even on a loaded machine (a phase that ends before the signal would prove nothing).
SLOW_CUDA = "--gpucluster-cuda-image=registry.example/slow-pull/cuda:13.0.2"
SLOW_NCCL = "--gpucluster-nccl-image=registry.example/slow-pull/nccl-tests:1"
PHASES = {
    "fleet-probes": Phase("fleet-probes", ("suites/test_gpu_visibility.py",), (SLOW_CUDA,), "pods", 1.0),
    "karpenter": Phase("karpenter", ("suites/test_karpenter.py",),
                       ("-k", "provisioning_latency", "--gpucluster-costly", SLOW_CUDA), "nodepools.karpenter.sh",
                       2.5),
    "mpijob": Phase("mpijob", ("suites/test_nccl.py",), ("-k", "across_nodes", SLOW_NCCL), "mpijobs.kubeflow.org",
                    1.0),
}


def _interrupt(sim: SimCluster, tmp_path: Path, phase: Phase, signum: int) -> tuple[int, str, str]:
    """Start the phase's tests against sim, signal pytest at a seeded random point of the phase, wait for it."""
    delay = random.Random(f"{SEED}/{phase.name}/{signum}").uniform(0, phase.max_delay_s)
    arrival = Arrival(sim, phase.key)
    proc = start_suites(sim_target(sim), tmp_path / "out", *phase.paths, extra=phase.extra)
    try:
        obj = arrival.wait(timeout_s=60)
    except AssertionError:
        proc.kill()
        raise AssertionError(f"phase {phase.name} never started; pytest output:\n"
                             f"{(tmp_path / 'out' / 'output.txt').read_text()[-3000:]}") from None
    run_id = obj["metadata"]["labels"]["gpucluster.io/run"]
    time.sleep(delay)             # the seeded random point inside the phase
    live = [o for o in labelled_objects(sim, run_id) if o.startswith(f"{phase.key}/")]
    still_running = proc.poll() is None
    proc.send_signal(signum)
    code = stop_process(proc, timeout_s=90)
    output = (tmp_path / "out" / "output.txt").read_text()
    assert still_running and live, (
        f"the signal missed the {phase.name} phase ({delay:.2f} s after its {phase.key} appeared: pytest "
        f"{'running' if still_running else 'already finished'}, {phase.key} of the run: {live or 'gone'}); "
        f"lower max_delay_s for this machine\n{output[-2000:]}")
    return code, run_id, output


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_interrupt_leaves_nothing_and_writes_partial_report(live_sim: SimCluster, tmp_path: Path, phase: str,
                                                            signame: str) -> None:
    code, run_id, output = _interrupt(live_sim, tmp_path, PHASES[phase], getattr(signal, signame))
    where = f"{signame} during {phase} (seed {SEED}); pytest exit code {code}"
    assert code == pytest.ExitCode.INTERRUPTED, f"{where}: expected exit code 2 (interrupted)\n{output[-3000:]}"
    assert "Traceback" not in output.split("KeyboardInterrupt")[0], f"{where}: traceback before the interrupt\n{output}"
    left = labelled_objects(live_sim, run_id)
    assert not left, f"{where}: objects of run {run_id} left on the cluster: {left}\n{output[-3000:]}"
    assert "gpucluster: teardown clean" in output, f"{where}: teardown did not report clean\n{output[-3000:]}"
    summary = summary_of(tmp_path / "out" / "reports")
    assert summary.get("interrupted") is True, f"{where}: summary.json does not say interrupted: {summary}"
    html = next((tmp_path / "out" / "reports").glob("*/report.html")).read_text()
    assert "PARTIAL (interrupted)" in html, f"{where}: report.html does not say PARTIAL (interrupted)"


SLEEPER = """
from pytest_gpucluster.kube.probes import ProbeSpec

def test_sleeps(run_probe):
    result = run_probe(ProbeSpec("sleeper", ["sh", "-c", "echo started; {wait}; echo slept"]))
    assert result.exit_code == 0 and "slept" in result.logs, (result.phase, result.reason, result.logs)
"""


def _start_sleeper(sim: SimCluster, tmp_path: Path, wait: str, timeout_s: int) -> subprocess.Popen[str]:
    """A one-test run whose probe pod runs the shell `wait` before it ends: a long-lived pod, through the plugin."""
    (tmp_path / "test_sleeper.py").write_text(SLEEPER.format(wait=wait))
    log = (tmp_path / "sleeper-output.txt").open("w")
    return subprocess.Popen([sys.executable, "-m", "pytest", str(tmp_path / "test_sleeper.py"), *plugin_args(), "-q",
                             "--gpucluster-no-report", "-p", "no:cacheprovider", f"--gpucluster-timeout={timeout_s}",
                             *sim_target(sim)], cwd=tmp_path, env=env_for_child(), stdout=log,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _running_pod(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") == "Running"


def _cleanup(sim: SimCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_gpucluster.cli", "cleanup", "--kubeconfig",
                           str(sim.kubeconfig_path), *args], cwd=ROOT, env=env_for_child(), capture_output=True,
                          text=True, timeout=60, check=False)


def test_sigkill_pods_expire_and_cleanup_removes_the_rest(live_sim: SimCluster, tmp_path: Path) -> None:
    timeout_s = 2
    deadline_s = timeout_s + DEADLINE_SLACK_S       # the pod outlives the client's timeout by a fixed slack
    running = Arrival(live_sim, "pods", lambda etype, obj: _running_pod(obj))
    proc = _start_sleeper(live_sim, tmp_path, wait="sleep 600", timeout_s=timeout_s)
    pod = running.wait(timeout_s=60)
    proc.send_signal(signal.SIGKILL)           # no teardown at all
    proc.wait(timeout=10)
    run_id = pod["metadata"]["labels"]["gpucluster.io/run"]
    name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    assert pod["spec"].get("activeDeadlineSeconds") == deadline_s, (
        f"probe pod {ns}/{name} must carry activeDeadlineSeconds={deadline_s} (--gpucluster-timeout "
        f"{timeout_s} + {DEADLINE_SLACK_S} s slack), "
        f"has {pod['spec'].get('activeDeadlineSeconds')}")
    expired = Arrival(live_sim, "pods", lambda etype, obj: obj["metadata"]["name"] == name
                      and obj.get("status", {}).get("phase") == "Failed")
    obj = expired.wait(timeout_s=deadline_s + 15)
    assert obj["status"].get("reason") == "DeadlineExceeded", f"pod {name} ended as {obj['status']}"
    left = labelled_objects(live_sim, run_id)
    assert f"namespaces/-/{ns}" in left and f"pods/{ns}/{name}" in left, f"the killed run left {left}"
    dry = _cleanup(live_sim, "--older-than", "0s", "--dry-run")
    assert dry.returncode == 0 and f"would delete namespaces/{ns} (run {run_id})" in dry.stdout, dry.stdout + dry.stderr
    assert labelled_objects(live_sim, run_id) == left, "--dry-run deleted something"
    done = _cleanup(live_sim, "--older-than", "0s")
    assert done.returncode == 0 and f"deleted namespaces/{ns} (run {run_id})" in done.stdout, done.stdout + done.stderr
    assert not labelled_objects(live_sim, run_id), f"after `gpucluster cleanup`: {labelled_objects(live_sim, run_id)}"


def test_two_runs_at_once_do_not_touch_each_others_objects(live_sim: SimCluster, tmp_path: Path) -> None:
    """Run A holds a pod until run B (the taints suite) has started, probed and torn down. A's pod and namespace
    must survive B's teardown (A passes only if its pod ran to the end), and both end clean. The simulated
    kubelet runs pod processes on this machine, so A's pod waits for a file the test creates after B ended. The gate
    lies outside /tmp: a container's /tmp is its own (the simulated kubelet maps it into the pod's scratch)."""
    gates = Path(tempfile.mkdtemp(prefix="gpucluster-gate-", dir=Path.home()))
    gate = gates / "b-finished"
    running = Arrival(live_sim, "pods", lambda etype, obj: _running_pod(obj))
    first = _start_sleeper(live_sim, tmp_path, wait=f"while [ ! -e {gate} ]; do sleep 0.1; done", timeout_s=120)
    pod_a = running.wait(timeout_s=60)
    run_a = pod_a["metadata"]["labels"]["gpucluster.io/run"]
    try:
        second = start_suites(sim_target(live_sim), tmp_path / "b", "suites/test_taints.py",
                              extra=("--gpucluster-partial",))   # one module: intended (else INCOMPLETE, exit 6)
        code_b = stop_process(second, timeout_s=180)
        a_alive_after_b = first.poll() is None
        a_objects_after_b = labelled_objects(live_sim, run_a)
    finally:
        gate.touch()
    code_a = stop_process(first, timeout_s=120)
    shutil.rmtree(gates, ignore_errors=True)
    out_b = (tmp_path / "b" / "output.txt").read_text()
    out_a = (tmp_path / "sleeper-output.txt").read_text()
    assert code_b == 0 and "gpucluster: teardown clean" in out_b, f"run B (taints) exit {code_b}:\n{out_b[-3000:]}"
    assert a_alive_after_b, "run A ended before run B finished: its pod did not wait for the gate file"
    assert f"pods/{pod_a['metadata']['namespace']}/{pod_a['metadata']['name']}" in a_objects_after_b, (
        f"run B's teardown removed run A's pod: A's objects after B ended: {a_objects_after_b}")
    assert code_a == 0 and "gpucluster: teardown clean" in out_a, f"run A exit {code_a}:\n{out_a[-3000:]}"
    assert not labelled_objects(live_sim), f"left behind: {labelled_objects(live_sim)}"
