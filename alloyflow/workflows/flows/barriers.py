"""Li-migration barriers of one phase as a jobflow flow: relax, hops, endpoints, one NEB per hop, collect.

The flow has two jobs at build time:

1. the cell relaxation, the very job the hull flow runs (same maker, same
   key, so it is reused), and
2. ``barrier_hops``, which, once the relaxed cell exists, finds the
   symmetry-distinct Li hops, builds the vacancy (or dilute-Li) supercell and
   the endpoints, and answers ``Response(replace=...)`` with one keyed NEB job
   per hop and a ``collect_barriers`` job, or, where the backend screens
   (``Makers.screen``: the ASE calculators), with one cheap screen per hop
   and ``converge_hops``, which converges in rounds only the hops a
   percolation threshold can need (``alloyflow.analysis.screening``) and
   then collects. So what depends on results is decided inside a job, and
   the same flow runs on the local engine, on FireWorks (the NEBs become
   fireworks added at run time) and on jobflow-remote.

Jobs already in the job store are left out of each replacement (their
outputs are read from the store), so a resumed run or a resubmission never
recomputes one. The documents are built in ``barrier_collect``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

from jobflow import CURRENT_JOB, Flow, Maker, Response, job
from pymatgen.core import Structure

from alloyflow.analysis.migration import BarrierResult
from alloyflow.analysis.screening import SCREEN_FACTOR, effective_factor, hops_to_converge
from alloyflow.calculators import calculator_info, check_elements
from alloyflow.engine.keys import input_hash, keyed
from alloyflow.engine.local import DYNAMIC, exposing_store, is_finished, replacement
from alloyflow.engine.store import as_dict
from alloyflow.structures.library import Phase, primitive
from alloyflow.structures.migration import check_barrier_supercell
from alloyflow.workflows.flows.barrier_collect import collect_barriers, hop_result, planning_failure
from alloyflow.workflows.flows.barrier_collect import hop_from_neb, host_stability  # noqa: F401 (public API)
from alloyflow.workflows.flows.hop_plan import BarrierSettings, plan_hops
from alloyflow.workflows.flows.stored_bands import stored_plan
from alloyflow.workflows.jobs.backends import Makers, makers_for
from alloyflow.workflows.jobs.neb import EndpointError, earlier_method_note
from alloyflow.workflows.jobs.neb_endpoints import shared_endpoints
from alloyflow.workflows.jobs.relax import RelaxationDocument
from alloyflow.workflows.jobs.screen import ScreenDocument

FLOW_VERSION = 4
"""Bump when the planning or collecting logic changes what a stored barrier result means.

2: the hop cutoff is raised until the hops percolate in 3D; left-out hops are recorded.
3: the host's mechanical stability (Born criteria) is checked and recorded.
4: a band without a saddle gives no barrier, not ~0 meV; one that dips below an endpoint is measured
   from the dip (``alloyflow.analysis.migration.band_shape``).
