"""Li hops and the supercells that host them (geometry only, no calculators).

Conventions used everywhere in alloyflow:

* A hop moves one Li from site A (``isite``) to site B (``esite``). The
  *initial* endpoint has the Li on A and the vacancy on B; the *final* one has
  the vacancy on A and the Li on B. The forward barrier is the energy to move
  that Li from A into the vacancy on B.
* Both endpoints list the same atoms in the same order, so the only atom whose
  position differs (beyond relaxation noise) is the moving one. This is
  checked, not assumed: pymatgen-analysis-diffusion's
  ``MigrationHop.get_sc_structures`` loses that correspondence (see
  ``remap_to_reference``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from itertools import product

import numpy as np
from pymatgen.analysis.diffusion.neb.full_path_mapper import MigrationGraph
from pymatgen.analysis.diffusion.neb.pathfinder import DistinctPathFinder, MigrationHop
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from scipy.optimize import linear_sum_assignment

from alloyflow.structures.limits import MAX_ATOMS_ENV, check_cell_size, estimated_memory_gb
from alloyflow.structures.limits import max_atoms as atom_limit

MOVE_TOLERANCE = 0.5
"""Å: an atom displaced by more than this between endpoints counts as moving."""

IMAGE_MARGIN = 1.5
"""Å: the periodic images of the vacancy (or of the dilute Li) must lie at least the hop length plus this apart.

