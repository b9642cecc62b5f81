"""Cells of one lattice that are images of one another under a symmetry, and the map between them.

The NEB endpoints of a phase's hops are vacancy (or interstitial, or
dilute-Li) cells of one supercell, and many are the same cell seen from
another site: the 20 endpoints of the ten Li13In3 hops are 7 distinct
structures, the 26 of Li17Sn4 12. A relaxation of one of them is, by
symmetry, the relaxation of all its images. ``equivalence_classes`` finds
which endpoints are images of which, and ``SiteMap`` carries a relaxed
structure from one to the other, so the barrier flow relaxes each distinct
endpoint once (``alloyflow.workflows.jobs.neb_endpoints``).

A map is an isometry of the lattice (an integer matrix on fractional
coordinates that keeps the metric, from ``Lattice.find_all_mappings``), a
fractional translation and an atom permutation, found on the unrelaxed
structures and accepted only if every atom lands within ``MAP_TOL`` Å of an
atom of the same species. Nothing here knows the host's space group: a pair
for which no such map exists is simply two classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure

MAP_TOL = 0.02
"""Å: largest distance between a mapped atom and its image for two unrelaxed cells to count as one."""

INVARIANT_TOL = 0.02
"""Å: two cells whose sorted interatomic distances differ by more than this are not tried for a map."""


@dataclass(frozen=True)
class SiteMap:
    """``x -> x @ rotation + translation`` on fractional row vectors, then ``permutation``.

    Target atom ``i`` is the image of reference atom ``permutation[i]``. All
    fields are plain lists, so a map is job input that serializes.
    """

    rotation: tuple
    translation: tuple
    permutation: tuple

    @property
    def is_identity(self) -> bool:
        """True for the map of a structure onto itself (the first member of a class)."""
        return (np.array_equal(self.rotation, np.eye(3, dtype=int)) and not np.any(np.abs(self.translation) > 1e-9)
                and list(self.permutation) == list(range(len(self.permutation))))

    def as_dict(self) -> dict:
        return {"rotation": [list(r) for r in self.rotation], "translation": list(self.translation),
                "permutation": list(self.permutation)}

    @classmethod
    def from_dict(cls, d: dict) -> SiteMap:
        return cls(tuple(tuple(int(v) for v in r) for r in d["rotation"]), tuple(float(v) for v in d["translation"]),
                   tuple(int(v) for v in d["permutation"]))

    def apply(self, structure: Structure, target: Structure) -> Structure:
        """``structure`` (a relaxation of the reference) carried onto ``target``: its lattice, order and images.

        Each atom is put on the periodic image nearest to the target's own
        atom, so the result can be compared atom by atom with ``target``.
        """
        frac = structure.frac_coords @ np.asarray(self.rotation, dtype=float) + np.asarray(self.translation)
        perm = list(self.permutation)
        frac = frac[perm]
        shift = frac - target.frac_coords
        frac = target.frac_coords + shift - np.round(shift)
        return Structure(target.lattice, [structure[p].species for p in perm], frac)


def _lattice_isometries(lattice: Lattice) -> list[np.ndarray]:
    """Integer matrices S with ``S @ L`` a rotation (or reflection) of ``L``: the lattice's point group."""
    out = []
    for _, _, scale in lattice.find_all_mappings(lattice, ltol=1e-4, atol=0.05, skip_rotation_matrix=True):
        s = np.asarray(scale, dtype=int)
        if abs(round(abs(np.linalg.det(s)))) == 1 and not any(np.array_equal(s, t) for t in out):
            out.append(s)
    identity = np.eye(3, dtype=int)
    out.sort(key=lambda s: not np.array_equal(s, identity))  # the identity first: the cheapest map is tried first
    return out


def _invariant(structure: Structure) -> np.ndarray:
    """Sorted interatomic distances (minimum image): equal for images under any isometry."""
    d = structure.distance_matrix
    return np.sort(d[np.triu_indices(len(structure), 1)])


def _match(ref_frac: np.ndarray, tgt: Structure, groups: dict, tol: float) -> list[int] | None:
    """The permutation placing mapped reference atoms on the target's atoms, species by species, or None."""
    perm = np.empty(len(tgt), dtype=int)
    for sp, (ri, ti) in groups.items():
        diff = ref_frac[ri][:, None, :] - tgt.frac_coords[ti][None, :, :]
        diff -= np.round(diff)
        dist = np.linalg.norm(diff @ tgt.lattice.matrix, axis=-1)
        near = dist <= tol
        if not (near.sum(axis=0) == 1).all() or not (near.sum(axis=1) == 1).all():
            return None
        perm[ti[np.argmax(near, axis=1)]] = ri  # reference atom ri[k] lands on target atom ti[argmax]
    return perm.tolist()


def find_map(reference: Structure, target: Structure, tol: float = MAP_TOL,
             isometries: list[np.ndarray] | None = None) -> SiteMap | None:
    """A ``SiteMap`` carrying ``reference`` onto ``target`` (same lattice), or None where none exists.

    The translation is tried from one atom of the rarest species to each
    target atom of that species, for each lattice isometry.
    """
    if len(reference) != len(target) or reference.composition != target.composition:
        return None
    if np.abs(reference.lattice.matrix - target.lattice.matrix).max() > 1e-6:
        return None
    species = [str(s.species) for s in reference]
    tspecies = [str(s.species) for s in target]
    groups = {sp: (np.flatnonzero(np.array(species) == sp), np.flatnonzero(np.array(tspecies) == sp))
              for sp in sorted(set(species))}
    rare = min(groups, key=lambda sp: (len(groups[sp][0]), sp))
    anchor = groups[rare][0][0]
    for s in isometries if isometries is not None else _lattice_isometries(reference.lattice):
        rotated = reference.frac_coords @ s
        for b in groups[rare][1]:
            t = target.frac_coords[b] - rotated[anchor]
            perm = _match(rotated + t, target, groups, tol)
            if perm is not None:
                t = t - np.floor(t)
                return SiteMap(tuple(tuple(int(v) for v in r) for r in s), tuple(float(v) for v in t), tuple(perm))
    return None


def equivalence_classes(structures: list[Structure], tol: float = MAP_TOL) -> list[tuple[int, SiteMap]]:
    """For each structure, (index of its class's first member, map from that member onto it).

    The first member of a class maps onto itself by the identity. Structures
    on different lattices, or of different compositions, are never one class.
    """
    out: list[tuple[int, SiteMap]] = []
    reps: list[int] = []
    invariants = [_invariant(s) for s in structures]
    isometries: dict[bytes, list[np.ndarray]] = {}
    for i, s in enumerate(structures):
        found = None
        for r in reps:
            ref = structures[r]
            if len(ref) != len(s) or np.abs(invariants[r] - invariants[i]).max(initial=0.0) > INVARIANT_TOL:
                continue
            key = np.round(ref.lattice.matrix, 6).tobytes()
            if key not in isometries:
                isometries[key] = _lattice_isometries(ref.lattice)
            m = find_map(ref, s, tol, isometries[key])
            if m is not None:
                found = (r, m)
                break
        if found is None:
            reps.append(i)
            found = (i, SiteMap(((1, 0, 0), (0, 1, 0), (0, 0, 1)), (0.0, 0.0, 0.0), tuple(range(len(s)))))
        out.append(found)
    return out
