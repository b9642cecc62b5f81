"""Supercells for a hop: the smallest cell whose periodic images lie far enough apart, and the checks.

``vacancy_supercell_matrix`` searches every Hermite normal form of each size
(not only diagonal repetitions) for the cell of fewest atoms whose shortest
lattice vector reaches the asked image distance; ``check_image_distance``
refuses a cell whose images would meet the hop (``IMAGE_MARGIN``). Geometry
only, no calculators; ``alloyflow.structures.migration`` builds the hop
endpoints in these cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
from pymatgen.core import Lattice, Structure

from alloyflow.structures.limits import MAX_ATOMS_ENV, estimated_memory_gb
from alloyflow.structures.limits import max_atoms as atom_limit


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
