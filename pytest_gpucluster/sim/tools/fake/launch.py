"""Open MPI's launch through ssh, before the fake mpirun (fake/mpirun.py) maps ranks: a hostfile host that does not
resolve yet fails the launch as Open MPI 4 does (the MPI operator's AtStartup launcher race, kubeflow/mpi-operator
issue 386).

Text: a real nccl-tests MPIJob launcher log, awslabs/awsome-distributed-ai issue #868 (aws-samples nccl-tests.yaml
on EKS; also Azure/aks-rdma-infiniband issue #30): OpenSSH's `ssh: Could not resolve hostname <h>: Name or service
not known` per unresolved host, then ORTE's "unable to reliably start one or more daemons" help text; mpirun exits 1.
"""
from __future__ import annotations

import sys

from . import ctx as simctx

ORTE_FAILED = """--------------------------------------------------------------------------
ORTE was unable to reliably start one or more daemons.
This usually is caused by:

* not finding the required libraries and/or binaries on
  one or more nodes. Please check your PATH and LD_LIBRARY_PATH
  settings, or configure OMPI with --enable-orterun-prefix-by-default

* lack of authority to execute on one or more specified nodes.
  Please verify your allocation and authorities.

* the inability to write startup files into /tmp (--tmpdir/orte_tmpdir_base).
  Please check with your sys admin to determine the correct location to use.

*  compilation of the orted with dynamic libraries when static are required
  (e.g., on Cray). Please check your configure cmd line and consider using
  one of the contrib/platform definitions for your system type.

* an inability to create a connection back to mpirun due to a
  lack of common network interfaces and/or no route found between
  them. Please check network connectivity (including firewalls
  and network routing requirements).
--------------------------------------------------------------------------"""


def mpirun(argv: list[str]) -> int:
    ctx = simctx.load()
    recorded = simctx.replay(ctx, "mpirun")       # the launcher's recorded log: the whole job as it ran
    if recorded is not None:
        return recorded
    unresolved = ctx.get("unresolved_hosts") or []
    if unresolved:
        for host in unresolved:
            print(f"ssh: Could not resolve hostname {host}: Name or service not known", file=sys.stderr)
        print(ORTE_FAILED, file=sys.stderr)
        return 1
    from .mpirun import main
    return main(argv)
