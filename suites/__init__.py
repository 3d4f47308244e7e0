"""The acceptance suites; installed as the package `pytest_gpucluster.suites` (pyproject.toml maps this folder)."""
