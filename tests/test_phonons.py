"""PhononMaker bookkeeping on the mock potential, the thermo command, and real SevenNet-0 phonons.

The slow tests use SevenNet-0 (ML potential) in small supercells: bcc Li in
the 16-atom 2×2×2 conventional cell (it holds the zone-boundary N point, where
bcc Li's soft T1 branch is; odd multiples of 3×3×3 show a spurious imaginary
mode there by interpolation, measured), CsCl-type (B2) LiIn and the In
element for a 300 K Li–In hull on three phases.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from alloyflow.cli import main
from alloyflow.engine.progress import StageProgress
from alloyflow.engine import ResultStore
from alloyflow.workflows.jobs.phonons import (
    IMAGINARY_THRESHOLD_THZ,
    PhononDocument,
    PhononMaker,
    _drop_gamma_acoustic,
    choose_supercell,
    run_phonons,
    widths,
)
from alloyflow.workflows.jobs.relax import RelaxMaker


def bcc_li(a=3.44):
    return Structure.from_spacegroup("Im-3m", Lattice.cubic(a), ["Li"], [[0, 0, 0]]).get_primitive_structure()


def b2_liin(a=3.35):
    return Structure(Lattice.cubic(a), ["Li", "In"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_supercell_choice():
    prim = bcc_li()
    s = choose_supercell(prim, 6.0)
    assert round(abs(np.linalg.det(s))) == 16  # 2x2x2 conventional beats 3x3x3 primitive (27)
    for min_length in (5.0, 7.0, 10.0, 12.0):
        s = choose_supercell(prim, min_length)
        lattice = np.asarray(s).T @ prim.lattice.matrix
        assert widths(lattice).min() >= min_length - 1e-6
        assert np.linalg.norm(lattice, axis=1).min() >= min_length - 1e-6
    assert round(abs(np.linalg.det(choose_supercell(prim, 11.0)))) == 125  # not the 54-atom 3x3x3 conventional
    diag = choose_supercell(b2_liin(), 7.0)
    assert np.array_equal(diag, np.diag([3, 3, 3]))


def test_gamma_acoustic_noise_is_not_an_imaginary_mode():
    freqs = _drop_gamma_acoustic([[0, 0, 0], [0.5, 0, 0]], [[-0.3, -0.2, 0.05, 5.0], [-0.3, 1.0, 2.0, 3.0]])
    assert freqs[0].tolist() == [0.0, 0.0, 0.0, 5.0]
    assert freqs[1].tolist() == [-0.3, 1.0, 2.0, 3.0]  # away from Γ a negative mode stays


def test_mock_phonon_document():
    doc = PhononMaker(calculator="mock", min_length=6.0).run(bcc_li(3.3), label="Li")
    assert doc.calculator["kind"] == "test" and doc.formula == "Li" and doc.natoms == 1
    assert doc.n_force_calls == doc.n_displacements + 1 >= 2
    assert doc.temperatures[0] == 0.0 and doc.temperatures[-1] == 1000.0 and len(doc.temperatures) == 101
    f = np.array(doc.free_energy)
    assert f[0] == pytest.approx(doc.zero_point_energy) and doc.zero_point_energy > 0
    assert np.all(np.diff(f) < 0) and np.all(np.diff(doc.entropy) > 0)
    assert 2.5 < doc.heat_capacity[-1] <= 3.0
    assert doc.free_energy_at(300.0) == pytest.approx(f[30], abs=1e-9)
    assert doc.bands is not None and doc.bands.kpath_scheme == "setyawan_curtarolo"
    assert doc.imaginary_modes == (min(doc.min_frequency_mesh, doc.min_frequency_band) < IMAGINARY_THRESHOLD_THZ)
    assert PhononDocument.model_validate(doc.model_dump()).input_hash == doc.input_hash
    from alloyflow.analysis.thermo_plots import plot_phonon_bands

    fig = plot_phonon_bands(doc)
    assert "Γ" in [t.get_text() for t in fig.axes[0].get_xticklabels()]


def test_rerun_reuses_stored_phonons(tmp_path):
    structures = {"Li": bcc_li(3.3)}
    maker = PhononMaker(calculator="mock", min_length=6.0)
    with ResultStore(tmp_path) as store:
        first = StageProgress("p", enabled=False)
        docs = run_phonons(structures, store, calculator="mock", progress=first, maker=maker)
        again = StageProgress("p", enabled=False)
        docs2 = run_phonons(structures, store, calculator="mock", progress=again, maker=maker)
    assert (first.computed, first.reused) == (1, 0) and (again.computed, again.reused) == (0, 1)
    assert docs2["Li"].free_energy == docs["Li"].free_energy


def test_thermo_command_mock(tmp_path, capsys):
    args = ["thermo", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--min-length", "6", "--out", str(tmp_path),
            "--no-progress", "--no-diffusivity"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "G_f 300 K" in out and "mock-Morse (TEST ONLY)" in out and "9 job(s) computed" in out
    for name in ("thermo.json", "thermo.md", "hull_T.png", "voltage_T.png"):
        assert (tmp_path / "Li-In" / "thermo" / name).stat().st_size > 0
    assert main(args) == 0
    assert "0 job(s) computed" in capsys.readouterr().out


def test_thermo_unknown_phase(tmp_path, capsys):
    assert main(["thermo", "Li-In", "--calculator", "mock", "--phases", "Nope", "--out", str(tmp_path),
                 "--no-progress"]) == 1
    assert "unknown phase" in capsys.readouterr().err


def test_study_with_temperature(tmp_path):
    args = ["study", "Li-In", "--calculator", "mock", "--no-search", "--phases", "LiIn", "--barriers", "Li", "--min-image-distance",
            "6", "--images", "3", "--no-progress", "--temperature", "300", "--min-length", "6", "--out", str(tmp_path)]
    assert main(args) == 0
    report = (tmp_path / "report.md").read_text()
    assert "Finite temperature" in report and "G_f 300 K" in report
    from alloyflow.io.report import rebuild_report

    assert "Finite temperature" in rebuild_report(tmp_path).read_text()


# --------------------------------------------------------------------------- real SevenNet-0


def _relaxed(structure, label):
    doc = RelaxMaker(calculator="sevennet", fmax=0.005).run(structure, label=label)
    assert doc.converged
    return doc


@pytest.fixture(scope="module")
def sevennet_li_in(tmp_path_factory):
    """Relaxed Li, In and B2 LiIn (SevenNet-0) and their phonons (supercells >= 6-7 Å)."""
    from alloyflow.structures import StructureLibrary

    lib = {p.name: p.structure for p in StructureLibrary().phases("Li-In")}
    relaxed = {"Li": _relaxed(bcc_li(), "Li"), "In": _relaxed(lib["In"].get_primitive_structure(), "In"),
               "LiIn_B2": _relaxed(b2_liin(), "LiIn_B2")}
    phonons = {name: PhononMaker(calculator="sevennet", min_length=6.0 if name == "Li" else 7.0).run(d.structure, name)
               for name, d in relaxed.items()}
    return relaxed, phonons


@pytest.mark.slow
def test_sevennet_phonons_are_physical(sevennet_li_in):
    _, phonons = sevennet_li_in
    for name, doc in phonons.items():
        f = np.array(doc.free_energy)
        assert np.all(np.isfinite(f)) and doc.zero_point_energy > 0, name
        assert np.all(np.diff(f) < 0), name  # F_vib falls with T (S > 0)
        assert 2.8 < doc.heat_capacity[-1] <= 3.0, name  # near Dulong–Petit at 1000 K
        assert doc.calculator["name"] == "sevennet"
    li = phonons["Li"]
    assert li.supercell_natoms == 16 and not li.imaginary_modes and li.min_frequency_mesh > IMAGINARY_THRESHOLD_THZ
    # Debye temperature of Li about 344 K (Kittel, Introduction to Solid State Physics, 8th ed., Table 5.1):
    # ZPE ≈ 9/8 k θ_D ≈ 33 meV/atom; a harmonic ML phonon spectrum should land within tens of %.
    assert 0.020 < li.zero_point_energy < 0.045


@pytest.mark.slow
def test_sevennet_hull_at_300k(sevennet_li_in):
    from alloyflow.analysis.thermo import thermo_result
    from alloyflow.workflows.flows.hull import entries_from_documents

    relaxed, phonons = sevennet_li_in
    res = thermo_result(entries_from_documents(list(relaxed.values())), phonons, "Li-In", 300.0)
    liin = next(p for p in res.phases if p.name == "LiIn_B2")
    assert liin.stable_0K and liin.stable_T
    assert liin.formation_energy_0K < -0.2
    assert abs(liin.formation_free_energy - liin.formation_energy_0K) < 0.03  # vibrational term is meV-scale
    assert res.voltage_T is not None and abs(res.voltage_T.average_voltage - res.voltage_0K.average_voltage) < 0.06
    assert "SevenNet-0 (ML potential)" in res.method
