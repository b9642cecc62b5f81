"""Tie-line structure search as a jobflow flow: generate, screen, relax, deduplicate, rebuild the hull.

``SearchFlowMaker(calculator, settings).make(system, library)`` returns a flow
whose every decision is taken inside a job, so it runs unchanged on the local
engine (``alloyflow search``, ``alloyflow study``), on FireWorks and on
jobflow-remote. Each stage is a keyed job that answers ``Response(replace=...)``
with the next keyed jobs (those the store lacks) and the next stage:

1. the library's phases of the system are relaxed (the very jobs of ``alloyflow hull``);
2. ``search_generate``: from the relaxed elements' volumes, one job per
   composition generates orderings and prototype decorations (Vegard-scaled),
   and the dilute proxy (one Li in an N-site host supercell) is relaxed;
3. ``search_screen``: single points on all candidates, in batch jobs of ``SCREEN_BATCH``;
4. ``search_relax``: per composition the ``keep_per_composition`` lowest
   distinct candidates within ``relax_window`` of the library hull are relaxed
   (loosely: fmax 0.05 eV/Å);
5. ``search_polish``: relaxed structures are deduplicated with
   ``StructureMatcher`` (against each other and the library); survivors are
   re-relaxed with the hull's settings;
6. ``collect_search``: the ``SearchResult`` with the hull rebuilt with the survivors.

The work is bounded by counts (compositions, orderings per composition,
structures kept per composition), never by time, so a search gives the same
structures on any machine. ``run_search`` runs the flow locally with an
optional wall-time ``Budget``: when it is used up no new job starts, the
result says the search is incomplete, and the same call resumes it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from jobflow import Flow, Maker, Response, job
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element

from alloyflow.analysis.hull import build_hull, entries_from_documents
from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, get_spec
from alloyflow.engine import Budget, ResultStore, input_hash, keyed, run_flow, structure_fingerprint
from alloyflow.engine.local import DYNAMIC, exposing_store, replacement
from alloyflow.engine.progress import stages
from alloyflow.io.search import NEAR_HULL, format_search_summary, write_search_outputs
from alloyflow.structures.library import StructureLibrary
from alloyflow.structures.search import Candidate, dilute_candidate, ordering_candidates, prototype_candidates
from alloyflow.workflows.flows.hull import candidate_phases, relax_job
from alloyflow.workflows.flows.search_plan import (
    SearchSettings,
    candidate_from_dict,
    candidate_dict,
    SearchContext,
    relaxation_doc,
    candidate_meta,
    to_structure,
    deduplicate,
    relax_queue,
)
from alloyflow.workflows.jobs.backends import relax_maker_for
from alloyflow.workflows.jobs.relax import RelaxationDocument, RelaxMaker
from alloyflow.workflows.schemas.search import CompositionSummary, SearchCandidate, SearchResult

SCREEN_BATCH = 24  # candidates per single-point job: one store write per batch, little lost on a kill
SEARCH_VERSION = 2  # bump when candidate generation changes, so stored generations are not reused
FLOW_VERSION = 2  # bump when a stage changes what it decides (the stage jobs' keys); 2: the dilute proxy in the host's own phase


def _keyed(j, kind: str, label: str, *parts):
    """Key a search job on everything that determines its output (``parts``)."""
    j.name = f"search {kind} {label}"
    return keyed(j, input_hash("search", kind, SEARCH_VERSION, *parts), label=j.name)


def _stage_job(j, system: str, kind: str, key: str):
    """A planning stage: keyed on the search's key, dynamic, no force calls."""
    keyed(j, input_hash("search stage", FLOW_VERSION, kind, key), label=f"search {kind} {system}")
    j.metadata.update({DYNAMIC: True, "alloyflow_kind": "assembly", "alloyflow_stage": f"search {system}"})
    return exposing_store(j)


