"""The AWS checks' options, read back from the run's RunOptions (declared once in pytest_gpucluster/options.py)."""
from __future__ import annotations

import pytest

from ..options import RunOptions


def _options(config: pytest.Config) -> RunOptions:
    from ..session import SESSION_KEY
    run = config.stash.get(SESSION_KEY, None)
    return run.options if run is not None else RunOptions()


def aws_profile(config: pytest.Config) -> str | None:
    return _options(config).aws_profile


def region(config: pytest.Config) -> str | None:
    return _options(config).region
