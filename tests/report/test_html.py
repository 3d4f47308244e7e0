"""HTML fragments: numbers for people, criteria folded per instance type, profile values, escaping."""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.report import html


def summary(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "run_id": "20261123-020000-abcd", "verdict": "NOT ACCEPTED", "verdict_reasons": ["1 check(s) failed"],
        "simulated": True, "scenario": "healthy", "interrupted": False,
        "counts": {"passed": 1, "failed": 1, "error": 0, "skipped": 0},
        "skips": [],
        "fingerprint": {"server_version": "v1.32.0", "inventory": {"p5.48xlarge": 2}, "components": {"nccl": ["2.27.3"]},
                        "profile": {"path": "default.yaml", "sha256": "ab" * 32}, "simulated": True, "scenario": "healthy"},
        "profile": {"values": {"p5.48xlarge": {"instance_type": "p5.48xlarge", "gpus": 8,
                                               "nccl_floors": {"2": {"1073741824": 390.0}}}}},
        "checks": [
            {"instance_type": "p5.48xlarge", "measurements": [
                {"name": "GPU 0 memory.total", "value": 81559.0, "unit": "MiB", "threshold": 79112.23, "op": ">=",
                 "source": "profile", "pass": True}]},
            {"instance_type": "p5.48xlarge", "measurements": [
                {"name": "GPU 0 memory.total", "value": 81559.0, "unit": "MiB", "threshold": 79112.23, "op": ">=",
                 "source": "profile", "pass": True}]},
            {"instance_type": "p5.48xlarge", "measurements": [
                {"name": "busbw <1G>", "value": 369.231, "unit": "GB/s", "threshold": 390.0, "op": ">=",
                 "source": "profile", "pass": False}]},
        ],
    }
    doc.update(over)
    return doc


def test_numbers_are_written_for_people():
    assert html._fmt(81559.0) == "81,559"
    assert html._fmt(79112.23) == "79,112"
    assert html._fmt(369.231) == "369.2"
    assert html._fmt(8.0) == "8"
    assert html._fmt(0.125) == "0.125"


def test_criteria_fold_equal_values_and_mark_failures():
    block = html.criteria_block(summary())
    assert "&gt;= 79,112 MiB" in block and "81,559 MiB (n=2)" in block and "2/2 pass" in block
    assert "busbw &lt;1G&gt;" in block  # names are escaped
    assert 'class="gc-fail">1/1 below criterion' in block


def test_profile_values_table_has_one_column_per_instance_type():
    block = html.criteria_block(summary())
    assert "<th>p5.48xlarge</th>" in block
    assert "<td>nccl_floors.2.1073741824</td><td>390.0</td>" in block


def test_title_and_banner_say_simulated_and_partial():
    doc = summary(interrupted=True)
    assert html.title(doc) == ("SIMULATED \u2014 GPU cluster acceptance: NOT ACCEPTED \u2014 PARTIAL (interrupted)"
                               " \u2014 run 20261123-020000-abcd")
    banner = html.verdict_block(doc)
    assert "gc-not-accepted" in banner and "SIMULATED cluster (healthy)" in banner


def test_fingerprint_lists_versions_and_profile_hash():
    block = html.fingerprint_block(summary())
    assert "<th>nccl</th><td>2.27.3</td>" in block and "ab" * 32 in block and "p5.48xlarge: 2" in block


def test_huge_attachments_keep_head_and_tail():
    text = "HEAD" + "x" * 600_000 + "TAIL"
    clipped = html.clip(text)
    assert clipped.startswith("HEAD") and clipped.endswith("TAIL") and len(clipped) < 270_000
    assert "characters omitted from the report" in clipped
    assert html.clip("short") == "short"
