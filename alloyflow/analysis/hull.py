"""Convex hull of a binary Li–M system from computed entries.

The hull itself is pymatgen's ``PhaseDiagram``; this module only checks that
the entries make a sensible binary Li–M hull (one calculator, both elemental
references present, nothing from another system) and flattens the result into
a JSON-friendly ``HullResult`` that carries the calculator provenance, so a
hull from an ML potential can never be read as a DFT one.

Each element's zero of energy is its own phase (the entry named after it:
β-Sn, not the lower α-Sn), unless a reference is chosen
(``reference_entries``); every hull says which (``reference_note``).

Energies are eV/atom throughout; tables and plots convert to meV/atom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from pydantic import BaseModel, Field
from pymatgen.core import Composition, Element

from alloyflow.structures.library import parse_system

if TYPE_CHECKING:  # pymatgen's phase diagram and entries import in 1.8 s; a rerun that only reads needs neither
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.entries.computed_entries import ComputedStructureEntry

WORKING_ION = "Li"
UNKNOWN_CALCULATOR = {"name": "unknown", "model": "unknown", "version": "unknown", "kind": "unknown", "label": "unknown calculator"}
_HULL_TOL = 1e-8  # eV/atom; below this a hull distance is numerical noise


class HullPhase(BaseModel):
    """One computed phase (every polymorph is listed, stable or not)."""

    name: str = Field(description="phase / entry id, e.g. 'LiSn_beta'")
    formula: str = Field(description="reduced formula")
    source: str = ""
    status: str = ""
    x_li: float = Field(description="atomic fraction of Li")
    energy_per_atom: float = Field(description="total energy, eV/atom")
    formation_energy_per_atom: float = Field(description="eV/atom relative to the elemental references")
    e_above_hull: float = Field(description="eV/atom")
    stable: bool
    volume_per_atom: float | None = Field(default=None, description="Å^3/atom")
    volume_per_li: float | None = Field(default=None, description="Å^3 per Li atom; null without Li")
    volume_expansion: float | None = Field(
        default=None, description="V per host atom / V per atom of the host volume reference (the phase named after the element, e.g. beta-Sn) - 1"
    )
    converged: bool | None = None
    below_reference: bool = Field(
        default=False,
        description="an elemental polymorph lower than the chosen reference of its element (``references``): "
        "listed with its energy relative to that reference, left off the hull and the voltage curve",
    )
    natoms: int
    space_group: str = Field("", description="international symbol of the relaxed structure (symprec 0.1 Å)")
    crystal_system: str = ""


def _symmetry(structure) -> dict:
    """Space group and crystal system of a relaxed structure (empty where there is none or spglib fails)."""
    if structure is None:
        return {}
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=0.1)
        return {"space_group": sga.get_space_group_symbol(), "crystal_system": sga.get_crystal_system()}
    except Exception:  # noqa: BLE001 (spglib refuses some distorted cells: no symmetry is reported then)
        return {}


class HullMinimum(BaseModel):
    formula: str
    formation_energy_per_atom: float


class HullResult(BaseModel):
    """Everything a hull table, plot or voltage curve needs, in eV/atom."""

    system: str
    host: str
    working_ion: str = WORKING_ION
    calculator: dict
    energy_unit: str = "eV/atom"
    phases: list[HullPhase]
    stable_set: list[str]
    hull_minimum: HullMinimum
    references: dict[str, str] = Field(
        default_factory=dict, description="element -> name of the entry whose energy is its zero (formation energies)"
    )
    reference_note: str = Field("", description="the references in words, with any lower polymorph left off")
    warnings: list[str] = Field(default_factory=list)

    def phase(self, name: str) -> HullPhase:
        """Look a phase up by name (or, failing that, by formula)."""
        for p in self.phases:
            if p.name == name:
                return p
        for p in self.phases:
            if p.formula == name:
                return p
        raise KeyError(f"no phase {name!r} in the {self.system} hull")


def phase_name(entry) -> str:
    """The library's phase name if the entry carries one, else its formula."""
    data = getattr(entry, "data", None) or {}
    return str(
        data.get("phase")
        or getattr(entry, "entry_id", None)
        or getattr(entry, "name", None)
        or entry.composition.reduced_formula
    )


