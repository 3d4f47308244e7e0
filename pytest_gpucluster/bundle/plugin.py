"""pytest side of the bundle. A run that writes a report folder records what it saw (recording.py) and seals the
folder (seal.py); a run given --gpucluster-replay answers its suites from a recording (replay.py) and marks its
report re-judged. The signing key is loaded at configure: a bad key is one usage error before anything runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Generator

import pytest

from .. import __version__
from ..options import replace_run_options
from ..packaged import suite_args
from ..aws import session as aws_session
from ..report.redact import redact_obj
from .manifest import ENVELOPE, MANIFEST
from .recording import Recorder, write_recording
from .replay import NotRecorded, Recording, RecordingError, Replay, VirtualClock
from .seal import seal
from .signing import Signer, SigningError, load_signer

BUNDLE_KEY = pytest.StashKey["BundleState"]()
# what the replay takes from the recorded run (it decides what the gather code asks); the rest is the judge's
RECORDED_OPTIONS = ("kubeconfig", "context", "sim", "namespace", "keep", "cuda_image", "nccl_image", "smoke_image",
                    "efa_image", "timeout_s", "costly", "nodes", "sample", "nccl_nodes", "nccl_sample_nodes", "nccl_full",
                    "aws_profile", "region")
KUBECTL_FIXTURE = "k8s"      # pytest-kubernetes: kubectl talks to the cluster past our boundary


@dataclass
class BundleState:
    signer: Signer | None = None
    sealed: list[Path] = field(default_factory=list)
    recorder: Recorder | None = None
    replay: Replay | None = None
    clock: VirtualClock | None = None
    rejudged: dict[str, Any] | None = None          # summary.json's "rejudged" block
    overlays: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    note: str | None = None


def _session(config: pytest.Config) -> Any:
    from ..session import SESSION_KEY
    return config.stash.get(SESSION_KEY, None)


def configure(config: pytest.Config, key_path: str | None, report_dir: Path | None = None) -> BundleState:
    """Register the bundle's state; start recording (a report folder is written) or replaying (--gpucluster-replay)."""
    state = BundleState()
    if key_path:
        try:
            state.signer = load_signer(key_path)
        except SigningError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[BUNDLE_KEY] = state
    run = _session(config)
    replay_dir = run.options.replay if run is not None else None
    if replay_dir and run is not None:
        _start_replay(config, run, state, Path(str(replay_dir)))
    elif report_dir is not None and run is not None:
        if config.getoption("numprocesses", default=None) not in (None, 0, "0"):
            state.note = "not recorded: a distributed run (-n) has one cluster connection per worker"
        else:
            _start_recording(run, state)
    if config.pluginmanager.hasplugin("html"):
        config.pluginmanager.register(HtmlHooks(state), "gpucluster-bundle-html")
    config.pluginmanager.register(TestHooks(state), "gpucluster-bundle-tests")
    return state


def _start_recording(run: Any, state: BundleState) -> None:
    state.recorder = recorder = Recorder()
    aws_session.TAP = recorder

    def tap(r: Any) -> None:
        r.cluster.tap = recorder
        overlay = getattr(getattr(r.sim, "handoff", None), "profile_overlay", None)
        if overlay:   # the simulated scenario's expectations: a replay judges with them too
            state.overlays = [(f"scenario:{r.sim_scenario}", dict(overlay))]
    run.on_connect.append(tap)


def _start_replay(config: pytest.Config, run: Any, state: BundleState, folder: Path) -> None:
    from ..profile import load_profile
    from ..retry import set_test_mode

    if run.options.sim is not None or run.options.kubeconfig:
        raise pytest.UsageError("--gpucluster-replay re-judges a recording: it takes no --sim or --kubeconfig")
    try:
        recording = Recording.load(folder)
    except RecordingError as exc:
        raise pytest.UsageError(f"--gpucluster-replay: {exc}") from None
    index = recording.index
    state.clock = VirtualClock(float(index["recorded"]["start_epoch"]))
    state.clock.install()
    set_test_mode(True)          # retries replay their recorded attempts; waiting between them measures nothing
    state.replay = Replay(recording, state.clock)
    aws_session.TAP = state.replay
    recorded = {k: v for k, v in (index.get("options") or {}).items() if k in RECORDED_OPTIONS}
    run.options = replace_run_options(config, **recorded, partial=run.options.partial
                                      or bool((index.get("options") or {}).get("partial")))
    run.run_id, run.namespace = index["run_id"], index["namespace"]
    overlays = [(str(label), dict(data)) for label, data in (index.get("profile") or {}).get("overlays") or []]
    run.profile = load_profile(run.options.profile, overlays=overlays)
    run.replay = state.replay
    state.rejudged = {"from_run": index["run_id"], "recorded": index["recorded"]["started"],
                      "recording": str(folder), "profile": {"path": run.profile.path, "sha256": run.profile.sha256},
                      "recorded_profile": index.get("profile", {}).get("sha256")}
    for option in ("markexpr", "keyword"):              # the recorded run's -m / -k
        value = (index.get("selection") or {}).get(option)
        if value and not getattr(config.option, option, None):
            setattr(config.option, option, value)


