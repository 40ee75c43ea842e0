"""Periodic progress lines for long jobs: ``<what>: 40/120 steps (33%), 12s elapsed, ETA 24s``.

Lines go to the job's log (``logging``), at most one per ``every`` seconds plus the last one, so a log shows
how far a job is and when it will end without flooding it.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Counts ``done`` of ``total`` units; ``update`` reports every ``every`` seconds and at the end."""

    def __init__(self, what: str, total: int | None, unit: str = "", every: float = 10.0,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.log = log or logging.getLogger("inflbench.progress").info
        self.clock = clock
        self.start = self.last = clock()
        self.done = 0

    def line(self, note: str = "") -> str:
        elapsed = self.clock() - self.start
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
            text = (f"{self.what}: {self.done}/{self.total}{unit} ({100 * self.done / self.total:.0f}%), "
                    f"{_duration(elapsed)} elapsed, ETA {_duration(eta) if eta == eta else '?'}")
        else:
            text = f"{self.what}: {self.done}{unit}, {_duration(elapsed)} elapsed"
        return f"{text} {note}".rstrip()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every or (self.total is not None and self.done >= self.total):
            self.last = now
            self.log(self.line(note))


def iteration_progress(what: str, total: int, every: float = 10.0) -> Callable[[int, object], None]:
    """A solver's ``callback(k, estimate)`` that reports how many of ``total`` iterations are done."""
    progress = Progress(what, total, "iterations", every)
    return lambda k, estimate: progress.update()


def chain(*callbacks: Callable[[int, object], None] | None) -> Callable[[int, object], None]:
    """One solver callback that calls each of ``callbacks`` (None entries skipped) in order."""
    live = [c for c in callbacks if c is not None]

    def call(k, estimate):
        for c in live:
            c(k, estimate)

    return call


def track(items: Iterable[T], what: str, total: int | None = None, unit: str = "", every: float = 10.0,
          log: Callable[[str], None] | None = None) -> Iterator[T]:
    """Yield ``items`` while reporting progress (``total`` defaults to ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    progress = Progress(what, total, unit, every, log)
    for item in items:
        yield item
        progress.update()
