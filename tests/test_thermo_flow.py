"""The finite-temperature stage as a jobflow flow (``alloyflow.workflows.flows.thermo``), on the mock potential.

What is checked: the flow's force jobs carry the keys the earlier driver's
jobs had (``run_phonons``, ``run_elastic(relax=False)``,
``run_attempt_frequencies``), so a folder computed before reruns with nothing
recomputed and the same ``ThermoResult``; relaxations given as documents, as
references or as a ``HullDocument`` reference plan the same jobs; one phase's
failing moduli and one barrier result's failing attempt frequencies are
warnings, not a lost stage; in a study the stage comes after the barriers and
plans a job two systems share once.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from jobflow import Flow
from pymatgen.core import Lattice, Structure

from alloyflow.analysis.diffusion import DEFAULT_TEMPERATURES, diffusivities_for
from alloyflow.analysis.hull import entries_from_documents
from alloyflow.analysis.thermo import ThermoResult, thermo_result
from alloyflow.engine import DYNAMIC, ResultStore, run_flow
from alloyflow.structures.library import primitive
from alloyflow.workflows.flows.barriers import host_stability
from alloyflow.workflows.flows.hull import hull_flow_for
from alloyflow.workflows.flows.thermo import ThermoFlowMaker, thermo_flow_maker
from alloyflow.workflows.jobs.attempt import AttemptFrequencyMaker, run_attempt_frequencies
from alloyflow.workflows.jobs.elastic import ElasticMaker, elastic_job, run_elastic
from alloyflow.workflows.jobs.phonons import PhononMaker, phonon_jobs, run_phonons
from alloyflow.workflows.jobs.relax import RelaxationDocument

T = 350.0
MIN_LENGTH = 6.0


def _old_driver(store, docs, barrier) -> ThermoResult:
    """What ``thermo_for_system`` computed before the flow: the job-level API, one stage after the other."""
    relaxed = {d.label: d.structure for d in docs if d.converged}
    maker = PhononMaker(calculator="mock", min_length=MIN_LENGTH)
    maker.t_max = max(maker.t_max, T)
    phonons = run_phonons(relaxed, store, calculator="mock", maker=maker)
    elastic = {}
    for name, structure in relaxed.items():
        elastic.update(run_elastic({name: structure}, store, calculator="mock", relax=False))
    freqs = run_attempt_frequencies(barrier, store, calculator="mock")
    rows = [{"phase": barrier.phase, "mode": barrier.mode, "network": n.network, "dimension": n.dimension,
             "barrier_ev": n.barrier_ev, "hop_id": n.hop_id, "hop_length_A": n.hop_length_A,
             "attempt_frequency_hz": n.attempt_frequency_hz, "attempt_frequency_source": n.attempt_frequency_source,
             "diffusivity": {f"{t:g}": d for t, d in zip(n.temperatures_k, n.diffusivities_cm2_s)},
             "assumptions": n.assumptions, "warnings": n.warnings}
            for n in diffusivities_for(barrier, freqs, temperatures=DEFAULT_TEMPERATURES)]
    return thermo_result(entries_from_documents(docs), phonons, "Li-In", T, elastic=elastic, diffusion=rows)


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    """A folder computed the old way: Li-In relaxations (Li, In, LiIn), Li barriers, then phonons, moduli, ν*."""
    from alloyflow.workflows.flows.barriers import run_barriers
    from alloyflow.workflows.flows.hull import run_hull_relaxations

    out = tmp_path_factory.mktemp("thermo-flow")
    with ResultStore(out) as store:
        docs, _ = run_hull_relaxations("Li-In", store, calculator="mock", phases=["LiIn"])
        barrier = run_barriers("Li", store, calculator="mock", system="Li-In", n_images=3, min_image_distance=6.0,
                               max_hops=1, endpoint_trials=1, host_check=False)
        old = _old_driver(store, docs, barrier)
    return out, docs, barrier, old


def test_job_builders_keep_the_keys_of_before():
    """uuids the pre-flow driver gave its jobs (computed with it) for fixed cells: builders, tolerant jobs keep them."""
    liin = Structure(Lattice.cubic(3.35), ["Li", "In"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    maker = replace(PhononMaker(calculator="mock", min_length=MIN_LENGTH), t_max=1200.0)
    assert phonon_jobs({"LiIn": liin}, maker)["LiIn"].uuid == "6a035479-545f-4f97-a6fe-81c2da9f7afc"
    elastic = ElasticMaker(calculator="mock")
    for tolerant in (False, True):
        assert elastic_job(liin, "LiIn", elastic, tolerant=tolerant).uuid == "a87f79b6-1c65-36b3-5992-92ec03c4441d"
    assert elastic.keyed_job(primitive(liin), label="x").uuid == "a87f79b6-1c65-36b3-5992-92ec03c4441d"
    ini = Structure.from_spacegroup("Im-3m", Lattice.cubic(3.44), ["Li"], [[0, 0, 0]])
    ini.make_supercell(2)
    ini.remove_sites([0])
    saddle = ini.copy()
    saddle.translate_sites([0], [0.05, 0.05, 0.05])
    for tolerant in (False, True):
        job = AttemptFrequencyMaker(calculator="mock").keyed_job(ini, saddle, 0, label="Li hop 0", tolerant=tolerant)
        assert job.uuid == "a3d04b5f-0d4d-1f80-d62e-58c3d4b9b67c"


def test_flow_reuses_the_old_jobs_and_gives_the_same_result(computed):
    out, docs, barrier, old = computed
    maker = thermo_flow_maker("mock", MIN_LENGTH)
    flow = maker.make("Li-In", docs, barriers=[barrier], temperature=T)
    (plan,) = flow.jobs  # one planning job at build time; the force jobs come once the relaxations exist
    assert plan.metadata[DYNAMIC] and flow.output.uuid == plan.uuid
    assert maker.make("Li-In", docs, barriers=[barrier], temperature=T).jobs[0].uuid == plan.uuid
    with ResultStore(out) as store:
        summary = run_flow(flow, store)
        new = store.document(flow.output.uuid, ThermoResult)
        assert summary.computed == 0 and summary.assembled == 3  # plan, collect, jobflow's output job: no force job
        assert new.model_dump() == old.model_dump()
        assert new.diffusion and new.phases[-1].diffusivity and new.phases[0].bulk_modulus is not None
        assert run_flow(flow, store).computed == 0  # a rerun runs nothing at all

        # relaxations as references: the hull flow's relaxation outputs, or its HullDocument
        hull = hull_flow_for("Li-In", "mock", phases=["LiIn"])
        relax_refs = [j.output for j in hull.jobs if j.metadata.get("alloyflow_kind") != "assembly"]
        for relaxations in (relax_refs, hull.output):
            flow = maker.make("Li-In", relaxations, barriers=[barrier], temperature=T)
            summary = run_flow(Flow([hull, flow]) if relaxations is relax_refs else flow, store)
            assert summary.computed == 0
            assert store.document(flow.output.uuid, ThermoResult).model_dump() == old.model_dump()


def test_failures_of_one_phase_or_one_barrier_are_warnings(computed, monkeypatch):
    """New elastic and attempt keys whose runs fail for LiIn's moduli and for every ν*: the rest is kept."""
    out, docs, barrier, old = computed
    real = ElasticMaker.run

    def run(self, structure, label="", metadata=None):
        if label == "LiIn":
            raise RuntimeError("no fit")
        return real(self, structure, label=label, metadata=metadata)

    monkeypatch.setattr(ElasticMaker, "run", run)
    monkeypatch.setattr(AttemptFrequencyMaker, "run", lambda self, *a, **k: 1 / 0)
    maker = ThermoFlowMaker(phonon_maker=PhononMaker(calculator="mock", min_length=MIN_LENGTH),
                            elastic_maker=ElasticMaker(calculator="mock", strains=(-0.005, 0.005)),
                            attempt_maker=AttemptFrequencyMaker(calculator="mock", delta=0.03))
    flow = maker.make("Li-In", docs, barriers=[barrier], temperature=T)
    with ResultStore(out) as store:
        summary = run_flow(flow, store)
        result = store.document(flow.output.uuid, ThermoResult)
    assert summary.computed == 4  # 3 elastic fits (one failing) and 1 attempt frequency; phonons reused
    assert "LiIn: no elastic moduli (RuntimeError: no fit)" in result.warnings
    assert "Li: no diffusivity (ZeroDivisionError: division by zero)" in result.warnings
    moduli = {p.name: p.bulk_modulus for p in result.phases}
    assert moduli["LiIn"] is None and moduli["Li"] is not None and moduli["In"] is not None
    assert result.diffusion == [] and [p.formation_free_energy for p in result.phases] == \
        [p.formation_free_energy for p in old.phases]
    # the stored failure, met by the job-level API or a barrier flow's host check with the same key
    liin = next(d.structure for d in docs if d.label == "LiIn")
    with ResultStore(out) as store, pytest.raises(ValueError, match="stored elastic job failed"):
        run_elastic({"LiIn": liin}, store, calculator="mock", relax=False, maker=maker.elastic_maker)
    host = host_stability({"job_error": "RuntimeError: no fit", "label": "LiIn"}, "mock")
    assert host.stable is None and "no fit" in host.note


