"""Reporting: pytest-html hooks, summary.json, plots, redaction, `gpucluster compare`, S3 upload after the run."""
from __future__ import annotations
