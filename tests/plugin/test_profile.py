"""Acceptance profile: the shipped default, deep-merged user overrides, and errors naming file, line and key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_gpucluster.profile import DEFAULT_PROFILE, load_profile, parse_size

FAMILIES = ["g4dn", "g5", "g6", "g6e", "p4d", "p4de", "p5", "p5e", "p5en"]


def write(tmp_path: Path, text: str, name: str = "profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_profile_covers_every_family_with_gpu_counts_and_products() -> None:
    profile = load_profile()
    families = {itype.split(".")[0] for itype in profile.instance_types()}
    assert set(FAMILIES) <= families
    for itype in profile.instance_types():
        inst = profile.for_instance(itype)
        assert inst is not None and inst.gpus >= 1, itype
        # a product/MiB nobody has published as nvidia-smi prints it stays unset, and its source says so (g7e)
        assert inst.gpu_product or inst.sources["gpu_product"].startswith("not set"), itype
        assert inst.gpu_memory_mib or inst.sources["gpu_memory_mib"].startswith("not set"), itype
        assert inst.provisioning_budget_s["total"] >= inst.provisioning_budget_s["initialized"], itype


def test_default_numbers_match_aws_specs_and_published_nccl_figures() -> None:
    profile = load_profile()
    p5 = profile.for_instance("p5.48xlarge")
    assert p5 is not None and (p5.gpus, p5.efa, p5.gdrdma) == (8, 32, True)
    assert p5.gpu_product == "NVIDIA H100 80GB HBM3"
    # Published: 443.72 GB/s at 2 GB on 2x p5.48xlarge; the floor sits conservatively below it.
    floor = p5.nccl_floor(2, parse_size("2G"))
    assert floor is not None and 0.8 * 443.72 <= floor < 443.72
    p4de = profile.for_instance("p4de.24xlarge")
    assert p4de is not None and p4de.efa == 4
    floor = p4de.nccl_floor(2, 2 * 1024**3)
    assert floor is not None and 0.8 * 78.33 <= floor < 78.33
    assert profile.for_instance("g5.xlarge").efa == 0          # type: ignore[union-attr]
    assert profile.for_instance("g6e.48xlarge").efa == 4       # type: ignore[union-attr]


def test_every_number_in_the_default_profile_carries_a_source_comment() -> None:
    """Each hardware number names its source: a comment on its line, or an entry of its block's `sources:`."""
    text = DEFAULT_PROFILE.read_text()
    assert "[AC]" in text and "[SMI]" in text and "[NCCL]" in text
    in_sources = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("sources:"):
            in_sources, indent = True, len(line) - len(line.lstrip())
            continue
        if in_sources and stripped and len(line) - len(line.lstrip()) > indent:
            continue                                     # a `key: "source text"` entry of a sources block
        in_sources = False
        if "all_reduce_busbw_floor_gbs" in line or stripped.startswith(("1:", "2:")):
            continue
        if "gpu_memory_mib:" in line or stripped.startswith(("efa:", "nvlink_gbs:")):
            assert "#" in line, f"no source comment: {line!r}"


def test_unknown_instance_type_is_none_not_an_error() -> None:
    assert load_profile().for_instance("m5.large") is None


def test_user_profile_overrides_per_key(tmp_path: Path) -> None:
    user = write(tmp_path, """
cluster:
  gpu_taints: [{key: gpu-workload, effect: NoSchedule}]
instances:
  p5.48xlarge:
    nccl:
      all_reduce_busbw_floor_gbs:
        2: {2G: 420}
  x9.large: {gpus: 2, gpu_product: Custom, gpu_memory_mib: 1000}
""")
    profile = load_profile(user)
    p5 = profile.for_instance("p5.48xlarge")
    assert p5 is not None and p5.nccl_floor(2, parse_size("2G")) == 420
    default_1g = load_profile().for_instance("p5.48xlarge").nccl_floor(2, parse_size("1G"))  # type: ignore[union-attr]
    assert default_1g is not None and p5.nccl_floor(2, parse_size("1G")) == default_1g   # untouched sibling survives
    assert p5.efa == 32                                  # untouched keys survive
    assert profile.gpu_tolerations() == [{"key": "gpu-workload", "operator": "Exists", "effect": "NoSchedule"}]
    assert profile.for_instance("x9.large").gpus == 2     # type: ignore[union-attr]
    assert profile.sha256 != load_profile().sha256
    assert profile.path == str(user)


