"""suites/test_karpenter.py on a cluster without Karpenter (no karpenter.sh CRDs): every check skips with one reason."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

launcher = pytest.importorskip("pytest_gpucluster.sim.launcher", reason="simulated cluster not available")

SUITE = Path(__file__).resolve().parents[2] / "suites" / "test_karpenter.py"
CRDS = "customresourcedefinitions.apiextensions.k8s.io"


def _without_karpenter(store: Any) -> None:
    for name in ("nodepools.karpenter.sh", "nodeclaims.karpenter.sh", "ec2nodeclasses.karpenter.k8s.aws"):
        store.delete(CRDS, None, name)


@pytest.mark.sim_scenario("healthy", setup=_without_karpenter)
def test_without_karpenter_every_check_skips_with_the_reason(pytester: pytest.Pytester, plugin_args: list[str],
                                                             sim: Any) -> None:
    result = pytester.runpytest_subprocess(str(SUITE), f"--kubeconfig={sim.kubeconfig_path}", "--gpucluster-costly",
                                           "-v", "-rs", "-p", "no:cacheprovider",
                                           "--gpucluster-no-report", *plugin_args)
    text = result.stdout.str()
    outcomes = re.findall(r"::(test_\w+)\[([^\]]+)\] (PASSED|FAILED|SKIPPED|ERROR)", text)
    assert len(outcomes) == 5 and {(i, o) for _, i, o in outcomes} == {("no-gpu-nodepool", "SKIPPED")}, text
    reasons = set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d*:? ?(.*)", text))
    assert reasons == {"Karpenter is not installed (no karpenter.sh/v1 NodePool API)"}, text
    assert "Traceback" not in text
