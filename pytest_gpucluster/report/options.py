"""The report's rows of the option table, registered where the report plugin runs alone (declared once in
pytest_gpucluster/options.py; read, like every option, through options.run_options)."""
from __future__ import annotations

from typing import Any

from ..options import OPTIONS

REPORT_FIELDS = ("report_dir", "no_report", "partial", "sign", "upload")


def add_report_options(group: Any) -> None:
    """The report's rows of pytest_gpucluster.options.OPTIONS, for a project that loads the report plugin alone
    (`-p no:gpucluster`); the gpucluster plugin registers them with the rest."""
    for opt in OPTIONS:
        if opt.field in REPORT_FIELDS:
            kwargs: dict[str, Any] = {"action": "store_true", "default": False} if opt.switch else {
                "action": "store", "default": None, "metavar": opt.metavar}
            group.addoption(opt.flag, dest=opt.dest, help=opt.help, **kwargs)
