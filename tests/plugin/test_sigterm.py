"""SIGTERM (a CI timeout, a CronJob deadline) runs the same teardown as the end of a run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_gpucluster.sim.launcher", reason="simulated cluster not available yet")

ROOT = Path(__file__).resolve().parents[2]

SLOW = """
import time

def test_slow(cluster, gpucluster_session):
    cluster.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "gc-left-behind", "labels": {"app.kubernetes.io/managed-by": "pytest-gpucluster",
                                             "gpucluster.io/run": gpucluster_session.run_id}}},
        gpucluster_session.namespace)
    print("READY", gpucluster_session.namespace, flush=True)
    time.sleep(120)
"""


def test_sigterm_interrupts_and_tears_down(tmp_path: Path, plugin_args: list[str]) -> None:
    (tmp_path / "test_slow.py").write_text(SLOW)
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPUCLUSTER_RETRY_NO_WAIT="1")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *plugin_args, "-p", "no:cacheprovider", "-s",
                             "--sim", "test_slow.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if "READY" in line or time.monotonic() > deadline:
            break
    assert any("READY" in line for line in lines), "".join(lines)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(lines) + rest
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "received signal 15 (SIGTERM): tearing down" in output
    assert "gpucluster: teardown clean: nothing labelled gpucluster.io/run=" in output, output
