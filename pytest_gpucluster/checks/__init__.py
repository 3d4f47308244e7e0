"""Pure judges: parsed facts + the profile in, a Verdict out. No I/O, no pytest, no kubernetes, no boto3.

One module per area (device_plugins, gpu_visibility, taints, efa, karpenter, nccl, aws). Suites gather the facts,
call the judge and hand its Verdict to `pytest_gpucluster.suite.enforce`.
"""
from __future__ import annotations

from .verdict import Criterion, Status, Verdict

__all__ = ["Criterion", "Status", "Verdict"]
