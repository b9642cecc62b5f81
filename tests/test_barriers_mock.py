"""run_barriers end to end on bcc Li with the mock potential, flags, outputs; one real-potential check."""

import json
import os
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from alloyflow.analysis.migration import BarrierResult, band_shape, format_barrier_table
from alloyflow.io.barriers import write_barrier_outputs
from alloyflow.structures.migration import distinct_hops, vacancy_hop_endpoints
from alloyflow.workflows.flows.barriers import hop_from_neb, run_barriers
from alloyflow.engine import ResultStore
from alloyflow.workflows.jobs.neb import NebMaker


def _bcc():
    return Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


def _fake_doc(initial, final, energies, converged=True):
    images = initial.interpolate(final, len(energies) - 1)
    e0 = energies[0]
    top = max(energies)
    return SimpleNamespace(
        images=images, energies=energies, converged=converged, forward_barrier=top - e0,
        reverse_barrier=top - energies[-1], endpoint_asymmetry=energies[-1] - e0, n_images=1, force_calls=10,
        n_steps=5, max_force=0.01 if converged else 0.3, fmax=0.05, input_hash="abc",
    )


def _hop_and_endpoints():
    prim = _bcc()
    hop = distinct_hops(prim, max_length=3.6)[0]
    initial, final, info = vacancy_hop_endpoints(prim, hop, min_image_distance=6.0)
    return hop, initial, final, info


CN = {"cn": 8, "li": 8, "m": 0}


def test_good_band_gives_a_cost():
    hop, initial, final, info = _hop_and_endpoints()
    h = hop_from_neb(hop, _fake_doc(initial, final, [-10.0, -9.9, -10.02]), CN, CN, info)
    assert h.converged and not h.warnings
    assert h.forward_barrier == pytest.approx(0.1) and h.reverse_barrier == pytest.approx(0.12)
    assert h.cost == pytest.approx(0.12)  # the larger of the two directions
    assert h.energies[0] == 0.0 and len(h.reaction_coordinate) == 3


def test_same_minimum_and_unconverged_bands_are_flagged():
    hop, initial, final, info = _hop_and_endpoints()
    same = hop_from_neb(hop, _fake_doc(initial, initial.copy(), [-10.0, -9.9, -10.0]), CN, CN, info, initial, final)
    assert not same.converged and same.cost is None
    assert any("same minimum" in w for w in same.warnings)
    loose = hop_from_neb(hop, _fake_doc(initial, final, [-10.0, -9.9, -10.0], converged=False), CN, CN, info)
    assert not loose.converged and loose.cost is None and loose.forward_barrier == pytest.approx(0.1)
    assert any("not converged" in w for w in loose.warnings)


# Stored profiles (meV from the initial endpoint): B32 LiIn on the 97-label potential, the LiSn interstitial on
# the same potential, Li13In3 hop 1 on the 55-label potential (the complete studies of sessions 30 and 31).
B32_LIIN = [0.0, -12.2, -10.2, -6.5, -10.3, -12.2, 0.05]
LISN_INTERSTITIAL = [0.0, -73.0, -12.0, -49.0, -71.0, -30.0, -92.0]
LI13IN3_HOP1 = [0.0, -8.0, 21.0, 40.0, 37.0, 20.0, 10.0]


def _ev(mev, shift=-100.0):
    return [shift + e / 1000 for e in mev]


