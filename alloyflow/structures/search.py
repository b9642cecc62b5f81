"""Candidate structures for a tie-line search (geometry only, no calculators).

Three generators, each returning ``Candidate`` objects with provenance:

* ``ordering_candidates``: symmetry-distinct binary orderings of a parent
  lattice (bcc on the Li-rich side, fcc and bct on the M-rich side) at target
  compositions, scaled to a Vegard volume.
* ``prototype_candidates``: binary AxBy prototypes decorated with Li and M,
  both ways round, scaled the same way.
* ``dilute_candidate``: one Li on a host site of an N-site M supercell.

Why icet for the enumeration: ``icet.tools.enumerate_structures`` implements
the Hart–Forcade algorithm in pure Python (pip-installable, maintained), takes
``concentration_restrictions`` so that one composition can be enumerated at a
fixed cell size without generating all the others, and works for any parent
(bct included). pymatgen's ``EnumerateStructureTransformation`` needs the
enumlib Fortran binaries (``enum.x``, ``makestr.x``), which no package here
provides.

Why pymatgen's prototype set and not the larger AFLOW encyclopedia in
``kim-tools`` (about 800 binary labels): its ``info.json`` files hold only the
prototype label and free parameters. Coordinates come from the ``aflow``
executable that kim-tools shells out to (not on PyPI) or from Wyckoff tables
(e.g. pyxtal's) plus AFLOW's setting and parameter-order conventions, a
structure builder of its own to validate. pymatgen ships its 288 AFLOW
prototypes (176 binary) as ready-made structures.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import numpy as np
from pymatgen.core import Composition, Element, Lattice, Structure

from alloyflow.structures.library import StructureLibrary, parse_system
from alloyflow.structures.prototypes import binary_prototypes, stoichiometry

LATTICES_LI_RICH = ("bcc",)
LATTICES_M_RICH = ("fcc", "bct")
MIN_DISTANCE_FACTOR = 0.75
"""Reject a candidate whose shortest bond is below this fraction of the bcc nearest-neighbour
distance at the same volume per atom: decorated ionic prototypes (dimers, short anion
contacts) become unphysical metal cells, and ML potentials can have holes at short range."""


@dataclass
class Candidate:
    """One trial structure with where it came from."""

    name: str
    structure: Structure
    method: str  # "ordering", "prototype" or "dilute-substitution"/"dilute-interstitial"
    parent: str  # "bcc", "fcc", "bct", a prototype label, or the dilute host
    info: dict = field(default_factory=dict)

    @cached_property
    def composition(self) -> Composition:
        return self.structure.composition

    @property
    def formula(self) -> str:
        return self.composition.reduced_formula

    @property
    def x_li(self) -> float:
        return float(self.composition.get_atomic_fraction(Element("Li")))

    @property
    def source(self) -> str:
        return f"alloyflow search: {self.method} of {self.parent}"


# --------------------------------------------------------------------------- compositions and volumes


def _li_host(system) -> tuple[str, str]:
    elements = parse_system(system)
    if len(elements) != 2 or "Li" not in elements:
        raise ValueError(f"the structure search needs a binary Li–M system such as 'Li-In', not {system!r}")
    return "Li", next(e for e in elements if e != "Li")


def target_compositions(
    system: str,
    compositions=None,
    max_sites: int = 16,
    exhaustive_sites: int = 9,
    max_minority: int = 3,
) -> list[Composition]:
    """Formula units to search, Li-poor first.

    Given ``compositions`` (formulas such as ``"Li13In3"``), those. Otherwise
    every composition whose formula unit has at most ``exhaustive_sites``
    atoms, plus Li-rich ones up to ``max_sites`` atoms with 2 to
    ``max_minority`` M atoms per formula unit. Why that subset: large bcc
    superstructures (Li13M3-, Li17M4-like) occur on the Li-rich side; one
    minority atom in a large cell is what the dilute proxies are for; and a
    large cell with many minority atoms, or on the two lower-symmetry M-rich
    parents, has thousands of orderings, more than a budget can screen (ask
    for such compositions explicitly with ``compositions``).
    """
    li, host = _li_host(system)
    if compositions:
        out = []
        for text in compositions:
            comp = Composition(text)
            if {str(e) for e in comp.elements} != {li, host}:
                raise ValueError(f"composition {text!r} is not a {li}–{host} compound")
            out.append(Composition(comp.reduced_formula))
    else:
        fractions = set()
        for n in range(2, max_sites + 1):
            for k in range(1, n):  # k Li atoms in an n-atom formula unit
                if math.gcd(k, n) == 1 and (n <= exhaustive_sites or 2 <= n - k <= min(max_minority, k - 1)):
                    fractions.add(Fraction(k, n))
        out = [Composition({li: f.numerator, host: f.denominator - f.numerator}) for f in fractions]
    unique = {c.reduced_formula: c for c in out}
    return sorted(unique.values(), key=lambda c: c.get_atomic_fraction(Element(li)))


def reference_volumes(system: str, library: StructureLibrary | None = None) -> dict[str, float]:
    """Volume per atom of each element's reference structure in the library (unrelaxed CIFs)."""
    library = library or StructureLibrary()
    volumes = {}
    for el in parse_system(system):
        phases = [p for p in library.phases(system) if p.elements == (el,)]
        # The file named after the element is the reference state (Sn, not Sn_alpha).
        phase = sorted(phases, key=lambda p: (p.name != el, p.name))[0]
        volumes[el] = phase.structure.volume / len(phase.structure)
    return volumes


