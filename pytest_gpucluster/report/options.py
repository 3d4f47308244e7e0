"""Command-line options of the report (registered by plugin.py's pytest_addoption via add_report_options)."""
from __future__ import annotations

import re
from typing import Any

import pytest

S3_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


def add_report_options(group: Any) -> None:
    """Add the report's options to the "gpucluster" option group (an `OptionGroup`)."""
    group.addoption(
        "--gpucluster-report-dir", action="store", default=None, metavar="DIR",
        help="write report.html, summary.json and junit.xml to DIR/<timestamp>/ "
             "(default for suite runs: reports/; give it to get a report from any run)")
    group.addoption(
        "--gpucluster-no-report", action="store_true", default=False,
        help="do not write the default reports/<timestamp>/ folder (--html/--junitxml still work)")
    group.addoption(
        "--gpucluster-upload", action="store", default=None, metavar="S3_URL",
        help="after the run, upload the report folder to s3://bucket/prefix/<folder>/ (boto3 credential chain)")


def upload_url(config: pytest.Config) -> str | None:
    """The validated --gpucluster-upload URL, or None."""
    url = _get(config, "gpucluster_upload")
    if url is None:
        return None
    url = str(url)
    if not S3_URL.match(url):
        raise pytest.UsageError(f"--gpucluster-upload must look like s3://bucket/prefix, given: {url!r}")
    return url


def report_root(config: pytest.Config) -> str | None:
    value = _get(config, "gpucluster_report_dir")
    return None if value is None else str(value)


def no_report(config: pytest.Config) -> bool:
    return bool(_get(config, "gpucluster_no_report"))


def _get(config: pytest.Config, dest: str) -> Any:
    # default=None: the options are absent when plugin.py did not call add_report_options
    return config.getoption(dest, default=None)
