"""`gpucluster compare`: bandwidth drops, slower provisioning phases, flipped and vanished checks, bad input."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_gpucluster.cli import main


def summary(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1, "run_id": "20261122-020000-abcd", "verdict": "ACCEPTED",
        "counts": {"passed": 3},
        "checks": [
            {"nodeid": "suites/test_nccl.py::test_allreduce[ip-10-0-1-1/p5.48xlarge]", "node": "ip-10-0-1-1",
             "outcome": "passed", "measurements": [
                 {"name": "busbw", "value": 380.0, "unit": "GB/s", "threshold": 300.0, "op": ">=", "pass": True}]},
            {"nodeid": "suites/test_karpenter.py::test_scale_up", "node": None, "outcome": "passed",
             "measurements": [{"name": "phase.launched", "value": 50.0, "unit": "s", "threshold": None,
                               "op": ">=", "pass": None},
                              {"name": "gpus", "value": 8, "unit": "count", "threshold": 8, "op": "==", "pass": True}]},
            {"nodeid": "suites/test_efa.py::test_fi_info", "node": None, "outcome": "passed", "measurements": []},
        ],
    }
    doc.update(over)
    return doc


def write(tmp_path: Path, name: str, doc: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


def test_identical_runs_have_no_regression(tmp_path, capsys):
    old = write(tmp_path, "old.json", summary())
    assert main(["compare", old, old]) == 0
    assert "no regressions" in capsys.readouterr().out


def test_bandwidth_down_more_than_5_percent_on_a_renamed_node_is_a_regression(tmp_path, capsys):
    new = summary(run_id="20261123-020000-beef")
    check = new["checks"][0]
    check["nodeid"] = check["nodeid"].replace("ip-10-0-1-1", "ip-10-0-9-9")  # Karpenter replaced the node
    check["node"] = "ip-10-0-9-9"
    check["measurements"][0]["value"] = 340.0  # -10.5 %, still above the 300 floor
    rc = main(["compare", write(tmp_path, "old.json", summary()), write(tmp_path, "new.json", new)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "bandwidth" in out and "test_allreduce[*/p5.48xlarge]" in out and "-10.5%" in out


def test_small_bandwidth_wobble_is_not_a_regression(tmp_path):
    new = summary()
    new["checks"][0]["measurements"][0]["value"] = 370.0  # -2.6 %
    assert main(["compare", write(tmp_path, "o.json", summary()), write(tmp_path, "n.json", new)]) == 0


def test_provisioning_phase_up_more_than_20_percent_and_threshold_option(tmp_path, capsys):
    new = summary()
    new["checks"][1]["measurements"][0]["value"] = 65.0  # +30 %
    old_p, new_p = write(tmp_path, "o.json", summary()), write(tmp_path, "n.json", new)
    assert main(["compare", old_p, new_p]) == 1
    assert "phase.launched" in capsys.readouterr().out
    assert main(["compare", old_p, new_p, "--duration-rise", "50"]) == 0


def test_short_phase_jitter_is_not_a_regression(tmp_path):
    old, new = summary(), summary()
    old["checks"][1]["measurements"][0].update(value=135.0, unit="ms")
    new["checks"][1]["measurements"][0].update(value=501.0, unit="ms")  # +271 %, but only 0.37 s
    old_p, new_p = write(tmp_path, "o.json", old), write(tmp_path, "n.json", new)
    assert main(["compare", old_p, new_p]) == 0
    assert main(["compare", old_p, new_p, "--duration-min-rise", "0.1"]) == 1


def test_flipped_and_disappeared_checks(tmp_path, capsys):
    new = summary()
    new["checks"][2]["outcome"] = "failed"
    del new["checks"][1]
    assert main(["compare", write(tmp_path, "o.json", summary()), write(tmp_path, "n.json", new)]) == 1
    out = capsys.readouterr().out
    assert "flipped" in out and "passed -> failed" in out and "test_fi_info" in out
    assert "disappeared" in out and "test_scale_up" in out


@pytest.mark.parametrize("content, message", [
    ("{not json", "not JSON"),
    ("", "not JSON"),
    ('["a list"]', "expected a JSON object"),
    (json.dumps({"schema_version": 1}), "missing or invalid 'run_id'"),
    (json.dumps(summary(schema_version=99)), "newer than this tool understands"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, content, message):
    good = write(tmp_path, "good.json", summary())
    assert main(["compare", good, write(tmp_path, "bad.json", content)]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope.json"), str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_compare_reads_summaries_written_by_the_plugin(run_suite, tmp_path, capsys):
    good = run_suite("def test_bw(evidence):\n    evidence.measure('busbw', 380, 'GB/s', threshold=300)\n")
    old_path = write(tmp_path, "old.json", good.summary)
    bad_doc = copy.deepcopy(good.summary)
    bad_doc["checks"][0]["measurements"][0]["value"] = 200.0
    bad_doc["checks"][0]["outcome"] = "failed"
    assert main(["compare", old_path, write(tmp_path, "new.json", bad_doc)]) == 1
    out = capsys.readouterr().out
    assert "passed -> failed" in out and "-47.4%" in out
