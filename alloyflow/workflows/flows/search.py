"""Tie-line structure search: generate, screen, relax, deduplicate, rebuild the hull.

The funnel, every step a job in the ``ResultStore`` keyed by its inputs, so a
rerun (after a kill, or after the budget ran out) reuses what finished:

1. relax the library's phases of the system (the same jobs as ``alloyflow hull``);
2. per composition, one job generates orderings and prototype decorations,
   Vegard-scaled with the *relaxed* elements' volumes;
3. the dilute proxy (one Li in an N-site host supercell) is relaxed;
4. single points on all candidates, in batch jobs of ``SCREEN_BATCH``;
5. per composition the ``keep_per_composition`` lowest distinct candidates
   are relaxed, best single-point hull distance first, so that a budget cut
   leaves the most promising ones done;
6. relaxed structures are deduplicated with ``StructureMatcher`` (against
   each other and the library); survivors are re-relaxed with the hull's
   settings, join the library as ``predicted``, and the hull is rebuilt.

The budget is wall time for the whole call. Screening stops at
``SCREEN_SHARE`` of it so that relaxations always get the rest; no job is
started after the deadline, stored jobs are reused regardless.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobflow import job
from pydantic import BaseModel, Field
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element, Structure

from alloyflow.analysis.hull import HullResult, build_hull, phase_diagram
from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info
from alloyflow.engine.progress import stage
from alloyflow.structures.library import StructureLibrary
from alloyflow.structures.search import (
    Candidate,
    bct_c_over_a,
    dilute_candidate,
    ordering_candidates,
    prototype_candidates,
    target_compositions,
)
from alloyflow.engine import (
    JobFailed,
    ResultStore,
    RunSummary,
    input_hash,
    keyed,
    run_cached,
    structure_fingerprint,
)
from alloyflow.workflows.flows.hull import entries_from_documents, run_hull_relaxations
from alloyflow.workflows.jobs.relax import RelaxationDocument, RelaxMaker

NEAR_HULL = 0.025  # eV/atom: about kT at room temperature, the "within 25 meV/atom"
SCREEN_BATCH = 24  # candidates per single-point job: one store write per batch, little lost on a kill
SCREEN_SHARE = 0.6  # fraction of the budget screening may use; relaxations get the rest
SEARCH_VERSION = 2  # bump when candidate generation changes, so stored generations are not reused


class SearchCandidate(BaseModel):
    name: str
    formula: str
    x_li: float
    method: str
    parent: str
    natoms: int
    single_point_e_above_hull: float | None = Field(None, description="eV/atom, unrelaxed, vs the library hull")
    relaxed: bool = False
    tight: bool = Field(False, description="re-relaxed with the hull's settings (else the loose search relaxation)")
    converged: bool | None = None
    e_above_hull: float | None = Field(None, description="eV/atom on the new hull")
    duplicate_of: str | None = None
    structure: dict | None = Field(None, description="pymatgen Structure.as_dict()")


class CompositionSummary(BaseModel):
    formula: str
    x_li: float
    generated: int
    screened: int
    relaxed: int
    best_single_point: str | None = None
    best_single_point_e_above_hull: float | None = None
    best_relaxed: str | None = None
    best_relaxed_e_above_hull: float | None = None


class SearchResult(BaseModel):
    system: str
    calculator: dict
    settings: dict
    generated: int
    screened: int
    relaxed: int
    candidates: list[SearchCandidate] = Field(description="relaxed, deduplicated new structures (and dilute proxy)")
    near_hull: list[SearchCandidate]
    rediscovered: dict[str, str] = Field(default_factory=dict, description="candidate -> library phase it matches")
    compositions: list[CompositionSummary]
    dilute: SearchCandidate | None = None
    hull: HullResult | None = None
    complete: bool
    stopped: str = ""
    failed: list[str] = Field(default_factory=list)
    jobs_computed: int = 0
    jobs_reused: int = 0
    wall_seconds: float


# --------------------------------------------------------------------------- jobs


def _to_structure(x) -> Structure:
    return x if isinstance(x, Structure) else Structure.from_dict(x)


def _candidate_dict(c: Candidate) -> dict:
    return {"name": c.name, "structure": c.structure, "method": c.method, "parent": c.parent, "info": c.info}


def _doc(out) -> RelaxationDocument | None:
    if out is None:
        return None
    return RelaxationDocument.model_validate(out if isinstance(out, dict) else out.model_dump())


def _candidate(d: dict) -> Candidate:
    return Candidate(d["name"], _to_structure(d["structure"]), d["method"], d["parent"], dict(d.get("info") or {}))


@job
def generate_job(system: str, formula: str, volumes: dict, bct_ca, max_sites: int, per_composition: int,
                 prototypes: bool) -> list[dict]:
    comps = [Composition(formula)]
    cands = ordering_candidates(system, comps, volumes, max_sites, per_composition, bct_ca=bct_ca)
    if prototypes:
        cands += prototype_candidates(system, comps, volumes, max_sites)
    return [_candidate_dict(c) for c in cands]


@job
def screen_job(structures: list, names: list[str], calculator: str) -> list[dict]:
    from pymatgen.io.ase import AseAtomsAdaptor

    from alloyflow.workflows.jobs.batched import evaluate_batch

    atoms = [AseAtomsAdaptor.get_atoms(_to_structure(s)) for s in structures]
    # One at a time: batching 16-atom cells through SevenNet was slower per structure here.
    results = evaluate_batch(calculator, atoms, batched=False)
    return [{"name": n, "energy_per_atom": e / len(a)} for n, a, (e, _) in zip(names, atoms, results, strict=True)]


# --------------------------------------------------------------------------- runner with a budget


@dataclass
class _Runner:
    store: ResultStore
    seconds: float
    max_new_jobs: int | None = None
    t0: float = field(default_factory=time.perf_counter)
    summary: RunSummary = field(default_factory=RunSummary)
    failed: list[str] = field(default_factory=list)
    stopped: str = ""

    def out_of_time(self, share: float = 1.0) -> bool:
        if self.max_new_jobs is not None and self.summary.computed >= self.max_new_jobs:
            self.stopped = self.stopped or f"stopped after {self.max_new_jobs} new jobs"
            return True
        if time.perf_counter() - self.t0 >= share * self.seconds:
            self.stopped = self.stopped or f"budget of {self.seconds / 60:.1f} min used up"
            return True
        return False

    def run(self, jobs: list, bar, share: float = 1.0) -> bool:
        """Run (or reuse) ``jobs`` in order; False if the budget stopped them."""
        bar.start(len(jobs))
        tick = lambda label, reused: bar(label, reused)  # noqa: E731 - no .start: counted above
        for j in jobs:
            if not self.store.has(j.uuid) and self.out_of_time(share):
                return False
            try:
                self.summary += run_cached(j, self.store, progress=tick)
            except JobFailed as exc:  # one bad candidate must not end the search
                self.failed.append(exc.label)
        return True

    def output(self, j):
        return self.store.output(j.uuid) if self.store.has(j.uuid) else None


def _meta(c: Candidate) -> dict:
    """Provenance carried by a relaxation document into the hull entries."""
    return {"phase": c.name, "status": "predicted", "source": c.source, "method": c.method, "parent": c.parent}


def _keyed(j, kind: str, label: str, *parts):
    """Key a search job on everything that determines its output (``parts``)."""
    j.name = f"search {kind} {label}"
    return keyed(j, input_hash("search", kind, SEARCH_VERSION, *parts), label=j.name)


# --------------------------------------------------------------------------- deduplication


def deduplicate(items: list[tuple[str, Structure, float]], references: dict[str, Structure] | None = None,
                matcher: StructureMatcher | None = None) -> tuple[list[str], dict[str, str]]:
    """Unique structures among ``(name, structure, energy_per_atom)``, lowest energy kept.

    Returns the kept names and ``{name: what it duplicates}``, where the
    latter is a reference (library) name or a kept candidate.
    """
    matcher = matcher or StructureMatcher()
    references = references or {}
    kept: list[tuple[str, Structure]] = []
    duplicates: dict[str, str] = {}
    for name, s, _ in sorted(items, key=lambda t: (t[2], t[0])):
        formula = s.composition.reduced_formula
        pool = list(references.items()) + kept  # library phases win: a match there is a rediscovery
        match = next((o for o, os_ in pool if os_.composition.reduced_formula == formula and matcher.fit(s, os_)), None)
        if match:
            duplicates[name] = match
        else:
            kept.append((name, s))
    return [k for k, _ in kept], duplicates


def _relax_queue(ranked: dict[str, list[Candidate]], sp: dict[str, float], keep: int, window: float,
                 matcher: StructureMatcher) -> list[Candidate]:
    """The ``keep`` lowest distinct candidates per composition within ``window`` of the library hull,
    ordered rank by rank, best composition first: a budget cut then leaves every composition's
    best candidate relaxed before anyone's second."""
    picks: dict[str, list[Candidate]] = {f: [] for f in ranked}
    for f, cs in ranked.items():
        for x in cs:
            if len(picks[f]) >= keep or sp[x.name] > window:
                break
            if not any(matcher.fit(x.structure, y.structure) for y in picks[f]):
                picks[f].append(x)
    order = sorted((f for f in picks if picks[f]), key=lambda f: (sp[picks[f][0].name], f))
    return [picks[f][r] for r in range(keep) for f in order if len(picks[f]) > r]


