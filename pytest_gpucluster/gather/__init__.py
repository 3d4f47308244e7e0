"""What each area runs on the cluster, one module per area named as its suite (suites/test_<area>.py) and its judge
(checks/<area>.py): the probe pods' images, commands and shell scripts, the specs that place them, the markers their
output is read back by, and the workloads an area drives (the NCCL MPIJob rounds, the Karpenter launch it watches).
A cluster owner reads here exactly what runs on their nodes; the manifests those specs fill are in fixtures/. An area
that only reads the API (device plugins: kube/plugins.py; AWS: aws/gather.py) has no module here.

gpu_visibility.py imports neither `kubernetes` nor `pytest` (the GPU-visibility judge reads its markers); the others
build on kube/ and are imported by suites only."""
