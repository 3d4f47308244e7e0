"""pytest side of the bundle: loads the signing key at configure (a bad key is one usage error before anything
runs), seals the report folder once every other file is written, and says in report.html whether it is signed."""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import pytest

from .manifest import ENVELOPE, MANIFEST
from .seal import seal
from .signing import Signer, SigningError, load_signer

BUNDLE_KEY = pytest.StashKey["BundleState"]()


@dataclass
class BundleState:
    signer: Signer | None = None
    sealed: list[Path] = field(default_factory=list)


def configure(config: pytest.Config, key_path: str | None) -> BundleState:
    """Register the bundle's state (and its report.html hooks when pytest-html is active)."""
    state = BundleState()
    if key_path:
        try:
            state.signer = load_signer(key_path)
        except SigningError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[BUNDLE_KEY] = state
    if config.pluginmanager.hasplugin("html"):
        config.pluginmanager.register(HtmlHooks(state), "gpucluster-bundle-html")
    config.pluginmanager.register(TerminalHooks(state), "gpucluster-bundle-terminal")
    return state


def seal_report(config: pytest.Config, report_dir: Path, summary: dict[str, Any]) -> None:
    """The last write into the folder (the upload reads it after this)."""
    state = config.stash.get(BUNDLE_KEY, None)
    if state is not None:
        state.sealed = seal(report_dir, summary, state.signer)


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
        postfix.append(seal_block(self.state.signer))


class TerminalHooks:
    def __init__(self, state: BundleState) -> None:
        self.state = state

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.state.sealed:
            return
        signed = f", signed by sha256:{self.state.signer.keyid}" if self.state.signer else " (not signed)"
        terminalreporter.write_line(f"sealed:  {self.state.sealed[0]}{signed}")
