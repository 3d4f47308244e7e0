"""The live progress line shown while waiting on pods or NodeClaims (TTY: rewritten in place; CI: sparse)."""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import Callable, Protocol, TextIO

NON_TTY_PERIOD_S = 10.0
TTY_PERIOD_S = 1.0


class Writer(Protocol):
    """What we need of pytest's TerminalReporter (or any stream adaptor)."""

    def write(self, content: str, **markup: bool) -> None: ...


class StreamWriter:
    """Adapts a text stream (stderr) to the Writer protocol, e.g. for `gpucluster cleanup`."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream

    def write(self, content: str, **markup: bool) -> None:
        self.stream.write(content)
        self.stream.flush()


class Progress:
    """`gpucluster: waiting for 12 probe pods (nvidia-smi): 9 Succeeded, 3 Running, 14s`.

    On a TTY the line is rewritten once a second by a ticker thread; otherwise (CI logs) nothing is printed
    for waits shorter than NON_TTY_PERIOD_S, then at most one line per period. With no writer (quiet runs,
    non-TTY without -v) nothing is printed."""

    def __init__(self, writer: Writer | None, what: str, *, tty: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.writer, self.what, self.tty, self.clock = writer, what, tty, clock
        self.started = clock()
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._last_print = -1e9
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0
        self.lines_printed = 0

    def line(self) -> str:
        elapsed = int(self.clock() - self.started)
        parts = ", ".join(f"{n} {phase}" for phase, n in sorted(self.counts.items(), key=lambda kv: -kv[1]))
        return f"gpucluster: waiting for {self.what}: {parts or 'starting'}, {elapsed}s"

    def update(self, counts: Counter[str] | dict[str, int]) -> None:
        with self._lock:
            changed = Counter(counts) != self.counts
            self.counts = Counter(counts)
        if not self.tty and (changed or self.clock() - self._last_print >= NON_TTY_PERIOD_S):
            self._emit(force=False)      # CI logs: nothing for the first NON_TTY_PERIOD_S, then one line per period

    def _emit(self, *, force: bool) -> None:
        if self.writer is None:
            return
        now = self.clock()
        with self._lock:
            if self.tty:
                text = self.line()
                pad = max(0, self._width - len(text))
                self._width = len(text)
                # The first line starts on a fresh line; later ones rewrite it in place.
                self.writer.write(("\r" if self.lines_printed else "\n") + text + " " * pad)
            elif force or now - max(self._last_print, self.started) >= NON_TTY_PERIOD_S:
                self.writer.write("\n" + self.line())
            else:
                return
            self._last_print = now
            self.lines_printed += 1

    def _tick(self) -> None:
        while not self._stop.wait(TTY_PERIOD_S):
            self._emit(force=False)

    def __enter__(self) -> "Progress":
        if self.writer is not None and self.tty:
            self._thread = threading.Thread(target=self._tick, name="gpucluster-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self.writer is not None and self.lines_printed:
            if self.tty:
                self._emit(force=True)        # the final state stays as a record of how long it took
            self.writer.write("\n")


class ProgressFactory:
    """Made once per run by the plugin: knows whether to print and how."""

    def __init__(self, writer: Writer | None, *, tty: bool, enabled: bool) -> None:
        self.writer, self.tty, self.enabled = writer, tty, enabled

    def __call__(self, what: str) -> Progress:
        return Progress(self.writer if self.enabled else None, what, tty=self.tty)


QUIET = ProgressFactory(None, tty=False, enabled=False)
