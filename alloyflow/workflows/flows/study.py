"""The whole study as one jobflow flow: hulls of every system, then the barriers of the phases that matter.

Built by ``StudyFlowMaker(makers, settings).make(systems, library)``:

1. per system, one keyed relaxation per candidate phase (a relaxation two
   systems share, elemental Li, is one job) and a ``hull_document`` job;
2. ``choose_barriers``: once the hulls exist it picks the barrier phases
   (the reference study's, the stable ones, or a list) and answers
   ``Response(replace=...)`` with one barrier flow per phase (relax, hops,
   NEBs, collect) and a ``collect_study`` job, leaving out work the store
   already holds;
3. ``collect_study`` gathers hulls and barrier results into a
   ``StudyDocument``, with the labelled metastability correction of phases
   above the hull;
4. with a temperature (``settings.temperature``), the thermo stage
   (``add_thermo_stage``, ``alloyflow.workflows.flows.study_thermo``): once the
   document exists, phonons, moduli and attempt frequencies of every system
   and the document again, with its ``thermo`` results.

So every decision that depends on results is taken inside a job: the same
flow object runs on the local engine (``alloyflow study``), on FireWorks
(``alloyflow submit study``, the barrier fireworks added at run time) and on
jobflow-remote. The report is written from the ``StudyDocument``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from jobflow import Flow, Maker, Response, job
from pymatgen.core import Structure

from alloyflow.analysis.migration import BarrierResult, apply_metastability_correction
from alloyflow.analysis.reference_data import REFERENCE_BARRIER_PHASES
from alloyflow.calculators import calculator_info, default_calculator
from alloyflow.engine.keys import input_hash, keyed
from alloyflow.engine.local import DYNAMIC, exposing_store, replacement
from alloyflow.engine.store import as_dict
from alloyflow.io.search import predicted_cif
from alloyflow.structures.library import PhaseRecord, StructureLibrary, treated_elements
from alloyflow.workflows.flows.barriers import FLOW_VERSION as BARRIER_FLOW_VERSION
from alloyflow.workflows.flows.barriers import BarrierFlowMaker, BarrierSettings
from alloyflow.workflows.flows.hull import HULL_VERSION, HullFlowMaker, candidate_phases, check_references
from alloyflow.workflows.flows.search import SearchFlowMaker, SearchSettings, search_calculator
from alloyflow.workflows.jobs.backends import Makers, makers_for
from alloyflow.workflows.schemas.search import SearchResult
from alloyflow.workflows.schemas.study import BarrierChoice, HullDocument, StudyDocument

STUDY_VERSION = 1
"""Bump when the choice or the collection changes what a stored study document means.

The keys of the study's dynamic stages also hold the barrier flow's
``FLOW_VERSION``: a stored stage is reused whole, its replacement unbuilt,
so a change in how barriers are collected must change the stage's key too
(the bands and relaxations under it keep their own keys and are reused).
"""

INTERSTITIAL_PHASES = ("Li2Sn5", "LiSn")
"""Li-poor phases for which the reference study discusses interstitial rather than vacancy migration."""

DILUTE_HOST_SITES = 36
"""One Li on 36 In sites: the reference study's LiIn35 proxy for lowly lithiated In."""


