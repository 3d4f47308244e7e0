"""Fake nccl-tests (`all_reduce_perf` and friends): argument parsing, bandwidth model and output format."""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from . import ctx as simctx
from .fault import EVERY_NODE, FIRST_GPU_NODE, FaultKind
from .nccl_curves import CURVES, time_us
from .nccl_kernels import EXIT_NCCL_ERROR, SG_NCCL_ERROR, SG_WARN, SG_WARN_SITE, code_of, failure_lines, runs_on

# program -> (redop, root, bus factor kind, count divides by nranks)
COLLECTIVES: dict[str, tuple[str, int, str, bool]] = {
    "all_reduce_perf": ("sum", -1, "allreduce", False),
    "all_gather_perf": ("none", -1, "ring", True),
    "reduce_scatter_perf": ("sum", -1, "ring", True),
    "alltoall_perf": ("none", -1, "ring", True),
    "broadcast_perf": ("none", 0, "one", False),
    "reduce_perf": ("sum", 0, "one", False),
    "sendrecv_perf": ("sum", -1, "one", False),
}
TYPE_SIZES = {"int8": 1, "uint8": 1, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "half": 2,
              "float": 4, "double": 8, "bfloat16": 2, "f8e4m3": 1, "f8e5m2": 1}
OPS = ("sum", "prod", "max", "min", "avg", "mulsum", "all")
SHORT = "t:g:b:e:i:f:n:m:w:N:p:c:o:d:r:z:y:T:hG:C:a:R:x:D:V:J:S:M:"
LONG = {"nthreads": "t", "ngpus": "g", "minbytes": "b", "maxbytes": "e", "stepbytes": "i", "stepfactor": "f",
        "iters": "n", "agg_iters": "m", "warmup_iters": "w", "run_cycles": "N", "parallel_init": "p",
        "check": "c", "op": "o", "datatype": "d", "root": "r", "blocking": "z", "stream_null": "y",
        "timeout": "T", "cudagraph": "G", "report_cputime": "C", "report_timestamps": "S",
        "output_file": "J", "average": "a", "local_register": "R", "cta_policy": "x",
        "device_implementation": "D", "device_cta_count": "V", "memory": "M", "help": "h"}


# Defaults of the bandwidth model; the scenario's `nccl` section (sim.scenario_schema.NcclSpec) overrides.
DEFAULTS: dict[str, Any] = {
    "version": "2.27.5", "cuda": "12.8", "tests_version": "2.16.4", "ofi_plugin_version": "1.16.0",
    "libfabric_version": "2.1", "intra_efficiency": 0.53, "inter_efficiency": 1.11, "pcie_efficiency": 0.75,
    "latency_us": 12.0, "inter_latency_us": 30.0, "noise": 0.02, "socket_gbs": 1.2,
    "low_bandwidth_factor": 0.4, "seed": 0,
}


def config(ctx: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **ctx.get("nccl", {})}


class UsageError(Exception):
    """Bad command line: message for stdout (nccl-tests prints usage there) and exit code."""


FAULTS = (
    FaultKind("nccl-socket-fallback", {}, EVERY_NODE, "nccl-tests: NCCL uses the Socket transport (busbw ~1 GB/s)"),
    FaultKind("nccl-wrong-results", {"wrong": "12"}, EVERY_NODE,
              "nccl-tests: #wrong > 0 from 1 MiB, `# Out of bounds values : N FAILED`, exit 5"),
    FaultKind("nccl-low-bandwidth", {"factor": "0.4"}, EVERY_NODE, "nccl-tests: bus bandwidth at that share of healthy"),
    FaultKind("efa-slow", {"factor": "0.5"}, FIRST_GPU_NODE,
              "nccl-tests: this node's EFA carries that share of its bandwidth (multi-node runs with it)"),
    FaultKind("nvlink-degraded", {"factor": "0.5"}, FIRST_GPU_NODE,
              "nccl-tests: this node's NVLink/NVSwitch carries that share of its bandwidth: its single-node run shows "
              "it, a network-bound multi-node run does not"),
)


