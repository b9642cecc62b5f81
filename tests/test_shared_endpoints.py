"""One relaxation per symmetry-distinct NEB endpoint, carried to the bands whose endpoints are its images."""

import os

import pytest
from conftest import bcc_li_hop

from alloyflow.engine.store import ResultStore
from alloyflow.workflows.jobs.neb import NebMaker
from alloyflow.workflows.jobs.neb_endpoints import shared_endpoints

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def one_thread(monkeypatch):
    monkeypatch.setenv("ALLOYFLOW_THREADS", os.environ.get("ALLOYFLOW_THREADS", "1"))


def test_a_carried_relaxation_gives_the_band_of_the_endpoints_own(sevennet_bcc_li_band):
    """SevenNet-0, 15-atom bcc Li: both endpoints are images of one vacancy cell under a translation."""
    ini, fin = bcc_li_hop()
    maker = NebMaker(calculator="sevennet", n_images=3, fmax=0.05)
    pair = maker.band_endpoints(ini, fin)
    (rep_i, map_i), (rep_f, map_f) = shared_endpoints([pair])[0]
    assert rep_i == rep_f == 0  # the final endpoint is an image of the initial one
    shared = maker.endpoint_maker().run(pair[0], label="bcc Li vacancy")
    assert shared.converged and shared.force_calls > 10 and shared.displacement > 0.01
    doc = maker.run(ini, fin, label="carried", endpoints=[{"doc": shared, "map": map_i.as_dict()},
                                                          {"doc": shared, "map": map_f.as_dict()}])
    own = sevennet_bcc_li_band  # the same hop with each endpoint relaxed in the band
    assert not doc.endpoint_notes and doc.endpoint_sources == [shared.input_hash] * 2
    assert doc.endpoint_force_calls == 2  # one checking single point per endpoint
    assert own.endpoint_force_calls > 1.5 * shared.force_calls  # it relaxed both endpoints (3 trials each)
    assert doc.energies[0] == pytest.approx(own.energies[0], abs=1e-3)
    assert doc.energies[-1] == pytest.approx(own.energies[-1], abs=1e-3)
    assert doc.forward_barrier == pytest.approx(own.forward_barrier, abs=1e-3)
    assert doc.converged and doc.endpoint_energies == [shared.trial_energies] * 2

    # a map that is no symmetry (the initial's relaxation put on the final endpoint) is caught, not used
    wrong = maker.run(ini, fin, label="wrong map", endpoints=[{"doc": shared, "map": map_i.as_dict()},
                                                              {"doc": shared, "map": map_i.as_dict()}])
    assert len(wrong.endpoint_notes) == 1 and "not its image" in wrong.endpoint_notes[0]
    assert wrong.endpoint_force_calls > 2
    assert wrong.forward_barrier == pytest.approx(own.forward_barrier, abs=1e-3)


@pytest.mark.slow
def test_barrier_flow_relaxes_each_distinct_endpoint_once(tmp_path):
    """SevenNet-0 LiSn (P2/m, Li on 2n and 1e), 7 Å cell: every hop's band from the shared relaxations."""
    from alloyflow.workflows.flows.barriers import run_barriers

    seen = []
    with ResultStore(tmp_path) as store:
        result = run_barriers("LiSn", store, calculator="sevennet", min_image_distance=7.0, n_images=3, max_hops=3,
                              screen=False, host_check=False, progress=lambda label, reused: seen.append(label))
    endpoints = [x for x in seen if x.startswith("endpoint")]
    bands = [x for x in seen if x.startswith("neb")]
    assert len(bands) == 3 and 1 <= len(endpoints) <= 2 < 2 * len(bands)
    assert all(h.endpoint_force_calls == 2 for h in result.hops)
    assert all(h.converged for h in result.hops)
    assert not any("carried over" in w for h in result.hops for w in h.warnings)


def test_a_relaxation_that_broke_the_symmetry_is_used_only_by_its_own_endpoint():
    """Its images are one of several equivalent minima: the band's other endpoint relaxes itself, as before."""
    from alloyflow.workflows.jobs.batched import BatchEvaluator
    from alloyflow.workflows.jobs.neb_endpoints import EndpointMaker, carried_endpoint

    ini, fin = bcc_li_hop()
    pair = NebMaker.band_endpoints(ini, fin)
    (_, map_i), (_, map_f) = shared_endpoints([pair])[0]
    relax = EndpointMaker(calculator="mock")
    relaxed = relax.run(pair[0], label="vacancy")
    shared, broken = (relaxed.model_copy(update={"symmetric": flag}) for flag in (True, False))
    evaluator = BatchEvaluator("mock")
    doc, note, here = carried_endpoint(broken, map_f.as_dict(), pair[1], evaluator, relax, "final")
    assert here and not note and doc.input_hash == relax.key(pair[1]) and evaluator.force_calls == 0
    doc, note, here = carried_endpoint(broken, map_i.as_dict(), pair[0], evaluator, relax, "initial")
    assert not here and not note and doc.input_hash == shared.input_hash  # its own endpoint: used as it is
    doc, note, here = carried_endpoint(shared, map_f.as_dict(), pair[1], evaluator, relax, "final")
    assert not here and not note and evaluator.force_calls == 2  # symmetric: carried, checked by a single point


@pytest.mark.parametrize("kwargs", [{"fmax": 0}, {"endpoint_fmax": -0.01}, {"climb_fmax": 0.0}, {"n_images": 0},
                                    {"endpoint_trials": 0}])
def test_meaningless_neb_settings_are_refused_when_the_maker_is_built(kwargs):
    from alloyflow.workflows.jobs.neb_endpoints import EndpointMaker

    with pytest.raises(ValueError, match="must be|needs"):
        NebMaker(calculator="mock", **kwargs)
    with pytest.raises(ValueError, match="must be"):
        EndpointMaker(calculator="mock", fmax=0.0)
