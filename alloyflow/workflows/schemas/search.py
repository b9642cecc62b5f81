"""The tie-line search's documents: one per candidate kept, one per composition, and the search result."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from alloyflow.analysis.hull import HullResult


class SearchCandidate(BaseModel):
    """A generated structure: how it was made, its screening and relaxation, its place on the new hull."""

    name: str
    formula: str
    x_li: float
    method: str
    parent: str
    natoms: int
    single_point_e_above_hull: float | None = Field(None, description="eV/atom, unrelaxed, vs the library hull")
    relaxed: bool = False
    tight: bool = Field(False, description="re-relaxed with the hull's settings (else the loose search relaxation)")
    converged: bool | None = None
    e_above_hull: float | None = Field(None, description="eV/atom on the new hull")
    duplicate_of: str | None = None
    structure: dict | None = Field(None, description="pymatgen Structure.as_dict()")

    @field_validator("structure", mode="before")
    @classmethod
    def _as_dict(cls, value):
        """A job store hands back the structure deserialized; the document keeps its dict."""
        return value.as_dict() if hasattr(value, "as_dict") else value


class CompositionSummary(BaseModel):
    """What the search generated, screened and relaxed at one composition, and the best of each step."""

    formula: str
    x_li: float
    generated: int
    screened: int
    relaxed: int
    best_single_point: str | None = None
    best_single_point_e_above_hull: float | None = None
    best_relaxed: str | None = None
    best_relaxed_e_above_hull: float | None = None


class SearchResult(BaseModel):
    """The search of one system: new structures after deduplication, the near-hull ones and the new hull."""

    system: str
    calculator: dict
    settings: dict
    generated: int
    screened: int
    relaxed: int
    candidates: list[SearchCandidate] = Field(description="relaxed, deduplicated new structures (and dilute proxy)")
    near_hull: list[SearchCandidate]
    rediscovered: dict[str, str] = Field(default_factory=dict, description="candidate -> library phase it matches")
    compositions: list[CompositionSummary]
    dilute: SearchCandidate | None = None
    hull: HullResult | None = None
    complete: bool
    stopped: str = ""
    failed: list[str] = Field(default_factory=list)
    jobs_computed: int = 0
    jobs_reused: int = 0
    wall_seconds: float = 0.0


__all__ = ["SearchCandidate", "CompositionSummary", "SearchResult"]
