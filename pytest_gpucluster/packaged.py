"""Folders shipped inside the package (the suites, the manifests) as paths on disk, found through importlib.resources."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

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
