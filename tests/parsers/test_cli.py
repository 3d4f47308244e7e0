"""`gpucluster parse KIND FILE`: JSON on stdout, exit 0; one-line reason on stderr, exit 2."""
from __future__ import annotations

import io
import json

import pytest

from pytest_gpucluster.cli import main

from ._data import DATA


def test_parse_file_prints_contract_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["parse", "nccl", str(DATA / "nccl-tests" / "allreduce-p4d-eks-2node-nccl299-debug-info.txt")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert set(out) == {"kind", "collectives", "transport", "gdrdma", "errors"}
    assert (out["kind"], out["transport"], out["gdrdma"]) == ("nccl-tests", "efa", True)
    assert set(out["collectives"][0]) == {"name", "ranks", "rows", "peak_busbw", "avg_busbw", "out_of_bounds"}


def test_parse_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO((DATA / "fi_info" / "efa-p4de-4domains-rdm-v119.txt").read_text()))
    assert main(["parse", "fi-info", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"kind", "providers", "hosts", "error"} and len(out["providers"]["efa"]["domains"]) == 4


def test_error_output_is_still_a_successful_parse(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", "nvidia-smi", str(DATA / "nvidia-smi" / "error-couldnt-communicate-with-driver.txt")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"kind", "format", "driver_version", "cuda_version", "gpus", "mig_devices", "processes", "error"}
    assert out["error"]["category"] == "driver_unreachable"


def test_wrong_tool_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", "fi-info", str(DATA / "nvidia-smi" / "list-L-h200-590.txt")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "not fi_info output" in captured.err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["parse", "nccl", str(tmp_path / "nope.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_headerless_csv_with_fields(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "smi.csv"
    f.write_text("0, NVIDIA H100 80GB HBM3, 81559 MiB\n")
    assert main(["parse", "nvidia-smi", str(f), "--fields", "index,name,memory.total", "--indent", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["gpus"][0]["memory_total_mib"] == 81559