def _staged(jobs, system: str):
    for j in jobs:
        j.metadata.setdefault("alloyflow_stage", f"search {system}")
    return jobs


# --------------------------------------------------------------------------- keyed work jobs


@job
def generate_job(system: str, formula: str, volumes: dict, bct_ca, max_sites: int, per_composition: int,
                 prototypes: bool) -> list[dict]:
    """Orderings (and prototype decorations) of one composition, Vegard-scaled."""
    comps = [Composition(formula)]
    cands = ordering_candidates(system, comps, volumes, max_sites, per_composition, bct_ca=bct_ca)
    if prototypes:
        cands += prototype_candidates(system, comps, volumes, max_sites)
    return [candidate_dict(c) for c in cands]


@job
def screen_job(structures: list, names: list[str], calculator: str) -> list[dict]:
    """Single-point energies per atom of a batch of candidates."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from alloyflow.workflows.jobs.batched import evaluate_batch

    atoms = [AseAtomsAdaptor.get_atoms(to_structure(s)) for s in structures]
    # One at a time: batching 16-atom cells through SevenNet was slower per structure here.
    results = evaluate_batch(calculator, atoms, batched=False)
    return [{"name": n, "energy_per_atom": e / len(a)} for n, a, (e, _) in zip(names, atoms, results, strict=True)]


# --------------------------------------------------------------------------- stages (decide inside jobs)


@job
def search_generate(ref_docs: list, system: str, settings: dict, calculator: str, loose, tight, key: str):
    """Generation jobs of every composition and the dilute proxy's relaxation; then ``search_screen``."""
    s, ctx = SearchSettings(**settings), SearchContext.of(ref_docs, system)
    comps = ctx.compositions(s)
    gen = [_keyed(generate_job(system, c.reduced_formula, ctx.volumes, ctx.bct_ca, s.max_sites, s.per_composition,
                               s.prototypes), "generate", c.reduced_formula, c.reduced_formula, system, ctx.volumes,
                  ctx.bct_ca, s.max_sites, s.per_composition, s.prototypes) for c in comps]
    dilute = None
    if s.dilute_sites:
        dil = dilute_candidate(ctx.host_structure, s.dilute_sites, s.dilute_mode)
        dilute = loose.keyed_job(dil.structure, label=f"search {dil.name}", metadata=candidate_meta(dil))
    nxt = _stage_job(search_screen(ref_docs, [c.reduced_formula for c in comps], [g.output for g in gen],
                                   dilute.output if dilute else None, system, settings, calculator, loose, tight, key),
                     system, "screen", key)
    work = _staged([*gen, *([dilute] if dilute else [])], system)
    return Response(replace=replacement([*work, nxt], nxt.output, f"search {system} generation"))


@job
def search_screen(ref_docs: list, formulas: list[str], generated: list, dilute, system: str, settings: dict,
                  calculator: str, loose, tight, key: str):
    """Single points of every candidate in batches; then ``search_relax``."""
    info = calculator_info(calculator)
    batches_of = []
    jobs = []
    for formula, cands in zip(formulas, generated, strict=True):
        cands = [candidate_from_dict(d) for d in cands]
        batches = [cands[i:i + SCREEN_BATCH] for i in range(0, len(cands), SCREEN_BATCH)]
        sjobs = [_keyed(screen_job([x.structure for x in b], [x.name for x in b], calculator), "screen",
                        f"{formula} {i}", [structure_fingerprint(x.structure) for x in b], info)
                 for i, b in enumerate(batches)]
        jobs += sjobs
        batches_of.append([sj.output for sj in sjobs])
    nxt = _stage_job(search_relax(ref_docs, formulas, generated, batches_of, dilute, system, settings, calculator,
                                  loose, tight, key), system, "relax", key)
    return Response(replace=replacement([*_staged(jobs, system), nxt], nxt.output, f"search {system} screening"))


