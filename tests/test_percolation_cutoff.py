"""The hop cutoff is raised until the hops percolate in 3D; a cap on hops is reported, thresholds as upper bounds."""

import pytest

from alloyflow.analysis.percolation import MAX_HOP_LENGTH, geometric_dimension, percolating_cutoff
from alloyflow.structures import StructureLibrary
from alloyflow.structures.library import primitive
from alloyflow.structures.migration import hop_network
from alloyflow.workflows.flows.barriers import BarrierSettings, plan_hops


@pytest.fixture(scope="module")
def lib():
    return StructureLibrary()


def test_lisn_cutoff_is_raised_to_3d(lib):
    s = primitive(lib.get("LiSn", "Li-Sn").structure)
    default = hop_network(s, "Li", None)  # DistinctPathFinder's choice: 2D only
    assert geometric_dimension(default) == 2
    cutoff, network, dim = percolating_cutoff(s, "Li")
    assert dim == 3 and cutoff > default.max_length and len(network.hops) > len(default.hops)
    # the shortest such cutoff: one step below it the network is not 3D
    shorter = max(h.length for h in network.hops if h.length < cutoff - 1e-3)
    assert geometric_dimension(hop_network(s, "Li", shorter)) < 3


def test_li2sn5_stays_1d_within_the_physical_limit_and_says_so(lib):
    s = primitive(lib.get("Li2Sn5", "Li-Sn").structure)
    cutoff, network, dim = percolating_cutoff(s, "Li")
    assert dim == 1 and cutoff <= MAX_HOP_LENGTH
    plan = plan_hops("Li2Sn5", "Li2Sn5", s, BarrierSettings(min_image_distance=6))
    assert any("percolate in 1D only" in w for w in plan.warnings)


def test_a_hop_cap_names_the_hops_left_out(lib):
    s = primitive(lib.get("LiSn", "Li-Sn").structure)
    full = plan_hops("LiSn", "LiSn", s, BarrierSettings(min_image_distance=6))
    capped = plan_hops("LiSn", "LiSn", s, BarrierSettings(min_image_distance=6, max_hops=2))
    assert not full.left_out and full.dimension == 3
    assert capped.left_out == [e[0].id for e in full.entries[2:]]
    assert any("upper bounds" in w for w in capped.warnings)


def test_upper_bounds_are_marked_in_the_table():
    from alloyflow.analysis.migration import BarrierResult, SupercellInfo, format_barrier_table

    result = BarrierResult(phase="X", calculator={"label": "mock"}, hops=[], hops_left_out=[3],
                           supercell=SupercellInfo(natoms=10, min_image_distance=6, matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
                           percolation={"1d": 0.2, "2d": None, "3d": None})
    assert not result.percolation_complete and "1D <=200" in format_barrier_table([result])
