"""Coordination numbers of Li sites (CrystalNN without electronegativity weighting)."""

import pytest
from pymatgen.core import Lattice, Structure

import alloyflow.analysis.coordination as coord_mod
from alloyflow.analysis.coordination import coordination, hop_coordination
from alloyflow.structures import StructureLibrary


def test_bcc_li_has_eight_li_neighbours():
    bcc = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    c = coordination(bcc, 0)
    assert (c["cn"], c["cn_li"], c["cn_m"]) == (8, 8, 0)
    assert c["method"].startswith("CrystalNN")
    assert all(n["distance"] == pytest.approx(3.44 * 3**0.5 / 2, abs=1e-3) for n in c["neighbours"])


def test_b2_li_is_surrounded_by_the_metal():
    b2 = Structure(Lattice.cubic(3.2), ["Li", "In"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    c = coordination(b2, 0)
    assert (c["cn"], c["cn_li"], c["cn_m"]) == (8, 0, 8)


def test_b32_liin_li_site():
    # NaTl type: each Li has 4 Li and 4 In at the same distance (two interpenetrating diamonds)
    liin = StructureLibrary().get("LiIn").structure
    li = next(i for i, s in enumerate(liin) if s.species_string == "Li")
    c = coordination(liin, li)
    assert (c["cn"], c["cn_li"], c["cn_m"]) == (8, 4, 4)


def test_cutoff_fallback_when_crystalnn_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CrystalNN failed")

    monkeypatch.setattr(coord_mod, "_crystalnn", broken)
    bcc = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    c = coordination(bcc, 0)
    assert c["method"].startswith("distance cutoff")
    assert c["cn"] == 8  # the second shell is 15.5 % farther: outside the 15 % window


def test_hop_coordination_short_form():
    bcc = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ci, cf = hop_coordination(bcc, 0, 1)
    assert ci == cf == {"cn": 8, "li": 8, "m": 0}
