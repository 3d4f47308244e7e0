"""The report's options read back from the command line (declared once in pytest_gpucluster/options.py)."""
from __future__ import annotations

from typing import Any

import pytest

from ..options import OPTIONS, s3_url

REPORT_FIELDS = ("report_dir", "no_report", "partial", "sign", "upload")


def add_report_options(group: Any) -> None:
    """The report's rows of pytest_gpucluster.options.OPTIONS, for a project that loads the report plugin alone
    (`-p no:gpucluster`); the gpucluster plugin registers them with the rest."""
    for opt in OPTIONS:
        if opt.field in REPORT_FIELDS:
            kwargs: dict[str, Any] = {"action": "store_true", "default": False} if opt.switch else {
                "action": "store", "default": None, "metavar": opt.metavar}
            group.addoption(opt.flag, dest=opt.dest, help=opt.help, **kwargs)


def upload_url(config: pytest.Config) -> str | None:
    """The validated --gpucluster-upload URL, or None."""
    url = _get(config, "gpucluster_upload")
    if url is None:
        return None
    url = str(url)
    return s3_url("--gpucluster-upload", url)


def report_root(config: pytest.Config) -> str | None:
    value = _get(config, "gpucluster_report_dir")
    return None if value is None else str(value)


def no_report(config: pytest.Config) -> bool:
    return bool(_get(config, "gpucluster_no_report"))


def partial(config: pytest.Config) -> bool:
    """--gpucluster-partial: a narrowed run is intended (missing required evidence does not make it INCOMPLETE)."""
    return bool(_get(config, "gpucluster_partial"))


def sign_key(config: pytest.Config) -> str | None:
    """--gpucluster-sign KEY: the private key that signs the folder's manifest (bundle/signing.py)."""
    value = _get(config, "gpucluster_sign")
    return None if value is None else str(value)


def _get(config: pytest.Config, dest: str) -> Any:
    # default=None: the options are absent when plugin.py did not call add_report_options
    return config.getoption(dest, default=None)
