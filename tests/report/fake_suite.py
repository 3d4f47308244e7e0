"""A small fake acceptance suite using every evidence method, with planted secrets; shared by the report tests."""

FAKE_SUITE = '''
import pytest
from pytest_gpucluster.report import plots

NVSMI = """| NVIDIA-SMI 580.105.08   Driver Version: 580.105.08   CUDA Version: 13.0 |"""
KUBECONFIG = """users:
- name: admin
  user:
    token: sk-live-abcdefghijklmnop
    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ==
"""

def test_gpus_visible(evidence):
    evidence.attach("nvidia-smi", NVSMI, kind="nvidia-smi")
    evidence.fact("gpus_seen", 8)
    evidence.versions(driver="580.105.08", cuda="13.0")
    evidence.measure("gpus", 8, "count", threshold=8, op="==", source="profile p5.48xlarge gpus")

def test_nccl_busbw(evidence):
    points = [(1 << 20, 40.0), (1 << 26, 250.0), (1 << 30, 180.0)]
    evidence.plot("busbw", plots.busbw_svg(points, floor=300, ceiling=400))
    evidence.attach("kubeconfig used", KUBECONFIG)
    evidence.attach("env", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    evidence.events([{"type": "Warning", "reason": "FailedScheduling", "message": "0/3 nodes are available",
                      "involvedObject": {"kind": "Pod", "name": "nccl-launcher"}, "count": 2}])
    evidence.node_conditions("ip-10-0-3-17", [{"type": "Ready", "status": "True", "reason": "KubeletReady"}])
    m = evidence.measure("busbw", 180.0, "GB/s", threshold=300, source="profile p5.48xlarge nccl.min_busbw")
    assert m.passed, f"bus bandwidth {m.value} GB/s below floor {m.threshold}"

@pytest.mark.skip(reason="no EFA nodes in this cluster")
def test_efa(evidence):
    pass
'''