At the saddle the moving atom is half a hop from the vacancy it fills and at
least ``L - hop/2`` from that vacancy's nearest image (``L`` the image
distance), so ``L >= hop + IMAGE_MARGIN`` keeps every image at least
``IMAGE_MARGIN`` farther from the saddle than the vacancy itself. Closer than
the hop length, site B of a hop is (next to) an image of site A: in a 2-atom
bcc-Li cell the "hop" moves the one remaining atom onto its own periodic image
and the band is flat (0 meV, converged). 1.5 Å is about half a Li-Li
neighbour distance; the default 10 Å cells clear it for every hop up to 5 Å
(``MAX_HOP_LENGTH``), the 6 Å cells of the tests for the 4.15 Å LiSn hop.
"""


def shortest_distance(structure: Structure) -> float:
    """The shortest distance between two atoms of the periodic ``structure`` (its own images included), Å."""
    shortest = min(structure.lattice.get_niggli_reduced_lattice().abc)
    if len(structure) > 1:
        d = structure.distance_matrix
        shortest = min(shortest, float(d[~np.eye(len(structure), dtype=bool)].min()))
    return float(shortest)


def check_image_distance(image_distance: float, hop_length: float, what: str = "vacancy",
                         hop_what: str = "hop", remedy: str = "--min-image-distance") -> None:
    """Refuse a supercell whose images are closer than ``hop_length + IMAGE_MARGIN`` (one-line ``ValueError``)."""
    need = hop_length + IMAGE_MARGIN
    if image_distance < need - 1e-6:
        raise ValueError(
            f"the {what} supercell's periodic images are {image_distance:.2f} Å apart, closer than the "
            f"{hop_length:.2f} Å {hop_what} plus a {IMAGE_MARGIN:g} Å margin ({need:.2f} Å): the hop would meet its "
            f"own images and its barrier would mean nothing; use a larger cell ({remedy}, at least {need:.2f} Å apart)"
        )


class HopEndpointError(ValueError):
    """Endpoints that do not describe exactly one atom hopping."""


class _MigrationGraph(MigrationGraph):
    # The parent recomputes the symmetrized structure for every edge, and
    # MigrationHop equality then compares those distinct copies site by site:
    # 122 s for Li17Sn4's 196 edges. One cached copy makes it 3 s.
    @cached_property
    def symm_structure(self):
        return SpacegroupAnalyzer(self.structure, symprec=self.symprec).get_symmetrized_structure()


@dataclass
class Hop:
    """One symmetry-distinct hop of the unit cell; indices refer to that cell."""

    id: int
    length: float
    isite_frac: tuple[float, float, float]
    esite_frac: tuple[float, float, float]  # unwrapped: structure[esite_index] + esite_image
    isite_index: int
    esite_index: int
    esite_image: tuple[int, int, int]
    multiplicity: int  # graph edges with this label per unit cell
    graph_label: int
    migration_hop: MigrationHop = field(repr=False)


@dataclass
class HopNetwork:
    """Distinct hops plus every edge of the periodic hop graph, labelled by hop id."""

    structure: Structure
    species: str
    max_length: float
    hops: list[Hop]
    graph: MigrationGraph = field(repr=False)
    site_indices: list[int]  # graph node k is structure[site_indices[k]]
    edges: list[tuple[int, int, tuple[int, int, int], int]]  # (node i, node j, image of j, hop id)

    @property
    def n_sites(self) -> int:
        return len(self.site_indices)


def _tuple(x) -> tuple[float, float, float]:
    return tuple(float(v) for v in x)


def hop_network(structure: Structure, species: str = "Li", max_length: float | None = None, symprec: float = 0.1) -> HopNetwork:
    """Symmetry-distinct ``species`` hops of ``structure`` and the hop graph.

    ``max_length`` None takes DistinctPathFinder's choice, the shortest cutoff
    whose hops percolate in more than one dimension by its junction heuristic.
    """
    site_indices = [i for i, s in enumerate(structure) if s.species_string == species]
    if not site_indices:
        raise ValueError(f"{structure.composition.reduced_formula} has no {species} sites")
    if max_length is None:
        max_length = DistinctPathFinder(structure, species, symprec=symprec).max_path_length
    graph = _MigrationGraph.with_distance(structure, species, max_distance=max_length + 1e-3, symprec=symprec)
    unique = graph.unique_hops
    if not unique:
        raise ValueError(f"no {species}-{species} hop shorter than {max_length:.2f} Å in {structure.composition.reduced_formula}")
    labels = sorted(unique, key=lambda lab: (round(unique[lab]["hop"].length, 4), lab))
    ids = {lab: k for k, lab in enumerate(labels)}
    counts = {lab: 0 for lab in labels}
    edges = []
    for u, v, d in graph.m_graph.graph.edges(data=True):
        counts[d["hop_label"]] += 1
        edges.append((u, v, tuple(int(x) for x in d["to_jimage"]), ids[d["hop_label"]]))
    hops = []
    for lab in labels:
        d = unique[lab]
        mh: MigrationHop = d["hop"]
        i_idx, e_idx = site_indices[d["iindex"]], site_indices[d["eindex"]]
        image = np.round(mh.esite.frac_coords - structure[e_idx].frac_coords).astype(int)
        hops.append(Hop(
            id=ids[lab], length=float(mh.length), isite_frac=_tuple(mh.isite.frac_coords), esite_frac=_tuple(mh.esite.frac_coords),
            isite_index=i_idx, esite_index=e_idx, esite_image=tuple(int(x) for x in image), multiplicity=counts[lab],
            graph_label=lab, migration_hop=mh,
        ))
    return HopNetwork(structure, species, float(max_length), hops, graph, site_indices, edges)


def distinct_hops(structure: Structure, species: str = "Li", max_length: float | None = None) -> list[Hop]:
    """Symmetry-distinct ``species``–``species`` hops, shortest first."""
    return hop_network(structure, species, max_length).hops


# --------------------------------------------------------------------------- supercells


@dataclass
class SupercellChoice:
    matrix: list[list[int]]
    natoms: int
    min_image_distance: float  # shortest lattice vector of the supercell, Å
    diagonal_matrix: list[list[int]]  # smallest diagonal alternative, for comparison
    diagonal_natoms: int

    def as_dict(self) -> dict:
        return {"natoms": self.natoms, "min_image_distance": self.min_image_distance, "matrix": self.matrix}


def _short_vectors(matrix: np.ndarray, rmax: float) -> tuple[np.ndarray, np.ndarray]:
    """All non-zero integer k with |k @ matrix| < rmax, and their lengths."""
    bounds = np.ceil(rmax * np.linalg.norm(np.linalg.inv(matrix).T, axis=1)).astype(int)
    grids = np.meshgrid(*[np.arange(-b, b + 1) for b in bounds], indexing="ij")
    k = np.stack([g.ravel() for g in grids], axis=1)
    lengths = np.linalg.norm(k @ matrix, axis=1)
    keep = (lengths > 1e-8) & (lengths < rmax)
    return k[keep], lengths[keep]


def _hnf_matrices(n: int, diagonal_only: bool = False) -> np.ndarray:
    """Every sublattice of index ``n`` once, as lower-triangular Hermite normal forms."""
    out = []
    for a in range(1, n + 1):
        if n % a:
            continue
        for c in range(1, n // a + 1):
            if (n // a) % c:
                continue
            f = n // (a * c)
            if diagonal_only:
                out.append([[a, 0, 0], [0, c, 0], [0, 0, f]])
                continue
            # rows are basis vectors: b and d reduce modulo a, e modulo c
            for b, d, e in product(range(a), range(a), range(c)):
                out.append([[a, 0, 0], [b, c, 0], [d, e, f]])
    return np.array(out, dtype=np.int64).reshape(-1, 3, 3)


def _sublattice_min_lengths(hnfs: np.ndarray, n: int, k: np.ndarray, lengths: np.ndarray, rmax: float) -> np.ndarray:
    """Shortest vector of each sublattice, exact below ``rmax`` (``rmax`` otherwise)."""
    # k lies in the sublattice spanned by the rows of H iff k @ adj(H) = 0 mod det(H).
    adj = np.round(np.linalg.inv(hnfs) * n).astype(np.int64)
    best = np.full(len(hnfs), rmax)
    for start in range(0, len(hnfs), 2000):
        member = np.all(np.einsum("ki,nij->nkj", k, adj[start : start + 2000]) % n == 0, axis=2)
        best[start : start + 2000] = np.where(member, lengths[None, :], rmax).min(axis=1)
    return best


def _candidates(structure: Structure, n: int, diagonal_only: bool) -> tuple[np.ndarray, np.ndarray]:
    a = structure.lattice.matrix
    # Hermite's bound (lambda_1 <= 2^(1/6) det^(1/3) in 3D) makes the minimum exact below rmax.
    rmax = 1.13 * (n * structure.volume) ** (1 / 3)
    k, lengths = _short_vectors(a, rmax)
    hnfs = _hnf_matrices(n, diagonal_only)
    return hnfs, _sublattice_min_lengths(hnfs, n, k, lengths, rmax)


SUPERCELL_TIE = 1e-4
"""Å: candidate supercells (of equal shortest vectors) whose compactness differs by less than this are tied.

