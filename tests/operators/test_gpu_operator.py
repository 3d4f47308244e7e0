"""The GPU Operator check in both directions: a ready operator passes, a ClusterPolicy not ready fails."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.suite_runs import run_suites

SCENARIO = """\
description: healthy, with the NVIDIA GPU Operator instead of the nvdp Helm chart
extends: healthy
operators:
  nvidia_device_plugin: gpu-operator
  gpu_operator: {{installed: true, state: {state}}}
"""


@pytest.mark.parametrize("state, outcome", [("ready", "passed"), ("notReady", "failed")])
def test_gpu_operator_check(tmp_path: Path, state: str, outcome: str) -> None:
    scenario = tmp_path / f"gpu-operator-{state}.yaml"
    scenario.write_text(SCENARIO.format(state=state))
    run = run_suites(str(scenario), tmp_path / "out", "suites/test_device_plugins.py",
                     extra=("-k", "gpu_operator", "--gpucluster-timeout=20"))
    cases = [c for c in run.cases if c.function == "test_gpu_operator_ready_on"]
    assert len(cases) == 2, f"expected one GPU Operator check per p5 node, got {cases}\n{run.stdout[-2000:]}"
    assert {c.outcome for c in cases} == {outcome}, [(c.name, c.outcome, c.message[:200]) for c in cases]
    if outcome == "failed":
        assert all("ClusterPolicy cluster-policy status.state='notReady'" in c.message for c in cases)
        assert all("kubectl -n gpu-operator get pods" in c.message for c in cases)