def calculator_of(entries: Sequence) -> tuple[dict, list[str]]:
    """The single calculator that produced ``entries`` (plus warnings).

    Mixing calculators on one hull compares energies on different scales and
    gives a meaningless hull, hence an error rather than a warning.
    """
    seen: dict[tuple, dict] = {}
    missing = []
    for e in entries:
        calc = (getattr(e, "data", None) or {}).get("calculator")
        if not calc:
            missing.append(phase_name(e))
            continue
        seen[(calc.get("name"), calc.get("model"), calc.get("version"))] = dict(calc)
    if len(seen) > 1:
        names = ", ".join(f"{n} {v}" for n, _, v in seen)
        raise ValueError(f"entries come from different calculators ({names}); a hull needs one calculator")
    warns = []
    if missing and seen:
        warns.append(f"entries without calculator provenance: {', '.join(missing)}")
    calc = next(iter(seen.values())) if seen else dict(UNKNOWN_CALCULATOR)
    if not seen:
        warns.append("entries carry no calculator provenance")
    for key, val in UNKNOWN_CALCULATOR.items():
        calc.setdefault(key, val)
    if calc.get("kind") == "test":
        warns.append(f"energies are from a test potential ({calc['label']}); not for science")
    return calc, warns


def binary_system(system: str) -> tuple[str, str]:
    """``"Li-In"`` -> ``("Li", "In")``; only binary Li–M systems have a host."""
    elements = parse_system(system)
    if len(elements) != 2 or WORKING_ION not in elements:
        raise ValueError(f"system {system!r} must be a binary Li–M system such as 'Li-In'")
    host = next(el for el in elements if el != WORKING_ION)
    return WORKING_ION, host


def phase_diagram(entries: Sequence, system: str) -> PhaseDiagram:
    """A ``PhaseDiagram`` of ``entries`` after checking they form the ``system`` hull.

    PhaseDiagram itself would silently build a hull of whatever it is given
    (or fail with a terse message), so the checks name the offending entry.
    """
    li, host = binary_system(system)
    allowed = {Element(li), Element(host)}
    if not entries:
        raise ValueError(f"no entries given for the {system} hull")
    for e in entries:
        extra = set(e.composition.elements) - allowed
        if extra:
            others = ", ".join(sorted(str(x) for x in extra))
            raise ValueError(
                f"entry {phase_name(e)} ({e.composition.reduced_formula}) contains {others}, "
                f"which is not in system {system}"
            )
    for el in (li, host):
        if not any(e.composition.is_element and e.composition.elements[0] == Element(el) for e in entries):
            raise ValueError(f"no elemental reference for {el} among the {system} entries")
    from pymatgen.analysis.phase_diagram import PhaseDiagram

    return PhaseDiagram(list(entries), elements=[Element(li), Element(host)])


def _volume(entry) -> float | None:
    structure = getattr(entry, "structure", None)
    return float(structure.volume) if structure is not None else None


def _volume_reference(entries, host: str):
    """The host phase volumes are measured against: the one named after the element.

    Always the metal that is lithiated in practice, whatever the energy
    reference: grey α-Sn is the 0 K ground state of PBE-like potentials, yet
    the anode is β-Sn foil (the bundled ``Sn``), and expansions relative to the
    36 % larger α cell would come out negative.
    """
    for entry in entries:
        if phase_name(entry) == host and entry.composition.reduced_formula == host:
            return entry
    return None


LOWEST = "lowest"
"""``references`` value that takes an element's lowest-energy entry (the 0 K ground state) as its zero."""


class References(NamedTuple):
    """What ``reference_entries`` returns."""

    kept: list
    """The entries without the elemental polymorphs lower than their element's reference."""
    below: list
    """Those polymorphs (lower than the reference by more than 1e-8 eV/atom)."""
    chosen: dict
    """``{element: entry name}`` of every element's reference."""
    basis: dict
    """``{element: why}``: ``"chosen"``, ``"own phase"`` or ``"lowest"``."""


