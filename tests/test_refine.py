"""DFT//ML refinement of an ML band: bookkeeping on the mock potential, one real GPAW refinement."""

import time

import pytest

from alloyflow.engine import ResultStore
from alloyflow.workflows.jobs.neb import NebMaker
from alloyflow.workflows.jobs.refine import RefinedBarrier, format_refined, images_to_refine, refine_band
from alloyflow.workflows.jobs.labels import LabelMaker
from alloyflow.workflows.jobs.relax import StaticMaker
from test_neb import bcc_vacancy_hop  # tests/ is on sys.path (pytest prepend import mode)

# The "DFT" of the unit tests: the mock potential with other parameters, so its numbers differ from the band's.
OTHER_MOCK = {"alpha": 1.6}


@pytest.fixture(scope="module")
def band():
    return NebMaker(calculator="mock", n_images=5).run(*bcc_vacancy_hop(), label="bcc Li hop")


def test_image_selection(band):
    assert band.climbing_image == 3
    assert images_to_refine(band, "saddle") == [0, 3, 6]
    assert images_to_refine(band, "saddle+neighbours") == [0, 2, 3, 4, 6]
    assert images_to_refine(band, "all") == list(range(7))
    with pytest.raises(ValueError, match="unknown images"):
        images_to_refine(band, "saddles")


def test_same_potential_reproduces_ml_barrier_and_reuses(band, tmp_path):
    # Refining with the band's own potential must give back the band's numbers.
    with ResultStore(tmp_path) as store:
        r = refine_band(band, store, calculator="mock", images="saddle+neighbours")
        again = refine_band(band, store, calculator="mock", images="all")
    assert isinstance(r, RefinedBarrier) and r.converged and not r.failures
    assert r.n_single_points == 5 and r.n_reused == 0
    for img in r.energies:
        assert img.ok and abs(img.dft_energy - img.ml_energy) < 1e-6
    assert abs(r.dft_forward_barrier - r.ml_forward_barrier) < 1e-6
    assert abs(r.dft_reverse_barrier - r.ml_reverse_barrier) < 1e-6
    assert r.dft_saddle_image == band.climbing_image and not r.dft_saddle_shifted
    assert again.n_reused == 5 and again.n_single_points == 2  # only images 1 and 5 are new
    assert r.ml_calculator["name"] == "mock" and r.dft_calculator["name"] == "mock"
    assert "DFT//ML" in format_refined(r) and "ML (mock-Morse)" in format_refined(r)


