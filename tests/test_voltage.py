"""Voltage curve of hand-made Li–In entries, worked out by hand.

Formation energies (eV/atom): LiIn -0.30, Li3In -0.20 (both on the hull),
LiIn3 -0.10 (above). Per host atom, E_f(Li_x In) = (1 + x) * e_f:
    x = 1 (LiIn):  -0.6 eV;   x = 3 (Li3In): -0.8 eV.
Plateaus: V = -dE/dx
    In + LiIn,    0 <= x <= 1:  -(-0.6 - 0) / 1    = 0.6 V
    LiIn + Li3In, 1 <= x <= 3:  -(-0.8 + 0.6) / 2  = 0.1 V
Average (0.6*1 + 0.1*2) / 3 = 0.8/3 V; max 3 Li per In;
capacity 3 * F / (3.6 * 114.818) = 3 * 96485.33212 / 413.3448 = 700.277 mAh/g.
"""

from __future__ import annotations

import pytest
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.apps.battery.conversion_battery import ConversionElectrode
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from alloyflow.analysis.hull import build_hull
from alloyflow.analysis.outputs import format_voltage_table
from alloyflow.analysis.voltage import voltage_profile

CAPACITY_3LI_IN = 700.277  # by hand, see module docstring
MU = {"Li": -1.9, "In": -2.5}  # non-zero references: voltages must not depend on them
CALC = {"name": "hand", "model": "hand-made", "version": "0", "kind": "test", "label": "hand-made (TEST ONLY)"}


def make_entry(formula, e_form, name=None, with_structure=False):
    """An entry with formation energy ``e_form`` eV/atom; a structure only where pymatgen needs one."""
    comp = Composition(formula)
    energy = sum(MU[str(el)] * n for el, n in comp.items()) + e_form * comp.num_atoms
    data = {"phase": name or formula, "calculator": CALC}
    if not with_structure:
        return ComputedEntry(comp, energy, entry_id=name or formula, data=data)
    species = [str(el) for el, n in comp.items() for _ in range(int(n))]
    coords = [[(i + 0.5) / len(species)] * 3 for i in range(len(species))]
    structure = Structure(Lattice.cubic((20.0 * len(species)) ** (1 / 3)), species, coords)
    return ComputedStructureEntry(structure, energy, entry_id=name or formula, data=data)


def hand_entries(with_structures=False):
    phases = [("In", 0.0, None), ("In", 0.02, "In_high"), ("LiIn3", -0.10, None), ("LiIn", -0.30, None),
              ("LiIn", -0.25, "LiIn_beta"), ("Li3In", -0.20, None), ("Li", 0.0, None), ("Li", 0.01, "Li_fcc")]
    return [make_entry(f, e, name, with_structures) for f, e, name in phases]


def check_hand_curve(v):
    assert v.host == "In" and v.working_ion == "Li"
    assert [(s.x_start, s.x_end) for s in v.steps] == [(0.0, pytest.approx(1.0)), (pytest.approx(1.0), pytest.approx(3.0))]
    assert [s.voltage for s in v.steps] == [pytest.approx(0.6), pytest.approx(0.1)]
    assert [s.phases for s in v.steps] == [["In", "LiIn"], ["LiIn", "Li3In"]]
    assert v.average_voltage == pytest.approx(0.8 / 3)
    assert v.max_li_per_host == pytest.approx(3.0)
    assert v.final_phase == "Li3In"  # the most Li-rich stable phase ends the curve
    assert v.capacity_mAh_per_g == pytest.approx(CAPACITY_3LI_IN, abs=1e-3)


def test_curve_from_entries():
    check_hand_curve(voltage_profile(hand_entries(), host="In"))
    check_hand_curve(voltage_profile(hand_entries(with_structures=True), host="In"))


def test_curve_from_phase_diagram_and_hull_agree():
    entries = hand_entries()  # plain ComputedEntry works
    check_hand_curve(voltage_profile(PhaseDiagram(entries)))
    hull = build_hull(entries, "Li-In")
    check_hand_curve(voltage_profile(hull))  # rebuilt from the stored energies (hull.json)


def test_host_is_inferred_and_checked():
    assert voltage_profile(hand_entries()).host == "In"
    with pytest.raises(ValueError, match="host Sn is not among"):
        voltage_profile(hand_entries(), host="Sn")


def test_unstable_li_rich_phase_ends_curve_earlier():
    # Li3In at -0.10 lies 0.05 eV/atom above the LiIn-Li line (-0.15 at x_Li = 0.75).
    entries = [e for e in hand_entries() if e.composition.reduced_formula != "Li3In"]
    entries.append(make_entry("Li3In", -0.10))
    v = voltage_profile(entries)
    assert len(v.steps) == 1
    assert v.steps[0].voltage == pytest.approx(0.6)
    assert v.max_li_per_host == pytest.approx(1.0) and v.final_phase == "LiIn"
    assert v.average_voltage == pytest.approx(0.6)
    assert v.capacity_mAh_per_g == pytest.approx(CAPACITY_3LI_IN / 3, abs=1e-3)


def test_no_compound_no_curve():
    entries = [make_entry("In", 0.0), make_entry("Li", 0.0), make_entry("LiIn", 0.05)]
    with pytest.raises(ValueError, match="no stable Li–In compound"):
        voltage_profile(entries)


def test_agrees_with_pymatgen_conversion_electrode():
    """Independent check: pymatgen's ConversionElectrode (needs structures) gives the same plateaus."""
    entries = hand_entries(with_structures=True)
    electrode = ConversionElectrode.from_composition_and_entries(Composition("In"), entries, "Li")
    v = voltage_profile(entries)
    assert sorted(p.voltage for p in electrode.voltage_pairs) == pytest.approx(sorted(s.voltage for s in v.steps))
    assert electrode.get_average_voltage() == pytest.approx(v.average_voltage)


def test_voltage_table():
    table = format_voltage_table(voltage_profile(hand_entries()))
    lines = table.splitlines()
    assert "hand-made (TEST ONLY)" in lines[0]
    assert "0.600  In + LiIn" in table and "0.100  LiIn + Li3In" in table
    assert "average 0.267 V" in table and "700.3 mAh/g" in table
