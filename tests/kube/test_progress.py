"""The live progress line: rewritten in place on a TTY, sparse in CI logs, silent when disabled."""
from __future__ import annotations

from collections import Counter

from pytest_gpucluster.kube.progress import NON_TTY_PERIOD_S, Progress, ProgressFactory


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[str] = []

    def write(self, content: str, **markup: bool) -> None:
        self.chunks.append(content)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_line_names_what_counts_and_seconds() -> None:
    clock = Clock()
    progress = Progress(None, "12 probe pods (nvidia-smi)", tty=False, clock=clock)
    progress.update(Counter({"Succeeded": 9, "Running": 3}))
    clock.now += 14.4
    assert progress.line() == "gpucluster: waiting for 12 probe pods (nvidia-smi): 9 Succeeded, 3 Running, 14s"


def test_ci_logs_get_nothing_for_short_waits_then_one_line_per_period() -> None:
    out, clock = Recorder(), Clock()
    with Progress(out, "2 probe pods (x)", tty=False, clock=clock) as progress:
        for second in range(35):
            clock.now += 1
            progress.update({"Running": 2} if second < 30 else {"Succeeded": 2})
    lines = [c for c in out.chunks if c.strip()]
    assert 2 <= len(lines) <= 4, lines                      # ~35 s of waiting: a few lines, not 35
    assert all(c.startswith("\ngpucluster: waiting for 2 probe pods (x):") for c in lines)
    assert out.chunks[-1] == "\n"

    quick, clock = Recorder(), Clock()
    with Progress(quick, "1 probe pod (x)", tty=False, clock=clock) as progress:
        clock.now += NON_TTY_PERIOD_S / 2
        progress.update({"Succeeded": 1})
    assert quick.chunks == []


def test_tty_rewrites_one_line_in_place_and_leaves_the_final_state() -> None:
    out, clock = Recorder(), Clock()
    with Progress(out, "1 probe pod (x)", tty=True, clock=clock) as progress:
        progress.update({"Pending": 1})
        progress._emit(force=False)
        clock.now += 3
        progress.update({"Succeeded": 1})
        progress._emit(force=False)
    assert out.chunks[0].startswith("\ngpucluster: waiting for 1 probe pod (x): 1 Pending, 0s")
    assert out.chunks[1].startswith("\rgpucluster: waiting for 1 probe pod (x): 1 Succeeded, 3s")
    assert out.chunks[-1] == "\n"


def test_disabled_factory_prints_nothing() -> None:
    out = Recorder()
    factory = ProgressFactory(out, tty=True, enabled=False)
    with factory("3 probe pods (x)") as progress:
        progress.update({"Running": 3})
        progress._emit(force=True)
    assert out.chunks == []