def test_a_symmetric_final_endpoint_takes_the_initial_single_point(band, tmp_path):
    """A final endpoint that is the initial one moved by a symmetry of the cell costs no single point."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from alloyflow.workflows.jobs.refine import equivalent_endpoints

    assert not equivalent_endpoints(band)  # the mock's two relaxations differ by 0.04 Å: both computed
    # the bcc centring translation moves the vacancy onto the neighbour site the hop ends on
    final = band.images[0].copy()
    final.translate_sites(list(range(len(final))), [0.25, 0.25, 0.25], to_unit_cell=True)
    assert StructureMatcher().fit(final, band.images[-1])
    sym = band.model_copy(update={"images": [*band.images[:-1], final]})
    assert equivalent_endpoints(sym)
    with ResultStore(tmp_path) as store:
        r = refine_band(sym, store, calculator="mock", calculator_kwargs=OTHER_MOCK)
        own = refine_band(sym, store, calculator="mock", calculator_kwargs=OTHER_MOCK, symmetric_endpoints=False)
        later = refine_band(sym, store, calculator="mock", calculator_kwargs=OTHER_MOCK)
    assert r.n_single_points == 2 and r.n_symmetry_copies == 1 and r.energies[-1].same_as == 0
    assert r.energies[-1].dft_energy == r.energies[0].dft_energy and r.energies[-1].dft_seconds == 0.0
    assert r.dft_forward_barrier == r.dft_reverse_barrier and "by symmetry" in format_refined(r)
    # computed for real, the final endpoint gives the same number; once stored, it is used as it is
    assert own.n_single_points == 1 and own.energies[-1].same_as is None
    assert own.energies[-1].dft_energy == pytest.approx(r.energies[-1].dft_energy, abs=1e-9)
    assert later.n_symmetry_copies == 0 and later.n_reused == 3


def test_other_potential_arithmetic(band, tmp_path):
    with ResultStore(tmp_path) as store:
        r = refine_band(band, store, calculator="mock", calculator_kwargs=OTHER_MOCK)
    direct = {k: StaticMaker(calculator="mock", calculator_kwargs=OTHER_MOCK).run(band.images[k]).energy
              for k in (0, 3, 6)}
    assert [img.index for img in r.energies] == [0, 3, 6]
    assert r.dft_forward_barrier == pytest.approx(direct[3] - direct[0], abs=1e-9)
    assert r.dft_reverse_barrier == pytest.approx(direct[3] - direct[6], abs=1e-9)
    assert abs(r.dft_forward_barrier - r.ml_forward_barrier) > 1e-3  # really another potential
    assert r.dft_calculator["settings"] == OTHER_MOCK


def test_shifted_dft_saddle_is_flagged(band, tmp_path, monkeypatch):
    real_run = LabelMaker.run

    def raised_neighbour(self, structure, label=""):
        doc = real_run(self, structure, label=label)
        if label.endswith("image 4"):  # the "DFT" puts image 4 above the ML climbing image 3
            doc["energy"] += 1.0
        return doc

    monkeypatch.setattr(LabelMaker, "run", raised_neighbour)
    with ResultStore(tmp_path) as store:
        r = refine_band(band, store, calculator="mock", images="saddle+neighbours")
    assert r.dft_saddle_image == 4 and r.dft_saddle_shifted and "lower bound" in format_refined(r)
    e = {img.index: img.dft_energy for img in r.energies}
    assert r.dft_forward_barrier == pytest.approx(e[4] - e[0]) and e[4] > e[3]


def test_failed_single_point_is_reported_not_a_number(band, tmp_path, monkeypatch):
    real_run = LabelMaker.run

    def flaky(self, structure, label=""):
        if label.endswith("image 3"):
            raise RuntimeError("SCF did not converge (simulated)")
        return real_run(self, structure, label=label)

    monkeypatch.setattr(LabelMaker, "run", flaky)
    with ResultStore(tmp_path) as store:
        r = refine_band(band, store, calculator="mock")
    assert not r.converged and r.dft_forward_barrier is None and r.dft_reverse_barrier is None
    bad = next(img for img in r.energies if img.index == 3)
    assert not bad.ok and bad.dft_energy is None and "SCF did not converge" in bad.message
    assert len(r.failures) == 1 and "image 3" in r.failures[0]
    assert "failed" in format_refined(r)
    # the good single points were stored: fixing the problem recomputes only the failed one
    monkeypatch.setattr(LabelMaker, "run", real_run)
    with ResultStore(tmp_path) as store:
        fixed = refine_band(band, store, calculator="mock")
    assert fixed.converged and fixed.n_single_points == 1 and fixed.n_reused == 2


@pytest.mark.slow
def test_gpaw_refinement_of_bcc_li_band(tmp_path, monkeypatch, sevennet_bcc_li_band):
    """GPAW//SevenNet-0 on a 15-atom bcc-Li vacancy hop (3 images), CI settings as in tests/test_gpaw.py."""
    pytest.importorskip("gpaw")
    import torch

    monkeypatch.setenv("ALLOYFLOW_THREADS", "1")  # GPAW is serial; shared cores (see tests/test_gpaw.py)
    torch.set_num_threads(1)
    band = sevennet_bcc_li_band
    t1 = time.perf_counter()
    settings = {"ecut": 300.0, "kpt_density": 3.0}
    with ResultStore(tmp_path) as store:
        r = refine_band(band, store, calculator="gpaw", calculator_kwargs=settings)
        t2 = time.perf_counter()
        # the final endpoint computed too: its own single point against the symmetry copy
        both = refine_band(band, store, calculator="gpaw", calculator_kwargs=settings, symmetric_endpoints=False)
        again = refine_band(band, store, calculator="gpaw", calculator_kwargs=settings)
    print(f"\n{format_refined(r)}\n{format_refined(both)}\nSevenNet-0 band {band.elapsed_seconds:.0f} s, "
          f"GPAW refinement {t2 - t1:.0f} s (PW 300 eV, k-density 3/Å, 15 atoms)")
    # symmetric hop: SevenNet-0's endpoints are one minimum up to a symmetry of the cell, so one single point
    assert r.converged and r.n_single_points == 2 and r.n_symmetry_copies == 1 and r.energies[-1].same_as == 0
    assert both.n_single_points == 1 and both.n_reused == 2 and both.n_symmetry_copies == 0
    assert abs(both.energies[-1].dft_energy - r.energies[-1].dft_energy) < 1e-3  # the copy is GPAW's number
    assert abs(both.dft_forward_barrier - both.dft_reverse_barrier) < 1e-3
    assert again.n_reused == 3 and again.n_single_points == 0 and again.n_symmetry_copies == 0
    assert r.dft_calculator["kind"] == "dft" and r.dft_calculator["settings"]["ecut"] == 300.0
    assert r.ml_calculator["name"] == "sevennet"
    assert 0.03 < r.dft_forward_barrier < 0.3 and abs(r.dft_forward_barrier - r.ml_forward_barrier) < 0.05


