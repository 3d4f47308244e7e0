"""Fake GPU/EFA/NCCL/MPI command-line tools run inside simulated pods (stdlib only, fast start)."""