def test_band_without_saddle_gives_no_barrier_and_no_cost():
    hop, initial, final, info = _hop_and_endpoints()
    h = hop_from_neb(hop, _fake_doc(initial, final, _ev(B32_LIIN)), CN, CN, info)
    assert h.no_saddle and "below both endpoints (up to 12 meV below the lower one)" in h.no_saddle
    assert h.forward_barrier is None and h.reverse_barrier is None and h.cost is None and not h.converged
    assert any("no saddle" in w for w in h.warnings) and h.status == "no saddle"
    assert h.energies[3] == pytest.approx(-0.0065)  # the profile is kept
    table = format_barrier_table([BarrierResult(phase="LiIn", calculator={"name": "mock"}, hops=[h],
                                                supercell={"natoms": 7, "min_image_distance": 6.0,
                                                           "matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]})])
    row = next(line for line in table.splitlines() if line.startswith("LiIn "))
    assert row.endswith("no saddle") and row.count("–") == 2  # no forward or reverse barrier, not 0 meV
    # just inside the tolerance (the endpoints 4 meV above the highest image): no "no saddle", but no ~0 meV either
    shallow = band_shape(_ev([0.0, -12.0, -10.0, -4.0, -10.0, -12.0, 0.05]))
    assert shallow.no_saddle is None and 1000 * shallow.forward == pytest.approx(12.05)
    assert "12 meV below the initial endpoint and 12 meV below the final endpoint" in shallow.below_endpoint
    downhill = band_shape(_ev(LISN_INTERSTITIAL))
    assert downhill.forward is None and "initial endpoint, 12 meV above" in downhill.no_saddle


def test_band_dipping_below_an_endpoint_is_measured_from_the_dip():
    hop, initial, final, info = _hop_and_endpoints()
    h = hop_from_neb(hop, _fake_doc(initial, final, _ev(LI13IN3_HOP1)), CN, CN, info)
    assert h.converged and h.no_saddle is None
    assert h.forward_barrier == pytest.approx(0.048) and h.reverse_barrier == pytest.approx(0.030)
    assert h.cost == pytest.approx(0.048)
    assert "8 meV below the initial endpoint" in h.below_endpoint
    assert any("lowest image" in w for w in h.warnings)


@pytest.mark.parametrize("mev, forward, reverse", [
    ([0, 40, 100, 40, 0], 100, 100),  # a symmetric hop
    ([0, -3, 60, 20, -30], 60, 90),  # a dip within the 5 meV tolerance changes nothing
    ([0, 20, 80, 83, 80], 83, 3),  # a shallow final minimum still has a saddle
    ([0, -2, -3, -1, 2], 2, 0),  # flat within the tolerance: the plain reading
])
def test_band_shape_keeps_the_plain_barriers_of_ordinary_bands(mev, forward, reverse):
    shape = band_shape(_ev(mev, 0.0))
    assert shape.no_saddle is None and shape.below_endpoint is None
    assert 1000 * shape.forward == pytest.approx(forward) and 1000 * shape.reverse == pytest.approx(reverse)


def _shift_towards(structure, k, target_cart, fraction):
    s = structure.copy()
    s.translate_sites([k], fraction * (np.asarray(target_cart) - s[k].coords), frac_coords=False, to_unit_cell=False)
    return s


def test_split_vacancy_relaxation_is_accepted_but_leaving_the_state_is_flagged():
    hop, initial, final, info = _hop_and_endpoints()
    k = info["moving_index"]
    a, b = initial[k].coords, final[k].coords
    # the moving Li relaxes 30 % of the way towards the vacancy in both endpoints: still the same hop
    soft_i, soft_f = _shift_towards(initial, k, b, 0.3), _shift_towards(final, k, a, 0.3)
    h = hop_from_neb(hop, _fake_doc(soft_i, soft_f, [-10.0, -9.95, -10.0]), CN, CN, info, initial, final)
    assert h.converged and not h.warnings
    assert h.max_endpoint_relaxation == pytest.approx(0.3 * hop.length, abs=1e-6)
    # relaxing 70 % of the way means the initial endpoint became the final state
    gone = _shift_towards(initial, k, b, 0.7)
    h = hop_from_neb(hop, _fake_doc(gone, final, [-10.0, -9.95, -10.0]), CN, CN, info, initial, final)
    assert not h.converged and h.cost is None
    assert any("left its state" in w for w in h.warnings)


def test_phase_without_li_raises(tmp_path):
    with ResultStore(tmp_path) as store:
        with pytest.raises(ValueError, match="phase In has no Li"):
            run_barriers("In", store, calculator="mock")
        with pytest.raises(ValueError, match="Li-free host"):
            run_barriers("LiSn", store, calculator="mock", dilute=True)


@dataclass
class RefusingMaker(NebMaker):
    """A NebMaker whose endpoints are refused (as EndpointError does), serialisable like any Maker."""

    n_images: int = 3

    def keyed_job(self, initial, final, label, metadata=None):
        raise ValueError("endpoints relax to the same minimum")


def test_refused_endpoints_are_flagged_not_dropped(tmp_path):
    with ResultStore(tmp_path) as store:
        result = run_barriers("Li", store, calculator="mock", min_image_distance=6.0, max_length=3.6,
                              neb_maker=RefusingMaker(calculator="mock"))
    assert len(result.hops) == 2
    assert all(not h.converged and h.forward_barrier is None for h in result.hops)
    assert result.percolation == {"1d": None, "2d": None, "3d": None}
    assert any("same minimum" in w for w in result.warnings)
    # no "raise max_length" advice: more hops would not mend the two that gave no barrier
    assert any(w.startswith("no percolation threshold: hop(s) 0, 1 gave no trusted barrier") for w in result.warnings)
    assert not any("raise max_length" in w for w in result.warnings)


def test_run_barriers_bcc_li_mock_end_to_end(tmp_path):
    pytest.importorskip("alloyflow.workflows.jobs.neb")
    seen = []
    with ResultStore(tmp_path / "full") as store:
        full = run_barriers("Li", store, calculator="mock", min_image_distance=6.0, n_images=3, max_length=3.6,
                            progress=lambda label, reused: seen.append((label, reused)), screen=False)
    # relax, the host's elastic tensor, two bands, and one endpoint relaxation: the four endpoints of the two
    # hops are images of one another in bcc, so both bands carry it over and only check it (a single point each)
    assert len(seen) == 5 and not any(reused for _, reused in seen)
    assert [label for label, _ in seen if label.startswith("endpoint")] == ["endpoint Li hop 0 initial"]
    assert [h.endpoint_force_calls for h in full.hops] == [2, 2]
    assert full.screening is None and not any(h.screened_only for h in full.hops)
    seen.clear()
    with ResultStore(tmp_path) as store:
        result = run_barriers("Li", store, calculator="mock", min_image_distance=6.0, n_images=3, max_length=3.6,
                              progress=lambda label, reused: seen.append((label, reused)), e_above_hull=0.001,
                              screen=True, screen_factor=0.5)  # the mock's second-shell path is 3.5 eV high
    assert result.calculator["name"] == "mock" and result.mode == "vacancy"
    assert result.supercell.min_image_distance >= 6.0
    assert [h.id for h in result.hops] == [0, 1]
    for h in full.hops:
        assert h.n_images == 3 and len(h.energies) == 5
        assert h.cn_initial.cn == 8 and h.cn_initial.li == 8
        if h.converged:
            assert h.forward_barrier > 0 and h.cost == pytest.approx(max(h.forward_barrier, h.reverse_barrier))
    # screened: the nearest-neighbour hop alone is a 3D net in bcc, so the second hop cannot set a threshold
    assert [h.screened_only for h in result.hops] == [False, True]
    assert result.screening.screened_only == [1] and result.screening.force_calls == 2 * (7 + 2)
    assert all(h.screened_estimate > 0 for h in result.hops)
    skipped = result.hops[1]
    assert skipped.forward_barrier is None and skipped.cost is None and not skipped.converged
    assert result.hops[0].forward_barrier == pytest.approx(full.hops[0].forward_barrier)
    assert result.percolation == pytest.approx(full.percolation)  # the same thresholds from one band of two
    if full.hops[1].cost is not None:  # the mock's second-shell band need not converge
        assert full.hops[1].cost >= result.screening.factor * skipped.screened_estimate
    labels = [label for label, _ in seen]
    assert len(seen) == 6 and sum("screen" in x for x in labels) == 2  # relax, 2 screens, endpoint, band, host
    assert "screened only (no band): hops 1" in format_barrier_table([result])
    assert result.percolation["1d"] is not None
    assert result.percolation["1d"] == result.percolation["3d"]  # bcc: the nn hop alone is a 3D net
    mc = result.metastability_correction
    assert mc.correction == pytest.approx(0.001 * result.supercell.natoms)
    assert result.host_stability.stable is True

    seen.clear()
    with ResultStore(tmp_path) as store:
        again = run_barriers("Li", store, calculator="mock", min_image_distance=6.0, n_images=3, max_length=3.6,
                             progress=lambda label, reused: seen.append((label, reused)), screen=True,
                             screen_factor=0.5)
    assert all(reused for _, reused in seen)
    assert [h.forward_barrier for h in again.hops] == [h.forward_barrier for h in result.hops]

    files = write_barrier_outputs(tmp_path / "out", full)
    assert set(files) >= {"json", "csv", "profile_0", "profile_1"}
    assert set(write_barrier_outputs(tmp_path / "out_screened", result)) >= {"json", "csv", "profile_0"}
    back = BarrierResult.model_validate_json((tmp_path / "out_screened" / "barriers.json").read_text())
    assert back.percolation == result.percolation and back.metastability_correction.correction == mc.correction
    assert back.screening == result.screening
    header = files["csv"].read_text().splitlines()[0]
    assert header.startswith("phase,hop_id,length_A") and "percolating_dimension" in header
    assert files["profile_0"].stat().st_size > 1000
    table = format_barrier_table([result])
    assert "Li" in table and "TEST ONLY" in table and "metastability correction" in table
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temporaries


@pytest.mark.slow
def test_bcc_li_sevennet_barrier(tmp_path, monkeypatch):
    """SevenNet-0 vacancy hop in bcc Li: the smallest cell with images >= 10 Å apart (38 atoms), three images."""
    pytest.importorskip("alloyflow.workflows.jobs.neb")
    monkeypatch.setenv("ALLOYFLOW_THREADS", os.environ.get("ALLOYFLOW_THREADS", "1"))
    t0 = time.perf_counter()
    with ResultStore(tmp_path) as store:
        result = run_barriers("Li", store, calculator="sevennet", min_image_distance=10.0, n_images=3, max_hops=1)
    lowest = result.lowest_percolating_barrier
    print(f"bcc Li SevenNet-0: {result.supercell.natoms} atoms, lowest percolating barrier {lowest:.3f} eV, "
          f"{time.perf_counter() - t0:.0f} s, {json.dumps(result.percolation)}")
    assert result.calculator["kind"] == "mlip"
    assert result.hops[0].converged
    assert 0.03 < lowest < 0.20
    assert np.isfinite(result.hops[0].reverse_barrier)


@pytest.mark.slow
def test_li2sn5_sevennet_barrier(tmp_path, monkeypatch):
    """A Li-Sn phase on the real default potential, in a small cell so that CI stays short.

    Li2Sn5's vacancy hop is far slower than bcc Li's on any PBE-like potential
    (SevenNet-0 gives 0.31 eV in a 55-atom cell); at 7 Å it must still sit well
    above the bcc-Li value and below half an eV.
    """
    monkeypatch.setenv("ALLOYFLOW_THREADS", os.environ.get("ALLOYFLOW_THREADS", "1"))
    with ResultStore(tmp_path) as store:
        result = run_barriers("Li2Sn5", store, calculator="sevennet", min_image_distance=7.0, n_images=3, max_hops=1)
    hop = result.hops[0]
    print(f"Li2Sn5 SevenNet-0: {result.supercell.natoms} atoms, barrier {hop.forward_barrier:.3f} eV, "
          f"CN {hop.cn_initial}")
    assert hop.converged and result.calculator["model"] == "SevenNet-0"
    assert 0.15 < hop.forward_barrier < 0.5
    assert result.percolation["1d"] is not None
    assert hop.cn_initial.m >= 8  # Li in Li2Sn5 sits in a Sn-rich cage
