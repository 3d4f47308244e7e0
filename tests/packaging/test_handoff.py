"""The hand-off folder reader: a good folder, each missing or malformed file is one clear HandoffError."""
from __future__ import annotations

import json
import stat
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from pytest_gpucluster.sim_contract.handoff import (
    AWS_SETTINGS, KUBECONFIG, MANIFEST, PROFILE_OVERLAY, AwsSettings, HandoffError, read_handoff, write_handoff,
)

AWS = AwsSettings("http://127.0.0.1:5000", "us-west-2", "AKIDSIM", "secret-sim")
OVERLAY = {"families": {"p5": {"provisioning_budget_s": {"launched": 10, "total": 30}}}}


def good(folder: Path, **changes: object) -> Path:
    args: dict[str, Any] = {"scenario_name": "healthy", "server_url": "https://127.0.0.1:6443",
                            "kubeconfig": b"apiVersion: v1\n", "aws": AWS, "profile_overlay": OVERLAY,
                            "warnings": ["sim.seed is not available"]}
    args.update(changes)
    write_handoff(folder, **args)
    return folder


def test_a_written_folder_reads_back_into_the_dataclass(tmp_path: Path) -> None:
    handoff = read_handoff(good(tmp_path / "h"))
    assert handoff.folder == tmp_path / "h" and handoff.scenario_name == "healthy"
    assert handoff.server_url == "https://127.0.0.1:6443"
    assert handoff.kubeconfig_path == tmp_path / "h" / KUBECONFIG
    assert handoff.kubeconfig_path.read_bytes() == b"apiVersion: v1\n"
    assert handoff.aws == AWS and handoff.profile_overlay == OVERLAY
    assert handoff.warnings == ("sim.seed is not available",)
    for secret in (KUBECONFIG, AWS_SETTINGS):   # a token and credentials: owner only
        assert stat.S_IMODE((tmp_path / "h" / secret).stat().st_mode) == 0o600


def test_aws_settings_as_the_env_names_open_session_reads() -> None:
    assert AWS.as_env() == {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_DEFAULT_REGION": "us-west-2",
                            "AWS_ACCESS_KEY_ID": "AKIDSIM", "AWS_SECRET_ACCESS_KEY": "secret-sim"}
    assert AwsSettings.from_env(AWS.as_env()) == AWS


def test_no_aws_account_and_no_overlay_are_none(tmp_path: Path) -> None:
    handoff = read_handoff(good(tmp_path, aws=None, profile_overlay=None, warnings=()))
    assert handoff.aws is None and handoff.profile_overlay is None and handoff.warnings == ()
    assert not (tmp_path / AWS_SETTINGS).exists() and not (tmp_path / PROFILE_OVERLAY).exists()


def test_overlay_mapping_subclasses_are_written_as_plain_yaml(tmp_path: Path) -> None:
    overlay = OrderedDict(families=OrderedDict(p5={"gpus": 8}), budgets=(1, 2))
    assert read_handoff(good(tmp_path, profile_overlay=overlay)).profile_overlay == {
        "families": {"p5": {"gpus": 8}}, "budgets": [1, 2]}


def test_missing_manifest_says_the_folder_is_incomplete(tmp_path: Path) -> None:
    with pytest.raises(HandoffError, match=rf"{tmp_path / MANIFEST}: the hand-off manifest is missing "
                                           r"\(the simulated cluster did not finish writing"):
        read_handoff(tmp_path)


def test_bad_json_names_the_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text('{"version": 1,\n "scenario": }\n')
    with pytest.raises(HandoffError, match=rf"{tmp_path / MANIFEST}: the hand-off manifest is not valid JSON: "
                                           r"Expecting value at line 2 column 14"):
        read_handoff(tmp_path)


@pytest.mark.parametrize("missing, key", [(KUBECONFIG, "kubeconfig"), (AWS_SETTINGS, "aws"),
                                          (PROFILE_OVERLAY, "profile")])
def test_a_named_file_that_is_missing_is_named(tmp_path: Path, missing: str, key: str) -> None:
    (good(tmp_path) / missing).unlink()
    with pytest.raises(HandoffError, match=rf"{tmp_path / missing}: named by handoff.json \('{key}'\) but missing"):
        read_handoff(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"version": 2}, "format version 2, expected 1: the simulated cluster comes from another pytest-gpucluster"),
    ({"scenario": ""}, "'scenario' must be a non-empty string, found ''"),
    ({"kubeconfig": None}, "names no kubeconfig"),
    ({"kubeconfig": "../../etc/passwd"}, "'kubeconfig' must name a file in the hand-off folder"),
    ({"warnings": "one"}, "'warnings' must be a list, found str"),
])
def test_malformed_manifest_values(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    manifest = json.loads((good(tmp_path) / MANIFEST).read_text())
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, **change}))
    with pytest.raises(HandoffError, match=f"{tmp_path / MANIFEST}: .*{message.replace('(', '.').replace(')', '.')}"):
        read_handoff(tmp_path)


def test_aws_settings_without_credentials_names_the_key(tmp_path: Path) -> None:
    (good(tmp_path) / AWS_SETTINGS).write_text(json.dumps({"endpoint_url": "http://127.0.0.1:1", "region": "x"}))
    with pytest.raises(HandoffError, match=rf"{tmp_path / AWS_SETTINGS}: 'access_key_id' must be a non-empty string"):
        read_handoff(tmp_path)


def test_overlay_that_is_not_a_mapping(tmp_path: Path) -> None:
    (good(tmp_path) / PROFILE_OVERLAY).write_text("- a list\n")
    with pytest.raises(HandoffError, match="expected a mapping .profile keys., found list"):
        read_handoff(tmp_path)
    (tmp_path / PROFILE_OVERLAY).write_text("families: [\n")
    with pytest.raises(HandoffError, match="invalid YAML in the scenario's profile overlay"):
        read_handoff(tmp_path)
