"""Folders shipped inside the package (the suites, the manifests) as paths on disk, found through importlib.resources,
and what makes a run a suite run (its arguments lie in the shipped suites)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

SUITES_PACKAGE = "pytest_gpucluster.suites"          # suites/ of a checkout, mapped in pyproject.toml
MANIFESTS_PACKAGE = "pytest_gpucluster.manifests"    # fixtures/ of a checkout, mapped in pyproject.toml


def package_folder(package: str) -> Path:
    """The folder of a shipped data package; FileNotFoundError saying the fix when it is not installed as files."""
    try:
        folder = resources.files(package)
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(f"package {package} is not installed ({exc}): in a checkout run "
                                "`pip install -e .`, otherwise reinstall pytest-gpucluster") from exc
    if not isinstance(folder, Path):
        raise FileNotFoundError(f"package {package} is not installed as files on disk ({folder!r}): "
                                "install pytest-gpucluster from its wheel, not from a zip")
    return folder


def suites_dir() -> Path:
    """The acceptance suites shipped as the package `pytest_gpucluster.suites` (suites/ in a checkout)."""
    return package_folder(SUITES_PACKAGE)


def in_suites(path: str | Path) -> bool:
    """Whether a file lies inside the shipped acceptance suites, wherever they are installed (a checkout's suites/,
    site-packages/pytest_gpucluster/suites): what makes a run a suite run, whatever its rootdir or test ids."""
    try:
        suites = suites_dir().resolve()
    except FileNotFoundError:
        return False
    where = Path(path).resolve()
    return where == suites or suites in where.parents


def collects_suites(config: pytest.Config) -> bool:
    """Whether a run's arguments point at the shipped suites (known before collection; after it, the collected
    items say: report/collector.py)."""
    return bool(suite_args(config))


def suite_args(config: pytest.Config) -> list[str]:
    """The run's file and test arguments that lie in the shipped suites, relative to them ("." for all of them,
    "test_nccl.py", "test_nccl.py::test_x"): what `gpucluster judge` collects again. Arguments outside the shipped
    suites (a site's own test files) are left out: this tool's judges cannot re-judge them."""
    try:
        root = suites_dir().resolve()
    except FileNotFoundError:
        return []
    out = []
    for arg in config.args:
        path, sep, rest = str(arg).partition("::")
        where = (config.invocation_params.dir / path).resolve()
        if where == root or root in where.parents:
            out.append(where.relative_to(root).as_posix() + sep + rest)
    return out
