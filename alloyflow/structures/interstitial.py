"""Interstitial Li in a Li-containing phase: void sites, their hops, and NEB endpoints (geometry only).

The reference study argues that Li-poor phases (Li2Sn5, LiSn, dilute Li in
In) may move Li through interstitial voids rather than by vacancy hops. The
mechanism here: one extra Li in the largest void of the phase; it hops to a
symmetry-equivalent void. Voids are found without a charge density: the
grid point of the cell farthest from every atom (``void_site``), and its
symmetry orbit. The hop network is the one of those void sites alone
(``decorate_voids`` marks them with a placeholder species, so the lattice Li
stay out of it), built with the same ``hop_network`` as the vacancy hops.

Endpoints share one site order (the extra Li is appended last), so the
moving atom is known; a Li that relaxes out of its void (an interstitialcy
kick-out) shows up in the flow's endpoint check, not here.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

PLACEHOLDER = "He"
"""Species marking void sites in a decorated structure (absent from every Li alloy)."""


def void_site(structure: Structure, spacing: float = 0.1) -> np.ndarray:
    """Fractional coordinates of the largest void: the grid point farthest from every atom."""
    n = np.maximum(4, np.ceil(np.array(structure.lattice.abc) / spacing)).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(k) / k for k in n], indexing="ij"), -1).reshape(-1, 3)
    nearest = structure.lattice.get_all_distances(grid, structure.frac_coords).min(axis=1)
    return grid[int(np.argmax(nearest))]


VOID_MERGE = 1.0
"""Å: symmetry copies of the void point closer than this are one void (no two Li sit 1 Å apart).

The void point is a grid point, so it lies up to half a grid step off a
special position; its symmetry copies then split into clusters around that
position (0.29 Å apart for the octahedral void of body-centred tetragonal
In), which would give spurious hops shorter than any Li-Li distance. Each
cluster is replaced by its mean, which is the special position."""


def void_orbit(structure: Structure, symprec: float = 0.1, merge: float = VOID_MERGE) -> list[np.ndarray]:
    """The largest void and its symmetry-equivalent copies in the cell (fractional coordinates).

    Copies closer than ``merge`` Å are averaged into one site (``VOID_MERGE``).
    """
    x = void_site(structure)
    clusters: list[list[np.ndarray]] = []
    for op in SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations():
        y = op.operate(x) % 1.0
        for cluster in clusters:
            d, image = structure.lattice.get_distance_and_image(cluster[0], y)
            if d < merge:
                cluster.append(y + image)  # the copy nearest the cluster's first member
                break
        else:
            clusters.append([y])
    return [np.mean(c, axis=0) % 1.0 for c in clusters]


def decorate_voids(structure: Structure) -> Structure:
    """``structure`` with a ``PLACEHOLDER`` atom on every site of the largest-void orbit."""
    if PLACEHOLDER in {s.species_string for s in structure}:
        raise ValueError(f"{structure.composition.reduced_formula} contains {PLACEHOLDER}, the void placeholder")
    decorated = structure.copy()
    for y in void_orbit(structure):
        decorated.append(PLACEHOLDER, y)
    return decorated


def void_radius(structure: Structure) -> float:
    """Distance (Å) from the largest void to its nearest atom."""
    x = void_site(structure)
    return float(structure.lattice.get_all_distances([x], structure.frac_coords).min())


def interstitial_endpoints(structure: Structure, hop, matrix) -> tuple[Structure, Structure, dict]:
    """One extra Li on void A (initial) or on void B (final) of the ``matrix`` supercell of ``structure``.

    ``hop`` comes from ``hop_network(decorate_voids(structure), PLACEHOLDER, ...)``;
    its fractional coordinates refer to ``structure``'s cell. The final
    position is unwrapped (one hop length from the initial one).
    """
    m = np.asarray(matrix, dtype=int)
    inv_m = np.linalg.inv(m)
    sc = structure.copy()
    sc.make_supercell(m)
    initial = sc.copy()
    initial.append("Li", np.asarray(hop.isite_frac) @ inv_m)
    delta = (np.asarray(hop.esite_frac) - np.asarray(hop.isite_frac)) @ inv_m
    final = initial.copy()
    final.replace(len(final) - 1, "Li", initial[-1].frac_coords + delta, coords_are_cartesian=False)
    crowded = initial.lattice.get_all_distances([initial[-1].frac_coords], sc.frac_coords).min()
    info = {"natoms": len(initial), "matrix": m.tolist(), "mode": "interstitial", "hop_id": hop.id,
            "hop_length": hop.length, "moving_index": len(initial) - 1, "void_radius": round(float(crowded), 4)}
    return initial, final, info
