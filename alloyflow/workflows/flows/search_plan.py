"""The tie-line search's pure planning: its settings, what each stage rebuilds, deduplication, the relax queue.

No job here: ``flows/search.py`` holds the keyed jobs and the stages that call these.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Structure

from alloyflow.analysis.hull import entries_from_documents, phase_diagram
from alloyflow.engine.store import as_dict
from alloyflow.structures.library import parse_system
from alloyflow.structures.search import Candidate, bct_c_over_a, target_compositions
from alloyflow.workflows.jobs.relax import RelaxationDocument


@dataclass
class SearchSettings:
    """What the search enumerates and keeps (``alloyflow search`` options).

    ``per_composition`` caps the orderings screened per composition (after a
    geometric pre-rank); ``relax_window`` (eV/atom) skips relaxing candidates
    whose single point lies further above the library hull; ``dilute_sites`` =
    None skips the dilute proxy (``dilute_mode``: "substitution" or "interstitial").
    """

    max_sites: int = 16
    compositions: list[str] | None = None
    keep_per_composition: int = 2
    per_composition: int = 12
    prototypes: bool = True
    dilute_sites: int | None = 36
    dilute_mode: str = "substitution"
    relax_window: float = 0.2

    def check(self, system: str) -> None:
        """Refuse settings that give no search, before any job exists."""
        if "Li" not in parse_system(system):
            raise ValueError(f"the tie-line search needs a Li-M system, not {system}")
        for name in ("max_sites", "keep_per_composition", "per_composition"):
            if getattr(self, name) < 1:
                raise ValueError(f"search {name} must be >= 1, got {getattr(self, name)}")
        if self.dilute_sites is not None and self.dilute_sites < 2:
            raise ValueError(f"search dilute_sites must be >= 2 (or None), got {self.dilute_sites}")
        if self.dilute_mode not in ("substitution", "interstitial"):
            raise ValueError(f"search dilute_mode must be 'substitution' or 'interstitial', got {self.dilute_mode!r}")
        target_compositions(system, self.compositions, self.max_sites)  # names a bad formula now


def to_structure(x) -> Structure:
    """A structure from itself or its dict (what a job output decodes to)."""
    return x if isinstance(x, Structure) else Structure.from_dict(x)


def relaxation_doc(out) -> RelaxationDocument:
    """A relaxation document from a job output or its dict."""
    return RelaxationDocument.model_validate(as_dict(out))


def candidate_dict(c: Candidate) -> dict:
    """A candidate as a plain dict (job inputs and outputs)."""
    return {"name": c.name, "structure": c.structure, "method": c.method, "parent": c.parent, "info": c.info}


def candidate_from_dict(d: dict) -> Candidate:
    """The candidate ``candidate_dict`` wrote."""
    return Candidate(d["name"], to_structure(d["structure"]), d["method"], d["parent"], dict(d.get("info") or {}))


def candidate_meta(c: Candidate) -> dict:
    """Provenance carried by a relaxation document into the hull entries."""
    return {"phase": c.name, "status": "predicted", "source": c.source, "method": c.method, "parent": c.parent}


@dataclass
class SearchContext:
    """What every stage rebuilds from the library relaxations: the library hull and the Vegard inputs."""

    system: str
    docs: list
    pd: object
    li: str
    host: str
    volumes: dict
    bct_ca: float | None
    host_structure: Structure
    """The dilute proxy's host: the host's own phase (the entry named after it, β-Sn: the hull's default zero
    and the form lithiated in practice), else its lowest polymorph. On α-Sn, which lies below β-Sn on
    PBE-like potentials, the proxy sat below the β-referenced hull by the α-β gap (LiSn35 on the hull)."""

    @classmethod
    def of(cls, ref_docs: list, system: str) -> "SearchContext":
        docs = [relaxation_doc(d) for d in ref_docs]
        pd = phase_diagram(entries_from_documents(docs), system)
        li, host = [str(e) for e in pd.elements]
        els = {el: min((d for d in docs if d.formula == el), key=lambda d: d.energy_per_atom) for el in (li, host)}
        own = [d for d in docs if d.formula == host and d.label == host]
        bct_ca = bct_c_over_a(els[host].structure)
        return cls(system, docs, pd, li, host, {el: round(d.volume_per_atom, 4) for el, d in els.items()},
                   round(bct_ca, 4) if bct_ca else None, (own[0] if own else els[host]).structure)

    def e_above_library_hull(self, formula: str, energy_per_atom: float) -> float:
        return float(energy_per_atom - self.pd.get_hull_energy_per_atom(Composition(formula)))

    def compositions(self, s: SearchSettings) -> list[Composition]:
        return sorted(target_compositions(self.system, s.compositions, s.max_sites),
                      key=lambda c: (c.num_atoms, c.reduced_formula))


def deduplicate(items: list[tuple[str, Structure, float]], references: dict[str, Structure] | None = None,
                matcher: StructureMatcher | None = None) -> tuple[list[str], dict[str, str]]:
    """Unique structures among ``(name, structure, energy_per_atom)``, lowest energy kept.

    Returns the kept names and ``{name: what it duplicates}``, where the
    latter is a reference (library) name or a kept candidate.
    """
    matcher = matcher or StructureMatcher()
    references = references or {}
    kept: list[tuple[str, Structure]] = []
    duplicates: dict[str, str] = {}
    for name, s, _ in sorted(items, key=lambda t: (t[2], t[0])):
        formula = s.composition.reduced_formula
        pool = list(references.items()) + kept  # library phases win: a match there is a rediscovery
        match = next((o for o, os_ in pool if os_.composition.reduced_formula == formula and matcher.fit(s, os_)), None)
        if match:
            duplicates[name] = match
        else:
            kept.append((name, s))
    return [k for k, _ in kept], duplicates


def relax_queue(ranked: dict[str, list[Candidate]], sp: dict[str, float], keep: int, window: float,
                matcher: StructureMatcher) -> list[Candidate]:
    """The ``keep`` lowest distinct candidates per composition within ``window`` of the library hull,
    ordered rank by rank, best composition first (every composition's best before anyone's second)."""
    picks: dict[str, list[Candidate]] = {f: [] for f in ranked}
    for f, cs in ranked.items():
        for x in cs:
            if len(picks[f]) >= keep or sp[x.name] > window:
                break
            if not any(matcher.fit(x.structure, y.structure) for y in picks[f]):
                picks[f].append(x)
    order = sorted((f for f in picks if picks[f]), key=lambda f: (sp[picks[f][0].name], f))
    return [picks[f][r] for r in range(keep) for f in order if len(picks[f]) > r]
