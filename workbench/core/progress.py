"""Progress of long work: a tqdm.auto bar for the terminal and notebooks, and, for whoever watches (the app's
progress line and Stop button), the step, the count and an estimate of the time left. A watcher's stop request
raises `Stopped` at the next step, a KeyboardInterrupt like Ctrl-C: the same clean exit (temporary files removed,
cache entries written atomically or not at all), and no `except Exception` on the way swallows it."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator


class Stopped(KeyboardInterrupt):
    """The watcher asked the work to stop."""


@dataclass
class Watch:
    """What the app hands to long work: `report(text)` gets one line per step (throttled), `stop` ends it."""

    report: Callable[[str], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    every_s: float = 0.25
    steps: list["Steps"] = field(default_factory=list)
    _last: float = 0.0

    def check(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopped")

    def update(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.report is not None and (force or now - self._last >= self.every_s):
            self._last = now
            self.report(" · ".join(s.text() for s in self.steps))


_WATCH: ContextVar[Watch | None] = ContextVar("workbench_watch", default=None)


@contextmanager
def watching(watch: Watch) -> Iterator[Watch]:
    """Report every `Steps` opened inside this block to `watch` (in this thread or context)."""
    token = _WATCH.set(watch)
    try:
        yield watch
    finally:
        _WATCH.reset(token)


def check_stop() -> None:
    """Raise Stopped if the watcher asked to stop (for loops without a counter of their own)."""
    watch = _WATCH.get()
    if watch is not None:
        watch.check()


class Steps:
    """One counted stage of work (`with Steps(total, "comparing", "sample") as s: ... s.update(n)`)."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)
        self.watch = _WATCH.get()
        if self.watch is not None:
            self.watch.check()
            self.watch.steps.append(self)
            self.watch.update(force=True)

    def remaining_s(self) -> float | None:
        """Seconds left at the rate so far (None before the first step or without a total)."""
        if not self.total or not self.done:
            return None
        return (time.perf_counter() - self.start) / self.done * max(self.total - self.done, 0)

    def text(self) -> str:
        count = (f"{self.done}/{self.total} {self.unit}" if self.total
                 else f"{self.unit} {self.done + 1} running, {self.done} done")
        left = self.remaining_s()
        return f"{self.desc} {count}" + (f", ~{left:.0f} s left" if left is not None else "")

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        self.done += n
        if self.watch is not None:
            self.watch.update()
            self.watch.check()

    def iterate(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            yield item
            self.update()

    def close(self) -> None:
        self.bar.close()
        if self.watch is not None and self in self.watch.steps:
            self.watch.steps.remove(self)

    def __enter__(self) -> "Steps":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
