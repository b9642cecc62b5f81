"""Harmonic free-energy arithmetic and the hull/voltage at T, against values worked out by hand.

One mode of frequency ν: F = hν/2 + kT ln(1 − e^(−hν/kT)) = kT ln(2 sinh(hν/2kT)),
ZPE = hν/2, high-T limit F → kT ln(hν/kT), S → k(1 + ln(kT/hν)), C_v → k.

Hull at T (hand-made Li–In entries, E_f(LiIn) = −0.30 eV/atom): if every
phase has the same frequencies per atom, F_vib cancels and G_f = E_f. If
LiIn's modes are softer (ν_c) than the elements' (ν_e), G_f(T) = E_f +
3[F(ν_c) − F(ν_e)] per atom and the In + LiIn plateau is V(T) = −2 G_f(T).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from alloyflow.analysis.thermo import (
    H_EV_THZ,
    KB_EV,
    ThermoResult,
    format_thermo_table,
    free_energy_entries,
    harmonic_properties,
    mode_free_energy,
    thermo_result,
)
from alloyflow.workflows.jobs.phonons import PhononDocument

MU = {"Li": -1.9, "In": -2.5}
CALC = {"name": "hand", "model": "hand-made", "version": "0", "kind": "test", "label": "hand-made (TEST ONLY)"}


def test_one_mode_by_hand():
    nu, t = 5.0, 300.0
    e, kt = H_EV_THZ * nu, KB_EV * t
    assert math.isclose(float(mode_free_energy(nu, t)), kt * math.log(2 * math.sinh(e / (2 * kt))), rel_tol=1e-12)
    assert math.isclose(float(mode_free_energy(nu, 0.0)), e / 2, rel_tol=1e-12)
    hot = 1e5
    assert math.isclose(float(mode_free_energy(nu, hot)), KB_EV * hot * math.log(e / (KB_EV * hot)), rel_tol=1e-5)


def test_harmonic_properties_by_hand():
    nu = 4.0
    e = H_EV_THZ * nu
    # One atom, one q-point, three equal modes, plus one imaginary mode that is left out.
    props = harmonic_properties([[nu, nu, nu, -1.0]], [1], 1, [0.0, 300.0, 50000.0])
    assert props["n_modes_excluded"] == 1
    assert math.isclose(props["zero_point_energy"], 1.5 * e, rel_tol=1e-12)
    assert math.isclose(props["free_energy"][0], 1.5 * e, rel_tol=1e-12)
    assert math.isclose(props["free_energy"][1], 3 * float(mode_free_energy(nu, 300.0)), rel_tol=1e-12)
    x = e / (KB_EV * 300.0)
    assert math.isclose(props["entropy"][1], 3 * (x / math.expm1(x) - math.log1p(-math.exp(-x))), rel_tol=1e-10)
    assert math.isclose(props["heat_capacity"][1], 3 * x**2 * math.exp(x) / math.expm1(x) ** 2, rel_tol=1e-10)
    assert props["heat_capacity"][2] == pytest.approx(3.0, rel=1e-4)  # Dulong–Petit
    assert props["entropy"][2] == pytest.approx(3 * (1 + math.log(KB_EV * 50000.0 / e)), rel=1e-4)


def test_weights_and_atoms_normalise():
    # Two q-points weighted 1 and 3, two atoms (6 modes each): F per atom = 6·(1·F(a) + 3·F(b)) / (4 · 2)
    a, b = 2.0, 6.0
    props = harmonic_properties([[a] * 6, [b] * 6], [1, 3], 2, [300.0])
    by_hand = (6 * float(mode_free_energy(a, 300.0)) + 3 * 6 * float(mode_free_energy(b, 300.0))) / (4 * 2)
    assert math.isclose(props["free_energy"][0], by_hand, rel_tol=1e-12)
    with pytest.raises(ValueError, match="weights"):
        harmonic_properties([[a] * 6], [1, 2], 2, [300.0])


def _entry(formula, e_form):
    from pymatgen.core import Composition
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    comp = Composition(formula)
    energy = sum(MU[str(el)] * n for el, n in comp.items()) + e_form * comp.num_atoms
    species = [str(el) for el, n in comp.items() for _ in range(int(n))]
    coords = [[(i + 0.5) / len(species)] * 3 for i in range(len(species))]
    structure = Structure(Lattice.cubic((20.0 * len(species)) ** (1 / 3)), species, coords)
    return ComputedStructureEntry(structure, energy, entry_id=formula, data={"phase": formula, "calculator": CALC})


def _phonons(formula, natoms, nu, imaginary=False):
    """A PhononDocument whose modes all have frequency ``nu`` (one q-point)."""
    structure = Structure(Lattice.cubic(3.0 * natoms), ["Li"] * natoms, [[i / natoms, 0, 0] for i in range(natoms)])
    props = harmonic_properties([[nu] * (3 * natoms)], [1], natoms, [0.0, 300.0])
    return PhononDocument(
        label=formula, formula=formula, natoms=natoms, structure=structure, supercell_matrix=np.eye(3, dtype=int).tolist(),
        supercell_natoms=natoms, displacement=0.01, n_displacements=1, n_force_calls=2, mesh=[1, 1, 1],
        mesh_frequencies=[[nu] * (3 * natoms)], mesh_weights=[1], temperatures=[0.0, 300.0],
        free_energy=props["free_energy"].tolist(), entropy=props["entropy"].tolist(),
        heat_capacity=props["heat_capacity"].tolist(), zero_point_energy=props["zero_point_energy"],
        min_frequency_mesh=-1.0 if imaginary else nu, imaginary_modes=imaginary, imaginary_fraction=0.0,
        calculator=CALC, input_hash="x", elapsed_seconds=0.0,
    )


def _system(nu_compound, nu_elements=5.0):
    entries = [_entry("Li", 0.0), _entry("In", 0.0), _entry("LiIn", -0.30)]
    docs = {"Li": _phonons("Li", 1, nu_elements), "In": _phonons("In", 1, nu_elements),
            "LiIn": _phonons("LiIn", 2, nu_compound, imaginary=nu_compound < 3)}
    return entries, docs


def test_same_frequencies_cancel():
    entries, docs = _system(5.0)
    res = thermo_result(entries, docs, "Li-In", 300.0)
    liin = next(p for p in res.phases if p.name == "LiIn")
    assert liin.formation_free_energy == pytest.approx(-0.30, abs=1e-12)
    assert res.voltage_T.steps[0].voltage == pytest.approx(res.voltage_0K.steps[0].voltage, abs=1e-12)


def test_softer_compound_by_hand():
    entries, docs = _system(2.0)
    t_entries, missing = free_energy_entries(entries, docs, 300.0)
    assert missing == [] and len(t_entries) == 3
    res = thermo_result(entries, docs, "Li-In", 300.0)
    d_f = 3 * (float(mode_free_energy(2.0, 300.0)) - float(mode_free_energy(5.0, 300.0)))
    liin = next(p for p in res.phases if p.name == "LiIn")
    assert liin.formation_energy_0K == pytest.approx(-0.30, abs=1e-12)
    assert liin.formation_free_energy == pytest.approx(-0.30 + d_f, abs=1e-12)
    assert res.voltage_0K.steps[0].voltage == pytest.approx(0.60, abs=1e-12)
    assert res.voltage_T.steps[0].voltage == pytest.approx(-2 * (-0.30 + d_f), abs=1e-12)
    # The soft compound is flagged (imaginary in this fabricated case), kept, and marked in the table.
    assert liin.imaginary_modes and "imag." in format_thermo_table(res)
    assert any("imaginary" in w for w in res.warnings)
    assert ThermoResult.model_validate_json(res.model_dump_json()).phases[1].name == liin.name


def test_missing_phonons_are_reported_not_dropped_silently():
    entries, docs = _system(5.0)
    entries.append(_entry("LiIn3", -0.10))
    res = thermo_result(entries, docs, "Li-In", 300.0)
    assert any("LiIn3" in w for w in res.warnings)
    assert "LiIn3" not in [p.name for p in res.phases]


def test_wrong_formula_is_an_error():
    entries, docs = _system(5.0)
    docs["LiIn"] = _phonons("Li2In", 3, 5.0)
    with pytest.raises(ValueError, match="Li2In"):
        free_energy_entries(entries, docs, 300.0)
