"""Without the `sim` extra, `pytest --sim`, `gpucluster run --sim`, `gpucluster sim` end in one line naming it (exit 4)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_gpucluster.sim_contract import handoff

ROOT = Path(__file__).resolve().parents[2]

# A -p plugin loaded before ours: the module cannot be imported, as if the extra were not installed.
BLOCKER = """
import sys

BLOCKED = {blocked!r}


class Blocker:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


for loaded in [m for m in sys.modules if m.split(".")[0] == BLOCKED]:
    del sys.modules[loaded]
sys.meta_path.insert(0, Blocker)
"""


def expected(what: str, module: str) -> str:
    return f"{what} needs the simulated cluster: pip install 'pytest-gpucluster[sim]' (missing module {module})"


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTEST_ADDOPTS", None)
    return env


@pytest.mark.parametrize("blocked", ["aiohttp", "moto", "cryptography"])
def test_pytest_sim_without_the_extra_is_one_usage_error(pytester: pytest.Pytester, plugin_args: list[str],
                                                        blocked: str) -> None:
    pytester.makepyfile(blocker=BLOCKER.format(blocked=blocked))
    pytester.makepyfile(test_cluster="def test_cluster(cluster):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "blocker", *plugin_args, "--sim", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.outlines + result.errlines if line.strip()]
    assert lines == [f"ERROR: {expected('--sim', blocked)}"], "\n".join(lines)


def test_gpucluster_run_sim_without_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['aiohttp'] = None\n"
            "from pytest_gpucluster.cli import main; sys.exit(main(['run', '--sim', '-p', 'no:cacheprovider']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert lines == [f"ERROR: {expected('--sim', 'aiohttp')}"], proc.stdout + proc.stderr


def test_gpucluster_sim_without_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['moto'] = None\n"
            "from pytest_gpucluster.cli import main; sys.exit(main(['sim', '--scenario', 'healthy']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert proc.stdout == "" and proc.stderr.splitlines() == [expected("gpucluster sim", "moto")]


def test_missing_sim_module_looks_without_importing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert handoff.missing_sim_module() is None      # the project's tests run with the extra installed
    monkeypatch.setitem(sys.modules, "moto", None)   # None in sys.modules: "cannot be imported"
    assert handoff.missing_sim_module() == "moto"