@dataclass
class StudySettings:
    """What the study computes (``alloyflow study`` options).

    ``barriers`` is ``["reference"]`` (the reference study's phases, plus
    LiIn35 for Li-In), ``["auto"]`` (every stable Li-containing phase),
    ``["none"]`` or a list of phase names.
    """

    systems: list[str]
    calculator: str | None = None
    """None: the systems' default (``default_calculator("study", elements)``: alloyflow-LiInSn for Li-In-Sn,
    SevenNet-0 otherwise), as on the command line."""
    barriers: list[str] = field(default_factory=lambda: ["reference"])
    min_image_distance: float = 10.0
    n_images: int = 5
    fmax: float = 0.05
    endpoint_trials: int = 3
    # Every distinct hop up to the 3D-percolating cutoff (None): a cap makes the
    # thresholds upper bounds, which each result then says with the hops left out.
    max_hops: int | None = None
    max_length: float | None = None
    structure_dirs: list[str] = field(default_factory=list)
    phases: list[str] | None = None
    # The tie-line search (part of the flow, bounded by counts, not time) adds predicted phases such
    # as Li13In3 to the hulls before they are built.
    search: bool = True
    search_max_sites: int = 16
    # Li-poor phases (Li2Sn5, LiSn, dilute Li in In) also get the interstitial mechanism.
    interstitial: bool = True
    # The barrier phases' mechanical stability (Born criteria), beside their barriers.
    host_check: bool = True
    # Screen every hop first and converge only those a percolation threshold can need (ASE backends);
    # screen_factor (0, 1] replaces the measured SCREEN_FACTOR. Off: on the reference phases every hop
    # within the 3D cutoff could set a threshold (benchmarks/hop_screening.py), so screens only added work.
    screen: bool = False
    screen_factor: float | None = None
    # VASP only: INCAR overrides (--incar) and plain NEB for a VASP without VTST (climb=False, --no-climb).
    incar: dict = field(default_factory=dict)
    climb: bool | None = None
    # Finite temperature (off unless a temperature is given): phonons, moduli, diffusivities.
    temperature: float | None = None
    min_length: float = 11.0
    elastic: bool = True
    diffusivity: bool = True
    # Elemental references chosen instead of each element's own phase (beta-Sn, bcc Li, In): {"Sn": "Sn_alpha"}
    # or {"Sn": "lowest"} for the 0 K ground state.
    references: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.calculator is None:
            self.calculator = default_calculator("study", treated_elements(self.systems or ()))

    def check(self) -> None:
        """Refuse settings that would give meaningless numbers, before any job exists."""
        if not self.systems:
            raise ValueError("a study needs at least one system, e.g. Li-In")
        if self.n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {self.n_images}")
        if not self.fmax > 0:
            raise ValueError(f"fmax must be > 0 eV/Å, got {self.fmax}")
        if self.search and self.search_max_sites < 1:
            raise ValueError(f"search_max_sites must be >= 1, got {self.search_max_sites}")
        if self.endpoint_trials < 1:
            raise ValueError(f"endpoint_trials must be >= 1, got {self.endpoint_trials}")
        if self.temperature is not None and not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 K, not {self.temperature}")
        if self.screen_factor is not None and not 0 < self.screen_factor <= 1:
            raise ValueError(f"screen_factor must lie in (0, 1], got {self.screen_factor}")
        BarrierSettings(min_image_distance=self.min_image_distance, max_hops=self.max_hops,
                        max_length=self.max_length).check()

    def barrier_settings(self, dilute: bool = False, n_host_sites: int | None = None,
                         mechanism: str = "vacancy") -> BarrierSettings:
        interstitial = mechanism == "interstitial"
        return BarrierSettings(min_image_distance=self.min_image_distance, max_hops=self.max_hops,
                               max_length=self.max_length, dilute=dilute, n_host_sites=n_host_sites,
                               mechanism="vacancy" if dilute else mechanism, host_check=self.host_check,
                               dilute_mode="interstitial" if dilute and interstitial else "substitution")