def reference_entries(entries: Sequence, system: str, references: Mapping[str, str] | None = None) -> References:
    """Each element's reference entry, and the entries a hull is built from.

    An element's zero of formation energy is, in this order: the entry
    ``references`` names; its lowest entry if ``references`` says
    ``"lowest"``; the entry named after the element itself (the library's
    reference state: ``Sn`` is β-Sn, the form lithiated in practice and
    stable above 286 K; ``Li`` bcc Li; ``In`` tetragonal In); else its lowest
    entry. Elemental polymorphs lower than the reference (α-Sn, the 0 K
    ground state of PBE and of the potentials here) are returned in
    ``below``: listed in a hull, left off it and off the voltage curve.

    Parameters
    ----------
    entries : sequence of pymatgen entries
        The system's entries, elements included.
    system : str
        Binary Li–M system, e.g. ``"Li-Sn"``.
    references : mapping, optional
        ``{element: entry name or "lowest"}``, e.g. ``{"Sn": "Sn_alpha"}``.

    Returns
    -------
    References
        ``kept``, ``below``, ``chosen`` and ``basis``.
    """
    li, host = binary_system(system)
    references = dict(references or {})
    unknown = sorted(set(references) - {li, host})
    if unknown:
        raise ValueError(f"reference given for {', '.join(unknown)}, which is not an element of {system}")
    below, chosen, basis = [], {}, {}
    for el in (li, host):
        own = [e for e in entries if e.composition.is_element and e.composition.elements[0] == Element(el)]
        if not own:
            continue  # phase_diagram names the missing element
        wanted = references.get(el)
        named = [e for e in own if phase_name(e) == (wanted or el)]
        if wanted not in (None, LOWEST) and not named:
            names = ", ".join(sorted({phase_name(e) for e in own}))
            raise ValueError(f"no {el} entry named {wanted!r} to take as the {el} reference; {el} entries: {names}")
        if wanted == LOWEST or not named:
            chosen[el], basis[el] = phase_name(min(own, key=lambda e: e.energy_per_atom)), LOWEST
            continue
        ref = min(named, key=lambda e: e.energy_per_atom)
        chosen[el], basis[el] = phase_name(ref), "chosen" if wanted else "own phase"
        below += [e for e in own if e.energy_per_atom < ref.energy_per_atom - _HULL_TOL]
    below_ids = {id(e) for e in below}
    return References([e for e in entries if id(e) not in below_ids], below, chosen, basis)


def references_for(references: Mapping[str, str] | None, system: str) -> dict[str, str]:
    """The part of a study's ``references`` that concerns ``system`` (``{"Sn": ...}`` means nothing to Li-In)."""
    elements = parse_system(system)
    return {el: name for el, name in sorted((references or {}).items()) if el in elements}


def _reference_note(refs: References, ref_energy: dict) -> str:
    parts = []
    for el, name in refs.chosen.items():
        why = {"lowest": f"lowest {el} entry", "own phase": "the element's own phase"}.get(refs.basis[el], "chosen")
        lower = [f"{phase_name(e)} {1000 * (ref_energy[el] - e.energy_per_atom):.1f} meV/atom lower"
                 for e in refs.below if e.composition.elements[0] == Element(el)]
        parts.append(f"{el} = {name} ({why}" + (f"; {', '.join(lower)}, left off the hull)" if lower else ")"))
    return "elemental references: " + ", ".join(parts)


