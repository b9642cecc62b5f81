"""Cell conventions every calculator may rely on.

A left-handed lattice (``det(matrix) < 0``) is a valid description of a
crystal, but not every potential handles it: CHGNet 0.4.2 returns the stress
with the wrong sign for such a cell, and a cell relaxation then runs the wrong
way and collapses. ``right_handed`` gives the same crystal on a right-handed
basis, with every atom at the same Cartesian position, so energies, forces and
stresses of a correct calculator are unchanged.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

_SWAP = [1, 0, 2]


def is_right_handed(structure: Structure) -> bool:
    """True if the lattice vectors of ``structure`` form a right-handed basis (det > 0)."""
    return bool(np.linalg.det(structure.lattice.matrix) > 0)


def right_handed(structure: Structure) -> Structure:
    """``structure`` itself if its cell is right-handed, else the same crystal with vectors a and b swapped.

    Swapping two lattice vectors (and the matching fractional coordinate
    columns) flips the sign of the determinant and moves no atom: Cartesian
    positions, species, order and site properties are kept (per-axis
    ``selective_dynamics`` flags are swapped along with the axes).
    """
    if is_right_handed(structure):
        return structure
    lattice = structure.lattice
    pbc = tuple(lattice.pbc[i] for i in _SWAP)
    props = {k: list(v) for k, v in structure.site_properties.items()}
    if "selective_dynamics" in props:
        props["selective_dynamics"] = [None if f is None else [f[i] for i in _SWAP]
                                       for f in props["selective_dynamics"]]
    return Structure(
        Lattice(lattice.matrix[_SWAP], pbc=pbc),
        [site.species for site in structure],
        structure.frac_coords[:, _SWAP],
        charge=structure.charge,
        site_properties=props or None,
        labels=structure.labels,
        properties=dict(structure.properties),
    )