def choose_phases(choice: list[str], hulls: list[HullDocument], interstitial: bool = True) -> list[BarrierChoice]:
    """The phases whose barriers the study computes, from the hulls (pure).

    ``reference`` adds, for a Li-In system, the reference study's dilute proxy
    for lowly lithiated In: one Li on 36 In sites (LiIn35); with
    ``interstitial``, the Li-poor phases (``INTERSTITIAL_PHASES`` and the
    dilute proxy) get the interstitial mechanism beside the vacancy one. A
    formula names its lowest-energy observed polymorph, or, when there is
    none, its lowest-energy predicted one.
    """
    if choice == ["none"]:
        return []
    out: list[BarrierChoice] = []
    seen: set[str] = set()
    for doc in hulls:
        phases = doc.hull.phases
        # a formula names its observed structure when the library has one (the reference study computed
        # those), else the lowest-energy predicted one (Li13In3 from the search)
        ranked = sorted(phases, key=lambda p: (getattr(p, "status", "") != "predicted",
                                               -(p.e_above_hull if p.e_above_hull is not None else 1e9)))
        by_name = {p.formula: p for p in ranked} | {p.name: p for p in phases}
        if choice == ["auto"]:
            wanted = [p.name for p in phases if p.stable and "Li" in p.formula]
        elif choice == ["reference"]:
            wanted = [f for f in REFERENCE_BARRIER_PHASES if f in by_name]
        else:
            wanted = [f for f in choice if f in by_name]
        for name in wanted:
            if name not in seen:
                seen.add(name)
                out.append(BarrierChoice(phase=by_name[name].name, system=doc.system,
                                         e_above_hull=by_name[name].e_above_hull))
                if interstitial and choice == ["reference"] and by_name[name].formula in INTERSTITIAL_PHASES:
                    out.append(BarrierChoice(phase=by_name[name].name, system=doc.system, mechanism="interstitial",
                                             e_above_hull=by_name[name].e_above_hull))
        if choice == ["reference"] and doc.hull.host == "In":
            out.append(BarrierChoice(phase="In", system=doc.system, dilute=True, n_host_sites=DILUTE_HOST_SITES))
            if interstitial:
                out.append(BarrierChoice(phase="In", system=doc.system, dilute=True, n_host_sites=DILUTE_HOST_SITES,
                                         mechanism="interstitial"))
    return out


def barrier_phases(settings: StudySettings, hulls: dict) -> list[tuple[str, str, dict]]:
    """(phase, system, options) of ``choose_phases`` for ``{system: HullResult}`` (kept for scripts)."""
    docs = [HullDocument(system=s, calculator=h.calculator, hull=h) for s, h in hulls.items()]
    return [(c.phase, c.system, {"dilute": True, "n_host_sites": c.n_host_sites} if c.dilute else {})
            for c in choose_phases(settings.barriers, docs, settings.interstitial)]


def _find_record(records: dict, choice: BarrierChoice) -> PhaseRecord:
    for name in (choice.phase, f"{choice.system}:{choice.phase}"):
        if name in records:
            record = records[name]
            return record if isinstance(record, PhaseRecord) else PhaseRecord.from_dict(record)
    raise ValueError(f"phase {choice.phase} of {choice.system} is not among the study's phases")


@job
def choose_barriers(hull_docs: list, records: dict, settings: dict, relax_maker, neb_maker, calculator: str,
                    key: str, elastic_maker=None, screen_maker=None):
    """Pick the barrier phases from the hulls; replace this job by their barrier flows and ``collect_study``."""
    hulls = [HullDocument.model_validate(as_dict(d)) for d in hull_docs]
    s = StudySettings(**settings)
    choices = choose_phases(s.barriers, hulls, s.interstitial)
    makers = Makers(calculator, relax_maker, None, neb_maker, elastic_maker, screen_maker)
    jobs, outputs = [], []
    for c in choices:
        flow = BarrierFlowMaker(makers=makers, settings=s.barrier_settings(c.dilute, c.n_host_sites, c.mechanism)).make(
            _find_record(records, c))
        for j in flow.jobs:
            j.metadata.setdefault("alloyflow_stage", f"barriers {c.phase}{' (dilute Li)' if c.dilute else ''}"
                                                     f"{' interstitial' if c.mechanism == 'interstitial' else ''}")
        outputs.append(flow.output)
        jobs.append(flow)  # a phase's relaxation serves both mechanisms: ``replacement`` keeps it once
    collect = collect_study([h.model_dump() for h in hulls], [c.model_dump() for c in choices], outputs, settings,
                            calculator)
    keyed(collect, input_hash("study collect", STUDY_VERSION, key, [o.uuid for o in outputs]), label="collect study")
    collect.metadata.update({"alloyflow_kind": "assembly", "alloyflow_stage": "collect study"})
    return Response(replace=replacement([*jobs, collect], collect.output, "study barriers"))


