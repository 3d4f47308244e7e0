"""Options, ini keys, markers and the report header of the plugin, through pytester runs."""
from __future__ import annotations

import pytest

SHOW_OPTIONS = """
import json
from pytest_gpucluster.session import SESSION_KEY

def test_show(pytestconfig):
    run = pytestconfig.stash[SESSION_KEY]
    print("OPTIONS=" + json.dumps(run.options.to_dict(), sort_keys=True))
    print("ARGS=" + json.dumps([str(a) for a in pytestconfig.args]))
"""


def _options(result: pytest.RunResult) -> dict:
    import json

    line = next(line for line in result.outlines if "OPTIONS=" in line)
    return json.loads(line.split("OPTIONS=", 1)[1])


def test_help_shows_the_gpucluster_group_and_ini_keys(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    result = pytester.runpytest(*plugin_args, "--help")
    result.stdout.fnmatch_lines([
        "*GPU cluster acceptance (pytest-gpucluster)*",
        "*--kubeconfig=PATH*", "*--context=NAME*", "*--sim=*SCENARIO*", "*--gpucluster-profile=FILE*",
        "*--gpucluster-namespace=NAME*", "*--gpucluster-keep*", "*--gpucluster-cuda-image=IMAGE*",
        "*--gpucluster-nccl-image=IMAGE*", "*--gpucluster-timeout=SECONDS*", "*--gpucluster-costly*",
        "*--gpucluster-nodes=SELECTOR*", "*--gpucluster-sample=N*",
    ])
    result.stdout.fnmatch_lines(["*gpucluster_kubeconfig (string)*", "*gpucluster_sim (string)*",
                                 "*gpucluster_costly (bool)*"])
    assert result.ret == 0


def test_defaults(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_show=SHOW_OPTIONS)
    result = pytester.runpytest(*plugin_args, "-s")
    opts = _options(result)
    assert opts["sim"] is None and opts["kubeconfig"] is None and opts["keep"] is False
    assert opts["cuda_image"] == "nvidia/cuda:13.0.2-runtime-ubuntu22.04"
    assert opts["nccl_image"] == "public.ecr.aws/hpc-cloud/nccl-tests:cuda12.8.1-efa1.42.0-ofiv1.16.0-ncclv2.27.5-1-testsv2.16.4"
    assert opts["timeout_s"] == 600.0 and opts["costly"] is False and opts["sample"] is None


def test_command_line_values(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_show=SHOW_OPTIONS)
    result = pytester.runpytest(*plugin_args, "-s", "--kubeconfig", "/k/config", "--context", "prod",
                                "--gpucluster-namespace", "acc", "--gpucluster-keep", "--gpucluster-timeout", "90",
                                "--gpucluster-nodes", "karpenter.sh/nodepool=gpu", "--gpucluster-sample", "2",
                                "--gpucluster-cuda-image", "my/cuda:1", "--gpucluster-costly")
    opts = _options(result)
    assert (opts["kubeconfig"], opts["context"], opts["namespace"]) == ("/k/config", "prod", "acc")
    assert opts["keep"] and opts["costly"] and opts["timeout_s"] == 90.0
    assert (opts["nodes"], opts["sample"], opts["cuda_image"]) == ("karpenter.sh/nodepool=gpu", 2, "my/cuda:1")


def test_ini_keys_set_the_same_values_and_the_command_line_wins(pytester: pytest.Pytester,
                                                                  plugin_args: list[str]) -> None:
    pytester.makeini("""
        [pytest]
        gpucluster_kubeconfig = /ini/config
        gpucluster_context = staging
        gpucluster_timeout = 120
        gpucluster_sample = 3
        gpucluster_keep = true
        gpucluster_nccl_image = my/nccl:2
    """)
    pytester.makepyfile(test_show=SHOW_OPTIONS)
    opts = _options(pytester.runpytest(*plugin_args, "-s", "--context", "cli"))
    assert opts["kubeconfig"] == "/ini/config" and opts["context"] == "cli"
    assert opts["timeout_s"] == 120.0 and opts["sample"] == 3 and opts["keep"] is True
    assert opts["nccl_image"] == "my/nccl:2"


@pytest.mark.parametrize("argv, scenario", [
    (["--sim"], "healthy"),
    (["--sim=auto-mode"], "auto-mode"),
    (["--sim", "gpu-missing"], "gpu-missing"),
])
def test_sim_takes_an_optional_scenario(pytester: pytest.Pytester, plugin_args: list[str],
                                        argv: list[str], scenario: str) -> None:
    pytester.makepyfile(test_show=SHOW_OPTIONS)
    opts = _options(pytester.runpytest(*plugin_args, "-s", *argv, "test_show.py"))
    assert opts["sim"] == scenario
    assert opts["costly"] is False   # the flag itself stays off; costly tests still run with --sim (below)


def test_sim_followed_by_a_test_path_does_not_swallow_it(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_show=SHOW_OPTIONS, test_other="def test_other():\n    pass\n")
    result = pytester.runpytest(*plugin_args, "-s", "--sim", "test_show.py")
    assert _options(result)["sim"] == "healthy"
    result.assert_outcomes(passed=1)   # only test_show.py ran: the path went back to pytest


@pytest.mark.parametrize("argv, message", [
    (["--gpucluster-timeout", "soon"], "--gpucluster-timeout must be a number, given: 'soon'"),
    (["--gpucluster-sample", "0"], "--gpucluster-sample must be at least 1, given: '0'"),
    (["--sim", "--kubeconfig", "/x"], "--sim and --kubeconfig are exclusive"),
])
def test_bad_values_are_usage_errors(pytester: pytest.Pytester, plugin_args: list[str],
                                     argv: list[str], message: str) -> None:
    pytester.makepyfile(test_show=SHOW_OPTIONS)
    result = pytester.runpytest(*plugin_args, *argv)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_markers_are_registered_for_strict_markers_and_dash_m(pytester: pytest.Pytester,
                                                              plugin_args: list[str]) -> None:
    pytester.makepyfile(test_marks="""
        import pytest

        @pytest.mark.gpu
        def test_gpu(): pass

        @pytest.mark.efa
        def test_efa(): pass

        @pytest.mark.taints
        @pytest.mark.karpenter
        @pytest.mark.nccl
        @pytest.mark.aws
        def test_rest(): pass
    """)
    result = pytester.runpytest(*plugin_args, "--strict-markers", "-m", "gpu or efa")
    result.assert_outcomes(passed=2, deselected=1)
    markers = pytester.runpytest(*plugin_args, "--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.gpu:*", "@pytest.mark.efa:*", "@pytest.mark.taints:*",
                                  "@pytest.mark.karpenter:*", "@pytest.mark.nccl:*", "@pytest.mark.aws:*",
                                  "@pytest.mark.costly:*"])