@dataclass
class Args:
    nthreads: int = 1
    ngpus: int = 1
    minbytes: int = 32 * 1024 * 1024
    maxbytes: int = 32 * 1024 * 1024
    stepbytes: int = 1024 * 1024
    stepfactor: int = 1
    iters: int = 20
    agg_iters: int = 1
    warmup: int = 5
    check: int = 1
    op: str = "sum"
    dtype: str = "float"
    root: int = 0
    graph: int = 0
    output_file: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def parse_size(text: str) -> int:
    units = 1024 ** 3 if "G" in text else 1024 ** 2 if "M" in text else 1024 if "K" in text else 1
    number = text.rstrip("GMKgmkB")
    try:
        return int(float(number) * units)
    except ValueError:
        return 0


def parse_args(argv: list[str], prog: str) -> Args:
    """getopt_long semantics of nccl-tests' common.cu; UsageError for an invalid option."""
    args, i = Args(), 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            opt = LONG.get(name)
            if opt is None:
                raise UsageError(f"{prog}: unrecognized option '{arg}'\n" + usage(prog))
            if opt != "h" and not value:
                i += 1
                value = argv[i] if i < len(argv) else ""
        elif arg.startswith("-") and len(arg) > 1:
            opt, value = arg[1], arg[2:]
            if opt not in SHORT.replace(":", ""):
                raise UsageError(f"{prog}: invalid option -- '{opt}'\ninvalid option '?'\n" + usage(prog))
            if opt != "h" and not value:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{prog}: option requires an argument -- '{opt}'\n" + usage(prog))
                value = argv[i]
        else:
            i += 1        # stray operands are ignored by getopt_long's permutation
            continue
        if opt == "h":
            raise UsageError(usage(prog))
        _apply(args, opt, value)
        i += 1
    if args.minbytes > args.maxbytes:
        raise UsageError(f"invalid sizes for 'minbytes' and 'maxbytes': {args.minbytes} > {args.maxbytes}")
    return args


def _apply(args: Args, opt: str, value: str) -> None:
    def num() -> int:
        try:
            return int(value, 0)
        except ValueError:
            return 0
    if opt == "t":
        args.nthreads = max(1, num())
    elif opt == "g":
        args.ngpus = max(1, num())
    elif opt == "b":
        args.minbytes = parse_size(value)
    elif opt == "e":
        args.maxbytes = parse_size(value)
    elif opt == "i":
        args.stepbytes = parse_size(value)
    elif opt == "f":
        args.stepfactor = num()
    elif opt == "n":
        args.iters = num()
    elif opt == "m":
        args.agg_iters = num()
    elif opt == "w":
        args.warmup = num()
    elif opt == "c":
        args.check = num()
    elif opt == "o":
        args.op = value if value in OPS else "sum"
    elif opt == "d":
        args.dtype = value if value in TYPE_SIZES else "float"
    elif opt == "r":
        args.root = num()
    elif opt == "G":
        args.graph = num()
    elif opt == "J":
        args.output_file = value
    else:
        args.extra[opt] = value


def usage(prog: str) -> str:
    opts = ["-t,--nthreads <num threads>", "-g,--ngpus <gpus per thread>", "-b,--minbytes <min size in bytes>",
            "-e,--maxbytes <max size in bytes>", "-i,--stepbytes <increment size>",
            "-f,--stepfactor <increment factor>", "-n,--iters <iteration count>",
            "-m,--agg_iters <aggregated iteration count>", "-w,--warmup_iters <warmup iteration count>",
            "-c,--check <check iteration count>", "-o,--op <sum/prod/min/max/avg/mulsum/all>",
            "-d,--datatype <nccltype/all>", "-r,--root <root>", "-G,--cudagraph <num graph launches>",
            "-J,--output_file <file>", "-h,--help"]
    return f"USAGE: {prog} \n\t" + " \n\t".join(f"[{o}]" for o in opts) + "\n"


@dataclass
class Rank:
    """One NCCL rank: the process/host it runs in and the GPU it drives."""

    rank: int
    host: str
    node: dict[str, Any]          # worker node context: hardware, allocated, faults
    gpu: dict[str, Any]
    pid: int
    proc: int                     # MPI process index