# --------------------------------------------------------------------------- the search


def run_search(
    system: str,
    store: ResultStore,
    calculator: str = DEFAULT_CALCULATOR,
    max_sites: int = 16,
    compositions: list[str] | None = None,
    budget_minutes: float = 10.0,
    keep_per_composition: int = 2,
    library: StructureLibrary | None = None,
    progress: bool = True,
    per_composition: int = 12,
    prototypes: bool = True,
    dilute_sites: int | None = 36,
    dilute_mode: str = "substitution",
    relax_window: float = 0.2,
    relax_maker: RelaxMaker | None = None,
    max_new_jobs: int | None = None,
) -> SearchResult:
    """Search the Li–M tie line for structures the library lacks; see the module docstring.

    ``per_composition`` caps the orderings screened per composition (after a
    geometric pre-rank); ``relax_window`` (eV/atom) skips relaxing candidates
    whose single point lies further above the library hull; ``dilute_sites``
    = None skips the dilute proxy (``dilute_mode``: "substitution" or
    "interstitial"); ``max_new_jobs`` stops like the budget
    does after that many newly computed jobs (for tests).
    """
    comps = sorted(target_compositions(system, compositions, max_sites), key=lambda c: (c.num_atoms, c.reduced_formula))
    library = library or StructureLibrary()
    runner = _Runner(store, budget_minutes * 60.0, max_new_jobs)
    # Looser than the hull's 0.02 eV/Å for ranking (about 2 s per 16-atom cell here); survivors are
    # re-relaxed tightly below. Symmetry is kept: the ordering is what is being screened.
    maker = relax_maker or RelaxMaker(calculator=calculator, fmax=0.05, steps=200)
    settings = dict(max_sites=max_sites, compositions=compositions, budget_minutes=budget_minutes,
                    keep_per_composition=keep_per_composition, per_composition=per_composition,
                    prototypes=prototypes, dilute_sites=dilute_sites, dilute_mode=dilute_mode,
                    relax_window=relax_window, relax=maker.settings())
    calc_info = calculator_info(calculator)

    with stage(f"{system} library relaxations", enabled=progress) as bar:
        ref_docs, summary = run_hull_relaxations(system, store, calculator=calculator, library=library, progress=bar)
    runner.summary += summary
    ref_entries = entries_from_documents(ref_docs)
    pd = phase_diagram(ref_entries, system)
    li, host = [str(e) for e in pd.elements]
    els = {el: min((d for d in ref_docs if d.formula == el), key=lambda d: d.energy_per_atom) for el in (li, host)}
    volumes = {el: round(d.volume_per_atom, 4) for el, d in els.items()}
    bct_ca = bct_c_over_a(els[host].structure)
    bct_ca = round(bct_ca, 4) if bct_ca else None
    settings.update(vegard_volumes=volumes, bct_c_over_a=bct_ca)  # parents scaled with the relaxed elements

    def sp_hull(comp: Composition, energy_per_atom: float) -> float:
        return float(energy_per_atom - pd.get_hull_energy_per_atom(comp))  # both total energies per atom

    # Generation and screening, one composition at a time (cheap cells first).
    gen_args = [(system, c.reduced_formula, volumes, bct_ca, max_sites, per_composition, prototypes) for c in comps]
    gen_jobs = [_keyed(generate_job(*a), "generate", a[1], a[1], a[0], *a[2:]) for a in gen_args]
    candidates: dict[str, list[Candidate]] = {}
    energies: dict[str, float] = {}
    dilute_doc = None
    with stage(f"{system} candidates", enabled=progress) as bar:
        if dilute_sites:
            dil = dilute_candidate(els[host].structure, dilute_sites, dilute_mode)
            dj = maker.keyed_job(dil.structure, label=f"search {dil.name}", metadata=_meta(dil))
            runner.run([dj], bar)
            dilute_doc = _doc(runner.output(dj))
        for c, gj in zip(comps, gen_jobs, strict=True):
            if not runner.run([gj], bar, SCREEN_SHARE):
                break
            cands = [_candidate(d) for d in runner.output(gj)]
            candidates[c.reduced_formula] = cands
            batches = [cands[i:i + SCREEN_BATCH] for i in range(0, len(cands), SCREEN_BATCH)]
            sjobs = [_keyed(screen_job([x.structure for x in b], [x.name for x in b], calculator), "screen",
                            f"{c.reduced_formula} {i}", [structure_fingerprint(x.structure) for x in b], calc_info)
                     for i, b in enumerate(batches)]
            done = runner.run(sjobs, bar, SCREEN_SHARE)
            for b, sj in zip(batches, sjobs, strict=True):
                for x, row in zip(b, runner.output(sj) or [], strict=False):  # rows are in batch order
                    energies[x.name] = row["energy_per_atom"]
            if not done:
                break

    # Relax the lowest distinct candidates of each composition, most promising composition first.
    by_name = {x.name: x for cs in candidates.values() for x in cs}
    sp = {n: sp_hull(by_name[n].composition, e) for n, e in energies.items()}
    ranked = {f: sorted((x for x in cs if x.name in sp), key=lambda x: (sp[x.name], x.name))
              for f, cs in candidates.items()}
    matcher = StructureMatcher()
    queue = _relax_queue(ranked, sp, keep_per_composition, relax_window, matcher)
    relax_jobs = {}
    for x in queue:
        relax_jobs[x.name] = maker.keyed_job(x.structure, label=f"search {x.name}", metadata=_meta(x))
    with stage(f"{system} relaxations of candidates", enabled=progress) as bar:
        runner.run(list(relax_jobs.values()), bar)
    docs = {name: d for name, rj in relax_jobs.items() if (d := _doc(runner.output(rj))) is not None}

    # Deduplicate, add survivors to the library, rebuild the hull.
    refs = {d.label: d.structure for d in ref_docs if len(Composition(d.formula)) == 2}
    kept, dups = deduplicate([(n, d.structure, d.energy_per_atom) for n, d in docs.items()], refs, matcher)
    rediscovered = {n: m for n, m in dups.items() if m in refs}
    # Survivors are re-relaxed with the hull's own settings (fmax 0.02), the best of each composition
    # first: the loose search relaxation is up to a few meV/atom high, as large as the distances at stake.
    tight = RelaxMaker(calculator=calculator)
    firsts: dict[str, str] = {}
    for n in kept:  # kept is in energy order
        firsts.setdefault(docs[n].formula, n)
    best_first = list(firsts.values()) + [n for n in kept if n not in firsts.values()]
    to_polish = {n: docs[n] for n in best_first} | ({dil.name: dilute_doc} if dilute_doc else {})
    polish_jobs = {n: tight.keyed_job(d.structure, label=f"search {n} tight", metadata=d.metadata)
                   for n, d in to_polish.items()}
    with stage(f"{system} final relaxations", enabled=progress) as bar:
        runner.run(list(polish_jobs.values()), bar)
    polished = {n: d for n, pj in polish_jobs.items() if (d := _doc(runner.output(pj))) is not None}
    docs.update({n: d for n, d in polished.items() if n in docs})
    if dilute_doc and dil.name in polished:
        dilute_doc = polished[dil.name]
    ref_names = {d.label for d in ref_docs}
    new_docs = [docs[n] for n in kept] + ([dilute_doc] if dilute_doc else [])
    new_docs = [d for d in new_docs if d.metadata["phase"] not in ref_names]  # reloaded from an earlier search
    for d in new_docs:
        d.label = d.metadata["phase"]
        library.add_structure(d.label, d.structure, status="predicted", method=d.metadata["method"],
                              parent=d.metadata["parent"], source=d.metadata["source"])
    hull = build_hull(entries_from_documents(ref_docs + new_docs), system)
    e_hull = {p.name: p.e_above_hull for p in hull.phases}

    def summary_of(x: Candidate, doc: RelaxationDocument | None) -> SearchCandidate:
        s = doc.structure if doc else x.structure
        return SearchCandidate(
            name=x.name, formula=x.formula, x_li=round(x.x_li, 6), method=x.method, parent=x.parent, natoms=len(s),
            single_point_e_above_hull=sp.get(x.name), relaxed=doc is not None, tight=x.name in polished,
            converged=doc.converged if doc else None,
            e_above_hull=e_hull.get(x.name), duplicate_of=dups.get(x.name), structure=s.as_dict())

    found = [summary_of(by_name[n], docs[n]) for n in kept]
    dilute = summary_of(dil, dilute_doc) if dilute_sites else None
    found_all = found + ([dilute] if dilute and dilute.relaxed else [])
    comp_rows = []
    for c in comps:
        f = c.reduced_formula
        cs = candidates.get(f, [])
        best_sp = ranked.get(f, [None])[0] if ranked.get(f) else None
        mine = [x for x in found if x.formula == f]
        best = min(mine, key=lambda x: x.e_above_hull) if mine else None
        comp_rows.append(CompositionSummary(
            formula=f, x_li=round(float(c.get_atomic_fraction(Element(li))), 6), generated=len(cs),
            screened=sum(x.name in sp for x in cs), relaxed=sum(x.name in docs for x in cs),
            best_single_point=best_sp.name if best_sp else None,
            best_single_point_e_above_hull=sp[best_sp.name] if best_sp else None,
            best_relaxed=best.name if best else None, best_relaxed_e_above_hull=best.e_above_hull if best else None))
    complete = (not (runner.stopped or runner.failed) and len(candidates) == len(comps)
                and len(docs) == len(relax_jobs) and len(polished) == len(polish_jobs))
    return SearchResult(
        system=hull.system, calculator=calc_info, settings=settings,
        generated=sum(len(v) for v in candidates.values()) + (1 if dilute_sites else 0),
        screened=len(energies), relaxed=len(docs) + (1 if dilute_doc else 0),
        candidates=sorted(found_all, key=lambda x: (x.x_li, x.e_above_hull)),
        near_hull=sorted([x for x in found_all if x.e_above_hull is not None and x.e_above_hull <= NEAR_HULL],
                         key=lambda x: x.x_li),
        rediscovered=rediscovered, compositions=comp_rows, dilute=dilute, hull=hull, complete=complete,
        stopped=runner.stopped, failed=runner.failed, jobs_computed=runner.summary.computed,
        jobs_reused=runner.summary.reused, wall_seconds=round(time.perf_counter() - runner.t0, 2))