A tie goes to the candidate listed first (Hermite normal forms in a fixed
order), and the chosen sublattice gets a canonical reduced basis
(``_canonical_basis``): never does floating-point noise choose. A cubic host
has many tied cells, images of one another under its point group (12 of 6
primitive cells for B32 LiIn at 8 Å), whose compactness differs in the last
bits only, and a highly symmetric cell has many reduced bases. Picking the
smallest float, and pymatgen's first Niggli mapping, let a relaxed lattice
that differed by 1e-9 (another torch thread count) choose another cell or
basis: the same hop then lies differently in the cell, and in the 23-atom
LiIn cell that alone changed the SevenNet-0 barrier from 42-45 to 119 meV
(``tests/test_reproducible_barriers.py``). 1e-4 Å is far above that noise
and far below any real difference between candidates.

``legacy_ties=True`` (``vacancy_supercell_matrix`` and the functions above
it) is the earlier rule, for plans whose NEBs a store already holds
(``alloyflow.workflows.flows.barriers``); it is deterministic for the same
input bits only.
"""

REDUCED_ANGLE_TOL = 1e-3
"""Degrees: bases whose angles match the Niggli cell's within this are the same reduced cell."""


def _pick(structure: Structure, hnfs: np.ndarray, mins: np.ndarray, diagonal_only: bool,
          legacy_ties: bool = False) -> tuple[np.ndarray, float]:
    """The candidate with the longest shortest vector, then the most compact (smallest sum of reduced
    vector lengths); ties within ``SUPERCELL_TIE`` go to the first in ``hnfs``' order."""
    a = structure.lattice.matrix
    order = np.flatnonzero(mins >= mins.max() - 1e-6)
    compact = np.array([sum(Lattice(hnfs[i] @ a).get_niggli_reduced_lattice().abc) for i in order])
    if legacy_ties:
        best = int(order[np.argmin(compact)])
    else:
        best = int(order[np.flatnonzero(compact <= compact.min() + SUPERCELL_TIE)[0]])
    return _reduced_matrix(hnfs[best], a, diagonal_only, legacy_ties), float(mins[best])