@job
def collect_study(hull_docs: list, choices: list, barrier_outputs: list, settings: dict,
                  calculator: str) -> StudyDocument:
    """The ``StudyDocument``: hulls, choices, barrier results (metastability-corrected where above the hull)."""
    hulls = [HullDocument.model_validate(as_dict(d)) for d in hull_docs]
    choices = [BarrierChoice.model_validate(c) for c in choices]
    barriers = []
    for c, output in zip(choices, barrier_outputs):
        result = BarrierResult.model_validate(as_dict(output))
        if not c.dilute and c.e_above_hull is not None:
            apply_metastability_correction(result, c.e_above_hull)
        barriers.append(result)
    return StudyDocument(systems=[h.system for h in hulls], calculator=calculator_info(calculator), hulls=hulls,
                         choices=choices, barriers=barriers, settings=settings,
                         retry_next_run=any(b.retry_next_run for b in barriers))


def add_thermo_stage(flow: Flow, settings: StudySettings, calculator: str) -> Flow:
    """The study flow with its finite-temperature stage last, when ``settings.temperature`` is set.

    The stage (``alloyflow.workflows.flows.study_thermo.study_thermo_job``) is a keyed dynamic job on the
    study's ``StudyDocument`` (the flow's output, so after the barriers, whose results give the
    diffusivities); it plans phonons, moduli and attempt frequencies of every system and its output,
    the flow's new output, is the document with ``thermo`` filled in.
    """
    if settings.temperature is None:
        return flow
    from alloyflow.workflows.flows.study_thermo import study_thermo_job

    thermo = study_thermo_job(flow.output, calculator, settings.temperature, settings.min_length,
                              settings.elastic, settings.diffusivity, key=flow.output.uuid,
                              references=settings.references or None)
    flow.add_jobs(thermo)
    flow.output = thermo.output
    return flow


@dataclass
class StudyFlowMaker(Maker):
    """The study flow; it receives its makers (``makers_for(calculator)``).

    Parameters
    ----------
    name : str
        Flow name prefix.
    makers : Makers
        Relax and NEB makers of one backend.
    settings : StudySettings
        Systems, barrier choice, NEB and supercell settings.
    """

    name: str = "alloyflow study"
    makers: Makers | None = None
    """None: ``makers_for(settings.calculator)``."""
    settings: StudySettings = field(default_factory=lambda: StudySettings(systems=["Li-In", "Li-Sn"]))

    def __post_init__(self) -> None:
        if self.makers is None:
            self.makers = makers_for(self.settings.calculator)

    def make(self, library: StructureLibrary | None = None) -> Flow:
        """The study flow: the searches (unless ``settings.search`` is off), the hulls and the barrier choice."""
        s = self.settings
        s.check()
        library = library or StructureLibrary(user_dirs=s.structure_dirs or ())
        check_references(s.references, s.systems, library)
        records = {system: [PhaseRecord.of(p) for p in candidate_phases(system, self.makers.calculator, library,
                                                                           s.phases)]
                   for system in s.systems}
        name = f"{self.name} {' '.join(s.systems)}"
        if not s.search:
            hull_flows, choose = hulls_and_choice(self.makers, s, records)
            return add_thermo_stage(Flow([*hull_flows, choose], output=choose.output, name=name), s,
                                    self.makers.calculator)
        search_maker = SearchFlowMaker(calculator=search_calculator(self.makers.calculator),
                                       settings=SearchSettings(max_sites=s.search_max_sites))
        relax_jobs: dict = {}
        searches = [search_maker.make(system, library, relax_jobs) for system in s.systems]
        key = input_hash("study hulls", STUDY_VERSION, BARRIER_FLOW_VERSION, HULL_VERSION,
                         [f.output.uuid for f in searches], asdict(s), calculator_info(self.makers.calculator),
                         self.makers.relax.settings(), {sy: [r.as_dict() for r in rs] for sy, rs in records.items()})
        hulls = study_hulls([f.output for f in searches], {sy: [r.as_dict() for r in rs] for sy, rs in records.items()},
                            asdict(s), self.makers.relax, self.makers.neb, self.makers.calculator, self.makers.elastic,
                            self.makers.screen)
        keyed(hulls, key, label="hulls with the predicted phases")
        hulls.metadata.update({DYNAMIC: True, "alloyflow_kind": "assembly", "alloyflow_stage": "choose barrier phases"})
        exposing_store(hulls)
        return add_thermo_stage(Flow([*searches, hulls], output=hulls.output, name=name), s, self.makers.calculator)


