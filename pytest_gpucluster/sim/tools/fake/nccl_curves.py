"""Published all_reduce_perf runs the fake nccl-tests replays per instance type: (message size in bytes,
out-of-place time in us) as each run printed them, so every simulated curve is a real one.
Copies of the sources are in tests/data/nccl-tests (SOURCES.md names each file's origin)."""
from __future__ import annotations

# 1x p5.48xlarge (8 ranks), nccl-tests on AWS Batch: aws-samples/awsome-distributed-training
# micro-benchmarks/nccl-tests/aws-batch/README.md (tests/data/nccl-tests/allreduce-p5-awsbatch-mpirun-prefix.txt)
P5_1 = [
    (8, 12.9), (16, 12.88), (32, 22.25), (64, 14.48),
    (128, 15.47), (256, 15.72), (512, 16.19), (1024, 16.43),
    (2048, 16.62), (4096, 16.76), (8192, 16.85), (16384, 17.46),
    (32768, 18.78), (65536, 19.09), (131072, 19.37), (262144, 20.27),
    (524288, 21.17), (1048576, 28.56), (2097152, 43.45), (4194304, 55.44),
    (8388608, 84.29), (16777216, 124), (33554432, 198.6), (67108864, 326.6),
    (134217728, 592.8), (268435456, 1121.4), (536870912, 2165.3), (1073741824, 4253),
    (2147483648, 8463.7), (4294967296, 15791), (8589934592, 31289), (17179869184, 62239),
]

# 2x p5.48xlarge (16 ranks), Slurm: aws-samples/awsome-distributed-training micro-benchmarks/nccl-tests/README.md
# (commit 0162aacd), "All_reduce performance test ... from 8B to 16GB on 2x p5.48xlarge"
P5_2 = [
    (8, 69.12), (16, 72.64), (32, 74.06), (64, 65.48),
    (128, 74.92), (256, 74.12), (512, 69.5), (1024, 69.24),
    (2048, 72.22), (4096, 78.58), (8192, 81.44), (16384, 94.36),
    (32768, 111.7), (65536, 135.1), (131072, 108.9), (262144, 128),
    (524288, 123.7), (1048576, 123.2), (2097152, 147.2), (4194304, 168.6),
    (8388608, 204.8), (16777216, 298.1), (33554432, 439.7), (67108864, 601.5),
    (134217728, 870.3), (268435456, 1468.2), (536870912, 2559.2), (1073741824, 4607.6),
    (2147483648, 9074.5), (4294967296, 17286), (8589934592, 33605), (17179869184, 66132),
]

# 2x p4de.24xlarge (16 ranks), Slurm: same README, "from 8B to 2GB on 2x p4de.24xlarge"
# (tests/data/nccl-tests/allreduce-p4de-2node-srun-prefix.txt)
P4DE_2 = [
    (8, 164.3), (16, 161.4), (32, 161.5), (64, 161),
    (128, 161.2), (256, 161.8), (512, 162.3), (1024, 165),
    (2048, 177.6), (4096, 169.4), (8192, 175.9), (16384, 193.4),
    (32768, 224.6), (65536, 227.4), (131072, 229.7), (262144, 238.2),
    (524288, 260.3), (1048576, 309.4), (2097152, 432.6), (4194304, 533.9),
    (8388608, 762.8), (16777216, 1191.8), (33554432, 1540.2), (67108864, 2644.6),
    (134217728, 3912.9), (268435456, 7201.7), (536870912, 13552), (1073741824, 26217),
    (2147483648, 51406),
]

# 8x A100-SXM4-40GB on NVSwitch (the p4d.24xlarge board), one process: microsoft/superbenchmark
# tests/data/nccl_allreduce.log (tests/data/nccl-tests/allreduce-a100-x8-single-node-validation-off-superbench.txt)
A100X8_1 = [
    (4, 34.73), (8, 34.66), (16, 35), (32, 35.6),
    (64, 34.83), (128, 34.53), (256, 34.56), (512, 34.94),
    (1024, 36.07), (2048, 35.42), (4096, 35.92), (8192, 35.91),
    (16384, 36.18), (32768, 36.65), (65536, 37.82), (131072, 41.19),
    (262144, 47.53), (524288, 60.32), (1048576, 74.78), (2097152, 93.48),
    (4194304, 112), (8388608, 162), (16777216, 226), (33554432, 374.3),
    (67108864, 584.5), (134217728, 1162.2), (268435456, 2112.2), (536870912, 4200.3),
    (1073741824, 8159.5), (2147483648, 16215), (4294967296, 32070), (8589934592, 63896),
]


# instance type -> {nodes: (curve, ranks it was measured with, where it comes from)}. Types without a run of their
# own use the run of a type with the same links, and say so (the profile's floors make the same derivation).
SAME_LINKS_AS_P5 = "p5.48xlarge's run (same NVLink4 NVSwitch and 3200 Gbps EFA)"
CURVES: dict[str, dict[int, tuple[list[tuple[int, float]], int, str]]] = {
    "p5.48xlarge": {1: (P5_1, 8, "awsome-distributed-training aws-batch README"),
                    2: (P5_2, 16, "awsome-distributed-training nccl-tests README")},
    "p5e.48xlarge": {1: (P5_1, 8, SAME_LINKS_AS_P5), 2: (P5_2, 16, SAME_LINKS_AS_P5)},
    "p5en.48xlarge": {1: (P5_1, 8, SAME_LINKS_AS_P5), 2: (P5_2, 16, SAME_LINKS_AS_P5)},
    "p4de.24xlarge": {1: (A100X8_1, 8, "superbenchmark 8x A100 SXM (same HGX A100 NVSwitch)"),
                      2: (P4DE_2, 16, "awsome-distributed-training nccl-tests README")},
    "p4d.24xlarge": {1: (A100X8_1, 8, "superbenchmark 8x A100-SXM4-40GB"),
                     2: (P4DE_2, 16, "p4de.24xlarge's run (same 4x100 Gbps EFA and NVSwitch)")},
}


def time_us(curve: list[tuple[int, float]], size: int) -> float:
    """The run's time at `size`: linear between its points, its smallest time below, scaled in size above."""
    if size <= curve[0][0]:
        return curve[0][1]
    for (s0, t0), (s1, t1) in zip(curve, curve[1:]):
        if size <= s1:
            return t0 + (t1 - t0) * (size - s0) / (s1 - s0)
    s_last, t_last = curve[-1]
    return t_last * size / s_last
