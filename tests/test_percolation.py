"""Percolation thresholds on hand-built periodic graphs, and the metastability correction."""

import math

import pytest
from pymatgen.core import Lattice, Structure

from alloyflow.analysis.migration import (
    BarrierResult,
    HopBarrier,
    SupercellInfo,
    apply_metastability_correction,
    assign_percolation,
    metastability_correction,
)
from alloyflow.analysis.percolation import graph_edges, network_dimension, percolation_thresholds
from alloyflow.structures import StructureLibrary
from alloyflow.structures.migration import hop_network

X, Y, Z = (1, 0, 0), (0, 1, 0), (0, 0, 1)


def test_chain_percolates_in_1d_only():
    assert percolation_thresholds(1, [(0, 0, X, 0.1)]) == {"1d": 0.1, "2d": None, "3d": None}


def test_square_net_percolates_in_2d():
    perc = percolation_thresholds(1, [(0, 0, X, 0.1), (0, 0, Y, 0.2)])
    assert perc == {"1d": 0.1, "2d": 0.2, "3d": None}


def test_cubic_net_with_one_expensive_direction():
    perc = percolation_thresholds(1, [(0, 0, Z, 0.5), (0, 0, X, 0.1), (0, 0, Y, 0.1)])
    assert perc == {"1d": 0.1, "2d": 0.1, "3d": 0.5}


def test_two_site_chain_needs_both_hops():
    # 0 -> 1 inside the cell is cheap, but only 1 -> 0 in the next cell closes the chain
    edges = [(0, 1, (0, 0, 0), 0.1), (1, 0, X, 0.3)]
    assert percolation_thresholds(2, edges) == {"1d": 0.3, "2d": None, "3d": None}


def test_closed_loop_inside_the_cell_does_not_percolate():
    edges = [(0, 1, (0, 0, 0), 0.1), (1, 2, (0, 0, 0), 0.1), (2, 0, (0, 0, 0), 0.1)]
    assert percolation_thresholds(3, edges) == {"1d": None, "2d": None, "3d": None}


def test_offsets_are_tracked_through_merged_components():
    # sites 0..2 in a zig-zag whose winding vectors are (1,1,0) and (1,-1,0): a 2D net
    edges = [
        (0, 1, (0, 0, 0), 0.1),
        (1, 2, (1, 0, 0), 0.1),
        (2, 0, (0, 1, 0), 0.2),   # closes 0 -> 1 -> 2(+x) -> 0(+x+y): winding (1,1,0)
        (2, 0, (0, -1, 0), 0.4),  # winding (1,-1,0)
        (0, 0, (2, 0, 0), 0.9),   # parallel to (1,1,0)+(1,-1,0): no new direction
    ]
    assert percolation_thresholds(3, edges) == {"1d": 0.2, "2d": 0.4, "3d": None}
    assert network_dimension(3, edges) == 2


def test_missing_costs_are_left_out():
    edges = [(0, 0, X, None), (0, 0, Y, math.inf), (0, 0, Z, float("nan")), (0, 0, (1, 1, 0), 0.3)]
    assert percolation_thresholds(1, edges) == {"1d": 0.3, "2d": None, "3d": None}


def _result(hops):
    return BarrierResult(
        phase="test", calculator={"name": "mock", "label": "mock-Morse (TEST ONLY)", "kind": "test"},
        supercell=SupercellInfo(natoms=95, min_image_distance=10.0, matrix=[[2, 0, 0], [0, 2, 0], [0, 0, 2]]),
        hops=hops,
    )


def test_bcc_network_costs_through_migration_graph():
    prim = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
    net = hop_network(prim, max_length=3.6)
    result = _result([HopBarrier(id=0, length=2.98, cost=0.1), HopBarrier(id=1, length=3.44, cost=0.5)])
    assign_percolation(result, net)
    assert result.percolation == {"1d": 0.1, "2d": 0.1, "3d": 0.1}
    assert result.percolation_hops["1d"] == 0
    assert [h.percolation_dim_alone for h in result.hops] == [3, 3]
    # without the nearest-neighbour hop the second-neighbour (cube edge) net alone is 3D
    result.hops[0].cost = None
    assign_percolation(result, net)
    assert result.percolation == {"1d": 0.5, "2d": 0.5, "3d": 0.5}


def test_threshold_agrees_with_migration_graph_get_path():
    prim = StructureLibrary().get("LiSn").structure
    net = hop_network(prim)
    costs = {h.id: 0.1 * (len(net.hops) - h.id) for h in net.hops}  # longer hops cheaper: not trivially ordered
    edges = graph_edges(net, costs)
    thr = percolation_thresholds(net.n_sites, edges)["1d"]
    assert thr is not None
    assert any(True for _ in net.graph.get_path(max_val=thr + 1e-9))
    assert not any(True for _ in net.graph.get_path(max_val=thr - 1e-9))


def test_metastability_correction_arithmetic():
    # my numbers: 5 meV/atom above the hull in a 63-atom cell -> 0.315 eV
    assert metastability_correction(0.005, 63) == pytest.approx(0.315)
    assert metastability_correction(0.0, 100) == 0.0
    with pytest.raises(ValueError):
        metastability_correction(-0.001, 10)
    result = _result([HopBarrier(id=0, length=3.0, forward_barrier=0.05, cost=0.05)])
    result.percolation = {"1d": 0.05, "2d": None, "3d": None}
    apply_metastability_correction(result, 0.002)
    mc = result.metastability_correction
    assert mc.correction == pytest.approx(0.19)  # 2 meV/atom x 95 atoms
    assert mc.corrected_barriers[0] == pytest.approx(0.24)
    assert mc.corrected_percolation == {"1d": pytest.approx(0.24), "2d": None, "3d": None}
    assert result.hops[0].forward_barrier == 0.05  # raw value kept
    assert "correction" in mc.note