def vegard_volume(composition: Composition, volumes: dict[str, float]) -> float:
    """Volume per atom interpolated linearly between the elements' volumes per atom."""
    return float(sum(composition.get_atomic_fraction(el) * volumes[str(el)] for el in composition.elements))


def bcc_nn_distance(volume_per_atom: float) -> float:
    return math.sqrt(3.0) / 2.0 * (2.0 * volume_per_atom) ** (1.0 / 3.0)


def parent_lattice(name: str, volume_per_atom: float, bct_c_over_a: float | None = None) -> Lattice:
    """Primitive (one-site) lattice of the named parent with the given volume per atom."""
    if name == "bcc":
        a = (2.0 * volume_per_atom) ** (1.0 / 3.0)
        return Lattice(0.5 * a * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]))
    if name == "fcc":
        a = (4.0 * volume_per_atom) ** (1.0 / 3.0)
        return Lattice(0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]))
    if name == "bct":
        if not bct_c_over_a:
            raise ValueError("a bct parent needs its conventional c/a")
        a = (2.0 * volume_per_atom / bct_c_over_a) ** (1.0 / 3.0)
        c = bct_c_over_a * a
        return Lattice(0.5 * np.array([[-a, a, c], [a, -a, c], [a, a, -c]]))
    raise ValueError(f"unknown parent lattice {name!r}; use bcc, fcc or bct")