def test_unconverged_relaxation_gets_no_phonons_and_no_barriers_is_said(computed):
    out, docs, _, _ = computed
    docs = [d.model_copy(update={"converged": False}) if d.label == "LiIn" else d for d in docs]
    flow = thermo_flow_maker("mock", MIN_LENGTH, elastic=False).make("Li-In", docs, barriers=[], temperature=T,
                                                                     missing_barriers="no barriers here")
    with ResultStore(out) as store:
        assert run_flow(flow, store).computed == 0
        result = store.document(flow.output.uuid, ThermoResult)
    assert [p.name for p in result.phases] == ["In", "Li"]
    assert "unconverged relaxation(s), no phonons: LiIn" in result.warnings and "no barriers here" in result.warnings


def test_a_study_with_a_temperature_ends_with_the_thermo_stage():
    from alloyflow.workflows.flows.study import StudySettings, study_flow

    options = dict(systems=["Li-In"], calculator="mock", phases=["LiIn"], barriers=["Li"], search=False)
    plain = study_flow(StudySettings(**options))
    flow = study_flow(StudySettings(**options, temperature=300.0, min_length=MIN_LENGTH))
    jobs = [j for j, _ in flow.iterflow()]
    # the same relaxations and hull jobs; the choice (its settings hold the temperature) and the stage after it
    assert [j.uuid for j, _ in plain.iterflow()][:-1] == [j.uuid for j in jobs[:-2]]
    choose, stage = jobs[-2:]
    assert choose.name == "choose_barriers" and stage.name == "study_thermo"
    assert stage.metadata[DYNAMIC] and flow.output.uuid == stage.uuid
    assert stage.function_args[0].uuid == choose.uuid  # it takes the StudyDocument (after the barriers)
    assert not any(j.name.startswith(("phonons", "elastic")) for j in jobs)  # planned at run time
    with pytest.raises(ValueError, match="temperature"):
        study_flow(StudySettings(**options, temperature=-1.0))


def test_two_systems_plan_their_shared_element_once(computed):
    """Li's phonons and moduli serve Li-In and Li-Sn: planned in one job, they are one job each."""
    out, docs, _, _ = computed
    li = next(d for d in docs if d.label == "Li")
    sn = RelaxationDocument.model_validate({**li.model_dump(), "label": "Sn", "formula": "Sn",
                                            "structure": Structure(Lattice.cubic(3.0), ["Sn"], [[0, 0, 0]]),
                                            "input_hash": "sn"})
    maker = thermo_flow_maker("mock", MIN_LENGTH, diffusivity=False)
    known: set = set()
    in_jobs, _ = maker.plan("Li-In", docs, [], None, T, "k1", known=known)
    sn_jobs, collect = maker.plan("Li-Sn", [li, sn], [], None, T, "k2", known=known)
    assert len(in_jobs) == 6 and [j.name for j in sn_jobs] == ["phonons Sn", "elastic Sn"]
    phonon_refs = dict(collect.function_args[3])
    assert phonon_refs["Li"].uuid in {j.uuid for j in in_jobs}  # Li-Sn's collect reads Li-In's Li job
