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

import numpy as np
from pymatgen.analysis.diffusion.neb.full_path_mapper import MigrationGraph
from pymatgen.analysis.diffusion.neb.pathfinder import DistinctPathFinder, MigrationHop
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from scipy.optimize import linear_sum_assignment

from alloyflow.structures.limits import check_cell_size
from alloyflow.structures.supercells import (
    SupercellChoice,
    best_supercell_of_size,
    check_image_distance,
    shortest_distance,
    vacancy_supercell_matrix,
)


MOVE_TOLERANCE = 0.5
"""Å: an atom displaced by more than this between endpoints counts as moving."""


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
