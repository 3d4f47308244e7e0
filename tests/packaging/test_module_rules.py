"""Rules that keep the package's shape: the judges are pure (every `pytest_gpucluster.checks.*` module imports where
neither `kubernetes` nor `pytest` nor boto3 can be imported), no module outside the simulated cluster passes 400
lines, no module imports another module's private names, and each small concept has one definition."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pytest_gpucluster"
MAX_LINES = 400
# A meta-path finder that refuses these packages, as if they were not installed; the import of the judge then
# runs in a fresh interpreter (`python -c`), exactly as `python -c "import pytest_gpucluster.checks.taints"` would
# in an environment without them.
BLOCKER = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"kubernetes", "pytest", "_pytest", "boto3", "botocore"}:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: a judge must not need it)")
        return None
sys.meta_path.insert(0, Absent())
"""
JUDGES = sorted(p.stem for p in (PACKAGE / "checks").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", JUDGES)
def test_judge_imports_without_kubernetes_and_pytest(module: str) -> None:
    code = BLOCKER + f"import pytest_gpucluster.checks.{module}\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"pytest_gpucluster.checks.{module} needs a blocked package:\n{proc.stderr[-2000:]}"


def test_the_blocker_blocks() -> None:
    """The proof above is worth something only if the blocker really makes the packages unimportable."""
    proc = subprocess.run([sys.executable, "-c", BLOCKER + "import pytest_gpucluster.kube.client\n"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "blocked" in proc.stderr


def test_modules_outside_the_simulated_cluster_stay_under_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if PACKAGE / "sim" not in p.parents and (n := len(p.read_text().splitlines())) >= MAX_LINES}
    assert long == {}, f"split these by concern (docs/design.md): {long}"


def private_imports(folder: Path) -> dict[str, list[str]]:
    """Module -> the `_private` names it imports from another module of the package (`from .x import _y`)."""
    out: dict[str, list[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("pytest_gpucluster")):
                names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if names:
                    out.setdefault(str(path.relative_to(ROOT)), []).extend(names)
    return out


def test_no_parser_imports_another_parsers_private_names() -> None:
    assert private_imports(PACKAGE / "parsers") == {}


# Small concepts written once (issue 25): the pattern that would define each again, and where its one definition is.
ONCE = {
    r'^\s*def condition\(': "kube/objects.py",                        # the condition lookup
    r'^\s*def (_ts|timestamp)\(': "kube/objects.py",                    # RFC 3339 timestamps
    r'"nvidia\.com/gpu"': "kube/objects.py",                            # resource names
    r'"vpc\.amazonaws\.com/efa"': "kube/objects.py",
    r'\^### \(\?P<name>': "checks/probe_output.py",                     # the probe-output section splitter
    r'^\s*def parse_smi_log\(': "parsers/nvidia_smi_q.py",              # the nvidia-smi -q reader
}


@pytest.mark.parametrize("pattern, home", list(ONCE.items()))
def test_a_small_concept_has_one_definition(pattern: str, home: str) -> None:
    import re
    found = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py"))
             if p.relative_to(PACKAGE).parts[0] != "sim" and re.search(pattern, p.read_text(), re.M)]
    assert found == [home], f"{pattern!r} is defined in {found}, expected only in {home}"


def test_options_are_read_one_way() -> None:
    """Only options.py reads the plugin's options from pytest (getoption/getini/config.option); everything else asks
    `run_options(config)` or the session's `.options`, so a value is converted, validated and defaulted once."""
    from pytest_gpucluster.options import OPTIONS

    ours = {opt.dest for opt in OPTIONS} | {opt.field for opt in OPTIONS}
    readers = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "suites").glob("*.py")]:
        if path == PACKAGE / "options.py" or (PACKAGE / "sim") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            # ours by name, or any name through a wrapper (a variable argument): pytest's own options are constants
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("getoption", "getini") and node.args \
                    and (not isinstance(node.args[0], ast.Constant) or node.args[0].value in ours):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.attr}({ast.unparse(node.args[0])})")
            if isinstance(node, ast.Attribute) and node.attr in {opt.dest for opt in OPTIONS} \
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "option":
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno} config.option.{node.attr}")
    assert not readers, "options read around run_options():\n" + "\n".join(readers)


def test_judges_follow_one_naming_rule() -> None:
    """A judge (a public function of checks/ returning a Verdict) is named for what it judges (`memlock`, `clocks`,
    `bandwidth`) and called as `judge.<name>` or by that name; no `judge_` prefix beside bare names."""
    prefixed = []
    for path in sorted((PACKAGE / "checks").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("judge_") \
                    and node.returns is not None and "Verdict" in ast.unparse(node.returns):
                prefixed.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not prefixed, "judges named judge_<what>: name them <what>:\n" + "\n".join(prefixed)