@job
def search_relax(ref_docs: list, formulas: list[str], generated: list, screened: list, dilute, system: str,
                 settings: dict, calculator: str, loose, tight, key: str):
    """Relax the lowest distinct candidates of each composition; then ``search_polish``."""
    s, ctx = SearchSettings(**settings), SearchContext.of(ref_docs, system)
    sp: dict[str, float] = {}
    ranked: dict[str, list[Candidate]] = {}
    for formula, cands, batches in zip(formulas, generated, screened, strict=True):
        cands = [candidate_from_dict(d) for d in cands]
        for row in (r for batch in batches for r in batch):
            sp[row["name"]] = ctx.e_above_library_hull(formula, row["energy_per_atom"])
        ranked[formula] = sorted((x for x in cands if x.name in sp), key=lambda x: (sp[x.name], x.name))
    queue = relax_queue(ranked, sp, s.keep_per_composition, s.relax_window, StructureMatcher())
    relax = {x.name: loose.keyed_job(x.structure, label=f"search {x.name}", metadata=candidate_meta(x)) for x in queue}
    nxt = _stage_job(search_polish(ref_docs, formulas, generated, sp, {n: j.output for n, j in relax.items()},
                                   dilute, system, settings, calculator, tight, key), system, "polish", key)
    return Response(replace=replacement([*_staged(list(relax.values()), system), nxt], nxt.output,
                                        f"search {system} relaxations"))


@job
def search_polish(ref_docs: list, formulas: list[str], generated: list, sp: dict, relaxed: dict, dilute,
                  system: str, settings: dict, calculator: str, tight, key: str):
    """Deduplicate, re-relax the survivors with the hull's settings (best of each composition first);
    then ``collect_search``."""
    ctx = SearchContext.of(ref_docs, system)
    docs = {n: relaxation_doc(d) for n, d in relaxed.items()}
    refs = {d.label: d.structure for d in ctx.docs if len(Composition(d.formula)) == 2}
    kept, dups = deduplicate([(n, d.structure, d.energy_per_atom) for n, d in docs.items()], refs, StructureMatcher())
    # the loose search relaxation is up to a few meV/atom high, as large as the distances at stake
    firsts: dict[str, str] = {}
    for n in kept:  # kept is in energy order
        firsts.setdefault(docs[n].formula, n)
    order = list(firsts.values()) + [n for n in kept if n not in firsts.values()]
    to_polish = {n: docs[n] for n in order}
    if dilute is not None:
        d = relaxation_doc(dilute)
        to_polish[d.metadata["phase"]] = d
    polish = {n: tight.keyed_job(d.structure, label=f"search {n} tight", metadata=d.metadata)
              for n, d in to_polish.items()}
    collect = collect_search(ref_docs, formulas, generated, sp, relaxed, {n: j.output for n, j in polish.items()},
                             kept, dups, dilute, system, settings, calculator)
    keyed(collect, input_hash("search collect", FLOW_VERSION, key), label=f"search collect {system}")
    collect.metadata.update({"alloyflow_kind": "assembly", "alloyflow_stage": f"search {system}"})
    return Response(replace=replacement([*_staged(list(polish.values()), system), collect], collect.output,
                                        f"search {system} final relaxations"))


