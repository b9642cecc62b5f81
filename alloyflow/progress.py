"""Progress bars for long runs: one bar per stage, named, with reuse counts."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from tqdm.auto import tqdm


class StageProgress:
    """Callable handed to ``run_cached``: ticks a tqdm bar once per finished job."""

    def __init__(self, stage: str, total: int | None = None, enabled: bool = True):
        self.stage = stage
        self.reused = 0
        self.computed = 0
        self.bar = tqdm(total=total or None, desc=stage, unit="job", disable=not enabled, file=sys.stderr, leave=True)

    def start(self, total: int) -> None:
        self.bar.total = (self.bar.n + total) if self.bar.total is None else self.bar.total + total
        self.bar.refresh()

    def __call__(self, label: str, reused: bool) -> None:
        if reused:
            self.reused += 1
        else:
            self.computed += 1
        self.bar.set_postfix_str(f"{label} ({'reused' if reused else 'done'})", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def stage(name: str, total: int | None = None, enabled: bool = True):
    bar = StageProgress(name, total, enabled)
    try:
        yield bar
    finally:
        bar.close()
