"""The plugin stays inert in runs that use no cluster fixture, and fails fast and clearly when it cannot connect."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml


def kubeconfig_for(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


@pytest.fixture
def listener() -> Iterator[tuple[str, list[int]]]:
    """A TCP endpoint that records every connection it gets (and answers nothing)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{sock.getsockname()[1]}", accepted
    stop.set()
    thread.join(timeout=2)
    sock.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_no_connection_and_no_teardown_without_cluster_fixtures(pytester: pytest.Pytester, plugin_args: list[str],
                                                              listener: tuple[str, list[int]]) -> None:
    server, accepted = listener
    config = kubeconfig_for(pytester.path / "kubeconfig", server)
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest(*plugin_args, "--kubeconfig", str(config))
    result.assert_outcomes(passed=1)
    assert accepted == []
    assert "gpucluster: teardown" not in result.stdout.str()
    assert not list(pytester.path.glob("gpucluster-*"))


def test_kubeconfig_env_with_several_paths_is_not_read_until_needed(pytester: pytest.Pytester,
                                                                    plugin_args: list[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/a:/nonexistent/b")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.runpytest(*plugin_args).assert_outcomes(passed=1)


def test_unreachable_server_fails_within_seconds_naming_the_url(pytester: pytest.Pytester,
                                                                plugin_args: list[str]) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    config = kubeconfig_for(pytester.path / "kubeconfig", server)
    pytester.makepyfile(test_uses_cluster="""
        def test_one(cluster):
            pass

        def test_two(cluster):
            pass
    """)
    started = time.monotonic()
    result = pytester.runpytest(*plugin_args, "--kubeconfig", str(config))
    elapsed = time.monotonic() - started
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([f"*cannot reach the Kubernetes API at {server}*"])
    assert elapsed < 20, f"took {elapsed:.1f}s"


def test_missing_kubeconfig_says_where_it_looked(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_uses_cluster="def test_one(cluster):\n    pass\n")
    result = pytester.runpytest(*plugin_args, "--kubeconfig", str(pytester.path / "nope.yaml"))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--kubeconfig */nope.yaml: file not found*"])


def test_no_credentials_anywhere_suggests_kubeconfig_or_sim(pytester: pytest.Pytester, plugin_args: list[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(pytester.path / "missing-a") + ":" + str(pytester.path / "missing-b"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    pytester.makepyfile(test_uses_cluster="def test_one(cluster):\n    pass\n")
    result = pytester.runpytest(*plugin_args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no Kubernetes credentials: looked for */missing-a, */missing-b*--sim*"])
