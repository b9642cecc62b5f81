"""Hull analysis on hand-made entries whose hull is worked out by hand below,
plus one end-to-end run on mock-potential entries for the output files.

Hand-made Li–In system (formation energies in eV/atom, x = Li atomic fraction):
    In (x=0) 0, LiIn3 (0.25) -0.10, LiIn (0.5) -0.30, LiIn_beta (0.5) -0.25,
    Li3In (0.75) -0.20, Li (1) 0, plus Li_fcc +0.01 and In_high +0.02 polymorphs.
Hull In -> LiIn: line at x=0.25 is -0.15, so LiIn3 is 0.05 above.
Hull LiIn -> Li: line at x=0.75 is -0.15, so Li3In at -0.20 is below: stable.
LiIn_beta sits 0.05 above LiIn. Hull minimum: LiIn at -0.30.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from alloyflow.analysis.hull import HullResult, build_hull
from alloyflow.analysis.outputs import format_hull_table
from alloyflow.io.files import FIGURE_INDEX, OutputFileError
from alloyflow.io.hull import read_hull_json, read_voltage_json, write_hull_outputs
from alloyflow.analysis.plots import plot_hull, plot_voltage
from alloyflow.analysis.voltage import voltage_profile

MU = {"Li": -1.9, "In": -2.5, "Sn": -3.8}  # non-zero references so formation energies are really computed
CALC = {"name": "hand", "model": "hand-made", "version": "0", "kind": "test", "label": "hand-made (TEST ONLY)"}
# volume per atom (A^3) of each hand-made phase
VOL = {"In": 26.0, "LiIn3": 25.0, "LiIn": 20.0, "Li3In": 18.0, "Li": 20.0}


def make_entry(formula, e_form, name=None, volume_per_atom=None, converged=True, calculator=CALC):
    """An entry of ``formula`` with formation energy ``e_form`` eV/atom vs MU."""
    comp = Composition(formula)
    energy = sum(MU[str(el)] * n for el, n in comp.items()) + e_form * comp.num_atoms
    data = {"phase": name or formula, "status": "test", "source": "hand", "converged": converged}
    if calculator is not None:
        data["calculator"] = calculator
    if volume_per_atom is None:
        return ComputedEntry(comp, energy, entry_id=name or formula, data=data)
    species = [str(el) for el, n in comp.items() for _ in range(int(n))]
    n = len(species)
    coords = [[(i + 0.5) / n] * 3 for i in range(n)]
    structure = Structure(Lattice.cubic((volume_per_atom * n) ** (1 / 3)), species, coords)
    return ComputedStructureEntry(structure, energy, entry_id=name or formula, data=data)


def hand_entries(with_structures=True):
    v = (lambda f: VOL[f]) if with_structures else (lambda f: None)
    return [
        make_entry("In", 0.0, volume_per_atom=v("In")),
        make_entry("In", 0.02, name="In_high", volume_per_atom=v("In")),
        make_entry("LiIn3", -0.10, volume_per_atom=v("LiIn3")),
        make_entry("LiIn", -0.30, volume_per_atom=v("LiIn")),
        make_entry("LiIn", -0.25, name="LiIn_beta", volume_per_atom=v("LiIn")),
        make_entry("Li3In", -0.20, volume_per_atom=v("Li3In")),
        make_entry("Li", 0.0, volume_per_atom=v("Li")),
        make_entry("Li", 0.01, name="Li_fcc", volume_per_atom=v("Li")),
    ]


@pytest.fixture
def hull():
    return build_hull(hand_entries(), "Li-In")


def test_stable_set_and_minimum(hull):
    assert hull.system == "Li-In" and hull.host == "In"
    assert hull.stable_set == ["In", "LiIn", "Li3In", "Li"]
    assert hull.hull_minimum.formula == "LiIn"
    assert hull.hull_minimum.formation_energy_per_atom == pytest.approx(-0.30)
    assert hull.calculator == CALC


@pytest.mark.parametrize(
    "name, x_li, e_form, e_hull, stable",
    [
        ("In", 0.0, 0.0, 0.0, True),
        ("In_high", 0.0, 0.02, 0.02, False),
        ("LiIn3", 0.25, -0.10, 0.05, False),
        ("LiIn", 0.5, -0.30, 0.0, True),
        ("LiIn_beta", 0.5, -0.25, 0.05, False),
        ("Li3In", 0.75, -0.20, 0.0, True),
        ("Li", 1.0, 0.0, 0.0, True),
        ("Li_fcc", 1.0, 0.01, 0.01, False),
    ],
)
def test_phase_energies(hull, name, x_li, e_form, e_hull, stable):
    p = hull.phase(name)
    assert p.x_li == pytest.approx(x_li)
    assert p.formation_energy_per_atom == pytest.approx(e_form, abs=1e-9)
    assert p.e_above_hull == pytest.approx(e_hull, abs=1e-9)
    assert p.stable is stable


def test_polymorphs_all_listed_only_lowest_stable(hull):
    liin = [p for p in hull.phases if p.formula == "LiIn"]
    assert {p.name for p in liin} == {"LiIn", "LiIn_beta"}
    assert [p.stable for p in liin] == [True, False]  # sorted by energy within a composition
    assert len(hull.phases) == 8


def test_volumes(hull):
    # LiIn: 2 atoms x 20 A^3 = 40 A^3 per In atom, In reference 26 A^3/atom.
    liin = hull.phase("LiIn")
    assert liin.volume_per_atom == pytest.approx(20.0)
    assert liin.volume_per_li == pytest.approx(40.0)
    assert liin.volume_expansion == pytest.approx(40.0 / 26.0 - 1.0)
    li3in = hull.phase("Li3In")  # 4 x 18 = 72 A^3 per In, 24 per Li
    assert li3in.volume_per_li == pytest.approx(24.0)
    assert li3in.volume_expansion == pytest.approx(72.0 / 26.0 - 1.0)
    assert hull.phase("In").volume_expansion == pytest.approx(0.0)
    assert hull.phase("In").volume_per_li is None
    assert hull.phase("Li").volume_expansion is None
    assert hull.phase("LiIn3").natoms == 4


def test_plain_entries_without_structures():
    hull = build_hull(hand_entries(with_structures=False), "Li-In")
    assert hull.stable_set == ["In", "LiIn", "Li3In", "Li"]
    assert hull.phase("LiIn").volume_per_atom is None
    assert any("volume" in w for w in hull.warnings)


def test_unconverged_warning():
    entries = hand_entries()
    entries[3] = make_entry("LiIn", -0.30, volume_per_atom=20.0, converged=False)
    hull = build_hull(entries, "Li-In")
    assert hull.phase("LiIn").converged is False
    assert any("unconverged" in w and "LiIn" in w for w in hull.warnings)
    assert any("stable set depends" in w for w in hull.warnings)


def test_missing_reference_and_wrong_system():
    entries = [e for e in hand_entries() if e.composition.reduced_formula != "Li"]
    with pytest.raises(ValueError, match="no elemental reference for Li"):
        build_hull(entries, "Li-In")
    with pytest.raises(ValueError, match="LiSn.*Sn.*not in system Li-In"):
        build_hull(hand_entries() + [make_entry("LiSn", -0.4)], "Li-In")
    with pytest.raises(ValueError, match="In.*not in system Li-Sn"):
        build_hull(hand_entries(), "Li-Sn")
    with pytest.raises(ValueError, match="binary"):
        build_hull(hand_entries(), "Li-In-Sn")


def test_mixed_calculators_rejected():
    other = dict(CALC, name="other", version="9")
    entries = hand_entries() + [make_entry("Li3In", -0.1, name="Li3In_x", calculator=other)]
    with pytest.raises(ValueError, match="different calculators"):
        build_hull(entries, "Li-In")


def test_table_states_calculator_and_mev(hull):
    table = format_hull_table(hull)
    assert table.splitlines()[0].startswith("Li-In convex hull — hand-made (TEST ONLY)")
    assert "-300.0" in table and "50.0" in table  # LiIn formation, LiIn3 hull distance in meV/atom


def test_plots_on_given_axes_leave_no_pyplot_state(hull):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert plot_hull(hull, ax=ax1, unit="eV") is fig
    assert plot_voltage(voltage_profile(hull), ax=ax2) is fig
    assert "hand-made (TEST ONLY)" in ax1.get_title()
    assert plt.get_fignums() == before


def test_outputs_and_corrupt_json(tmp_path, hull):
    paths = write_hull_outputs(tmp_path, hull, voltage_profile(hull))
    assert read_hull_json(paths["hull_json"]) == hull
    text = paths["hull_json"].read_text()
    paths["hull_json"].write_text(text[: len(text) // 2])
    with pytest.raises(OutputFileError, match=r"hull\.json.*truncated or corrupt"):
        read_hull_json(paths["hull_json"])
    paths["voltage_json"].write_text(json.dumps({"host": "In"}))
    with pytest.raises(OutputFileError, match=r"voltage\.json.*valid VoltageResult"):
        read_voltage_json(paths["voltage_json"])
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_hull_json(tmp_path / "nothing.json")


@pytest.fixture(scope="module")
def mock_entries(tmp_path_factory):
    """Real relaxations with the mock potential (a subset of phases: seconds, not minutes)."""
    from alloyflow.engine import ResultStore
    from alloyflow.workflows.flows.hull import entries_from_documents, run_hull_relaxations

    with ResultStore(tmp_path_factory.mktemp("store")) as store:
        docs, _ = run_hull_relaxations("Li-In", store, calculator="mock", phases=["LiIn"])
    return entries_from_documents(docs)


def test_mock_entries_end_to_end(tmp_path, mock_entries):
    hull = build_hull(mock_entries, "Li-In")
    voltage = voltage_profile(mock_entries)
    assert hull.calculator["name"] == "mock" and hull.calculator["kind"] == "test"
    assert any("test potential" in w for w in hull.warnings)

    paths = write_hull_outputs(tmp_path / "out", hull, voltage)
    assert {p.name for p in paths.values()} == {"hull.json", "hull.csv", "hull.png", "voltage.json", "voltage.png"}
    for p in paths.values():
        assert p.stat().st_size > 0
    for key in ("hull_png", "voltage_png"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (tmp_path / "out").glob(".*")] == [FIGURE_INDEX]  # no temp files left behind

    h = json.loads(paths["hull_json"].read_text())
    assert h["system"] == "Li-In"
    assert {"name", "version"} <= set(h["calculator"])
    keys = {"formula", "source", "energy_per_atom", "formation_energy_per_atom", "e_above_hull", "stable", "volume_per_atom"}
    assert all(keys <= set(p) for p in h["phases"])
    assert {p["formula"] for p in h["phases"]} == {"In", "Li", "LiIn"}

    v = json.loads(paths["voltage_json"].read_text())
    assert {"host", "working_ion", "steps", "average_voltage", "max_li_per_host", "capacity_mAh_per_g"} <= set(v)
    assert all({"x_start", "x_end", "voltage", "phases"} <= set(s) for s in v["steps"])
    assert v["host"] == "In" and v["working_ion"] == "Li"

    assert read_hull_json(paths["hull_json"]) == hull
    assert read_voltage_json(paths["voltage_json"]) == voltage
    csv_lines = paths["hull_csv"].read_text().splitlines()
    assert len(csv_lines) == 1 + len(hull.phases) and "formation_energy_per_atom" in csv_lines[0]
    assert isinstance(read_hull_json(paths["hull_json"]), HullResult)
    assert np.isfinite([p.energy_per_atom for p in hull.phases]).all()


def test_predicted_phases_say_whether_they_have_the_reference_crystal_system():
    """The search's Li13In3 is an ordering on the bcc lattice; the reference's is cubic: the report says which."""
    from pymatgen.core import Lattice, Structure

    from alloyflow.analysis.hull import HullPhase, _symmetry
    from alloyflow.analysis.report import predicted_structure_notes

    cubic = Structure(Lattice.cubic(3.4), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert _symmetry(cubic) == {"space_group": "Im-3m", "crystal_system": "cubic"}
    base = dict(x_li=0.8, energy_per_atom=-2.0, formation_energy_per_atom=-0.2, stable=True, natoms=16)
    hull = type("Hull", (), {"phases": [
        HullPhase(name="Li13In3_bcc16_1", formula="Li13In3", status="predicted", e_above_hull=0.0,
                  space_group="P4/mmm", crystal_system="tetragonal", **base),
        HullPhase(name="Li13In3_bcc16_2", formula="Li13In3", status="predicted", e_above_hull=0.001,
                  space_group="Pm-3m", crystal_system="cubic", **base),
        HullPhase(name="Li2In_x", formula="Li2In", status="predicted", e_above_hull=0.0,
                  space_group="Cmcm", crystal_system="orthorhombic", **base),
        HullPhase(name="Li3In2", formula="Li3In2", status="verified", e_above_hull=0.0,
                  space_group="R-3m", crystal_system="trigonal", **base),
    ]})()
    lines = [x for x in predicted_structure_notes(hull) if x]
    assert len(lines) == 2  # the lowest Li13In3 only; the observed Li3In2 is not a prediction
    assert "Li13In3_bcc16_1" in lines[0] and "not the reference's structure" in lines[0] and "cubic" in lines[0]
    assert "Li2In_x" in lines[1] and "the same crystal system" in lines[1]


def test_a_predicted_phase_is_compared_with_the_reference_by_formula():
    """The search's Li13In3 (named Li13In3_bcc16_...) joins the barrier comparison and the Spearman rank."""
    from alloyflow.analysis.migration import BarrierResult, SupercellInfo
    from alloyflow.analysis.report import comparison_section

    def result(phase, formula, lowest, status=""):
        return BarrierResult(phase=phase, formula=formula, calculator={"name": "x"}, hops=[],
                             supercell=SupercellInfo(natoms=10, min_image_distance=10.0, matrix=[[1, 0, 0]] * 3),
                             percolation={"1d": lowest, "2d": None, "3d": None}, phase_status=status)

    barriers = [result("Li", "Li", 0.05), result("LiIn", "LiIn", 0.02),
                result("Li13In3_bcc16_1", "Li13In3", 0.08, "predicted"), result("LiSn", "LiSn", 0.26)]
    text = comparison_section({}, {}, barriers, "test")
    assert "Li13In3 (predicted: Li13In3_bcc16_1) lowest percolating barrier, vacancy (meV) | 80 | 172 |" in text
    assert "over 4 phases" in text
    observed = result("Li13In3_x", "Li13In3", 0.08)  # not predicted: a name the reference does not use is not matched
    assert "over 3 phases" in comparison_section({}, {}, barriers[:2] + [observed, barriers[3]], "test")
