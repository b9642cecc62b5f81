"""Choosing DFT settings by converging the reported quantity: rule checked on the mock, one real GPAW scan."""

import pytest

from alloyflow.workflows.jobs.dft_convergence import converge_for_band, converge_settings
from alloyflow.engine import ResultStore
from alloyflow.workflows.jobs.labels import LabelMaker
from alloyflow.workflows.jobs.neb import NebMaker
from test_neb import bcc_vacancy_hop

CUTOFFS = (3.0, 4.0, 5.0, 6.0, 8.0)  # the mock's pair cutoff (Å) plays the convergence parameter


@pytest.fixture(scope="module")
def band():
    return NebMaker(calculator="mock", n_images=3).run(*bcc_vacancy_hop(), label="hop")


def _barrier_at(band, cutoff):
    e = [LabelMaker(calculator="mock", calculator_kwargs={"cutoff": cutoff}).run(band.images[k])["energy"]
         for k in (0, band.climbing_image)]
    return e[1] - e[0]


def test_cheapest_setting_within_tolerance_of_the_most_accurate(band, tmp_path):
    values = [_barrier_at(band, c) for c in CUTOFFS]
    tol = 0.5 * max(abs(v - values[-1]) for v in values) + 1e-9
    expected = next(c for k, c in enumerate(CUTOFFS) if all(abs(v - values[-1]) <= tol for v in values[k:]))
    with ResultStore(tmp_path) as store:
        r = converge_for_band(band, store, calculator="mock", scans=(("cutoff", CUTOFFS),), tolerance=tol)
        n = store.count()
        again = converge_for_band(band, store, calculator="mock", scans=(("cutoff", CUTOFFS),), tolerance=tol)
        assert store.count() == n and again.dft_seconds == 0.0  # every single point reused
    scan = r.scans[0]
    assert [p.value for p in scan.points] == pytest.approx(values)
    assert r.settings == {"cutoff": expected} and scan.chosen == expected and expected < CUTOFFS[-1]
    assert scan.bracketed and r.converged and "cutoff" in r.summary()


def test_unbracketed_and_failed_scans_are_flagged(band, tmp_path, monkeypatch):
    with ResultStore(tmp_path) as store:
        tight = converge_for_band(band, store, calculator="mock", scans=(("cutoff", CUTOFFS),), tolerance=1e-12)
    assert tight.settings == {"cutoff": CUTOFFS[-1]} and not tight.scans[0].bracketed and not tight.converged
    assert "NOT bracketed" in tight.summary()

    real = LabelMaker.run

    def scf_fails(self, structure, label=""):
        if self.calculator_kwargs.get("cutoff") == 4.0:
            raise RuntimeError("SCF did not converge (simulated)")
        return real(self, structure, label)

    monkeypatch.setattr(LabelMaker, "run", scf_fails)
    with ResultStore(tmp_path / "b") as store:
        r = converge_settings({"a": band.images[0]}, lambda e: e["a"], store, calculator="mock",
                              scans=(("cutoff", CUTOFFS),), tolerance=1.0)
    assert not r.converged and r.scans[0].chosen is None
    assert "SCF did not converge" in r.scans[0].points[1].error


@pytest.mark.slow
def test_gpaw_settings_for_a_bcc_li_band(tmp_path, monkeypatch, sevennet_bcc_li_band):
    """A real two-parameter GPAW scan on the SevenNet-0 bcc-Li band (15 atoms), small grids to stay fast."""
    pytest.importorskip("gpaw")
    monkeypatch.setenv("ALLOYFLOW_THREADS", "1")
    scans = (("ecut", (250.0, 300.0, 350.0)), ("kpt_density", (2.0, 3.0)))
    with ResultStore(tmp_path) as store:
        r = converge_for_band(sevennet_bcc_li_band, store, calculator="gpaw", scans=scans, tolerance=0.01)
    print("\n" + r.summary())
    assert set(r.settings) == {"ecut", "kpt_density"} and len(r.scans) == 2
    assert all(p.value is not None and 0.02 < p.value < 0.3 for s in r.scans for p in s.points)
    assert r.scans[0].chosen in (250.0, 300.0, 350.0)
    # the k scan ran at the cutoff the first scan chose
    assert all(p.settings["ecut"] == r.settings["ecut"] for p in r.scans[1].points)