# --------------------------------------------------------------------------- outputs


def _mev(value: float | None, missing: str) -> str:
    return f"{value * 1000:.1f} meV/atom" if value is not None else missing


def format_search_summary(result: SearchResult) -> str:
    lines = [
        f"{result.system} structure search on {result.calculator.get('label', '?')}: "
        f"{result.generated} generated, {result.screened} screened, {result.relaxed} relaxed, "
        f"{len(result.candidates)} new after deduplication; {result.wall_seconds:.0f} s "
        f"({result.jobs_computed} jobs computed, {result.jobs_reused} reused)",
    ]
    if not result.complete:
        lines.append(f"INCOMPLETE ({result.stopped or 'some jobs failed'}): run the same command again to resume")
    near = {}
    for x in result.near_hull:  # the best one per composition; search.json lists them all
        if x.formula not in near or x.e_above_hull < near[x.formula].e_above_hull:
            near[x.formula] = x
    lines.append(f"within {NEAR_HULL * 1000:.0f} meV/atom of the hull ({len(result.near_hull)} structures, "
                 f"{len(near)} compositions; lowest of each):")
    for x in sorted(near.values(), key=lambda x: x.x_li):
        lines.append(f"  {x.formula:<9}{x.e_above_hull * 1000:6.1f} meV/atom  {x.name}  ({x.method} of {x.parent})")
    if not near:
        lines.append("  none")
    lines.append(f"{'composition':<12}{'gen':>5}{'scr':>5}{'rlx':>5}  {'single point':>13}  {'relaxed, new hull':>18}")
    for c in result.compositions:
        spv, rv = _mev(c.best_single_point_e_above_hull, "-"), _mev(c.best_relaxed_e_above_hull, "-")
        lines.append(f"{c.formula:<12}{c.generated:>5}{c.screened:>5}{c.relaxed:>5}  {spv:>13}  {rv:>18}")
    if result.hull:
        lines.append(f"new hull, stable: {', '.join(result.hull.stable_set)}")
    if result.rediscovered:
        lines.append("rediscovered library phases: " + ", ".join(f"{k} = {v}" for k, v in result.rediscovered.items()))
    if result.dilute:
        d = result.dilute
        lines.append(f"dilute proxy {d.formula} ({d.parent}): {_mev(d.e_above_hull, 'not relaxed yet')} above the hull")
    if result.failed:
        lines.append(f"failed jobs (retried next run): {', '.join(result.failed)}")
    return "\n".join(lines)


