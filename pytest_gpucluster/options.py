"""Every option of the plugin in ONE table, and the typed RunOptions built from it once, in pytest_configure.

Each option is a command-line flag, an ini key (`gpucluster_*`) and, for a few, a documented environment
fallback; precedence: command line > ini > environment > default. docs/options.md's table is generated from
OPTIONS (`python -m pytest_gpucluster.options`) and a test keeps the two equal. Everything reads them one way:
`run_options(config)` (resolved once, kept in config.stash); suites as `gpucluster_session.options.<field>`, the
same object.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any, Callable

import pytest

DEFAULT_CUDA_IMAGE = "nvidia/cuda:13.0.2-runtime-ubuntu22.04"
# AWS's nccl-tests image, pinned by a tag that names what it holds: aws-samples/awsome-distributed-training
# micro-benchmarks/nccl-tests/buildspec.yaml tags cuda<CUDA>-efa<EFA installer>-ofi<aws-ofi-nccl>-nccl<NCCL>-tests<nccl-tests>;
# this one is the tag its 1.architectures/3.aws-batch/aws-batch-distributed-training-p6.yaml runs (Dockerfile 0c8089b7,
# June 2025: GPU code for compute capability 8.0-10.0 only, docs/nccl.md "Images and GPU architectures").
DEFAULT_NCCL_IMAGE = "public.ecr.aws/hpc-cloud/nccl-tests:cuda12.8.1-efa1.42.0-ofiv1.16.0-ncclv2.27.5-1-testsv2.16.4"
# NVIDIA's CUDA sample image of the GPU Operator docs ("Running Sample GPU Applications"): /cuda-samples/vectorAdd,
# CUDA 12.5 runtime, so it runs on drivers >= 525 (CUDA 12.x minor version compatibility), the range every
# EKS GPU AMI of the last years ships; the CUDA 13 images need >= 580.
DEFAULT_SMOKE_SAMPLE_IMAGE = "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04"
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_SCENARIO = "healthy"
S3_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


def _positive_int(minimum: int) -> Callable[[str, Any], int]:
    def convert(flag: str, raw: Any) -> int:
        try:
            value = int(str(raw))
        except ValueError:
            raise pytest.UsageError(f"{flag} must be a number, given: {raw!r}") from None
        if value < minimum:
            raise pytest.UsageError(f"{flag} must be at least {minimum}, given: {raw!r}")
        return value
    return convert


def _seconds(flag: str, raw: Any) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        raise pytest.UsageError(f"{flag} must be a number, given: {raw!r}") from None
    if value < 1:
        raise pytest.UsageError(f"{flag} must be at least 1, given: {raw!r}")
    return value


def _flag(flag: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise pytest.UsageError(f"{flag} must be true or false, given: {raw!r}")


def _region(flag: str, raw: Any) -> str:
    parts = str(raw).split("-")
    if not (len(parts) >= 3 and parts[-1].isdigit() and len(parts[0]) == 2):
        raise pytest.UsageError(f"{flag} must be an AWS region such as us-west-2, given: {raw!r}")
    return str(raw)


def s3_url(flag: str, raw: Any) -> str:
    """An S3 URL option value (s3://bucket/prefix), or a usage error naming the flag."""
    if not S3_URL.match(str(raw)):
        raise pytest.UsageError(f"{flag} must look like s3://bucket/prefix, given: {raw!r}")
    return str(raw)


def _text(flag: str, raw: Any) -> str:
    return str(raw)


@dataclass(frozen=True)
class Option:
    """One row of the table: flag, RunOptions field, ini type, default, help; `env` is a documented fallback."""

    flag: str
    field: str
    help: str
    default: Any = None
    default_text: str = ""               # how the default reads in the docs when it is not a literal
    convert: Callable[[str, Any], Any] = _text
    switch: bool = False                 # a store_true flag (ini type bool)
    metavar: str | None = None
    env: str | None = None
    argparse: dict[str, Any] = dc_field(default_factory=dict)
    ini: str | None = None               # the ini key / argparse dest when it is not gpucluster_<field>

    @property
    def dest(self) -> str:
        return self.ini or f"gpucluster_{self.field}"

    @property
    def ini_type(self) -> str:
        return "bool" if self.switch else "string"


OPTIONS: tuple[Option, ...] = (
    Option("--kubeconfig", "kubeconfig", "kubeconfig file", metavar="PATH",
           default_text="like kubectl: `$KUBECONFIG` paths, `~/.kube/config`, then the in-cluster service account"),
    Option("--context", "context", "kubeconfig context", metavar="NAME", default_text="current-context"),
    Option("--sim", "sim", "run against the simulated EKS GPU cluster (scenario name or YAML file; needs the `sim` "
           "extra). Write --sim=NAME when a test path follows", metavar="SCENARIO",
           default_text=f"off (`{DEFAULT_SCENARIO}` when given bare)",
           argparse={"nargs": "?", "const": DEFAULT_SCENARIO}),
    Option("--gpucluster-profile", "profile", "acceptance profile YAML, deep-merged over the default profile",
           metavar="FILE", default_text="the shipped `profiles/default.yaml`"),
    Option("--gpucluster-namespace", "namespace", "namespace for probe pods (created if missing, deleted at the end)",
           metavar="NAME", default_text="`gpucluster-<run-id>`"),
    Option("--gpucluster-keep", "keep", "keep everything the run created (for debugging); `gpucluster cleanup` "
           "removes it later", default=False, convert=_flag, switch=True),
    Option("--gpucluster-cuda-image", "cuda_image", "image of GPU probe pods (nvidia-smi)", metavar="IMAGE",
           default=DEFAULT_CUDA_IMAGE),
    Option("--gpucluster-nccl-image", "nccl_image", "image for nccl-tests (a type whose profile sets `nccl.image` "
           "uses that one)", metavar="IMAGE",
           default=DEFAULT_NCCL_IMAGE),
    Option("--gpucluster-smoke-image", "smoke_image", "image with python3 + PyTorch: the CUDA smoke check opens a "
           "CUDA context through PyTorch in it instead of running NVIDIA's vectorAdd sample (e.g. "
           "nvcr.io/nvidia/pytorch:25.01-py3)", metavar="IMAGE", env="GPUCLUSTER_CUDA_SMOKE_IMAGE",
           default_text=f"none: the smoke check runs `/cuda-samples/vectorAdd` in `{DEFAULT_SMOKE_SAMPLE_IMAGE}`"),
    Option("--gpucluster-efa-image", "efa_image", "image with libfabric's `fi_info` (under /opt/amazon/efa/bin) for "
           "the EFA probe", metavar="IMAGE", default_text="the NCCL image (--gpucluster-nccl-image)"),
    Option("--gpucluster-timeout", "timeout_s", "deadline of each probe pod, image pull included (seconds)",
           metavar="SECONDS", default=DEFAULT_TIMEOUT_S, convert=_seconds, ini="gpucluster_timeout"),
    Option("--gpucluster-costly", "costly", "also run tests marked costly (they launch nodes); on by default with "
           "--sim", default=False, convert=_flag, switch=True),
    Option("--gpucluster-nodes", "nodes", "only check nodes matching this label selector (e.g. "
           "karpenter.sh/nodepool=gpu)", metavar="SELECTOR", default_text="all nodes"),
    Option("--gpucluster-sample", "sample", "check a deterministic sample of N nodes per instance type",
           metavar="N", convert=_positive_int(1), default_text="all"),
    Option("--gpucluster-nccl-nodes", "nccl_nodes", "nodes per multi-node NCCL all-reduce (MPIJob workers)",
           metavar="N", default=2, convert=_positive_int(2), env="GPUCLUSTER_NCCL_NODES"),
    Option("--gpucluster-nccl-sample-nodes", "nccl_sample_nodes", "run the single-node NCCL test on one node per "
           "instance type (default: every GPU node, which is how a node with slow NVLink is found)", default=False,
           convert=_flag, switch=True, env="GPUCLUSTER_NCCL_SAMPLE_NODES"),
    Option("--gpucluster-nccl-full", "nccl_full", "also run one all-reduce over every EFA node of each instance type "
           "in a zone (the training shape; holds all of them at once)", default=False, convert=_flag, switch=True,
           env="GPUCLUSTER_NCCL_FULL"),
    Option("--gpucluster-aws-profile", "aws_profile", "AWS profile for the aws checks", metavar="NAME",
           default_text="boto3's chain (`AWS_PROFILE`, the kubeconfig's exec env)"),
    Option("--gpucluster-region", "region", "AWS region of the cluster", metavar="REGION", convert=_region,
           default_text="from the kubeconfig or the nodes' providerIDs"),
    Option("--gpucluster-report-dir", "report_dir", "write report.html, summary.json and junit.xml to "
           "DIR/<timestamp>/", metavar="DIR", default_text="`reports/` for suite runs"),
    Option("--gpucluster-no-report", "no_report", "do not write the default reports/<timestamp>/ folder "
           "(--html/--junitxml still work)", default=False, convert=_flag, switch=True),
    Option("--gpucluster-partial", "partial", "this run is deliberately narrowed (-m, -k, --gpucluster-sample, "
           "--gpucluster-nodes): required evidence it leaves out makes the verdict `ACCEPTED (partial: ...)`, exit 0, "
           "instead of INCOMPLETE, exit 6", default=False, convert=_flag, switch=True),
    Option("--gpucluster-sign", "sign", "sign the report folder's manifest with this Ed25519 private key (PEM; "
           "`openssl genpkey -algorithm ed25519`) as a DSSE envelope; needs the `sign` extra", metavar="KEY",
           default_text="not signed (the manifest is still written)"),
    Option("--gpucluster-replay", "replay", "re-judge a recorded run instead of a cluster: the report folder of that "
           "run (what `gpucluster judge` passes); the suites' requests are answered from its recording/",
           metavar="REPORT_DIR", default_text="off"),
    Option("--gpucluster-upload", "upload", "after the run, upload the report folder to s3://bucket/prefix/<folder>/",
           metavar="S3_URL", convert=s3_url, default_text="no upload"),
)


@dataclass(frozen=True)
class RunOptions:
    """The resolved options; one field per row of OPTIONS (test_options checks they agree)."""

    kubeconfig: str | None = None
    context: str | None = None
    sim: str | None = None                 # scenario name or YAML path; None = real cluster
    profile: str | None = None
    namespace: str | None = None
    keep: bool = False
    cuda_image: str = DEFAULT_CUDA_IMAGE
    nccl_image: str = DEFAULT_NCCL_IMAGE
    smoke_image: str | None = None
    efa_image: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    costly: bool = False
    nodes: str | None = None
    sample: int | None = None
    nccl_nodes: int = 2
    nccl_sample_nodes: bool = False
    nccl_full: bool = False
    aws_profile: str | None = None
    region: str | None = None
    report_dir: str | None = None
    no_report: bool = False
    partial: bool = False
    sign: str | None = None
    replay: str | None = None
    upload: str | None = None

    @property
    def costly_enabled(self) -> bool:
        return self.costly or self.sim is not None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def add_options(parser: pytest.Parser) -> None:
    """Register every option and its ini key in the "gpucluster" group."""
    group = parser.getgroup("gpucluster", "GPU cluster acceptance (pytest-gpucluster)")
    for opt in OPTIONS:
        kwargs: dict[str, Any] = dict(opt.argparse)
        if opt.switch:
            kwargs.update(action="store_true", default=None)
        elif opt.metavar:
            kwargs["metavar"] = opt.metavar
        default = opt.default_text or (f"{opt.default:g}" if isinstance(opt.default, float) else opt.default)
        help_text = f"{opt.help} (default: {default})" if default not in (None, False, "") else opt.help
        if opt.env:
            help_text += f"; env fallback ${opt.env}"
        group.addoption(opt.flag, dest=opt.dest, help=help_text, **kwargs)
        parser.addini(opt.dest, help=f"default for {opt.flag}: {opt.help}", type=opt.ini_type)  # type: ignore[arg-type]


def _looks_like_test_path(value: str) -> bool:
    return value.endswith(".py") or "::" in value or Path(value).is_dir()


def _raw(config: pytest.Config, opt: Option, environ: dict[str, str]) -> Any:
    value = config.getoption(opt.dest, default=None)
    if value is None:
        try:
            ini = config.getini(opt.dest)
        except ValueError:     # not registered: only the report plugin is loaded (`-p no:gpucluster`)
            ini = None
        value = ini if ini not in ("", None, [], False) else None
    if value is None and opt.env:
        value = environ.get(opt.env) or None
    return value


def resolve_options(config: pytest.Config, environ: dict[str, str] | None = None) -> RunOptions:
    """Command line > ini > documented env fallback > default, each value converted and validated
    (a UsageError names the option and the bad value)."""
    env = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = _raw(config, opt, env)
        values[opt.field] = opt.default if raw is None else opt.convert(opt.flag, raw)
    sim = values["sim"]
    if isinstance(sim, str) and _looks_like_test_path(sim):
        # `pytest --sim suites/`: argparse gave the path to --sim. Give it back to pytest.
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            config.args = [sim]
        else:
            config.args.append(sim)
        values["sim"] = DEFAULT_SCENARIO
    if values["sim"] is not None and config.getoption("gpucluster_kubeconfig", default=None):
        raise pytest.UsageError("--sim and --kubeconfig are exclusive: the simulated cluster has its own kubeconfig")
    return RunOptions(**values)


OPTIONS_KEY = pytest.StashKey[RunOptions]()


def run_options(config: pytest.Config) -> RunOptions:
    """THE way to read this run's options: resolved once (the gpucluster plugin does it first, in pytest_configure)
    and kept in config.stash. Where only the report plugin is loaded (`-p no:gpucluster`), the rows it registered
    are read and every other field is its default."""
    opts = config.stash.get(OPTIONS_KEY, None)
    if opts is None:
        opts = config.stash[OPTIONS_KEY] = resolve_options(config)
    return opts


def replace_run_options(config: pytest.Config, **changes: Any) -> RunOptions:
    """The run's options with `changes`, for every reader from now on (a re-judged run takes the recorded run's
    options: bundle/plugin.py), so run_options(config) and the session's `.options` never disagree."""
    opts = config.stash[OPTIONS_KEY] = replace(run_options(config), **changes)
    return opts


def markdown_table() -> str:
    """The option table of docs/options.md."""
    rows = ["| Option | ini key | Env fallback | Default | What it does |", "| --- | --- | --- | --- | --- |"]
    for opt in OPTIONS:
        metavar = f"[{opt.metavar}]" if opt.argparse.get("nargs") == "?" else opt.metavar
        usage = f"`{opt.flag}{' ' + str(metavar) if metavar and not opt.switch else ''}`"
        default = opt.default_text or (f"`{opt.default:g}`" if isinstance(opt.default, float)
                                       else "off" if opt.default is False else f"`{opt.default}`"
                                       if opt.default is not None else "-")
        rows.append(f"| {usage} | `{opt.dest}` | {f'`{opt.env}`' if opt.env else '-'} | {default} | {opt.help}. |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
