"""Where a long run is: one line per phase (inventory, each module's probe fleets, NCCL rounds, teardown) with
done/total and the slowest thing still pending. On a terminal the line is rewritten in place; in CI logs (no TTY)
it is a plain line now and then and one when the phase ends."""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable, Mapping, Protocol, TextIO

NON_TTY_PERIOD_S = 15.0
TTY_PERIOD_S = 1.0
# How far a pending pod has got, least first: the "slowest" one is the least advanced (ties: the first by name).
_STAGE = {"Unschedulable": 0, "Pending": 1, "Created": 2, "ContainerCreating": 2, "Running": 3}


class Writer(Protocol):
    """What we need of pytest's TerminalReporter (or any stream adaptor)."""

    def write(self, content: str, **markup: bool) -> None: ...


class TerminalOut:
    """Writes to a duplicate of this process's stdout taken when the run starts: pytest's output capture redirects
    fd 1 while fixtures run (where the fleets wait), and would swallow the phase lines; a duplicate descriptor is not
    redirected, from whichever thread writes. `flush` (pytest's terminal reporter's) runs first on the main thread so
    the lines stay in order with pytest's buffered output; `column` (where pytest believes its cursor is) tells
    whether pytest wrote since this writer ended a line, so a phase right after another starts without a blank line."""

    def __init__(self, flush: Callable[[], None] | None = None, column: Callable[[], int] | None = None,
                 stream: TextIO | None = None) -> None:
        stream = stream or sys.__stdout__
        try:
            self.fd = os.dup(stream.fileno()) if stream is not None else -1
        except (OSError, ValueError):       # no real stdout (embedded, closed): no progress lines
            self.fd = -1
        self.flush, self.column = flush, column
        self._ended_at: int | None = None   # pytest's column when this writer last ended a line

    def write(self, content: str, **markup: bool) -> None:
        if self.fd < 0:
            return
        if self.flush is not None and threading.current_thread() is threading.main_thread():
            self.flush()
        column = self.column() if self.column is not None else None
        if content.startswith("\n") and self._ended_at is not None and column == self._ended_at:
            content = content[1:]           # still at the start of the line this writer ended
        self._ended_at = column if content.endswith("\n") else None
        data = content.encode("utf-8", errors="replace")
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:          # the terminal or the CI log pipe went away: progress is not worth failing over
            self.close()

    def columns(self) -> int:
        """The terminal's width (80 when it cannot be read)."""
        try:
            return os.get_terminal_size(self.fd).columns if self.fd >= 0 else 80
        except OSError:
            return 80

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def current_module() -> str:
    """The test module running now (`test_efa.py`), from pytest's PYTEST_CURRENT_TEST; "" outside a test."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return current.split("::", 1)[0].rsplit("/", 1)[-1] if current else ""


def slowest(pending: Mapping[str, str]) -> str | None:
    """`ip-10-0-3-17 (ContainerCreating)`: of the things still pending (name -> state), the least advanced one; a node
    by the first label of its name (EC2's `ip-10-0-3-17.us-west-2.compute.internal` is unique by its first), a group
    of nodes `a+b` by theirs."""
    if not pending:
        return None
    name = min(pending, key=lambda n: (_STAGE.get(pending[n], 1), n))
    short = "+".join(part.split(".", 1)[0] for part in name.split("+"))
    return f"{short} ({pending[name]})"


class Progress:
    """`gpucluster: test_efa.py fleet (fi_info): 150/200 done, 48 Running, 2 ContainerCreating; slowest:
    ip-10-0-3-17 (ContainerCreating); 12s`.

    A ticker thread writes the line: on a TTY once a second, rewritten in place (the final state stays as the
    phase's record); in CI logs one plain line per NON_TTY_PERIOD_S while the phase lasts, and one when it ends.
    With no writer (quiet runs) nothing is printed."""

    def __init__(self, writer: Writer | None, what: str, *, tty: bool, total: int | None = None,
                 clock: Callable[[], float] = time.monotonic, tick: bool = True) -> None:
        self.writer, self.what, self.tty, self.clock, self.tick = writer, what, tty, clock, tick
        self.total = total
        self.done: int | None = None if total is None else 0
        self.started = clock()
        self.counts: Counter[str] = Counter()
        self.pending: dict[str, str] = {}
        self.note = ""
        self.finished = False
        self._lock = threading.Lock()
        self._last_print = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0
        self.lines_printed = 0
        self._source: Callable[[], Mapping[str, Any]] | None = None

    def line(self) -> str:
        elapsed = int(self.clock() - self.started)
        parts = []
        if self.total is not None:
            parts.append(f"{self.done}/{self.total} done")
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        if counts:
            parts.append(counts)
        if self.note:
            parts.append(self.note)
        if not parts:
            parts.append("starting")
        late = slowest(self.pending)
        tail = f"; slowest: {late}" if late and not self.finished else ""
        return f"gpucluster: {self.what}: {', '.join(parts)}{tail}; {elapsed}s"

    def update(self, counts: Counter[str] | Mapping[str, int] | None = None, *, done: int | None = None,
               total: int | None = None, pending: Mapping[str, str] | None = None, note: str | None = None) -> None:
        """New state: counts per state, how many are done (of total), what is still pending (name -> state)."""
        with self._lock:
            if counts is not None:
                self.counts = Counter(counts)
            if total is not None:
                self.total = total
            if done is not None:
                self.done = done
            if pending is not None:
                self.pending = dict(pending)
            if note is not None:
                self.note = note

    def _columns(self) -> int:
        columns = getattr(self.writer, "columns", None)
        return int(columns()) if callable(columns) else 10**6

    def follow(self, source: Callable[[], Mapping[str, Any]]) -> None:
        """Read the state from `source()` (update's keywords) when a line is written, not on every change: a
        waiter seeing thousands of events pays for one snapshot per second."""
        self._source = source

    def _emit(self, *, force: bool) -> None:
        if self.writer is None:
            return
        if self._source is not None:
            try:
                self.update(**self._source())
            except RuntimeError:      # the waiter's dicts changed size while read from this thread: next tick
                if not force:
                    return
        now = self.clock()
        with self._lock:
            if self.tty:
                # a line longer than the terminal wraps, and \r then rewrites only its last row
                text = self.line()[:max(20, self._columns() - 1)]
                pad = max(0, self._width - len(text))
                self._width = len(text)
                # The first line starts on a fresh line; later ones rewrite it in place.
                self.writer.write(("\r" if self.lines_printed else "\n") + text + " " * pad)
            elif force or now - self._last_print >= NON_TTY_PERIOD_S:
                self.writer.write("\n" + self.line())
            else:
                return
            self._last_print = now
            self.lines_printed += 1

    def _tick(self) -> None:
        period = TTY_PERIOD_S if self.tty else min(TTY_PERIOD_S * 5, NON_TTY_PERIOD_S)
        while not self._stop.wait(period):
            self._emit(force=False)

    def __enter__(self) -> "Progress":
        if self.writer is not None and self.tick:
            self._thread = threading.Thread(target=self._tick, name="gpucluster-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self.finished = True
        if self.writer is not None:
            self._emit(force=True)            # the phase's record: its final state and how long it took
            self.writer.write("\n")


class ProgressFactory:
    """Made once per run by the plugin: knows whether to print and how."""

    def __init__(self, writer: Writer | None, *, tty: bool, enabled: bool) -> None:
        self.writer, self.tty, self.enabled = writer, tty, enabled

    def __call__(self, what: str, *, total: int | None = None) -> Progress:
        return Progress(self.writer if self.enabled else None, what, tty=self.tty, total=total)


QUIET = ProgressFactory(None, tty=False, enabled=False)
