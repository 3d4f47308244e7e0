"""The simulated cluster as a child process: start `python -m pytest_gpucluster.sim`, read its hand-off folder, stop it.

This is the plugin's only contact with sim/: a command line going out, a hand-off folder coming back.
The child stops when its stdin closes, so it dies with this process however this process ends (a
clean exit, Ctrl-C, SIGTERM, a crash, SIGKILL). It runs in its own session, so the terminal's Ctrl-C
reaches pytest only, which tears down against the still-running cluster and then stops it.
"""
from __future__ import annotations

import os
import selectors
import signal
import site
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .handoff import Handoff, read_handoff

START_TIMEOUT_S = 120.0    # the healthy scenario starts in ~3 s; a loaded CI machine can be much slower
STOP_TIMEOUT_S = 45.0      # the cluster's own stop waits up to 15 s for controllers and 10 s for its loop
_CHILD_PREFIX = "gpucluster sim: "


class SimStartError(RuntimeError):
    """The simulated cluster did not start; the message is the child's own reason."""


class SimStopError(RuntimeError):
    """The simulated cluster failed while it ran (a controller error), or did not stop in time."""


@dataclass
class SimProcess:
    """A running simulated cluster: what it handed over, and the child process serving it."""

    handoff: Handoff
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def scenario_name(self) -> str:
        return self.handoff.scenario_name

    @property
    def kubeconfig_path(self) -> Path:
        return self.handoff.kubeconfig_path

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Close the child's stdin (its signal to stop) and wait; SimStopError when it reports a failure."""
        proc = self.process
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise SimStopError(f"simulated cluster {self.scenario_name!r} did not stop within {timeout_s:.0f} s "
                               f"and was killed; its output: {_tail(self.log_path)}") from None
        if code != 0:
            raise SimStopError(_child_message(self.log_path) or f"simulated cluster {self.scenario_name!r} exited "
                               f"with {code} when stopped: {_tail(self.log_path)}")


def start(scenario: str, workdir: Path, *, timeout_s: float = START_TIMEOUT_S) -> SimProcess:
    """Start the scenario in a child process and wait (at most timeout_s) for its hand-off folder.

    Raises SimStartError with the child's reason (unknown scenario, bad YAML, port, ...), or
    handoff.HandoffError when the folder it wrote cannot be read.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "sim.log"
    command = [sys.executable, "-m", "pytest_gpucluster.sim", "--child", "--scenario", scenario,
               "--handoff", str(workdir / "handoff"), "--workdir", str(workdir / "cluster")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                env=_child_env(), start_new_session=True)
    try:
        assert proc.stdout is not None  # noqa: S101 - stdout=PIPE
        line = _first_line(proc.stdout.fileno(), time.monotonic() + timeout_s)
        proc.stdout.close()
        if not line:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
            raise SimStartError(_child_message(log_path) or f"the child exited with {code}: {_tail(log_path)}")
        return SimProcess(read_handoff(Path(line).parent), proc, log_path)
    except BaseException:
        _kill_group(proc)
        raise


def _first_line(fd: int, deadline: float) -> str:
    """The child's first stdout line (the hand-off manifest's path); "" when it exits first."""
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SimStartError("the simulated cluster wrote no hand-off folder within the start deadline")
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return ""
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode().strip()


def _child_env() -> dict[str, str]:
    """This environment; plus this package's folder on PYTHONPATH when it is not installed in site-packages
    (a checkout on sys.path), so the child imports the same code."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    installed = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if root not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's session (the child and anything it started that is still in it), then reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _child_message(log_path: Path) -> str:
    """The child's own error (its lines starting `gpucluster sim: `), without the prefix."""
    lines = [line[len(_CHILD_PREFIX):] for line in _lines(log_path) if line.startswith(_CHILD_PREFIX)]
    return "; ".join(lines)


def _tail(log_path: Path, count: int = 3) -> str:
    lines = [line for line in _lines(log_path) if line.strip()]
    return " | ".join(lines[-count:]) or "(no output)"


def _lines(log_path: Path) -> list[str]:
    try:
        return log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
