"""Which check area (a column of the node-by-check grid) a test belongs to: one table, keyed on module and test name."""
from __future__ import annotations

from fnmatch import fnmatchcase

OTHER = "other"
CLUSTER = "(cluster-wide)"      # the grid's row for checks that name no node (NodePools, AWS account, ...)

# (test module file name, test function name pattern, area). First match wins; the areas' order is the grid's
# column order. A test matched by no row goes to the "other" column.
AREA_TABLE: tuple[tuple[str, str, str], ...] = (
    ("test_device_plugins.py", "*", "device plugin"),
    ("test_gpu_visibility.py", "test_pod_with*", "isolation"),
    ("test_gpu_visibility.py", "test_pod_without*", "isolation"),
    ("test_gpu_visibility.py", "*", "visibility"),
    ("test_taints.py", "*", "taints"),
    ("test_efa.py", "*", "EFA"),
    ("test_nccl.py", "*_on_one_node*", "NCCL single"),
    ("test_nccl.py", "*_across_nodes*", "NCCL multi"),
    ("test_nccl.py", "*", "NCCL multi"),
    ("test_node_health.py", "*", "node health"),
    ("test_aws.py", "*", "AWS"),
    ("test_karpenter.py", "*", "Karpenter"),
)
# areas whose tests are parametrized over something other than a node (a NodePool): the grid's cluster-wide row
CLUSTER_AREAS = frozenset({"Karpenter"})
AREAS: tuple[str, ...] = tuple(dict.fromkeys(area for _, _, area in AREA_TABLE)) + (OTHER,)
HEALTH_MODULE = "test_node_health.py"


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """`suites/test_taints.py::test_x[ip-1/p5]` -> ("test_taints.py", "test_x")."""
    path, _, rest = nodeid.partition("::")
    function = rest.split("::")[-1].split("[", 1)[0]
    return path.rsplit("/", 1)[-1], function


def area_of(nodeid: str) -> str:
    module, function = split_nodeid(nodeid)
    for mod, pattern, area in AREA_TABLE:
        if module == mod and fnmatchcase(function, pattern):
            return area
    return OTHER


def check_name(nodeid: str) -> str:
    """The test without its parameters (`module::function`): checks of one name across nodes."""
    return nodeid.split("[", 1)[0]


def nodes_of(nodeid: str, node: str | None, nodes: list[str]) -> list[str]:
    """The nodes a check speaks about ([] for a cluster-wide check)."""
    if not node or area_of(nodeid) in CLUSTER_AREAS:
        return []
    return list(nodes) or node.split("+")