def best_supercell_of_size(structure: Structure, n: int, diagonal_only: bool = False,
                           legacy_ties: bool = False) -> tuple[np.ndarray, float]:
    """The index-``n`` supercell matrix with the largest shortest lattice vector, and that length."""
    return _pick(structure, *_candidates(structure, n, diagonal_only), diagonal_only, legacy_ties)


def _canonical_basis(hnf: np.ndarray, a: np.ndarray) -> np.ndarray | None:
    """The Niggli-reduced basis of the sublattice ``hnf @ a`` chosen by integers, not by rounding noise.

    Every basis with the Niggli cell's lengths and angles (one per lattice
    automorphism: up to 48 for a cubic sublattice) is listed, right-handed,
    and the lexicographically largest integer matrix is taken. None when no
    such basis is found (the caller keeps pymatgen's).
    """
    sub = Lattice(hnf @ a)
    niggli = sub.get_niggli_reduced_lattice()
    inv = np.linalg.inv(a)
    n = round(abs(np.linalg.det(hnf)))
    found = set()
    for aligned, _, _ in sub.find_all_mappings(niggli, ltol=1e-5, atol=REDUCED_ANGLE_TOL, skip_rotation_matrix=True):
        m = np.round(aligned.matrix @ inv).astype(int)
        if not np.allclose(m @ a, aligned.matrix, atol=1e-6):
            continue
        if round(np.linalg.det(m)) < 0:
            m = -m
        if round(np.linalg.det(m)) == n:
            found.add(tuple(m.ravel()))
    return np.array(max(found)).reshape(3, 3) if found else None


def _reduced_matrix(hnf: np.ndarray, a: np.ndarray, keep: bool, legacy_ties: bool = False) -> np.ndarray:
    """The same sublattice on a Niggli-reduced (near-orthogonal) basis, det > 0 (canonical: ``_canonical_basis``)."""
    if keep:
        return hnf
    m = None if legacy_ties else _canonical_basis(hnf, a)
    if m is None:
        reduced = Lattice(hnf @ a).get_niggli_reduced_lattice().matrix
        m = np.round(reduced @ np.linalg.inv(a)).astype(int)
        if round(np.linalg.det(m)) < 0:
            m = -m
    if round(abs(np.linalg.det(m))) != round(abs(np.linalg.det(hnf))):
        return hnf  # rounding trouble on a very skewed cell: keep the HNF basis
    return m


def _smallest(structure: Structure, d: float, max_atoms: int, diagonal_only: bool,
              legacy_ties: bool = False) -> tuple[np.ndarray, float]:
    # Densest lattice packing (fcc) bounds the volume: V >= d^3 / sqrt(2).
    n = max(1, int(np.floor(d**3 / np.sqrt(2) / structure.volume)))
    while n * len(structure) <= max_atoms:
        hnfs, mins = _candidates(structure, n, diagonal_only)
        if mins.max() >= d - 1e-6:
            return _pick(structure, hnfs, mins, diagonal_only, legacy_ties)
        n += 1
    need = n * len(structure)  # a lower bound: no smaller cell keeps the images d apart
    raise ValueError(
        f"a supercell of {structure.composition.reduced_formula} keeping images {d:g} Å apart needs at least {need} "
        f"atoms (about {estimated_memory_gb(need):.1f} GB per force call with SevenNet-0), more than the limit of "
        f"{max_atoms}; lower --min-image-distance or set {MAX_ATOMS_ENV}"
    )


