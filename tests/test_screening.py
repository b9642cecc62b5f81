"""The screening rule: which hops need a converged band for exact percolation thresholds (pure, no calculator)."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from alloyflow.analysis.screening import converged_threshold, hops_to_converge
from alloyflow.structures.migration import hop_network


@pytest.fixture(scope="module")
def bcc_li():
    """bcc Li up to the second shell: hop 0 (nearest neighbours, a 3D net alone) and hop 1 (second shell)."""
    s = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    net = hop_network(s, "Li", 3.6)
    assert [round(h.length, 2) for h in net.hops] == [2.98, 3.44]
    return net


def test_first_round_converges_the_cheapest_looking_hops_that_reach_3d(bcc_li):
    assert hops_to_converge(bcc_li, {0: 0.10, 1: 0.50}, {}) == [0]
    assert hops_to_converge(bcc_li, {0: 0.50, 1: 0.10}, {}) == [1]  # hop 1 alone is a 3D net too (simple cubic)


def test_a_hop_the_factor_cannot_exclude_is_converged(bcc_li):
    assert converged_threshold(bcc_li, {0: 0.06}) == (3, pytest.approx(0.06))
    assert hops_to_converge(bcc_li, {0: 0.10, 1: 0.50}, {0: 0.06}, factor=0.5) == []  # 0.25 >= 0.06
    assert hops_to_converge(bcc_li, {0: 0.10, 1: 0.10}, {0: 0.06}, factor=0.5) == [1]  # 0.05 < 0.06
    assert hops_to_converge(bcc_li, {0: 0.10, 1: 0.10}, {0: 0.06, 1: 0.2}) == []  # all done


def test_failed_screens_and_failed_bands(bcc_li):
    assert hops_to_converge(bcc_li, {0: None, 1: 0.5}, {}) == [0]  # no estimate: always converged
    assert hops_to_converge(bcc_li, {0: 0.1, 1: 0.5}, {0: None}) == [1]  # the band failed: the next hop is needed
    with pytest.raises(ValueError, match="screening factor"):
        hops_to_converge(bcc_li, {0: 0.1, 1: 0.5}, {}, factor=0.0)


def test_the_phase_own_ratios_can_only_lower_the_factor(bcc_li):
    from alloyflow.analysis.screening import PHASE_MARGIN, effective_factor

    assert effective_factor({0: 0.2, 1: 0.5}, {0: 0.1}, factor=0.3) == 0.3  # ratio 0.5: the measured factor holds
    assert effective_factor({0: 0.2, 1: 0.5}, {0: 0.02}, factor=0.3) == pytest.approx(PHASE_MARGIN * 0.1)
    # hop 1's estimate x 0.3 = 0.075 >= 0.02 would leave it out; this host's screens overestimate 10x, so it is kept
    assert hops_to_converge(bcc_li, {0: 0.2, 1: 0.25}, {0: 0.02}, factor=0.3) == [1]
    assert hops_to_converge(bcc_li, {0: 0.2, 1: 0.5}, {0: 0.06}, factor=0.3) == []


def test_the_first_round_takes_every_hop_the_full_dimension_needs():
    """Simple tetragonal Li: chains along c (2.8 Å) and square nets in the plane (3.5 Å); only both reach 3D.
    The first round must converge both at once: one round per hop would serialise the NEBs on a queue."""
    s = Structure(Lattice.tetragonal(3.5, 2.8), ["Li"], [[0, 0, 0]])
    net = hop_network(s, "Li", 3.6)
    assert [round(h.length, 2) for h in net.hops] == [2.8, 3.5]
    assert hops_to_converge(net, {0: 0.1, 1: 0.2}, {}) == [0, 1]
    assert converged_threshold(net, {0: 0.1}) == (1, pytest.approx(0.1))