def write_search_outputs(out_dir: str | Path, result: SearchResult) -> dict[str, Path]:
    """``<out>/<system>/search.json`` and one CIF per new structure in ``<out>/<system>/predicted/``.

    The CIFs carry ``# SOURCE:``/``# STATUS: predicted`` headers, so
    ``StructureLibrary(user_dirs=[<out>/<system>/predicted])`` reloads them.
    """
    folder = Path(out_dir) / result.system
    pred = folder / "predicted"
    pred.mkdir(parents=True, exist_ok=True)
    for old in pred.glob("*.cif"):  # regenerated from the store: drop what an earlier search wrote
        if old.read_text(errors="replace").startswith("# SOURCE: alloyflow search"):
            old.unlink()
    files = {"search.json": folder / "search.json"}
    files["search.json"].write_text(json.dumps(json.loads(result.model_dump_json()), indent=1))
    for x in result.candidates:
        if x.structure is None:
            continue
        header = (f"# SOURCE: alloyflow search, {x.method} of {x.parent}; relaxed on {result.calculator.get('label')} "
                  f"{result.calculator.get('version')}; {_mev(x.e_above_hull, 'n/a')} above the hull\n"
                  f"# STATUS: predicted (structure search, not an observed phase)\n")
        path = pred / f"{x.name}.cif"
        path.write_text(header + Structure.from_dict(x.structure).to(fmt="cif"))
        files[x.name] = path
    return files


__all__ = ["SearchResult", "SearchCandidate", "CompositionSummary", "run_search", "format_search_summary",
           "write_search_outputs", "deduplicate", "NEAR_HULL"]