def sizes(args: Args) -> list[int]:
    out, size = [], args.minbytes
    while size <= args.maxbytes:
        out.append(size)
        if args.stepfactor > 1:
            size = size * args.stepfactor if size else 1
        else:
            if args.stepbytes <= 0:
                break
            size += args.stepbytes
    return out


def bus_factor(kind: str, n: int) -> float:
    if n <= 1:
        return 0.0 if kind != "one" else 1.0
    return {"allreduce": 2 * (n - 1) / n, "ring": (n - 1) / n}.get(kind, 1.0)


def _fault(node: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return simctx.fault({"faults": node.get("faults", [])}, kind)


def transport(node: dict[str, Any]) -> str:
    """'efa' when the worker has EFA devices and no fault forces sockets, else 'socket'."""
    efa = node.get("allocated", {}).get("efa", [])
    if not efa or _fault(node, "efa-absent") is not None or _fault(node, "nccl-socket-fallback") is not None:
        return "socket"
    return "efa"


def zone_of(node: dict[str, Any], *, use_zone: bool = True) -> str:
    """The node's availability zone: its `zone` (the sim context's node_context), else from the simulated address
    plan (10.0.<zone*64+..>.x)."""
    if use_zone and node.get("zone"):
        return str(node["zone"])
    try:
        return f"zone-{int(str(node.get('private_ip') or '10.0.0.1').split('.')[2]) // 64}"
    except (IndexError, ValueError):
        return "zone-0"


def crosses_zones(ranks: list[Rank]) -> bool:
    """EFA traffic does not cross availability zones: NCCL falls back to Socket for such a communicator."""
    # the context's zone when every rank carries one (a rank rebuilt without it must not look like another zone)
    every = all(r.node.get("zone") for r in ranks)
    return len({zone_of(r.node, use_zone=every) for r in ranks}) > 1


def comm_transport(ranks: list[Rank], node: dict[str, Any]) -> str:
    multi = len({r.host for r in ranks}) > 1
    return "socket" if transport(node) == "socket" or (multi and crosses_zones(ranks)) else "efa"


def published_curve(ranks: list[Rank]) -> tuple[list[tuple[int, float]], float] | None:
    """The published run of these nodes' instance type (1 node, or 2 nodes) when it has the same ranks per node, and
    the factor its times take for this run: 1 on its own node count; on N > 2 nodes the 2-node run is stretched so
    its bus bandwidth keeps the same share of the network ceiling, B_net x N/(N-1) x (n-1)/n (docs/nccl.md), which
    falls from ~2 B_net on 2 nodes towards B_net: no published run of more nodes of these types was found, and a
    large ring reaching the 2-node run's share of its ceiling is the kindest honest assumption."""
    hosts = {r.host: r.node for r in ranks}
    types = {str(n.get("hardware", {}).get("instance_type")) for n in hosts.values()}
    if len(types) != 1:
        return None
    nodes = len(hosts)
    entry = CURVES.get(types.pop(), {}).get(1 if nodes == 1 else 2)
    if entry is None or entry[1] * nodes != len(ranks) * (1 if nodes == 1 else 2):     # same GPUs per node
        return None
    if nodes <= 2:
        return entry[0], 1.0
    n2, n = entry[1], len(ranks)

    def ceiling(nn: int, ranks_: int) -> float:
        return nn / (nn - 1) * (ranks_ - 1) / ranks_

    bus = bus_factor("allreduce", n) / bus_factor("allreduce", n2)
    return entry[0], bus * ceiling(2, n2) / ceiling(nodes, n)


def sg_blocks_efa(ranks: list[Rank]) -> bool:
    """EFA between nodes whose security group lacks its self-referencing rules (fault aws-sg-no-self-rule): the
    traffic is dropped (AWS EFA user guide: the rules 'are required for EFA to work'), so a run across nodes over
    EFA fails (fake/nccl_kernels.py SG_WARN); inside one node, and over Socket, nothing changes."""
    hosts = {r.host: r.node for r in ranks}
    return (len(hosts) > 1 and not any(comm_transport(ranks, n) == "socket" for n in hosts.values())
            and any(_fault(n, "aws-sg-no-self-rule") is not None for n in hosts.values()))


def slowdown(ranks: list[Rank], cfg: dict[str, Any]) -> float:
    """Bandwidth factor of the faults on these nodes: nccl-low-bandwidth anywhere, efa-slow across nodes,
    nvlink-degraded inside one node (a multi-node run is bound by the network: it does not show it)."""
    factor = 1.0
    hosts = {r.host: r.node for r in ranks}
    for node in hosts.values():
        low = _fault(node, "nccl-low-bandwidth")
        if low is not None:
            factor = min(factor, float(low.get("factor", cfg["low_bandwidth_factor"])))
        slow = _fault(node, "efa-slow")
        if slow is not None and len(hosts) > 1:
            factor = min(factor, float(slow.get("factor", 0.5)))
        nvlink = _fault(node, "nvlink-degraded")
        if nvlink is not None and len(hosts) == 1:
            factor = min(factor, float(nvlink.get("factor", 0.5)))
    return factor


def peak_busbw(ranks: list[Rank], cfg: dict[str, Any]) -> tuple[float, float]:
    """(peak bus bandwidth GB/s, latency us) of the communicator (slowest node / network wins)."""
    hosts: dict[str, dict[str, Any]] = {}
    for r in ranks:
        hosts.setdefault(r.host, r.node)
    intra = []
    for node in hosts.values():
        hw = node.get("hardware", {})
        if hw.get("nvlink_gbs"):
            intra.append(hw["nvlink_gbs"] * cfg["intra_efficiency"])
        else:
            intra.append(hw.get("pcie_gbs", 12.0) * cfg["pcie_efficiency"])
    peak, latency = min(intra or [1.0]), cfg["latency_us"]
    if len(hosts) > 1:
        latency = cfg["inter_latency_us"]
        inter = []
        for node in hosts.values():
            hw = node.get("hardware", {})
            if comm_transport(ranks, node) == "socket":
                inter.append(cfg["socket_gbs"])
                continue
            total = max(1, len(hw.get("efa_devices", [])) or 1)
            share = len(node.get("allocated", {}).get("efa", [])) / total
            inter.append(hw.get("network_gbps", 100.0) / 8 * min(1.0, share) * cfg["inter_efficiency"])
        peak = min(peak, min(inter))
    return peak * slowdown(ranks, cfg), latency


def _fmt_time(us: float) -> str:
    if us >= 10000.0:
        return f"{us:7.0f}"
    if us >= 100.0:
        return f"{us:7.1f}"
    return f"{us:7.2f}"


def _wrong(ranks: list[Rank]) -> int:
    for node in {r.host: r.node for r in ranks}.values():
        f = _fault(node, "nccl-wrong-results")
        if f is not None:
            return int(f.get("wrong", 12))
    return 0


def info_lines(ranks: list[Rank], cfg: dict[str, Any], rank: Rank) -> list[str]:
    """NCCL_DEBUG=INFO lines one rank prints (bootstrap, net plugin, transport, channels)."""
    p = f"{rank.host}:{rank.pid}:{rank.pid} [{rank.gpu['index']}] NCCL INFO "
    node = rank.node
    hw = node.get("hardware", {})
    nics = len(node.get("allocated", {}).get("efa", []))
    multi = len({r.host for r in ranks}) > 1
    cuda_driver = int(float(hw.get("cuda_version", "13.0")) * 1000)
    out = [p + f"Bootstrap: Using eth0:{node.get('private_ip', '10.0.0.1')}<0>",
           p + f"cudaDriverVersion {cuda_driver}"]
    if rank.rank == 0:
        out.append(p + f"NCCL version {cfg['version']}+cuda{cfg['cuda']}")
    sock = comm_transport(ranks, node) == "socket"
    out.append(p + "NET/Plugin: Loaded net plugin Libfabric (v10)")
    out.append(p + f"NET/OFI Initializing aws-ofi-nccl {cfg['ofi_plugin_version']}")
    out.append(p + f"NET/OFI Using Libfabric version {cfg['libfabric_version']}")
    if sock:
        out.append(p + "NET/OFI No eligible providers were found")
        # aws-ofi-nccl gives up at start-up in a pod without an EFA device and
        # NCCL goes on without it. Lines of aws-ofi-nccl 1.16.2 verbatim (timestamped, as NCCL prints WARN lines) from
        # gnosia93/training-on-eks@a8bcb517117dac4ab6acfce1c3392461ccdb4772 chapter/c7-training-optimization-nccl.md
        # (also in tests/checks/test_nccl.py OFI_GAVE_UP_G6E); the blank line NCCL prints before each is left out.
        if not nics:
            import time
            w = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {rank.host}:{rank.pid}:{rank.pid} [{rank.gpu['index']}] "
            out += [w + "int nccl_net_ofi_create_plugin(nccl_net_ofi_plugin_t**):259 NCCL WARN NET/OFI Unable to "
                        "find a protocol that worked.  Failing initialization.",
                    w + "int nccl_net_ofi_create_plugin(nccl_net_ofi_plugin_t**):352 NCCL WARN NET/OFI aws-ofi-nccl "
                        "initialization failed",
                    w + "ncclResult_t nccl_net_ofi_init_v6(ncclDebugLogger_t):166 NCCL WARN NET/OFI Initializing "
                        "plugin failed"]
        out.append(p + "NET/Plugin: Failed to initialize NET plugin Libfabric")
        out.append(p + f"NET/Socket : Using [0]eth0:{node.get('private_ip', '10.0.0.1')}<0>")
        out.append(p + "Initialized NET plugin Socket")
        out.append(p + "Using network Socket")
        net = "NET/Socket/0"
    else:
        out.append(p + f"NET/OFI Selected provider is efa, fabric is efa (found {nics} nics)")
        if not hw.get("gpudirect_rdma"):
            out.append(p + "NET/OFI Need to force simple protocol: GDR not supported")
        out.append(p + "Initialized NET plugin Libfabric")
        out.append(p + "Assigned NET plugin Libfabric to comm")
        out.append(p + "Using network Libfabric")
        net = "NET/Libfabric/0" + ("/GDRDMA" if hw.get("gpudirect_rdma") else "")
    n = len(ranks)
    nxt, prv = (rank.rank + 1) % n, (rank.rank - 1) % n
    for ch in range(2):
        for peer, verb in ((prv, "receive"), (nxt, "send")):
            other = ranks[peer]
            via = net if (multi and other.host != rank.host) else "P2P/CUMEM" if hw.get("nvlink_gbs") else "SHM/direct/direct"
            a, b = (other, rank) if verb == "receive" else (rank, other)
            out.append(p + f"Channel {ch:02d}/0 : {a.rank}[{a.gpu['index']}] -> {b.rank}[{b.gpu['index']}] [{verb}] via {via}")
    out.append(p + "Connected all rings, use ring PXN 0 GDR " + ("1" if hw.get("gpudirect_rdma") and not sock else "0"))
    return out


def generate(prog: str, args: Args, ranks: list[Rank], cfg: dict[str, Any], env: dict[str, str],
             nprocs: int = 1) -> tuple[list[tuple[int, str]], list[tuple[int, str]], int]:
    """Run the model: (stdout lines by process, stderr lines by process, exit code)."""
    redop, root, kind, per_rank = COLLECTIVES[prog]
    out: list[tuple[int, str]] = []
    put = out.append
    debug = env.get("NCCL_DEBUG", "").upper()
    version_code = "".join(f"{int(x):02d}" if i else x for i, x in enumerate(cfg["version"].split(".")))
    since_217 = tuple(int(x) for x in str(cfg["tests_version"]).split(".")[:2]) >= (2, 17)
    if since_217:      # nccl-tests 2.17 prints its version and the test's name first (src/util.cu); 2.16 does not
        put((0, f"# nccl-tests version {cfg['tests_version']} nccl-headers={version_code} nccl-library={version_code}"))
        put((0, f"# Collective test starting: {prog}"))
    step = f"{args.stepfactor}(factor)" if args.stepfactor > 1 else f"{args.stepbytes}(bytes)"
    put((0, f"# nThread {args.nthreads} nGpus {args.ngpus} minBytes {args.minbytes} maxBytes {args.maxbytes} "
            f"step: {step} warmup iters: {args.warmup} iters: {args.iters} agg iters: {args.agg_iters} "
            f"validation: {args.check} graph: {args.graph}"))
    put((0, "#"))
    put((0, "# Using devices"))
    for r in ranks:
        bus = r.gpu["bus_id"].split(":")
        pci = f"{int(bus[0], 16) & 0xFFFF:04x}:{bus[1].lower()}:{bus[2].split('.')[0]}"
        put((0, f"#  Rank {r.rank:2d} Group  0 Pid {r.pid:6d} on {r.host:>10} device {r.gpu['index']:2d} [{pci}] {r.gpu['name']}"))
    if debug in ("INFO", "TRACE"):
        for r in ranks:
            out.extend((r.proc, line) for line in info_lines(ranks, cfg, r))
    elif debug == "VERSION":
        put((0, f"NCCL version {cfg['version']}+cuda{cfg['cuda']}"))
    n = len(ranks)
    factor = bus_factor(kind, n)
    peak, latency = peak_busbw(ranks, cfg)
    curve = published_curve(ranks)
    socket = any(comm_transport(ranks, r.node) == "socket" for r in ranks) and len({r.host for r in ranks}) > 1
    slow = slowdown(ranks, cfg)
    rng = random.Random(f"{cfg.get('seed', 0)}/{prog}/{n}/{','.join(sorted({r.host for r in ranks}))}")
    wrong = _wrong(ranks) if args.check else 0
    put((0, "#"))
    put((0, f"# {'':>10}  {'':>12}  {'':>8}  {'':>6}  {'':>6}           out-of-place                       in-place          "))
    put((0, f"# {'size':>10}  {'count':>12}  {'type':>8}  {'redop':>6}  {'root':>6}  {'time':>7}  {'algbw':>6}  {'busbw':>6}  {'#wrong':>6}  {'time':>7}  {'algbw':>6}  {'busbw':>6}  {'#wrong':>6} "))
    put((0, f"# {'(B)':>10}  {'(elements)':>12}  {'':>8}  {'':>6}  {'':>6}  {'(us)':>7}  {'(GB/s)':>6}  {'(GB/s)':>6}  {'':>6}  {'(us)':>7}  {'(GB/s)':>6}  {'(GB/s)':>6}  {'':>6} "))
    if not all(runs_on(code_of(r.node), str(r.gpu.get("compute_cap", ""))) for r in ranks):
        out += failure_lines(ranks, str(cfg["tests_version"]), args.ngpus, debug)     # the warm-up's first collective
        return out, [], EXIT_NCCL_ERROR
    if sg_blocks_efa(ranks):
        out += failure_lines(ranks, str(cfg["tests_version"]), args.ngpus, debug, warn_site=SG_WARN_SITE,
                             warn=SG_WARN, nccl_error=SG_NCCL_ERROR)
        return out, [], EXIT_NCCL_ERROR
    tsize = TYPE_SIZES[args.dtype]
    total_bw, count_bw, errors = 0.0, 0, 0
    for size in sizes(args):
        count = size // tsize // (n if per_rank else 1)
        row = f"{size:12d}  {count:12d}  {args.dtype:>8}  {redop if args.op == 'sum' or redop == 'none' else args.op:>6}  {root if root < 0 else args.root:6d}"
        for _ in ("out", "in"):
            noise = 1.0 + cfg.get("noise", 0.02) * rng.uniform(-1.0, 1.0)
            if size == 0:
                us = 0.12 * noise
                algbw = busbw = 0.0
            else:
                if curve is not None and not socket:
                    us = time_us(curve[0], size) * curve[1] / slow * noise    # a published run (nccl_curves)
                else:
                    us = (latency + size * max(factor, 1e-9) / (peak * 1e3)) * noise
                algbw = size / us / 1e3
                busbw = algbw * factor
            bad = wrong if size >= 1024 * 1024 else 0
            errors += bad
            total_bw += busbw
            count_bw += 1
            wrong_s = f"{bad:5d}" if args.check else f"{'N/A':>5}"
            row += f"  {_fmt_time(us)}  {algbw:6.2f}  {busbw:6.2f}  {wrong_s}"
        put((0, row))
    avg = total_bw / count_bw if count_bw else 0.0
    min_bw = env.get("NCCL_TESTS_MIN_BW")
    check = "" if min_bw is None else ("FAILED" if avg < float(min_bw) * 0.9 else "OK")
    put((0, f"# {'Out of bounds values':<20} : {errors} {'FAILED' if errors else 'OK'}"))
    put((0, f"# {'Avg bus bandwidth':<20} : {avg:g} {check}"))
    put((0, "#"))
    if since_217:
        put((0, f"# Collective test concluded: {prog}"))
    put((0, "#"))
    put((0, ""))
    code = 0
    if errors or (min_bw is not None and check == "FAILED"):
        put((0, f" .. {ranks[0].host} pid {ranks[0].pid}: Test failure common.cu:1395"))
        code = 5
    return out, [], code


def local_ranks(ctx: dict[str, Any], args: Args, host: str, proc: int = 0, local_rank: int = 0,
                first_rank: int = 0) -> tuple[list[Rank], str | None]:
    """Ranks of one process (nThreads x nGpus GPUs from its node), or an error text like nccl-tests'."""
    gpus = simctx.visible_gpus(ctx)
    want = args.nthreads * args.ngpus
    start = local_rank * want
    if not gpus:
        return [], f"{host}: Test CUDA failure common.cu:1304 'no CUDA-capable device is detected'"
    if simctx.fault(ctx, "nvlink-down") is not None:
        # CUDA error 802 on an NVSwitch node whose fabric manager has not trained the fabric: nccl-tests' first CUDA
        # call fails, as in NVIDIA/nccl-tests#338 ("gpu: Test CUDA failure common.cu:1030 'system not yet
        # initialized'") and #264 (resolved by starting nvidia-fabricmanager)
        return [], f"{host}: Test CUDA failure common.cu:1030 'system not yet initialized'"
    if start + want > len(gpus):
        return [], (f"Invalid number of GPUs: {start + want} requested but only {len(gpus)} were found.\n"
                    "Please check the number of processes and GPUs per process.")
    node = {"hardware": ctx.get("node", {}).get("hardware", {}), "allocated": ctx.get("allocated", {}),
            "faults": ctx.get("faults", []), "private_ip": ctx.get("node", {}).get("private_ip"),
            "zone": ctx.get("node", {}).get("zone"), "gpu_code": ctx.get("gpu_code")}
    pid = 25 + local_rank * args.nthreads      # container PID namespaces: small, per host
    return [Rank(first_rank + i, host, node, gpus[start + i], pid, proc) for i in range(want)], None


def main(argv: list[str], prog: str) -> int:
    """Single-process run (no mpirun): all ranks are this process' threads/GPUs."""
    try:
        args = parse_args(argv, prog)
    except UsageError as exc:
        sys.stdout.write(str(exc) if str(exc).endswith("\n") else str(exc) + "\n")
        return 0 if str(exc).startswith("USAGE") else 1
    ctx = simctx.load()
    recorded = simctx.replay(ctx, prog)
    if recorded is not None:
        return recorded
    if simctx.fault(ctx, "driver-unreachable") is not None:
        ctx = {**ctx, "allocated": {**ctx.get("allocated", {}), "gpus": []}}
    host = simctx.hostname(ctx)
    ranks, error = local_ranks(ctx, args, host)
    if error:
        print(error, file=sys.stderr)
        print(f" .. {host} pid 25: Test failure common.cu:1189")
        return 2
    out, _, code = generate(prog, args, ranks, config(ctx), dict(os.environ))
    sys.stdout.write("\n".join(line for _, line in out) + "\n")
    return code