def build_hull(entries: Sequence, system: str, references: Mapping[str, str] | None = None) -> HullResult:
    """Hull of ``entries`` (pymatgen ``ComputedEntry``/``PDEntry``) for a binary Li–M ``system``.

    Each element's reference is the entry named after it (β-Sn ``Sn``, not
    α-Sn ``Sn_alpha``), unless ``references`` names another or ``"lowest"``
    (``reference_entries``); without an entry of that name, its lowest entry.
    Lower polymorphs are listed with ``below_reference`` and their (negative)
    energy relative to the reference, and left off the hull. Polymorphs are
    all reported, and only the lowest of a composition can be on the hull.
    ``references`` and ``reference_note`` say which entries are the zeros.
    """
    refs = reference_entries(entries, system, references)
    kept, below = refs.kept, refs.below
    pd = phase_diagram(kept, system)
    li, host = binary_system(system)
    calculator, warns = calculator_of(entries)
    stable_ids = {id(e) for e in pd.stable_entries}
    below_ids = {id(e) for e in below}
    host_ref = _volume_reference(entries, host) or pd.el_refs[Element(host)]
    host_v0 = _volume(host_ref)
    host_v0 = host_v0 / host_ref.composition.num_atoms if host_v0 else None

    phases = []
    for e in entries:
        comp: Composition = e.composition
        n = comp.num_atoms
        n_li, n_host = comp[Element(li)], comp[Element(host)]
        vol = _volume(e)
        e_hull = float(pd.get_e_above_hull(e, allow_negative=True) if id(e) in below_ids else pd.get_e_above_hull(e))
        data = getattr(e, "data", None) or {}
        phases.append(
            HullPhase(
                name=phase_name(e),
                formula=comp.reduced_formula,
                source=str(data.get("source", "")),
                status=str(data.get("status", "")),
                x_li=float(comp.get_atomic_fraction(Element(li))),
                energy_per_atom=float(e.energy_per_atom),
                formation_energy_per_atom=float(pd.get_form_energy_per_atom(e)),
                e_above_hull=0.0 if abs(e_hull) < _HULL_TOL else e_hull,
                stable=id(e) in stable_ids,
                volume_per_atom=vol / n if vol is not None else None,
                volume_per_li=vol / n_li if vol is not None and n_li > 0 else None,
                volume_expansion=(vol / n_host) / host_v0 - 1.0 if vol is not None and n_host > 0 and host_v0 else None,
                converged=data.get("converged"),
                below_reference=id(e) in below_ids,
                natoms=int(round(n)),
                **_symmetry(getattr(e, "structure", None)),
            )
        )
    phases.sort(key=lambda p: (p.x_li, p.energy_per_atom))

    unconverged = [p.name for p in phases if p.converged is False]
    if unconverged:
        warns.append(f"unconverged relaxations included: {', '.join(unconverged)}")
        stable_unconv = [p.name for p in phases if p.converged is False and p.stable]
        if stable_unconv:
            warns.append(f"stable set depends on unconverged relaxations: {', '.join(stable_unconv)}")
    if host_v0 is None:
        warns.append(f"no structure for the {host} reference: volume expansion not available")

    stable = [p for p in phases if p.stable]
    lowest = min(stable, key=lambda p: (p.formation_energy_per_atom, p.x_li))
    return HullResult(
        system=f"{li}-{host}",
        host=host,
        working_ion=li,
        calculator=calculator,
        phases=phases,
        stable_set=[p.formula for p in stable],
        hull_minimum=HullMinimum(formula=lowest.formula, formation_energy_per_atom=lowest.formation_energy_per_atom),
        references=refs.chosen,
        reference_note=_reference_note(refs, {str(el): ref.energy_per_atom for el, ref in pd.el_refs.items()}),
        warnings=warns,
    )


def entries_from_hull(hull: HullResult) -> list[PDEntry]:
    """Rebuild plain ``PDEntry`` objects from a stored hull (e.g. read from hull.json).

    The total energies per atom are all a phase diagram needs, so a voltage
    curve can be recomputed from ``hull.json`` without the relaxation store.
    Polymorphs below a chosen reference (``below_reference``) are left out,
    so the hull rebuilt from them has the stored references.
    """
    from pymatgen.analysis.phase_diagram import PDEntry

    entries = []
    for p in hull.phases:
        if p.below_reference:
            continue  # left off the hull it was stored with
        comp = Composition(p.formula)
        entries.append(PDEntry(comp, p.energy_per_atom * comp.num_atoms, name=p.name))
    return entries


__all__ = [
    "HullPhase",
    "HullMinimum",
    "HullResult",
    "build_hull",
    "reference_entries",
    "references_for",
    "References",
    "LOWEST",
    "phase_diagram",
    "binary_system",
    "calculator_of",
    "phase_name",
    "entries_from_hull",
]


def entries_from_documents(docs: list) -> list[ComputedStructureEntry]:
    """One ``ComputedStructureEntry`` per relaxed phase (``RelaxationDocument``s in), provenance in ``data``."""
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    entries = []
    for doc in docs:
        entries.append(
            ComputedStructureEntry(
                doc.structure,
                doc.energy,
                entry_id=doc.label,
                data={
                    "phase": doc.label,
                    "status": doc.metadata.get("status", ""),
                    "source": doc.metadata.get("source", ""),
                    "converged": doc.converged,
                    "max_force": doc.max_force,
                    "calculator": doc.calculator,
                    "input_hash": doc.input_hash,
                },
            )
        )
    return entries