def search_outputs(flow: Flow) -> dict[str, str]:
    """``{system: uuid}`` of the ``SearchResult``s in a study flow (empty without the search)."""
    return {f.name.split(" ", 1)[1]: f.output.uuid for f in flow.jobs
            if isinstance(f, Flow) and f.name.startswith("search ")}


def predicted_records(result: SearchResult, phases: list[str] | None = None) -> list[PhaseRecord]:
    """The search's new structures as predicted phases, read back from their CIF text as the library would."""
    records = []
    for x in result.candidates:
        if x.structure is None or (phases and x.name not in phases and x.formula not in phases):
            continue
        structure = Structure.from_str(predicted_cif(result, x.name), fmt="cif")
        records.append(PhaseRecord(x.name, structure, "predicted", f"alloyflow search: {x.method} of {x.parent}"))
    return records


def hulls_and_choice(makers: Makers, s: StudySettings, records: dict[str, list[PhaseRecord]]):
    """The hull flow of every system and the ``choose_barriers`` job over them (whose output is the study's)."""
    relax_jobs: dict = {}
    hull_flows, by_name = [], {}
    hull_maker = HullFlowMaker(relax_maker=makers.relax, references=dict(s.references))
    for system, phases in records.items():
        flow = hull_maker.make(system, phases, relax_jobs)
        for j in flow.jobs:
            j.metadata.setdefault("alloyflow_stage", f"hull {system}")
        hull_flows.append(flow)
        for p in phases:
            by_name.setdefault(p.name, p)
    settings = asdict(s)
    key = input_hash("study choose", STUDY_VERSION, BARRIER_FLOW_VERSION, [f.output.uuid for f in hull_flows], settings,
                     calculator_info(makers.calculator), makers.neb.key_settings()
                     if hasattr(makers.neb, "key_settings") else makers.neb.settings(),
                     {n: r.as_dict() for n, r in sorted(by_name.items())})
    screen = makers.screen if s.screen else None
    if screen is not None and s.screen_factor is not None:
        from dataclasses import replace as _with

        screen = _with(screen, factor=s.screen_factor)
    if screen is not None:
        key = input_hash(key, screen.settings(), screen.factor)
    choose = choose_barriers([f.output for f in hull_flows], by_name, settings, makers.relax, makers.neb,
                             makers.calculator, key, makers.elastic, screen)
    keyed(choose, key, label="choose barrier phases")
    choose.metadata.update({DYNAMIC: True, "alloyflow_kind": "assembly", "alloyflow_stage": "choose barrier phases"})
    exposing_store(choose)
    return hull_flows, choose


@job
def study_hulls(search_results: list, records: dict, settings: dict, relax_maker, neb_maker, calculator: str,
                elastic_maker=None, screen_maker=None):
    """Add each search's predicted phases to its system's library phases; replace this job by the hull flows
    and the barrier choice (the jobs the store lacks)."""
    s = StudySettings(**settings)
    results = [SearchResult.model_validate(as_dict(r)) for r in search_results]
    phases = {system: [r if isinstance(r, PhaseRecord) else PhaseRecord.from_dict(r) for r in rs]
              for system, rs in records.items()}
    for result, system in zip(results, s.systems, strict=True):
        known = {p.name for p in phases[system]}
        phases[system] += [r for r in predicted_records(result, s.phases) if r.name not in known]
    hull_flows, choose = hulls_and_choice(Makers(calculator, relax_maker, None, neb_maker, elastic_maker, screen_maker),
                                          s, phases)
    return Response(replace=replacement([*hull_flows, choose], choose.output, "study hulls"))


def study_flow(settings: StudySettings, library: StructureLibrary | None = None, makers: Makers | None = None) -> Flow:
    """The study flow of ``settings`` on its calculator (VASP, GPAW or an ML potential)."""
    makers = makers or makers_for(settings.calculator, n_images=settings.n_images, fmax=settings.fmax,
                                  endpoint_trials=settings.endpoint_trials, incar=settings.incar or None,
                                  climb=settings.climb, screen=settings.screen)
    return StudyFlowMaker(makers=makers, settings=settings).make(library)