def bct_c_over_a(structure: Structure) -> float | None:
    """Conventional c/a of a one-atom body-centred tetragonal element (e.g. In), else None."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    prim = structure.get_primitive_structure()
    if len(prim) != 1:
        return None
    conv = SpacegroupAnalyzer(prim, symprec=0.01).get_conventional_standard_structure()
    a, b, c = conv.lattice.abc
    if len(conv) != 2 or abs(a - b) > 1e-3 * a or abs(c - a) < 1e-3 * a:
        return None  # not bct proper (bcc or fcc are handled as such)
    return c / a


def min_distance(structure: Structure) -> float:
    if len(structure) == 1:
        return float(min(structure.lattice.abc))
    d = structure.distance_matrix + np.eye(len(structure)) * 1e9
    # Also the shortest lattice vector: an atom's distance to its own image.
    return float(min(d.min(), min(structure.lattice.get_niggli_reduced_lattice().abc)))


def plausible(structure: Structure) -> bool:
    v = structure.volume / len(structure)
    return min_distance(structure) >= MIN_DISTANCE_FACTOR * bcc_nn_distance(v)


# --------------------------------------------------------------------------- orderings


def minority_repulsion(atoms, minority: str, d_nn: float, cutoff_shells: float = 2.6) -> float:
    """Mean over minority atoms of sum_j (d_nn / r_ij)^6 over the other minority atoms.

    A calculator-free pre-rank: in alloys with strongly negative mixing
    energy the minority atoms avoid each other, so the orderings with the
    most dispersed minority atoms go to the (costly) screening first.
    ``atoms`` is an ASE ``Atoms`` (icet's output, before any conversion).
    """
    from ase.neighborlist import neighbor_list

    sub = atoms[[s == minority for s in atoms.get_chemical_symbols()]]
    if len(sub) == 0:
        return 0.0
    _, _, d = neighbor_list("ijd", sub, cutoff_shells * d_nn)
    return float(np.sum((d_nn / d) ** 6) / len(sub)) if len(d) else 0.0


def cell_sizes(composition: Composition, max_sites: int, exhaustive_sites: int = 9) -> list[int]:
    """The formula unit, plus its multiples up to ``exhaustive_sites`` (B32 LiIn needs 2 f.u.).

    Larger multiples are left out: their orderings run into the thousands
    per composition, more than a budgeted screening can evaluate.
    """
    n0 = int(composition.num_atoms)
    return [k * n0 for k in range(1, max_sites // n0 + 1) if k == 1 or k * n0 <= exhaustive_sites]


def lattices_for(x_li: float) -> tuple[str, ...]:
    """bcc for Li-rich compounds (Li is bcc); fcc and bct for M-rich ones (In is fct)."""
    if x_li > 0.5:
        return LATTICES_LI_RICH
    if x_li < 0.5:
        return LATTICES_M_RICH
    return LATTICES_LI_RICH + LATTICES_M_RICH


def enumerate_orderings(
    composition: Composition,
    lattice: str,
    size: int,
    volume_per_atom: float,
    bct_ca: float | None = None,
) -> list:
    """All symmetry-distinct orderings of ``composition`` on ``size``-site supercells of ``lattice``.

    Returns ASE ``Atoms`` (converting thousands of them to pymatgen is slow;
    only the kept ones are converted).
    """
    from icet.tools import enumerate_structures
    from pymatgen.io.ase import AseAtomsAdaptor

    species = sorted(map(str, composition.elements), key=lambda s: s != "Li")
    x = float(composition.get_atomic_fraction(Element(species[0])))
    parent = Structure(parent_lattice(lattice, volume_per_atom, bct_ca), [species[0]], [[0, 0, 0]])
    eps = 0.5 / size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(
            enumerate_structures(
                AseAtomsAdaptor.get_atoms(parent), [size], species,
                concentration_restrictions={species[0]: (x - eps, x + eps)},
            )
        )


def ordering_candidates(
    system: str,
    compositions: list[Composition],
    volumes: dict[str, float],
    max_sites: int = 16,
    per_composition: int = 12,
    exhaustive_sites: int = 9,
    bct_ca: float | None = None,
) -> list[Candidate]:
    """Orderings of every target composition on its parent lattices, pre-ranked, capped per composition.

    Enumeration order from icet is deterministic, so names (and job keys) are
    the same in every run.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    li, host = _li_host(system)
    out = []
    for comp in compositions:
        x = float(comp.get_atomic_fraction(Element(li)))
        minority = host if x > 0.5 else li
        v = vegard_volume(comp, volumes)
        pool = []
        for lattice in lattices_for(x):
            if lattice == "bct" and not bct_ca:
                continue
            d_nn = min_distance(Structure(parent_lattice(lattice, v, bct_ca), [li], [[0, 0, 0]]))
            for size in cell_sizes(comp, max_sites, exhaustive_sites):
                for i, atoms in enumerate(enumerate_orderings(comp, lattice, size, v, bct_ca)):
                    name = f"{comp.reduced_formula}_{lattice}{size}_{i:04d}"
                    info = {"lattice": lattice, "sites": size, "index": i, "volume_per_atom": round(v, 6)}
                    pool.append((round(minority_repulsion(atoms, minority, d_nn), 6), name, atoms, info))
        pool.sort(key=lambda t: (t[0], t[1]))
        for score, name, atoms, info in pool[:per_composition]:
            info["minority_repulsion"] = score
            out.append(Candidate(name, AseAtomsAdaptor.get_structure(atoms), "ordering", info["lattice"], info))
    return out


# --------------------------------------------------------------------------- prototypes


def prototype_candidates(
    system: str,
    compositions: list[Composition],
    volumes: dict[str, float],
    max_sites: int = 16,
) -> list[Candidate]:
    """Each binary prototype of a target stoichiometry, Li on A and on B, Vegard-scaled, plausible only."""
    li, host = _li_host(system)
    wanted = {c.reduced_formula for c in compositions}
    ratios = {stoichiometry(c) for c in compositions}
    out, seen = [], set()
    for label, desc, proto in binary_prototypes():
        if stoichiometry(proto.composition) not in ratios:  # cheap test before the primitive-cell search
            continue
        prim = proto.get_primitive_structure()
        if len(prim) > max_sites:
            continue
        a, b = sorted(map(str, prim.composition.elements))
        for role, mapping in (("LiA", {a: li, b: host}), ("LiB", {a: host, b: li})):
            s = prim.copy()
            s.replace_species(mapping)
            formula = s.composition.reduced_formula
            name = f"{formula}_{label}_{role}"
            if formula not in wanted or name in seen:
                continue
            s.scale_lattice(vegard_volume(s.composition, volumes) * len(s))
            if not plausible(s):
                continue
            seen.add(name)
            out.append(Candidate(name, s, "prototype", f"{label} ({desc})", {"label": label, "role": role}))
    return out


# --------------------------------------------------------------------------- dilute proxies


def dilute_candidate(host_structure: Structure, n_host_sites: int = 36, mode: str = "substitution") -> Candidate:
    """One Li in an ``n_host_sites``-site host supercell, e.g. LiIn35 from In with 36 sites."""
    from alloyflow.structures.migration import dilute_li_supercell

    s, info = dilute_li_supercell(host_structure, n_host_sites=n_host_sites, mode=mode)
    host = host_structure.composition.reduced_formula
    return Candidate(s.composition.reduced_formula, s, f"dilute-{mode}", f"{host} ({n_host_sites} sites)", info)


def generate_candidates(
    system: str,
    compositions=None,
    max_sites: int = 16,
    volumes: dict[str, float] | None = None,
    bct_ca: float | None = None,
    per_composition: int = 12,
    exhaustive_sites: int = 9,
    prototypes: bool = True,
    library: StructureLibrary | None = None,
) -> list[Candidate]:
    """Orderings plus prototype decorations for the target compositions (dilute proxies separately)."""
    library = library or StructureLibrary()
    volumes = volumes or reference_volumes(system, library)
    if bct_ca is None:
        _, host = _li_host(system)
        bct_ca = bct_c_over_a(library.load(host))
    comps = target_compositions(system, compositions, max_sites, exhaustive_sites)
    cands = ordering_candidates(system, comps, volumes, max_sites, per_composition, exhaustive_sites, bct_ca)
    if prototypes:
        cands += prototype_candidates(system, comps, volumes, max_sites)
    return cands


__all__ = [
    "Candidate",
    "target_compositions",
    "reference_volumes",
    "vegard_volume",
    "parent_lattice",
    "bct_c_over_a",
    "enumerate_orderings",
    "ordering_candidates",
    "prototype_candidates",
    "binary_prototypes",
    "dilute_candidate",
    "generate_candidates",
    "minority_repulsion",
    "plausible",
]