def vacancy_supercell_matrix(structure: Structure, min_image_distance: float = 10.0, max_atoms: int | None = None,
                             hop_length: float | None = None, legacy_ties: bool = False) -> SupercellChoice:
    """The supercell with the fewest atoms whose shortest lattice vector is ≥ ``min_image_distance``.

    Refused (``ValueError``, one line, before any job needs the cell): a cell
    of more than ``max_atoms`` atoms (default ``alloyflow.structures.limits.max_atoms()``,
    i.e. ``$ALLOYFLOW_MAX_ATOMS`` or 600), and one whose images are closer than
    ``hop_length + IMAGE_MARGIN``; without ``hop_length`` the structure's
    shortest interatomic distance stands in (no hop is shorter), and
    ``vacancy_hop_endpoints`` checks each hop's own length.

    All sublattices of each index are searched exhaustively (Hermite normal
    forms), so non-diagonal cells are found; the smallest *diagonal* cell is
    recorded for comparison. The matrix refers to ``structure`` as given:
    pass the primitive cell for the fewest atoms.

    Why not pymatgen's ``CubicSupercellTransformation`` (which
    ``MigrationHop.get_sc_structures`` uses): it looks for near-cubic cells
    above ``min_atoms`` (80 by default) and samples few shapes, while NEB cost
    grows with the atom count and only the image distance matters here.

    Ties between equally good cells, and the reduced basis, are decided
    without floating-point noise (``SUPERCELL_TIE``; ``legacy_ties`` for the
    earlier rule).
    """
    if not min_image_distance > 0:
        raise ValueError(f"min_image_distance must be > 0 Å, got {min_image_distance}")
    max_atoms = atom_limit() if max_atoms is None else max_atoms
    matrix, dmin = _smallest(structure, min_image_distance, max_atoms, diagonal_only=False, legacy_ties=legacy_ties)
    if hop_length is None:
        check_image_distance(dmin, shortest_distance(structure), hop_what="nearest-neighbour distance (the shortest hop)")
    else:
        check_image_distance(dmin, hop_length)
    try:
        diag, _ = _smallest(structure, min_image_distance, max_atoms, diagonal_only=True, legacy_ties=legacy_ties)
    except ValueError:
        diag = matrix
    natoms = lambda m: round(abs(np.linalg.det(m))) * len(structure)  # noqa: E731
    return SupercellChoice(matrix.tolist(), natoms(matrix), round(dmin, 4), np.asarray(diag).tolist(), natoms(diag))


def check_barrier_supercell(structure: Structure, min_image_distance: float = 10.0, dilute: bool = False,
                            n_host_sites: int | None = None, mode: str = "substitution") -> None:
    """Refuse, before any job exists, a barrier cell of ``structure`` that is too small or too large.

    The same choices as the barrier flow makes on the relaxed cell (which
    checks again, hop by hop): the vacancy (or dilute host) supercell for
    ``min_image_distance``, or the host cell of ``n_host_sites`` sites.
    """
    if dilute and n_host_sites is not None:
        _, dmin = _host_supercell(structure, n_host_sites, None, extra=int(mode == "interstitial"))
        check_image_distance(dmin, shortest_distance(structure), what="dilute-Li",
                             hop_what="nearest-neighbour distance (the shortest hop)", remedy="more --host-sites")
    else:
        vacancy_supercell_matrix(structure, min_image_distance)


# --------------------------------------------------------------------------- endpoints


def remap_to_reference(reference: Structure, other: Structure) -> tuple[Structure, np.ndarray]:
    """``other`` reordered to match ``reference`` site by site, and each site's displacement.

    Same-species minimum-image assignment (Hungarian algorithm on periodic
    distances), which undoes any reordering by pymatgen's supercell builder or
    an interpolation.
    """
    if len(reference) != len(other) or reference.composition != other.composition:
        raise HopEndpointError(f"endpoints differ in composition: {reference.composition} vs {other.composition}")
    if not np.allclose(reference.lattice.matrix, other.lattice.matrix, atol=1e-3):
        raise HopEndpointError("endpoints have different cells")
    order = np.empty(len(reference), dtype=int)
    disp = np.empty(len(reference))
    for species in {s.species_string for s in reference}:
        ref_idx = [i for i, s in enumerate(reference) if s.species_string == species]
        oth_idx = [i for i, s in enumerate(other) if s.species_string == species]
        dist = reference.lattice.get_all_distances(reference.frac_coords[ref_idx], other.frac_coords[oth_idx])
        rows, cols = linear_sum_assignment(dist)
        for r, c in zip(rows, cols):
            order[ref_idx[r]] = oth_idx[c]
            disp[ref_idx[r]] = dist[r, c]
    remapped = Structure.from_sites([other[i] for i in order])
    return remapped, disp


def moving_atom(initial: Structure, final: Structure, tolerance: float = MOVE_TOLERANCE) -> int:
    """Index of the single atom that moves by more than ``tolerance`` Å; raise otherwise."""
    disp = np.array([initial[i].distance(final[i]) for i in range(len(initial))])
    movers = np.flatnonzero(disp > tolerance)
    if len(movers) != 1:
        shown = ", ".join(f"{i}:{disp[i]:.2f} Å" for i in movers[:8])
        raise HopEndpointError(f"{len(movers)} atoms move by more than {tolerance} Å between endpoints ({shown}); expected exactly one")
    return int(movers[0])