@job
def collect_search(ref_docs: list, formulas: list[str], generated: list, sp: dict, relaxed: dict, polished: dict,
                   kept: list[str], dups: dict, dilute, system: str, settings: dict,
                   calculator: str) -> SearchResult:
    """The ``SearchResult``: new structures after deduplication, their places on the rebuilt hull."""
    ctx = SearchContext.of(ref_docs, system)
    s = SearchSettings(**settings)
    candidates = {f: [candidate_from_dict(d) for d in cands] for f, cands in zip(formulas, generated, strict=True)}
    by_name = {x.name: x for cs in candidates.values() for x in cs}
    docs = {n: relaxation_doc(d) for n, d in relaxed.items()}
    polished = {n: relaxation_doc(d) for n, d in polished.items()}
    docs.update({n: d for n, d in polished.items() if n in docs})
    dilute_doc = relaxation_doc(dilute) if dilute is not None else None
    dil = None
    if dilute_doc is not None:
        dil = dilute_candidate(ctx.host_structure, s.dilute_sites, s.dilute_mode)
        dilute_doc = polished.get(dil.name, dilute_doc)
    ref_names = {d.label for d in ctx.docs}
    new_docs = [docs[n] for n in kept] + ([dilute_doc] if dilute_doc else [])
    new_docs = [d for d in new_docs if d.metadata["phase"] not in ref_names]
    for d in new_docs:
        d.label = d.metadata["phase"]
    hull = build_hull(entries_from_documents(ctx.docs + new_docs), system)
    e_hull = {p.name: p.e_above_hull for p in hull.phases}

    def summary_of(x: Candidate, doc: RelaxationDocument | None) -> SearchCandidate:
        st = doc.structure if doc else x.structure
        return SearchCandidate(
            name=x.name, formula=x.formula, x_li=round(x.x_li, 6), method=x.method, parent=x.parent, natoms=len(st),
            single_point_e_above_hull=sp.get(x.name), relaxed=doc is not None, tight=x.name in polished,
            converged=doc.converged if doc else None, e_above_hull=e_hull.get(x.name),
            duplicate_of=dups.get(x.name), structure=st.as_dict())

    found = [summary_of(by_name[n], docs[n]) for n in kept]
    dilute_row = summary_of(dil, dilute_doc) if dil is not None else None
    found_all = found + ([dilute_row] if dilute_row and dilute_row.relaxed else [])
    rows = []
    for c in ctx.compositions(s):
        f = c.reduced_formula
        cs = candidates.get(f, [])
        ranked = sorted((x for x in cs if x.name in sp), key=lambda x: (sp[x.name], x.name))
        mine = [x for x in found if x.formula == f]
        best = min(mine, key=lambda x: x.e_above_hull) if mine else None
        rows.append(CompositionSummary(
            formula=f, x_li=round(float(c.get_atomic_fraction(Element(ctx.li))), 6), generated=len(cs),
            screened=sum(x.name in sp for x in cs), relaxed=sum(x.name in docs for x in cs),
            best_single_point=ranked[0].name if ranked else None,
            best_single_point_e_above_hull=sp[ranked[0].name] if ranked else None,
            best_relaxed=best.name if best else None, best_relaxed_e_above_hull=best.e_above_hull if best else None))
    return SearchResult(
        system=hull.system, calculator=calculator_info(calculator),
        settings={**asdict(s), "vegard_volumes": ctx.volumes, "bct_c_over_a": ctx.bct_ca},
        generated=sum(len(v) for v in candidates.values()) + (1 if s.dilute_sites else 0),
        screened=len(sp), relaxed=len(docs) + (1 if dilute_doc else 0),
        candidates=sorted(found_all, key=lambda x: (x.x_li, x.e_above_hull)),
        near_hull=sorted([x for x in found_all if x.e_above_hull is not None and x.e_above_hull <= NEAR_HULL],
                         key=lambda x: x.x_li),
        rediscovered={n: m for n, m in dups.items() if m in ref_names}, compositions=rows, dilute=dilute_row,
        hull=hull, complete=True)


# --------------------------------------------------------------------------- the maker


def search_calculator(calculator: str) -> str:
    """The calculator a search runs on: ``calculator`` unless it is DFT, then the default ML potential.

    Screening hundreds of candidates is ML work; with a DFT study the predicted
    structures are then relaxed with DFT in the hull, like every other phase.
    """
    return DEFAULT_CALCULATOR if get_spec(calculator).kind == "dft" else calculator


