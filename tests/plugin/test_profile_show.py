"""`gpucluster profile show`: the effective profile with each value's source."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_gpucluster.cli import main


def test_profile_show_prints_values_with_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "show", "--instance-type", "p5.48xlarge"]) == 0
    out = capsys.readouterr().out
    assert "  gpus: 8    # [AC] https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html" in out
    assert "  efa: 32    # [AC] maximum EFA interfaces" in out
    assert "nccl floor, 2 node(s): 1G 393, 2G 399 GB/s    # awsome-distributed-training" in out
    assert "provisioning_budget_s: " in out and "site policy: set yours" in out
    assert "nccl ceiling, 2 node(s): 750.0 GB/s" in out


def test_profile_show_merges_the_users_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text("instances:\n  p5.48xlarge:\n    nccl: {all_reduce_busbw_floor_gbs: {2: {2G: 420}}}\n"
                    "    sources: {nccl.all_reduce_busbw_floor_gbs.2: 'our baseline run 2026-01-05'}\n")
    assert main(["profile", "show", "--instance-type", "p5.48xlarge", "--profile", str(user)]) == 0
    out = capsys.readouterr().out
    assert "2G 420 GB/s    # our baseline run 2026-01-05" in out and "mine.yaml" in out.splitlines()[0]


def test_profile_show_unknown_type_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "show", "--instance-type", "p9.huge"]) == 4
    assert "'p9.huge' is not in the profile" in capsys.readouterr().err


def test_profile_show_p6_b200_has_8_gpus_and_8_efa_with_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "show", "--instance-type", "p6-b200.48xlarge"]) == 0
    out = capsys.readouterr().out
    assert "  gpus: 8    # [AC6] ac.html Performance specifications: p6-b200.48xlarge 8 x NVIDIA B200 GPU" in out
    assert "  efa: 8    # [EFA6] efa-acc-inst-types: P6-B200 has 8 network cards" in out
    assert "  driver_min: 570.133.20    # [DRV6]" in out
    assert "nccl floor" not in out            # no published 1G/2G figure: the floor stays unset (NOT SHOWN)


def test_profile_show_p5_4xlarge_expects_no_nvlink_nor_gdrdma(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "show", "--instance-type", "p5.4xlarge"]) == 0
    out = capsys.readouterr().out
    assert "  gpus: 1    # [AC]" in out and "  efa: 1    # [AC]" in out
    assert "  nvlink: False    # one GPU" in out and "  gdrdma: False    # not expected" in out
    assert "  nvlink_gbs:" not in out and "nccl ceiling, 1 node(s): none" in out