COSTLY = """
import pytest

@pytest.mark.costly
def test_launches_nodes(): pass

def test_cheap(): pass
"""


def test_costly_tests_skip_unless_enabled(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_costly=COSTLY)
    result = pytester.runpytest(*plugin_args, "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*costly (launches nodes): enable with --gpucluster-costly*"])
    pytester.runpytest(*plugin_args, "--gpucluster-costly").assert_outcomes(passed=2)


def test_costly_tests_run_by_default_with_sim(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_costly=COSTLY)
    # No test touches a cluster fixture, so the simulated cluster is never started (inert).
    pytester.runpytest(*plugin_args, "--sim").assert_outcomes(passed=2)


def test_report_header_names_target_profile_and_costly(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_costly=COSTLY)
    result = pytester.runpytest(*plugin_args, "--sim=auto-mode", "--gpucluster-sample", "2")
    result.stdout.fnmatch_lines([
        "gpucluster: run * on SIMULATED cluster (scenario auto-mode); namespace gpucluster-*; connects on first use",
        "gpucluster: profile */profiles/default.yaml (sha256 *); costly tests on",
        "gpucluster: node selection: selector -, sample 2 per type",
    ])


def test_every_option_is_a_runoptions_field_and_documented() -> None:
    """One table: each row names a RunOptions field, and docs/options.md carries the generated table verbatim."""
    import dataclasses
    from pathlib import Path

    from pytest_gpucluster.options import OPTIONS, RunOptions, markdown_table

    fields = {f.name for f in dataclasses.fields(RunOptions)}
    assert [o.field for o in OPTIONS if o.field not in fields] == []
    assert fields - {o.field for o in OPTIONS} == set()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "options.md").read_text()
    assert markdown_table() in docs, "docs/options.md is stale: regenerate with python -m pytest_gpucluster.options"


def test_env_fallback_is_used_below_the_command_line(pytester: pytest.Pytester, plugin_args: list[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUCLUSTER_NCCL_NODES", "4")
    monkeypatch.setenv("GPUCLUSTER_CUDA_SMOKE_IMAGE", "env/torch:1")
    pytester.makepyfile(test_show=SHOW_OPTIONS)
    opts = _options(pytester.runpytest_subprocess(*plugin_args, "-s", "--gpucluster-nccl-nodes", "3"))
    assert opts["nccl_nodes"] == 3 and opts["smoke_image"] == "env/torch:1"


def test_the_former_fixture_name_gives_the_session_with_a_deprecation_warning(pytester: pytest.Pytester,
                                                                             plugin_args: list[str]) -> None:
    pytester.makepyfile(test_old_name="""
        def test_same(gpucluster_run, gpucluster_session):
            assert gpucluster_run is gpucluster_session
    """)
    result = pytester.runpytest(*plugin_args, "--gpucluster-no-report", "-W", "error::pytest.PytestDeprecationWarning")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*gpucluster_run is now gpucluster_session*"])
    result = pytester.runpytest(*plugin_args, "--gpucluster-no-report")
    result.assert_outcomes(passed=1)   # warnings not counted: an installed (not editable) plugin adds pytest's own
    result.stdout.fnmatch_lines(["*PytestDeprecationWarning: the fixture gpucluster_run is now gpucluster_session*"])
