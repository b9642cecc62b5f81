"""Documents of the hull and study flows, as stored in the job store.

Every document carries the calculator provenance (name, version, kind) of
the numbers it holds, so a report rebuilt from a store (local or a cluster's
MongoDB) labels each number with the method that produced it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from alloyflow.analysis.hull import HullResult
from alloyflow.analysis.migration import BarrierResult
from alloyflow.analysis.thermo import ThermoResult
from alloyflow.analysis.voltage import VoltageResult


class HullDocument(BaseModel):
    """The convex hull and voltage curve of one system, from its relaxation documents."""

    system: str
    calculator: dict = Field(description="registry name, version and kind of the relaxations")
    hull: HullResult
    voltage: VoltageResult | None = Field(None, description="None when no Li-M compound is stable")
    relaxation_keys: list[str] = Field(default_factory=list, description="input hashes (cache keys) of the relaxations used")


class BarrierChoice(BaseModel):
    """One phase whose barriers the study computes, and why."""

    phase: str
    system: str
    dilute: bool = False
    n_host_sites: int | None = None
    mechanism: str = Field("vacancy", description="vacancy, or interstitial (dilute: Li in the host's voids)")
    e_above_hull: float | None = Field(None, description="eV/atom on this system's hull (None for a dilute host)")


class StudyDocument(BaseModel):
    """The whole study: hulls of every system, the chosen phases and their barrier results.

    Barrier results carry their metastability correction (labelled, from the
    hull's energy above hull) where the phase lies above the hull. A study
    with a temperature adds its finite-temperature results (``thermo``).
    """

    systems: list[str]
    calculator: dict
    hulls: list[HullDocument]
    choices: list[BarrierChoice] = Field(default_factory=list)
    barriers: list[BarrierResult] = Field(default_factory=list)
    settings: dict = Field(default_factory=dict)
    thermo: dict[str, ThermoResult] = Field(
        default_factory=dict, description="system -> finite-temperature result (a study run with a temperature)")
    retry_next_run: bool = Field(False, description="a barrier phase failed: the next run computes it and this again")