def test_reconverge_band_with_another_potential(band, tmp_path):
    from alloyflow.workflows.jobs.refine import reconverge_band

    other = {"alpha": 1.6}
    with ResultStore(tmp_path) as store:
        dft = reconverge_band(band, store, calculator="mock", calculator_kwargs=other, fmax=0.05)
        n = store.count()
        again = reconverge_band(band, store, calculator="mock", calculator_kwargs=other, fmax=0.05)
        assert store.count() == n and again.forward_barrier == dft.forward_barrier  # stored, reused
    assert dft.converged and dft.calculator["name"] == "mock" and dft.metadata["started_from"] == "band"
    # the endpoints stay at the band's geometries: same cell and atoms
    assert dft.images[0] == band.images[0] and dft.images[-1] == band.images[-1]
    scratch = NebMaker(calculator="mock", calculator_kwargs=other, n_images=5, relax_endpoints=False).run(
        band.images[0], band.images[-1], label="from scratch")
    assert abs(dft.forward_barrier - scratch.forward_barrier) < 0.01
    assert abs(dft.forward_barrier - band.forward_barrier) > 1e-3  # really re-converged on the other potential
    assert dft.force_calls <= scratch.force_calls  # the ML band is a better start than IDPP


@pytest.mark.slow
def test_gpaw_scf_not_converged_is_reported(tmp_path, monkeypatch, sevennet_bcc_li_band):
    """A real GPAW failure (2 SCF iterations allowed): reported per image, no barrier, nothing stored as a result."""
    pytest.importorskip("gpaw")
    monkeypatch.setenv("ALLOYFLOW_THREADS", "1")
    with ResultStore(tmp_path) as store:
        r = refine_band(sevennet_bcc_li_band, store, calculator="gpaw",
                        calculator_kwargs={"ecut": 250.0, "kpt_density": 2.0, "maxiter": 2})
    # two single points ran and failed; the final endpoint is the initial one by symmetry and shares its failure
    assert not r.converged and r.dft_forward_barrier is None and len(r.failures) == 2
    assert all(not img.ok for img in r.energies) and r.energies[-1].same_as == 0
    assert "converge" in r.failures[0].lower(), r.failures[0]
    assert "failed" in format_refined(r)
