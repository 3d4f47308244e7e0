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


# A fleet of 30 p5 nodes in modules named like the shipped suites (so the grid files their checks under their
# areas): ip-10-0-0-17's nvidia-smi shows 7 of 8 GPUs; every node ran single-node NCCL.
FLEET_NODES = '''
from dataclasses import dataclass

@dataclass(frozen=True)
class Node:
    name: str
    instance_type: str = "p5.48xlarge"
    zone: str = "us-west-2a"

NODES = [Node(f"ip-10-0-0-{i}") for i in range(30)]
BAD = "ip-10-0-0-17"
ids = lambda n: f"{n.name}/{n.instance_type}"
'''

FLEET_VISIBILITY = '''
import pytest
from fleet_nodes import BAD, NODES, ids

def smi(gpus):
    return "\\n".join(["| NVIDIA-SMI 580.105.08   Driver Version: 580.105.08   CUDA Version: 13.0 |"]
                     + [f"|   {i}  NVIDIA H100 80GB HBM3  On | 00000000:{0x53 + i:02X}:00.0 Off |" for i in range(gpus)])

@pytest.mark.parametrize("gpu_node", NODES, ids=ids)
def test_nvidia_smi_sees_every_gpu(gpu_node, evidence):
    gpus = 7 if gpu_node.name == BAD else 8
    evidence.attach(f"nvidia-smi on {gpu_node.name}", smi(gpus), kind="nvidia-smi")
    evidence.measure("GPUs seen by nvidia-smi", gpus, "GPUs", threshold=8, op="==", source="profile p5.48xlarge gpus")

@pytest.mark.parametrize("gpu_node", NODES, ids=ids)
def test_gpu_node_is_listed(gpu_node, evidence):
    evidence.fact("node", gpu_node.name)
'''

FLEET_NCCL = '''
import pytest
from fleet_nodes import NODES, ids

LOG = """# nccl-tests version 2.13.9
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
     1048576        262144     float     sum      -1    50.00   20.97   39.32      0    50.00   20.97   39.32      0
    67108864      16777216     float     sum      -1   400.0  167.77  314.57      0   400.0  167.77  314.57      0
  1073741824     268435456     float     sum      -1  5000.0  214.75  402.65      0  5000.0  214.75  402.65      0
# Out of bounds values : 0 OK
"""

@pytest.mark.parametrize("nccl_node", NODES, ids=ids)
def test_bus_bandwidth_on_one_node_meets_floor(nccl_node, evidence):
    evidence.fact("where", ids(nccl_node))
    evidence.fact("ranks", "1 node(s) x 8 GPUs")
    evidence.fact("physical_ceiling", "450 GB/s: NVLink per GPU")
    evidence.attach(f"all_reduce_perf log ({ids(nccl_node)})", LOG, kind="nccl")
    evidence.headline("nccl", where=ids(nccl_node), instance_type=nccl_node.instance_type, nodes=1, gpus_per_node=8,
                      busbw=[(1048576, 39.32), (67108864, 314.57), (1073741824, 402.65)], ceiling_gbs=450.0)
    evidence.measure("out-of-place busbw at 1G", 402.65, "GB/s", threshold=380, source="profile")
'''
