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

    def start(self, total: int, by_stage: dict | None = None) -> None:
        self.bar.total = (self.bar.n + total) if self.bar.total is None else self.bar.total + total
        self.bar.refresh()

    def __call__(self, label: str, reused: bool, stage: str | None = None) -> None:
        if reused:
            self.reused += 1
        else:
            self.computed += 1
        self.bar.set_postfix_str(f"{label} ({'reused' if reused else 'done'})", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class StagesProgress:
    """Callable handed to ``run_flow`` for a whole study: one bar per stage (job metadata ``alloyflow_stage``).

    Bars open when their stage's first job becomes known; a dynamic flow's
    later stages (the barrier NEBs added once the hulls exist) get theirs then.
    """

    staged = True

    def __init__(self, enabled: bool = True, default: str = "jobs"):
        self.enabled = enabled
        self.default = default
        self.bars: dict[str, StageProgress] = {}

    def _bar(self, name: str | None) -> StageProgress:
        name = name or self.default
        if name not in self.bars:
            self.bars[name] = StageProgress(name, enabled=self.enabled)
        return self.bars[name]

    @property
    def computed(self) -> int:
        return sum(b.computed for b in self.bars.values())

    @property
    def reused(self) -> int:
        return sum(b.reused for b in self.bars.values())

    def start(self, total: int, by_stage: dict | None = None) -> None:
        for name, n in (by_stage or {None: total}).items():
            self._bar(name).start(n)

    def __call__(self, label: str, reused: bool, stage: str | None = None) -> None:
        self._bar(stage)(label, reused)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


@contextmanager
def stages(enabled: bool = True):
    """One progress bar per stage of a flow (``StagesProgress``), closed on exit."""
    bars = StagesProgress(enabled)
    try:
        yield bars
    finally:
        bars.close()


@contextmanager
def stage(name: str, total: int | None = None, enabled: bool = True):
    bar = StageProgress(name, total, enabled)
    try:
        yield bar
    finally:
        bar.close()
