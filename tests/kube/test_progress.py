"""The live progress line: a phase with done/total and the slowest pending thing; rewritten in place on a TTY, plain
lines in CI logs, silent when disabled."""
from __future__ import annotations

from collections import Counter

from pytest_gpucluster.kube.progress import (NON_TTY_PERIOD_S, Progress, ProgressFactory, TerminalOut, current_module,
                                             slowest)


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


def test_line_names_the_phase_done_of_total_states_and_the_slowest_pending_node() -> None:
    clock = Clock()
    progress = Progress(None, "test_efa.py probe pods (fi_info)", tty=False, total=12, clock=clock)
    progress.update(Counter({"Running": 2, "ContainerCreating": 1}), done=9,
                    pending={"ip-10-0-1-5": "Running", "ip-10-0-1-9": "ContainerCreating", "ip-10-0-1-7": "Running"})
    clock.now += 14.4
    assert progress.line() == ("gpucluster: test_efa.py probe pods (fi_info): 9/12 done, 2 Running, 1 ContainerCreating;"
                               " slowest: ip-10-0-1-9 (ContainerCreating); 14s")


def test_slowest_is_the_least_advanced_then_the_first_by_name() -> None:
    assert slowest({"b": "Running", "a": "Running"}) == "a (Running)"
    assert slowest({"ip-10-0-1-5.us-west-2.compute.internal+ip-10-0-1-9.us-west-2.compute.internal": "Created"}) \
        == "ip-10-0-1-5+ip-10-0-1-9 (Created)"
    assert slowest({"b": "Running", "c": "Unschedulable", "a": "ContainerCreating"}) == "c (Unschedulable)"
    assert slowest({}) is None


def test_ci_logs_get_a_line_per_period_and_one_when_the_phase_ends() -> None:
    out, clock = Recorder(), Clock()
    with Progress(out, "probe pods (x)", tty=False, total=2, clock=clock, tick=False) as progress:
        for second in range(35):
            clock.now += 1
            progress.update({"Running": 2} if second < 30 else {}, done=0 if second < 30 else 2,
                            pending={"n1": "Running", "n2": "Running"} if second < 30 else {})
            progress._emit(force=False)
    lines = [c for c in out.chunks if c.strip()]
    assert 2 <= len(lines) <= 4, lines                      # ~35 s of waiting: a few plain lines, not 35
    assert all(c.startswith("\ngpucluster: probe pods (x): ") and "\r" not in c for c in lines)
    assert "0/2 done, 2 Running; slowest: n1 (Running)" in lines[0]
    assert lines[-1] == "\ngpucluster: probe pods (x): 2/2 done; 35s" and out.chunks[-1] == "\n"

    quick, clock = Recorder(), Clock()
    with Progress(quick, "probe pods (x)", tty=False, total=1, clock=clock, tick=False) as progress:
        clock.now += NON_TTY_PERIOD_S / 2
        progress.update(done=1)
        progress._emit(force=False)
    assert quick.chunks == ["\ngpucluster: probe pods (x): 1/1 done; 7s", "\n"]    # only the record of the phase


def test_tty_rewrites_one_line_in_place_and_leaves_the_final_state() -> None:
    out, clock = Recorder(), Clock()
    with Progress(out, "probe pods (x)", tty=True, total=1, clock=clock, tick=False) as progress:
        progress.update({"Pending": 1}, pending={"n1": "Pending"})
        progress._emit(force=False)
        clock.now += 3
        progress.update({}, done=1, pending={})
        progress._emit(force=False)
    assert out.chunks[0].startswith("\ngpucluster: probe pods (x): 0/1 done, 1 Pending; slowest: n1 (Pending); 0s")
    assert out.chunks[1].startswith("\rgpucluster: probe pods (x): 1/1 done; 3s")
    assert out.chunks[-1] == "\n"


def test_a_tty_line_never_wraps_past_the_terminal_width() -> None:
    class Narrow(Recorder):
        def columns(self) -> int:
            return 40

    out, clock = Narrow(), Clock()
    with Progress(out, "test_efa.py probe pods (efa-fi-info)", tty=True, total=200, clock=clock, tick=False) as bar:
        bar.update({"ContainerCreating": 150}, done=50, pending={"ip-10-0-1-5.us-west-2.compute.internal": "Running"})
        bar._emit(force=False)
    assert all(len(c.lstrip("\r\n")) <= 39 for c in out.chunks), out.chunks


def test_a_followed_source_is_read_when_a_line_is_written() -> None:
    out, clock = Recorder(), Clock()
    state = {"done": 0}
    with Progress(out, "NCCL round 1: MPIJobs", tty=True, total=3, clock=clock, tick=False) as progress:
        progress.follow(lambda: {"done": state["done"], "pending": {"gc-nccl-a": "Running"}})
        state["done"] = 2
        progress._emit(force=False)
    assert out.chunks[0].startswith("\ngpucluster: NCCL round 1: MPIJobs: 2/3 done; slowest: gc-nccl-a (Running)")


def test_disabled_factory_prints_nothing() -> None:
    out = Recorder()
    factory = ProgressFactory(out, tty=True, enabled=False)
    with factory("probe pods (x)", total=3) as progress:
        progress.update({"Running": 3})
        progress._emit(force=True)
    assert out.chunks == []


def test_current_module_comes_from_pytest(monkeypatch: object) -> None:
    assert current_module() == "test_progress.py"


def test_terminal_out_writes_past_pytests_capture_and_skips_the_blank_line_between_phases() -> None:
    """The lines go to a duplicate of stdout taken at start (fd 1 may be redirected by pytest's capture meanwhile);
    a phase that starts right after another ended its line (pytest wrote nothing since) does not add a blank line."""
    import os

    read_fd, write_fd = os.pipe()
    column = [7]                                   # pytest's cursor column, as its terminal writer reports it
    with os.fdopen(write_fd, "w") as stream:
        out = TerminalOut(column=lambda: column[0], stream=stream)
        out.write("\ngpucluster: a: 1/1 done; 0s")
        out.write("\n")
        out.write("\ngpucluster: b: 1/1 done; 0s")   # pytest wrote nothing since: no blank line
        out.write("\n")
        column[0] = 3                                 # pytest wrote dots since
        out.write("\ngpucluster: c: 1/1 done; 0s")
        out.close()
        out.write("after close: dropped")
    with os.fdopen(read_fd) as got:
        assert got.read() == ("\ngpucluster: a: 1/1 done; 0s\ngpucluster: b: 1/1 done; 0s\n"
                              "\ngpucluster: c: 1/1 done; 0s")
