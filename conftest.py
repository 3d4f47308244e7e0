"""Root conftest: running `pytest` from a checkout collects suites/ (see testpaths); the plugin itself loads through its pytest11 entry point."""
