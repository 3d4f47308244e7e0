"""The package ships without symlinks: every package listed, suites/ and fixtures/ found through importlib.resources,
the simulated cluster's dependencies an extra that only sim/ imports."""
from __future__ import annotations

import ast
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from pytest_gpucluster.kube.probes import manifests_dir
from pytest_gpucluster.packaged import suites_dir

tomllib = pytest.importorskip("tomllib")   # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pytest_gpucluster"
SIM_EXTRA = {"aiohttp", "moto", "cryptography"}


def pyproject() -> dict[str, Any]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text()))


def requirement_name(requirement: str) -> str:
    for stop in "<>=[;! ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.lower()


def python_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts]


def imported_roots(path: Path) -> set[str]:
    """Top-level names of absolute imports, and `sim` for relative imports reaching into sim/."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
            roots |= {"sim" for alias in node.names if alias.name.startswith("pytest_gpucluster.sim")}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0:
                roots.add(module.split(".")[0])
                if module == "pytest_gpucluster.sim" or module.startswith("pytest_gpucluster.sim."):
                    roots.add("sim")
            elif module == "sim" or module.startswith("sim.") or any(a.name == "sim" for a in node.names):
                roots.add("sim")
    return roots


def test_no_symlink_is_tracked() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert [line for line in listing.splitlines() if line.startswith("120000")] == []


def test_every_package_is_listed_in_pyproject() -> None:
    """setuptools cannot mix a package search with remapped folders, so pyproject.toml lists the packages:
    a new package with an __init__.py must be added there or the wheel ships without it."""
    config = pyproject()["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")
               if "__pycache__" not in p.parts}
    listed = set(config["packages"])
    assert on_disk - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert config["package-dir"] == {"pytest_gpucluster.suites": "suites", "pytest_gpucluster.manifests": "fixtures"}
    assert listed - on_disk == {"pytest_gpucluster.suites", "pytest_gpucluster.manifests"}


def test_suites_and_manifests_are_found_through_importlib_resources() -> None:
    assert suites_dir() == resources.files("pytest_gpucluster.suites")
    assert manifests_dir() == resources.files("pytest_gpucluster.manifests")
    assert (suites_dir() / "conftest.py").is_file() and (manifests_dir() / "probe-pod.yaml").is_file()
    # an editable install of this checkout maps the top-level folders themselves
    assert suites_dir().resolve() == ROOT / "suites" and manifests_dir().resolve() == ROOT / "fixtures"


def test_the_simulated_cluster_is_an_extra() -> None:
    project = pyproject()["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    sim = {requirement_name(r) for r in project["optional-dependencies"]["sim"]}
    assert sim == SIM_EXTRA and not core & SIM_EXTRA
    assert {"pytest", "pytest-kubernetes", "kubernetes", "boto3", "tenacity", "pytest-html", "pyyaml",
            "matplotlib"} <= core


def test_only_sim_imports_the_extra_and_nothing_imports_sim() -> None:
    """The plugin and the simulated cluster meet through a kubeconfig and the hand-off folder only."""
    offenders = {}
    for path in [*python_files(PACKAGE), *python_files(ROOT / "suites")]:
        if PACKAGE / "sim" in path.parents:
            continue
        bad = imported_roots(path) & (SIM_EXTRA | {"sim"})
        if path == PACKAGE / "bundle" / "signing.py":   # cryptography is also the `sign` extra's (Ed25519 keys)
            bad -= {"cryptography"}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_every_data_file_is_package_data() -> None:
    """Every non-Python file in the shipped folders matches a package-data glob (else the wheel leaves it out)."""
    config = pyproject()["tool"]["setuptools"]
    globs, mapped = config["package-data"], config["package-dir"]
    shipped = set()
    for package in config["packages"]:
        folder = ROOT / mapped.get(package, package.replace(".", "/"))
        for pattern in [*globs.get("*", []), *globs.get(package, [])]:
            shipped |= {p for p in folder.glob(pattern) if p.is_file()}
    data = {p for folder in (PACKAGE, ROOT / "suites", ROOT / "fixtures") for p in folder.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert sorted(str(p.relative_to(ROOT)) for p in data - shipped) == []