@dataclass
class SearchFlowMaker(Maker):
    """The tie-line search flow of one system.

    Parameters
    ----------
    name : str
        Flow name prefix.
    calculator : str
        Registry name of the (ASE) calculator that screens and relaxes.
    settings : SearchSettings
        What is enumerated and kept.
    relax_maker : RelaxMaker, optional
        The loose ranking relaxation (default fmax 0.05 eV/Å, 200 steps, symmetry kept).
    tight_maker : RelaxMaker, optional
        The survivors' and library's relaxation (default the hull's, ``relax_maker_for``).
    """

    name: str = "search"
    calculator: str = DEFAULT_CALCULATOR
    settings: SearchSettings = field(default_factory=SearchSettings)
    relax_maker: RelaxMaker | None = None
    tight_maker: RelaxMaker | None = None

    def makers(self) -> tuple[RelaxMaker, RelaxMaker]:
        loose = self.relax_maker or RelaxMaker(calculator=self.calculator, fmax=0.05, steps=200)
        return loose, self.tight_maker or relax_maker_for(self.calculator)

    def make(self, system: str, library: StructureLibrary | None = None, relax_jobs: dict | None = None) -> Flow:
        """The flow of ``system``; ``relax_jobs`` (uuid -> job) shares library relaxations with other flows."""
        self.settings.check(system)
        library = library or StructureLibrary()
        loose, tight = self.makers()
        relax_jobs = {} if relax_jobs is None else relax_jobs
        own, outputs = [], []
        for phase in candidate_phases(system, self.calculator, library):
            j = relax_job(tight, phase)
            if j.uuid not in relax_jobs:
                relax_jobs[j.uuid] = j
                own.append(j)
            outputs.append(relax_jobs[j.uuid].output)
        settings = asdict(self.settings)
        key = input_hash("search flow", FLOW_VERSION, SEARCH_VERSION, system, [o.uuid for o in outputs], settings,
                         calculator_info(self.calculator), loose.settings(), tight.settings())
        start = _stage_job(search_generate(outputs, system, settings, self.calculator, loose, tight, key),
                           system, "generate", key)
        return Flow([*_staged(own, system), start], output=start.output, name=f"{self.name} {system}")


def run_search(
    system: str,
    store: ResultStore,
    calculator: str = DEFAULT_CALCULATOR,
    library: StructureLibrary | None = None,
    progress: bool = True,
    budget_minutes: float | None = None,
    max_new_jobs: int | None = None,
    relax_maker: RelaxMaker | None = None,
    **settings,
) -> SearchResult:
    """Run the search flow of ``system`` on the local engine; see the module docstring.

    ``settings`` are ``SearchSettings`` fields. ``budget_minutes`` and
    ``max_new_jobs`` stop starting new jobs once used up: the result then
    says ``complete=False`` and the same call resumes from the store.
    """
    t0 = time.perf_counter()
    flow = SearchFlowMaker(calculator=calculator, settings=SearchSettings(**settings),
                           relax_maker=relax_maker).make(system, library)
    budget = Budget(budget_minutes * 60.0 if budget_minutes is not None else None, max_new_jobs)
    with stages(enabled=progress) as bars:
        summary = run_flow(flow, store, progress=bars, budget=budget)
    counts = {"jobs_computed": summary.computed, "jobs_reused": summary.reused,
              "wall_seconds": round(time.perf_counter() - t0, 2)}
    if summary.stopped:
        return SearchResult(system=system, calculator=calculator_info(calculator), settings=settings, generated=0,
                            screened=0, relaxed=0, candidates=[], near_hull=[], compositions=[], complete=False,
                            stopped=summary.stopped, **counts)
    return store.document(flow.output.uuid, SearchResult).model_copy(update=counts)


__all__ = ["SearchFlowMaker", "SearchSettings", "SearchResult", "SearchCandidate", "CompositionSummary",
           "run_search", "search_calculator", "format_search_summary", "write_search_outputs", "deduplicate",
           "relax_queue", "NEAR_HULL"]
