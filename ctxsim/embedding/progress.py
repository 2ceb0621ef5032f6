"""Progress of long work: a tqdm bar (rate and ETA) on a terminal, else a log line per stage.

Off a terminal (CI, a pipe, a log file) no bar is drawn: one line when a stage starts, a line at most
every :data:`LOG_EVERY_S` seconds with the count, the rate and the time left, and one when it ends.
"""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("ctxsim")

#: Seconds between progress lines when stderr is not a terminal.
LOG_EVERY_S = 30.0


def on_terminal() -> bool:
    return sys.stderr.isatty()


class Progress:
    """``with Progress(total, "embed", "img") as p: p.update(n)``; ``enabled=False`` is silent."""

    def __init__(self, total: int, desc: str, unit: str = "img", *, enabled: bool = True, every_s: float = LOG_EVERY_S):
        self.total, self.desc, self.unit, self.every_s = int(total), desc, unit, every_s
        self.enabled = enabled and total > 0
        self.done = 0
        self._bar = None
        self._start = self._last = time.perf_counter()

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        if on_terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, leave=False, dynamic_ncols=True)
        else:
            log.info("%s: %d %s to do", self.desc, self.total, self.unit)
        return self

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last >= self.every_s and self.done < self.total:
            self._last = now
            log.info("%s: %s", self.desc, self.status(now))

    def status(self, now: float | None = None) -> str:
        elapsed = max((now or time.perf_counter()) - self._start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = f", ETA {left:.0f} s" if self.done < self.total and rate > 0 else ""
        return f"{self.done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s{eta}"

    def __exit__(self, *exc) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            log.info("%s: done, %s", self.desc, self.status())