def test_per_instance_taint_adds_a_toleration(tmp_path: Path) -> None:
    user = write(tmp_path, "instances:\n  g5.xlarge:\n    taint: {key: dedicated, value: gpu, effect: NoExecute}\n")
    profile = load_profile(user)
    assert profile.expected_taints("g5.xlarge") == [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]
    assert profile.expected_taints("g5.2xlarge") == profile.gpu_taints      # the cluster-wide default
    assert {"key": "nvidia.com/gpu", "effect": "NoSchedule"} in profile.gpu_taints
    assert {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"} in profile.gpu_tolerations()


@pytest.mark.parametrize("text, line, fragment", [
    ("instances:\n  p5.48xlarge:\n    gpu_count: 8\n", 3, "instances.p5.48xlarge.gpu_count: unknown key 'gpu_count'"),
    ("cluster:\n  name: a\n  gpu_taint: []\n", 3, "cluster.gpu_taint: unknown key 'gpu_taint'"),
    ("clusters: {}\n", 1, "clusters: unknown key 'clusters'"),
    ("instances:\n  g5.xlarge:\n    gpus: eight\n", 3, "instances.g5.xlarge.gpus: expected a non-negative integer"),
    ("instances:\n  g5.xlarge:\n    nccl:\n      all_reduce_busbw_floor_gbs:\n        2: {2Q: 10}\n", 5,
     "not a message size: '2Q'"),
    ("instances:\n  g5.xlarge:\n    taint: {key: a, effect: Sometimes}\n", 3, "effect must be one of"),
    ("instances:\n  g5.xlarge:\n    provisioning_budget_s: {launch: 10}\n", 3, "unknown key 'launch'"),
])
def test_unknown_keys_and_bad_values_name_file_line_and_key(tmp_path: Path, text: str, line: int,
                                                             fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(pytest.UsageError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "instances:\n  g5.xlarge: {gpus: 1\n  g5.2xlarge: {}\n")
    with pytest.raises(pytest.UsageError, match=rf"^{path}:\d+: invalid YAML"):
        load_profile(path)


def test_profile_must_be_a_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match="--gpucluster-profile must be a YAML file"):
        load_profile(tmp_path / "profile.json")
    with pytest.raises(pytest.UsageError, match="must be a readable YAML file"):
        load_profile(tmp_path / "missing.yaml")


def test_the_plugin_reports_profile_errors_as_usage_errors(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makefile(".yaml", bad="instances:\n  p5.48xlarge:\n    gpu: 8\n")
    pytester.makepyfile(test_x="def test_x(): pass\n")
    result = pytester.runpytest(*plugin_args, "--gpucluster-profile", "bad.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad.yaml:3: instances.p5.48xlarge.gpu: unknown key 'gpu'*"])


def test_default_profile_is_plain_yaml() -> None:
    data = yaml.safe_load(DEFAULT_PROFILE.read_text())
    assert set(data) == {"cluster", "probes", "defaults", "families", "instances", "required", "tiers"}


@pytest.mark.parametrize("text, expected", [("8", 8), ("512M", 512 * 1024**2), ("2G", 2 * 1024**3),
                                            ("1GiB", 1024**3), ("16G", 16 * 1024**3)])
def test_parse_size_uses_nccl_tests_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_unschedulable_grace_comes_from_the_profile_and_is_validated(tmp_path) -> None:
    from pytest_gpucluster.profile import load_profile

    assert load_profile().unschedulable_grace_s == 45
    mine = tmp_path / "p.yaml"
    mine.write_text("probes:\n  unschedulable_grace_s: 5\n")
    assert load_profile(mine).unschedulable_grace_s == 5
    mine.write_text("probes:\n  unschedulable_grace_s: soon\n")
    with pytest.raises(pytest.UsageError, match="unschedulable_grace_s"):
        load_profile(mine)
