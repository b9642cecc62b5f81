"""Where everything lives in an output folder (``--out``); the one place that knows the names.

::

    <out>/store/                 the job store (MontyStore; also the cache)
    <out>/jobs/                  job folders of the local runner
    <out>/<system>/hull.{json,csv,png}, voltage.{json,png}, predicted/*.cif, thermo/
    <out>/barriers/<phase>[-dilute-Li]/barriers.{json,csv}, profile_*.png, fidelity.json
    <out>/search/                tie-line search outputs
    <out>/potentials/<name>/     fine-tuned potentials
    <out>/report.md, study.json  the study report and its metadata
    <out>/submitted.json         flows sent to a queue (``alloyflow submit``), read by ``alloyflow report``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutputLayout:
    """Paths of one output folder. Nothing here creates a file."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    def system(self, system: str) -> Path:
        return self.root / system

    def predicted(self, system: str) -> Path:
        return self.system(system) / "predicted"

    def thermo(self, system: str) -> Path:
        return self.system(system) / "thermo"

    def barriers(self, phase: str, dilute: bool = False, mechanism: str = "vacancy") -> Path:
        name = f"{phase}-dilute-Li" if dilute else phase
        return self.root / "barriers" / (f"{name}-interstitial" if mechanism == "interstitial" else name)

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def study_json(self) -> Path:
        return self.root / "study.json"

    @property
    def submitted(self) -> Path:
        return self.root / "submitted.json"

    @property
    def potentials(self) -> Path:
        return self.root / "potentials"
