"""mypy --strict on the package (per-module exceptions, each with its reason, in pyproject.toml [tool.mypy])."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_is_mypy_strict_clean(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "pytest_gpucluster", "--cache-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"mypy found type errors:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}"