def _site_in(sc: Structure, frac_uc: np.ndarray, inv_m: np.ndarray, tol: float = 0.3) -> int:
    frac = np.asarray(frac_uc) @ inv_m
    dist = sc.lattice.get_all_distances([frac], sc.frac_coords)[0]
    idx = int(np.argmin(dist))
    if dist[idx] > tol:
        raise HopEndpointError(f"no site within {tol} Å of {np.round(frac_uc, 3)} in the supercell")
    return idx


def _supercell(structure: Structure, supercell: SupercellChoice | np.ndarray | list) -> tuple[Structure, np.ndarray]:
    m = np.asarray(supercell.matrix if isinstance(supercell, SupercellChoice) else supercell, dtype=int)
    sc = structure.copy()
    sc.make_supercell(m)
    return sc, np.linalg.inv(m)


def _hop_structures(sc: Structure, inv_m: np.ndarray, hop: Hop, a_species: str | None = None) -> tuple[Structure, Structure, int]:
    """Atom on A, vacancy on B -> vacancy on A, atom on B (B's occupant removed)."""
    a, b = _site_in(sc, hop.isite_frac, inv_m), _site_in(sc, hop.esite_frac, inv_m)
    if a == b:
        raise HopEndpointError(f"hop {hop.id} maps A and B onto one supercell site: the supercell is too small")
    initial = sc.copy()
    if a_species:
        initial.replace(a, a_species)
    initial.remove_sites([b])
    a -= int(b < a)
    # Unwrapped, so the final position lies one hop length from the initial one
    # even when the hop crosses the cell boundary.
    delta = (np.asarray(hop.esite_frac) - np.asarray(hop.isite_frac)) @ inv_m
    final = initial.copy()
    final.replace(a, final[a].species_string, initial[a].frac_coords + delta, coords_are_cartesian=False)
    return initial, final, a


def _checked(initial: Structure, final: Structure, expected: int) -> int:
    final_remapped, _ = remap_to_reference(initial, final)
    mover = moving_atom(initial, final_remapped)
    if mover != expected:
        raise HopEndpointError(f"atom {mover} moves between endpoints, expected atom {expected}")
    return mover


def _hop_info(hop: Hop, mover: int) -> dict:
    return {"hop_id": hop.id, "hop_length": hop.length, "moving_index": mover}


def vacancy_hop_endpoints(
    structure: Structure,
    hop: Hop,
    min_image_distance: float = 10.0,
    supercell: SupercellChoice | np.ndarray | list | None = None,
) -> tuple[Structure, Structure, dict]:
    """Vacancy-mediated hop in the smallest supercell with images ≥ ``min_image_distance`` apart.

    Built directly in the supercell (not via ``get_sc_structures``) so that the
    two endpoints share one site order; ``info['moving_index']`` is the moving
    Li in both. ``supercell`` may also be a matrix (rows: supercell vectors in
    ``structure``'s basis).
    """
    if supercell is None:
        supercell = vacancy_supercell_matrix(structure, min_image_distance, hop_length=hop.length)
    if isinstance(supercell, SupercellChoice):
        image_distance, natoms = supercell.min_image_distance, supercell.natoms
        cell = supercell.as_dict()
    else:
        m = np.asarray(supercell, dtype=int)
        image_distance = min(Lattice(m @ structure.lattice.matrix).get_niggli_reduced_lattice().abc)
        natoms = round(abs(np.linalg.det(m))) * len(structure)
        cell = {"natoms": natoms, "min_image_distance": round(image_distance, 4), "matrix": m.tolist()}
    check_image_distance(image_distance, hop.length)
    check_cell_size(natoms, f"the vacancy supercell of {structure.composition.reduced_formula}")
    sc, inv_m = _supercell(structure, supercell)
    initial, final, a = _hop_structures(sc, inv_m, hop)
    mover = _checked(initial, final, a)
    info = {**cell, "natoms": len(initial), "mode": "vacancy", **_hop_info(hop, mover)}
    return initial, final, info


# --------------------------------------------------------------------------- dilute Li in a host


