"""Hops, supercell sizing and endpoint construction (geometry only, no calculator)."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from alloyflow.structures import StructureLibrary
from alloyflow.structures.migration import (
    HopEndpointError,
    dilute_li_hops,
    dilute_li_supercell,
    distinct_hops,
    hop_network,
    moving_atom,
    remap_to_reference,
    vacancy_hop_endpoints,
    vacancy_supercell_matrix,
)


def bcc_li(a=3.44):
    return Structure(Lattice.cubic(a), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


def shortest_vector(structure):
    return min(structure.lattice.get_niggli_reduced_lattice().abc)


def test_bcc_li_has_two_distinct_hops_below_3p6():
    hops = distinct_hops(bcc_li(), max_length=3.6)
    assert len(hops) == 2
    assert hops[0].length == pytest.approx(3.44 * np.sqrt(3) / 2, abs=1e-3)  # nearest neighbour
    assert hops[1].length == pytest.approx(3.44, abs=1e-3)  # second neighbour, one cube edge
    assert [h.id for h in hops] == [0, 1]
    # per primitive cell: 8 nn / 2 and 6 second nn / 2 undirected edges
    assert [h.multiplicity for h in hops] == [4, 3]


def test_hop_network_edges_reference_hop_ids():
    net = hop_network(bcc_li(), max_length=3.6)
    assert net.n_sites == 1
    assert sorted({e[3] for e in net.edges}) == [0, 1]
    assert len(net.edges) == 7


def test_supercell_search_matches_hand_count_on_simple_cubic():
    # Simple cubic a = 3, images >= 5 Å apart. Index 2 and 3 sublattices of Z^3
    # always hold a vector of length 3*sqrt(2) = 4.24; the bcc-like index-4 one
    # spanned by (1,1,1), (1,1,-1), (1,-1,1) has 3*sqrt(3) = 5.196 as shortest.
    sc = Structure(Lattice.cubic(3.0), ["Li"], [[0, 0, 0]])
    choice = vacancy_supercell_matrix(sc, 5.0)
    assert choice.natoms == 4
    assert choice.min_image_distance == pytest.approx(3 * np.sqrt(3), abs=1e-3)
    assert choice.diagonal_natoms == 8


def test_bcc_li_supercell_is_smaller_than_diagonal_and_keeps_images_apart():
    prim = bcc_li()
    choice = vacancy_supercell_matrix(prim, 10.0)
    sc = prim * choice.matrix
    assert len(sc) == choice.natoms
    assert shortest_vector(sc) >= 10.0 - 1e-6
    assert shortest_vector(sc) == pytest.approx(choice.min_image_distance, abs=1e-3)
    assert choice.natoms <= choice.diagonal_natoms
    assert choice.natoms < 54  # better than the conventional 3x3x3 cell


def test_vacancy_endpoints_move_exactly_one_li():
    prim = bcc_li()
    hop = distinct_hops(prim, max_length=3.6)[0]
    initial, final, info = vacancy_hop_endpoints(prim, hop, min_image_distance=8.0)
    assert len(initial) == len(final) == info["natoms"]
    assert moving_atom(initial, final) == info["moving_index"]
    k = info["moving_index"]
    assert np.linalg.norm(final[k].coords - initial[k].coords) == pytest.approx(hop.length, abs=1e-6)
    assert info["min_image_distance"] >= 8.0


def test_lisn_endpoints_and_pymatgen_route_remapped():
    prim = StructureLibrary().get("LiSn").structure.get_primitive_structure(tolerance=0.01)
    hops = distinct_hops(prim)
    choice = vacancy_supercell_matrix(prim, 10.0)
    for hop in hops:
        initial, final, info = vacancy_hop_endpoints(prim, hop, supercell=choice)
        assert initial.composition == final.composition
        assert initial.composition["Li"] == choice.natoms // 2 - 1
        k = moving_atom(initial, final)
        assert initial[k].species_string == "Li"
        assert initial[k].distance(final[k]) == pytest.approx(hop.length, abs=1e-4)
    # pymatgen's own supercell endpoints do not keep site order; after the
    # same-species assignment exactly one atom moves.
    start, end, _ = hops[0].migration_hop.get_sc_structures(vac_mode=True, min_length=10.0)
    remapped, disp = remap_to_reference(start, end)
    assert (disp > 0.5).sum() == 1
    assert start[moving_atom(start, remapped)].species_string == "Li"


def test_moving_atom_refuses_two_movers_and_mismatched_endpoints():
    prim = bcc_li()
    hop = distinct_hops(prim, max_length=3.6)[0]
    initial, final, info = vacancy_hop_endpoints(prim, hop, min_image_distance=8.0)
    other = (info["moving_index"] + 1) % len(final)
    final.translate_sites([other], [0.9, 0, 0], frac_coords=False)
    with pytest.raises(HopEndpointError, match="2 atoms move"):
        moving_atom(initial, final)
    with pytest.raises(HopEndpointError, match="composition"):
        remap_to_reference(initial, final.copy().replace_species({"Li": "Na"}))


def test_dilute_li_in_indium_host():
    host = StructureLibrary().get("In").structure.get_primitive_structure(tolerance=0.01)
    sc, info = dilute_li_supercell(host, n_host_sites=36)
    assert sc.composition["Li"] == 1 and sc.composition["In"] == 35
    assert info["mode"] == "dilute-substitution"
    network, entries = dilute_li_hops(host, n_host_sites=36, max_length=3.4)
    assert len(entries) == len(network.hops) >= 1
    for hop, initial, final, meta in entries:
        assert initial.composition["Li"] == 1 and initial.composition["In"] == 34
        k = moving_atom(initial, final)
        assert k == meta["moving_index"] and initial[k].species_string == "Li"
    _, inter = dilute_li_hops(host, n_host_sites=36, mode="interstitial")
    hop, initial, final, meta = inter[0]
    assert initial.composition["In"] == 36 and initial.composition["Li"] == 1
    assert moving_atom(initial, final) == len(initial) - 1


def test_dilute_rejects_li_host_and_bad_size():
    with pytest.raises(ValueError, match="must not contain Li"):
        dilute_li_hops(bcc_li())
    host = StructureLibrary().get("Sn").structure
    with pytest.raises(ValueError, match="multiple"):
        dilute_li_supercell(host.get_primitive_structure(), n_host_sites=35)


def test_void_copies_off_a_special_position_merge_into_one_site():
    """SevenNet-0's relaxed In: the grid's largest void lay 0.14 Å off the octahedral site, its symmetry copies
    split 0.29 Å apart, and planning the study's interstitial dilute-Li hops failed (a 0.29 Å 'hop')."""
    from alloyflow.structures.interstitial import VOID_MERGE, void_orbit
    from alloyflow.structures.migration import dilute_li_hops

    relaxed_in = Structure(Lattice.from_parameters(3.3183979787168374, 3.318397978716838, 3.4357855390414977,
                                                   118.87608495598332, 118.87608495598332, 90.0), ["In"], [[0, 0, 0]])
    orbit = void_orbit(relaxed_in)
    dists = [relaxed_in.lattice.get_distance_and_image(a, b)[0] for i, a in enumerate(orbit) for b in orbit[i + 1:]]
    assert all(d >= VOID_MERGE for d in dists)
    assert np.allclose(orbit[0], [0.5, 0.5, 0.0], atol=1e-9)  # the octahedral void's special position
    network, entries = dilute_li_hops(relaxed_in, 36, "interstitial")
    assert min(h.length for h in network.hops) > 3.0 and len(entries) == len(network.hops)
