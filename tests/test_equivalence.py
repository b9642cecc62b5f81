"""Endpoint cells that are images of one another: the classes, and relaxations carried between them."""

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from alloyflow.structures.equivalence import SiteMap, equivalence_classes, find_map


def _bcc_vacancy_cells():
    host = Structure.from_spacegroup("Im-3m", Lattice.cubic(3.44), ["Li"], [[0, 0, 0]])
    host.make_supercell(2)
    cells = []
    for v in range(len(host)):
        s = host.copy()
        s.remove_sites([v])
        cells.append((s, host[v].frac_coords))
    return cells


def _relaxed_about(cell: Structure, vacancy_frac) -> Structure:
    """A symmetric 'relaxation': the vacancy's nearest neighbours move 0.05 Å towards it.

    Only atoms well inside half the cell move, so the field has no minimum-image ambiguity.
    """
    out = cell.copy()
    for i, site in enumerate(cell):
        d = site.frac_coords - vacancy_frac
        d -= np.round(d)
        cart = d @ cell.lattice.matrix
        r = np.linalg.norm(cart)
        if r < 3.2:
            out.translate_sites([i], -0.05 * cart / r, frac_coords=False, to_unit_cell=False)
    return out


def test_every_vacancy_cell_of_bcc_is_one_class_and_a_relaxation_carries_over():
    cells = _bcc_vacancy_cells()
    classes = equivalence_classes([c for c, _ in cells])
    assert {rep for rep, _ in classes} == {0}
    relaxed0 = _relaxed_about(*cells[0])
    for (cell, vac), (rep, site_map) in zip(cells, classes):
        own = _relaxed_about(cell, vac)
        carried = site_map.apply(relaxed0, cell)
        assert [s.specie for s in carried] == [s.specie for s in cell]
        # atom by atom, the carried relaxation is the cell's own (the field depends only on the distance)
        diff = carried.frac_coords - own.frac_coords
        diff -= np.round(diff)
        assert np.abs(diff @ cell.lattice.matrix).max() < 1e-8
    back = SiteMap.from_dict(classes[5][1].as_dict())
    assert back == classes[5][1]


def test_inequivalent_sites_are_two_classes_as_structure_matcher_says():
    # Li2Sn5-like test cell: a tetragonal lattice with Li at two Wyckoff-inequivalent sites
    s = Structure(Lattice.tetragonal(4.0, 6.5), ["Sn", "Sn", "Li", "Li", "Li"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0.25], [0, 0.5, 0.25], [0, 0, 0.5]])
    cells = []
    for li in (2, 3, 4):
        c = s.copy()
        c.remove_sites([li])
        cells.append(c)
    classes = [rep for rep, _ in equivalence_classes(cells)]
    assert classes == [0, 0, 2]  # the two 4-fold sites are images under the 4-fold axis, the third is not
    sm = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False)
    assert sm.fit(cells[0], cells[1]) and not sm.fit(cells[0], cells[2])
    assert find_map(cells[0], cells[2]) is None


def test_lisn_hop_endpoints_group_like_a_tight_structure_matcher():
    """On a real plan (the library's LiSn, 10 Å cell: 5 hops, Li on 2n and 1e), the classes are StructureMatcher's.

    StructureMatcher's default lattice tolerance (20 %) puts all ten endpoints in one group; at 1 % it
    finds the two kinds of vacancy, as the maps do.
    """
    from alloyflow.structures.library import StructureLibrary, primitive
    from alloyflow.workflows.flows.hop_plan import BarrierSettings, plan_hops
    from alloyflow.workflows.jobs.neb import NebMaker
    from alloyflow.workflows.jobs.neb_endpoints import shared_endpoints

    phase = StructureLibrary().get("LiSn")
    plan = plan_hops("LiSn", phase.formula, primitive(phase.structure), BarrierSettings(min_image_distance=10.0))
    pairs = [NebMaker.band_endpoints(ini, fin) for _, ini, fin, _ in plan.entries]
    shared = shared_endpoints(pairs)
    flat = [s for p in pairs for s in p]
    reps = sorted({rep for hop in shared for rep, _ in hop})
    sm = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False, ltol=0.01, stol=0.05,
                          angle_tol=0.5)
    groups = sm.group_structures(flat)
    assert len(flat) == 10 and len(reps) == len(groups) == 2
    for i, s in enumerate(flat):
        rep, site_map = shared[i // 2][i % 2]
        carried = site_map.apply(flat[rep], s)
        d = carried.frac_coords - s.frac_coords
        assert np.abs((d - np.round(d)) @ s.lattice.matrix).max() < 0.02
        assert [x.specie for x in carried] == [x.specie for x in s]


def test_cells_on_other_lattices_or_compositions_never_share():
    cells = [c for c, _ in _bcc_vacancy_cells()[:2]]
    strained = cells[1].copy()
    strained.apply_strain(0.01)
    assert find_map(cells[0], strained) is None
    other = cells[1].copy()
    other.replace(0, "Na")
    assert find_map(cells[0], other) is None
    assert [rep for rep, _ in equivalence_classes([cells[0], strained, other])] == [0, 1, 2]