"""

HOST_CHECK_MAX_ATOMS = 40
"""Hosts up to this many atoms per cell get the elastic-tensor stability check (24 strained cells, ions relaxed)."""


def _host_job(host_maker, structure: Structure, phase: str, stage: str):
    """The host-stability job (elastic tensor) and why there is none."""
    if host_maker is None:
        return None, "not checked: the backend has no elastic maker"
    if len(structure) > HOST_CHECK_MAX_ATOMS:
        return None, f"not checked: {len(structure)} atoms in the cell > {HOST_CHECK_MAX_ATOMS} (cost)"
    hj = host_maker.keyed_job(structure, label=f"{phase} host", metadata={"phase": phase})
    hj.metadata["alloyflow_stage"] = stage
    return hj, ""


@dataclass
class HopStage:
    """What every planning job of one phase's hops passes on (all of it serializable job input)."""

    relaxed_doc: dict
    phase: str
    formula: str
    settings: dict
    neb_maker: object
    key: str
    warnings: list
    legacy_ties: bool = False
    host_maker: object = None
    screen_maker: object = None
    stage: str = ""

    def as_kwargs(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def shared_endpoint_jobs(st: HopStage, plan, neb_jobs: list) -> tuple[list, list]:
    """(endpoint jobs, NEB jobs): each symmetry-distinct endpoint relaxed once for the bands still to compute.

    ``neb_jobs`` are ``(plan entry index, label, job)``. Where the NEB maker
    shares endpoints (``NebMaker.share_endpoints``), the endpoints of every
    hop of the plan are sorted into classes of images of one another
    (``alloyflow.workflows.jobs.neb_endpoints.shared_endpoints``; the first
    member of a class is its representative, the same in every round), each
    band the store does not hold gets the relaxations of its endpoints'
    representatives, and those relaxations become jobs. Bands the store
    holds keep their jobs unchanged (the key does not change), so nothing
    stored is relaxed again.
    """
    maker = st.neb_maker
    jobs = [j for _, _, j in neb_jobs]
    if not (getattr(maker, "share_endpoints", False) and getattr(maker, "relax_endpoints", False)) or not jobs:
        return [], jobs
    store = CURRENT_JOB.store
    todo = [(i, label, j) for i, label, j in neb_jobs if store is None or not is_finished(store, j)]
    if not todo:
        return [], jobs
    pairs, index = [], {}
    for i, (_, initial, final_s, _) in enumerate(plan.entries):
        try:
            pairs.append(maker.band_endpoints(initial, final_s))
        except (EndpointError, ValueError):
            continue
        index[i] = len(pairs) - 1
    classes = shared_endpoints(pairs)
    entry_of = {v: k for k, v in index.items()}
    flat = [s for pair in pairs for s in pair]
    ep_maker = maker.endpoint_maker()
    endpoint_jobs, rebuilt = {}, {}
    for i, label, j in todo:
        if i not in index:
            continue
        refs = []
        for rep, site_map in classes[index[i]]:
            if rep not in endpoint_jobs:
                hop_id = plan.entries[entry_of[rep // 2]][0].id
                kind = " interstitial" if plan.mode == "interstitial" else ""
                ej = ep_maker.keyed_job(flat[rep], label=f"{plan.name}{kind} hop {hop_id} "
                                                         f"{('initial', 'final')[rep % 2]}", metadata={"phase": plan.name})
                ej.metadata["alloyflow_stage"] = st.stage
                endpoint_jobs[rep] = ej
            refs.append({"doc": endpoint_jobs[rep].output, "map": site_map.as_dict()})
        hop, initial, final_s, info = plan.entries[i]
        nj = maker.keyed_job(initial, final_s, label=label, metadata={"phase": plan.name, **info}, endpoints=refs)
        nj.metadata["alloyflow_stage"] = st.stage
        rebuilt[j.uuid] = nj
    return list(endpoint_jobs.values()), [rebuilt.get(j.uuid, j) for j in jobs]


def hop_stage(st: HopStage, plan, chosen: list[int] | None, final: bool, round_: int = 0,
              factor: float | None = None) -> Flow:
    """The replacement of a planning job: host check, screens, the NEBs of ``chosen``, then what comes next.

    ``chosen`` None: every hop. ``final``: the next job collects the result;
    otherwise it is ``converge_hops``, which applies the screening rule to
    the screens and the bands of ``chosen``. Jobs the store holds are left out
    and references to them resolved (``replacement``), so each round only
    adds what is new.
    """
    doc = RelaxationDocument.model_validate(as_dict(st.relaxed_doc))
    host_job, host_note = _host_job(st.host_maker, doc.structure, st.phase, st.stage)
    ids = [e[0].id for e in plan.entries]
    wanted = set(ids if chosen is None else chosen)
    neb_jobs, outputs, failures = [], [], {}
    for i, (hop, initial, final_s, info) in enumerate(plan.entries):
        if hop.id not in wanted:
            outputs.append(None)
            continue
        label = plan.band_label(hop.id)
        try:
            j = st.neb_maker.keyed_job(initial, final_s, label=label, metadata={"phase": plan.name, **info})
        except (EndpointError, ValueError) as exc:
            failures[hop.id] = f"{type(exc).__name__}: {exc}"
            outputs.append(None)
            continue
        j.metadata["alloyflow_stage"] = st.stage
        outputs.append(j.output)
        neb_jobs.append((i, label, j))
    endpoint_jobs, neb_jobs = shared_endpoint_jobs(st, plan, neb_jobs)
    screen_jobs, screens = [], None
    if st.screen_maker is not None:
        screens = []
        for (hop, initial, final_s, info) in plan.entries:
            try:
                sj = st.screen_maker.keyed_job(initial, final_s, label=f"{plan.name} hop {hop.id}",
                                               metadata={"phase": plan.name, "hop": hop.id})
            except (EndpointError, ValueError):  # no estimate: the rule converges the hop, whose NEB says why
                screens.append(None)
                continue
            sj.metadata["alloyflow_stage"] = st.stage
            screen_jobs.append(sj)
            screens.append(sj.output)
    host = host_job.output if host_job is not None else None
    if final:
        band = {"n_images": st.neb_maker.n_images, "fmax": st.neb_maker.fmax}
        if factor is None:
            factor = st.screen_maker.factor if st.screen_maker is not None else SCREEN_FACTOR
        screening = None if screens is None else {"factor": round(factor, 6), "rounds": round_}
        nxt = collect_barriers(st.relaxed_doc, outputs, failures, st.phase, st.formula, st.settings, band,
                               st.neb_maker.calculator, st.warnings, host, host_note, st.legacy_ties,
                               screens=screens, screening=screening)
        parts = [st.key, [getattr(o, "uuid", None) for o in outputs], failures, getattr(host, "uuid", None)]
        if screens is not None:
            parts += [[getattr(o, "uuid", None) for o in screens], screening]
        keyed(nxt, input_hash("barrier collect", FLOW_VERSION, *parts), label=f"collect barriers {plan.name}")
    else:
        nxt = converge_hops(st.as_kwargs(), sorted(wanted), screens, outputs, failures, round_)
        keyed(nxt, input_hash("converge hops", FLOW_VERSION, st.key, round_, sorted(wanted)),
              label=f"choose hops {plan.name} (round {round_ + 1})")
        nxt.metadata[DYNAMIC] = True
        exposing_store(nxt)
    nxt.metadata.update({"alloyflow_kind": "assembly", "alloyflow_stage": st.stage})
    jobs = [*([host_job] if host_job is not None else []), *screen_jobs, *endpoint_jobs, *neb_jobs, nxt]
    return replacement(jobs, nxt.output, f"barriers {plan.name}")


@job
def barrier_hops(relaxed_doc, phase: str, formula: str, settings: dict, neb_maker, key: str,
                 relaxation_warning: str | None = None, host_maker=None, screen_maker=None):
    """Plan the hops of the relaxed phase and replace this job by their NEBs (or screens) and what follows.

    Without a ``screen_maker`` (or with a single hop) every hop gets a NEB
    and the collect job follows. With one, every hop is screened first and
    ``converge_hops`` decides which hops need a band
    (``alloyflow.analysis.screening``). The replacement holds only jobs the
    store does not have yet. A phase whose NEBs a store holds from before the
    supercell tie rule or the symmetric endpoints keeps that plan and maker,
    its missing hops included, and says so (``stored_plan``).
    """
    doc = RelaxationDocument.model_validate(as_dict(relaxed_doc))
    s = BarrierSettings(**settings)
    try:
        plan, legacy_ties, maker = stored_plan(phase, formula, doc.structure, s, neb_maker, CURRENT_JOB.store)
    except Exception as exc:  # noqa: BLE001 (any planning failure: the study goes on, the next run retries)
        failed = planning_failure(doc, phase, formula, s, neb_maker.calculator, exc)
        print(f"alloyflow: warning: {failed.warnings[0]}; the other phases go on, the next run retries it",
              file=sys.stderr, flush=True)
        return Response(output=failed)
    warnings = list(plan.warnings)
    if legacy_ties:
        warnings.append(f"the hops are those stored in supercell {plan.entries[0][3]['matrix']}, chosen among equally "
                        "good cells before that choice was made reproducible; a new run may use an equivalent cell "
                        "in which the hop lies differently (a finite-size effect)")
    if maker is not neb_maker:
        warnings.append(earlier_method_note(maker, neb_maker))
    if not doc.converged:
        warnings.insert(0, f"the cell relaxation of {phase} did not converge (max force {doc.max_force:.3f} eV/Å)")
    me = CURRENT_JOB.job
    stage = ((me.metadata or {}) if me is not None else {}).get("alloyflow_stage") or f"barriers {plan.name}"
    screen = screen_maker if len(plan.entries) > 1 else None
    st = HopStage(doc.model_dump(), phase, formula, settings, maker, key, warnings, legacy_ties, host_maker, screen,
                  stage)
    if screen is None:
        return Response(replace=hop_stage(st, plan, None, final=True))
    return Response(replace=hop_stage(st, plan, [], final=False))


@job
def converge_hops(stage: dict, chosen: list[int], screens: list, neb_outputs: list, failures: dict, round_: int):
    """Apply the screening rule to the screens and the bands so far; replace this job by the next round.

    The next round converges the hops ``hops_to_converge`` names; when it
    names none, the collect job follows, and the hops without a band are
    screened-only in the result.
    """
    st = HopStage(**stage)
    doc = RelaxationDocument.model_validate(as_dict(st.relaxed_doc))
    plan = plan_hops(st.phase, st.formula, doc.structure, BarrierSettings(**st.settings), legacy_ties=st.legacy_ties)
    screened, converged = {}, {}
    for (hop, initial, final, info), cns, screen, output in zip(plan.entries, plan.cns, screens, neb_outputs):
        screened[hop.id] = None if screen is None else ScreenDocument.model_validate(as_dict(screen)).estimate
        if hop.id in chosen:
            why = failures.get(hop.id, failures.get(str(hop.id)))
            converged[hop.id] = hop_result(hop, cns, info, initial, final, output, why).cost
    more = hops_to_converge(plan.network, screened, converged, st.screen_maker.factor)
    if more:
        return Response(replace=hop_stage(st, plan, sorted({*chosen, *more}), final=False, round_=round_ + 1))
    factor = effective_factor(screened, converged, st.screen_maker.factor)
    return Response(replace=hop_stage(st, plan, chosen, final=True, round_=round_, factor=factor))


@dataclass
class BarrierFlowMaker(Maker):
    """The barrier flow of one phase; it receives its makers (``makers_for(calculator)``).

    Parameters
    ----------
    name : str
        Flow name prefix.
    makers : Makers
        Relax and NEB makers of one backend (ASE potentials, GPAW, VASP).
    settings : BarrierSettings
        Hop and supercell choices.
    """

    name: str = "barriers"
    makers: Makers = field(default_factory=lambda: makers_for("sevennet"))
    settings: BarrierSettings = field(default_factory=BarrierSettings)

    def make(self, phase: Phase) -> Flow:
        """Relax ``phase`` (the hull's job) and plan its hops once it is relaxed."""
        self.settings.check()
        elements = [el.symbol for el in phase.composition.elements]
        if not self.settings.dilute and "Li" not in elements:
            raise ValueError(f"phase {phase.name} has no Li: there is no Li vacancy hop to compute "
                             f"(use dilute=True for one Li in {phase.formula} as a host)")
        if self.settings.dilute and "Li" in elements:
            raise ValueError(f"dilute=True needs a Li-free host phase; {phase.name} ({phase.formula}) contains Li")
        check_elements(self.makers.calculator, sorted({*elements, "Li"}), where=f"phase {phase.name}")
        # a cell too small for the hops (or too large for the machine) is refused before any job exists
        check_barrier_supercell(primitive(phase.structure), self.settings.min_image_distance,
                                dilute=self.settings.dilute, n_host_sites=self.settings.n_host_sites,
                                mode=self.settings.dilute_mode)
        meta = {"phase": phase.name, "status": phase.status, "source": phase.source}
        relax = self.makers.relax.keyed_job(primitive(phase.structure), label=phase.name, metadata=meta)
        neb = self.makers.neb
        settings = asdict(self.settings)
        screen = self.makers.screen
        key = input_hash("barrier hops", FLOW_VERSION, relax.uuid, settings, calculator_info(neb.calculator),
                         getattr(neb, "key_settings", neb.settings)(),
                         *([screen.settings(), screen.factor] if screen is not None else []))
        hops = barrier_hops(relax.output, phase.name, phase.formula, settings, neb, key,
                            host_maker=self.makers.elastic if self.settings.host_check else None,
                            screen_maker=screen)
        keyed(hops, key, label=f"plan hops {phase.name}{' (dilute Li)' if self.settings.dilute else ''}")
        hops.metadata[DYNAMIC] = True
        exposing_store(hops)
        hops.metadata["alloyflow_kind"] = "assembly"
        return Flow([relax, hops], output=hops.output, name=f"{self.name} {phase.name}")


def barrier_flow(phase: str, calculator: str = "sevennet", system: str | None = None, library=None,
                 n_images: int = 5, fmax: float = 0.05, neb_maker=None, endpoint_trials: int | None = None,
                 incar: dict | None = None, climb: bool | None = None, screen: bool = False,
                 screen_factor: float | None = None, **settings) -> Flow:
    """The barrier flow of a library phase (``BarrierSettings`` fields as keywords).

    ``incar`` and ``climb`` reach the VASP makers (``makers_for``): INCAR overrides, plain NEB.
    ``screen=True`` screens every hop first and converges only those a threshold can need;
    ``screen_factor`` replaces the measured ``SCREEN_FACTOR`` (how far the screens are trusted).
    """
    from alloyflow.structures.library import StructureLibrary

    library = library or StructureLibrary()
    makers = makers_for(calculator, n_images=n_images, fmax=fmax, endpoint_trials=endpoint_trials, incar=incar,
                        climb=climb, screen=screen)
    if screen_factor is not None and makers.screen is not None:
        from dataclasses import replace as _with

        makers = _with(makers, screen=_with(makers.screen, factor=screen_factor))
    if neb_maker is not None:
        makers = Makers(calculator, makers.relax, makers.static, neb_maker, screen=makers.screen)
    return BarrierFlowMaker(makers=makers, settings=BarrierSettings(**settings)).make(library.get(phase, system))


def run_barriers(phase: str, store, calculator: str = "sevennet", system: str | None = None, library=None,
                 n_images: int = 5, fmax: float = 0.05, progress=None, e_above_hull: float | None = None,
                 neb_maker=None, **settings) -> BarrierResult:
    """Build the barrier flow of ``phase``, run it on the local engine (``store``) and return its result.

    ``e_above_hull`` (eV/atom) adds a labelled metastability correction.
    """
    from alloyflow.analysis.migration import apply_metastability_correction
    from alloyflow.engine import run_flow

    flow = barrier_flow(phase, calculator, system, library, n_images, fmax, neb_maker, **settings)
    run_flow(flow, store, progress=progress)
    result = store.document(flow.output.uuid, BarrierResult)
    if result.error:
        raise ValueError(f"the hops of {phase} could not be planned: {result.error}")
    if e_above_hull is not None:
        apply_metastability_correction(result, e_above_hull)
    return result