def _host_supercell(host: Structure, n_host_sites: int | None, matrix, extra: int = 0,
                    legacy_ties: bool = False) -> tuple[np.ndarray, float]:
    """The host supercell (``matrix``, or the best of ``n_host_sites`` sites) and its image distance.

    A cell of more than the atom limit (``extra`` atoms added) is refused before it is searched for.
    """
    what = f"the dilute-Li supercell of {host.composition.reduced_formula}"
    if matrix is not None:
        m = np.asarray(matrix, dtype=int)
        check_cell_size(round(abs(np.linalg.det(m))) * len(host) + extra, what)
        return m, float(min(Lattice(m @ host.lattice.matrix).get_niggli_reduced_lattice().abc))
    if n_host_sites is None or n_host_sites % len(host):
        raise ValueError(f"n_host_sites={n_host_sites} is not a multiple of the {len(host)} sites of the host cell")
    check_cell_size(n_host_sites + extra, what)
    return best_supercell_of_size(host, n_host_sites // len(host), legacy_ties=legacy_ties)


def _interstitial_network(host: Structure, max_length: float | None) -> HopNetwork:
    from alloyflow.structures.interstitial import void_orbit

    decorated = host.copy()
    for y in void_orbit(host):
        decorated.append("Li", y)
    return hop_network(decorated, "Li", max_length)


def dilute_li_supercell(host_structure: Structure, n_host_sites: int | None = 36, mode: str = "substitution", matrix=None) -> tuple[Structure, dict]:
    """One Li in a host supercell: on a host site (``substitution``) or in the largest void (``interstitial``)."""
    m, dmin = _host_supercell(host_structure, n_host_sites, matrix, extra=int(mode == "interstitial"))
    sc, inv_m = _supercell(host_structure, m)
    if mode == "substitution":
        sc.replace(0, "Li")
    elif mode == "interstitial":
        from alloyflow.structures.interstitial import void_orbit

        sc.append("Li", void_orbit(host_structure)[0] @ inv_m)  # the largest void, on its special position
    else:
        raise ValueError(f"mode must be 'substitution' or 'interstitial', not {mode!r}")
    return sc, {"natoms": len(sc), "min_image_distance": round(dmin, 4), "matrix": m.tolist(), "mode": f"dilute-{mode}"}


def dilute_li_hops(
    host_structure: Structure,
    n_host_sites: int | None = 36,
    mode: str = "substitution",
    matrix=None,
    max_length: float | None = None,
    legacy_ties: bool = False,
) -> tuple[HopNetwork, list[tuple[Hop, Structure, Structure, dict]]]:
    """Endpoints for one Li moving in a host; one entry per distinct hop.

    ``substitution``: the Li sits on host site A next to a host vacancy on B
    and jumps into it (the hops are the host's distinct M–M hops).
    ``interstitial``: the Li hops between symmetry-equivalent largest voids.
    """
    species = {s.species_string for s in host_structure}
    if "Li" in species:
        raise ValueError("a dilute-Li host must not contain Li")
    if mode == "substitution":
        if len(species) != 1:
            raise ValueError(f"substitutional dilute Li needs an elemental host, got {host_structure.composition.reduced_formula}")
        network = hop_network(host_structure, species.pop(), max_length)
    elif mode == "interstitial":
        network = _interstitial_network(host_structure, max_length)
    else:
        raise ValueError(f"mode must be 'substitution' or 'interstitial', not {mode!r}")
    m, dmin = _host_supercell(host_structure, n_host_sites, matrix, extra=int(mode == "interstitial"),
                              legacy_ties=legacy_ties)
    remedy = "--min-image-distance" if n_host_sites is None else "more --host-sites"
    for hop in network.hops:
        check_image_distance(dmin, hop.length, what="dilute-Li", remedy=remedy)
    out = []
    for hop in network.hops:
        sc, inv_m = _supercell(host_structure, m)
        if mode == "substitution":
            initial, final, a = _hop_structures(sc, inv_m, hop, a_species="Li")
        else:
            initial, final, a = sc.copy(), sc.copy(), len(sc)
            initial.append("Li", np.asarray(hop.isite_frac) @ inv_m)
            final.append("Li", np.asarray(hop.esite_frac) @ inv_m)
        info = {"natoms": len(initial), "min_image_distance": round(dmin, 4), "matrix": m.tolist(), "mode": f"dilute-{mode}"}
        out.append((hop, initial, final, {**info, **_hop_info(hop, _checked(initial, final, a))}))
    return network, out