def _meta(run: Any, config: pytest.Config, state: BundleState) -> dict[str, Any]:
    opts = run.options.to_dict()
    meta: dict[str, Any] = redact_obj({
        "run_id": run.run_id, "namespace": run.namespace, "server": {"gitVersion": run.server_version},
        "tool": {"name": "pytest-gpucluster", "version": __version__},
        "simulated": run.sim_scenario is not None, "scenario": run.sim_scenario, "options": opts,
        "profile": {"path": run.profile.path, "sha256": run.profile.sha256,
                    "overlays": [[label, data] for label, data in state.overlays]},
        "selection": {"markexpr": getattr(config.option, "markexpr", "") or "",
                      "keyword": getattr(config.option, "keyword", "") or "", "suites": suite_args(config)},
    })
    return meta


def seal_report(config: pytest.Config, report_dir: Path, summary: dict[str, Any]) -> None:
    """The last writes into the folder (the upload reads it after this): the recording, then the manifest."""
    state = config.stash.get(BUNDLE_KEY, None)
    if state is None:
        return
    run = _session(config)
    if state.recorder is not None and run is not None and run.connected:
        write_recording(report_dir, state.recorder, _meta(run, config, state))
    aws_session.TAP = None           # the upload after this is not part of the run
    state.sealed = seal(report_dir, summary, state.signer)


def summary_fields(config: pytest.Config) -> dict[str, Any]:
    """What summary.json adds for a re-judged run (`rejudged`: from which run, recorded when, with which profile)."""
    state = config.stash.get(BUNDLE_KEY, None)
    return {"rejudged": state.rejudged} if state is not None and state.rejudged else {}


def rejudged_line(rejudged: dict[str, Any]) -> str:
    profile = rejudged.get("profile") or {}
    return (f"re-judged from run {rejudged.get('from_run')} recorded {rejudged.get('recorded')}, profile "
            f"{profile.get('path') or 'default'} (sha256 {profile.get('sha256')})")


def seal_block(signer: Signer | None) -> str:
    """The report.html section saying how the folder is sealed and how to check it."""
    if signer is None:
        how = (f"Not signed. <code>{MANIFEST}</code> lists every file of this folder with its sha256 "
               "(an in-toto Statement); <code>gpucluster verify FOLDER</code> checks them.")
    else:
        how = (f"Signed with Ed25519 key <code>sha256:{escape(signer.keyid)}</code> "
               f"(<code>{ENVELOPE}</code>, a DSSE envelope of <code>{MANIFEST}</code>, which lists every file of "
               "this folder with its sha256). Check it with <code>gpucluster verify FOLDER --key vendor.pub</code>.")
    return f'<div class="gc-seal"><h2>Evidence seal</h2><p>{how}</p></div>'


class HtmlHooks:
    def __init__(self, state: BundleState) -> None:
        self.state = state

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: pytest.Session) -> None:
        if self.state.rejudged:
            prefix.insert(0, f'<div class="gc-rejudged" style="border:2px solid #555;padding:6px;margin:6px 0">'
                             f'<strong>{escape(rejudged_line(self.state.rejudged).capitalize())}</strong>. Nothing was '
                             f'measured again: every value is the recorded run\'s; a check the recording could not '
                             f'answer is not shown.</div>')
        postfix.append(seal_block(self.state.signer))


class TestHooks:
    """Replay: a check whose evidence the recording lacks is not shown (skipped with why), never passed."""

    def __init__(self, state: BundleState) -> None:
        self.state = state

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.state.replay is None:
            return
        if KUBECTL_FIXTURE in getattr(item, "fixturenames", ()):
            pytest.skip("not shown in a re-judged run: kubectl checks (pytest-kubernetes `k8s`) talk to the cluster "
                        "past the recorded boundary")
        live = item.get_closest_marker("live_only")
        if live is not None:
            pytest.skip(f"not shown in a re-judged run: {live.args[0] if live.args else 'measured live only'}")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if call.excinfo is not None and call.excinfo.errisinstance(NotRecorded):
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0,
                               f"Skipped: not shown in a re-judged run: {call.excinfo.value}")
        return report

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.state.rejudged:
            terminalreporter.write_line(rejudged_line(self.state.rejudged))
        if self.state.note:
            terminalreporter.write_line(f"gpucluster: {self.state.note}", yellow=True)
        if self.state.sealed:
            signed = f", signed by sha256:{self.state.signer.keyid}" if self.state.signer else " (not signed)"
            terminalreporter.write_line(f"sealed:  {self.state.sealed[0]}{signed}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.state.clock is not None:
            self.state.clock.uninstall()
        if aws_session.TAP is self.state.recorder or aws_session.TAP is self.state.replay:
            aws_session.TAP = None

