"""The hull flow: relax every candidate phase of a system, then build its hull and voltage curve in a job.

``HullFlowMaker`` receives its relax maker (``makers_for(calculator).relax``)
and returns a flow of one keyed relaxation per phase and a ``hull_document``
job that turns their documents into a ``HullDocument``. The same flow runs on
the local engine (``alloyflow hull``) and on FireWorks (``alloyflow submit
hull``); the hull document is what ``alloyflow report`` reads back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobflow import Flow, Maker, job

from alloyflow.analysis.hull import LOWEST, build_hull, entries_from_documents, references_for
from alloyflow.analysis.voltage import voltage_profile
from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, check_elements
from alloyflow.engine import ResultStore, RunSummary, run_flow
from alloyflow.engine.keys import input_hash, keyed
from alloyflow.engine.store import as_dict
from alloyflow.structures.library import Phase, StructureLibrary, parse_system, primitive
from alloyflow.workflows.jobs.backends import relax_maker_for
from alloyflow.workflows.jobs.relax import RelaxationDocument, RelaxMaker
from alloyflow.workflows.schemas.study import HullDocument

HULL_VERSION = 2
"""Bump when ``hull_document`` changes what a stored hull document means."""


def hull_from_documents(system: str, docs: list[RelaxationDocument], references: dict | None = None) -> HullDocument:
    """The hull and voltage curve of ``system`` from relaxation documents (pure).

    ``references``: ``{element: phase name or "lowest"}``, elemental references chosen instead of the
    element's own phase (``alloyflow.analysis.hull.reference_entries``); the voltage curve uses the same.
    """
    entries = entries_from_documents(docs)
    hull = build_hull(entries, system, references)
    try:
        voltage = voltage_profile(entries, host=hull.host, working_ion="Li", references=references)
    except ValueError as exc:  # no stable Li-M compound: a hull, but no voltage curve
        hull.warnings.append(str(exc))
        voltage = None
    return HullDocument(system=system, calculator=hull.calculator, hull=hull, voltage=voltage,
                        relaxation_keys=[d.input_hash for d in docs])


@job
def hull_document(relaxations: list, system: str, references: dict | None = None) -> HullDocument:
    """Collect the relaxation documents of a system into its ``HullDocument``."""
    docs = [RelaxationDocument.model_validate(as_dict(r)) for r in relaxations]
    return hull_from_documents(system, docs, references)


def check_references(references: dict | None, systems: list[str], library: StructureLibrary) -> None:
    """Refuse a chosen elemental reference that no system has, before any job exists.

    ``references`` maps an element to the name of one of its library phases (``{"Sn": "Sn_alpha"}``) or
    to ``"lowest"``. The message names the element's phases.
    """
    for el, name in (references or {}).items():
        mine = [s for s in systems if el in parse_system(s)]
        if not mine:
            raise ValueError(f"reference {el}={name}: {el} is not an element of {', '.join(systems)}")
        names = sorted({p.name for s in mine for p in library.phases(s) if p.elements == (el,)})
        if name not in names and name != LOWEST:
            raise ValueError(f"reference {el}={name}: no {el} phase named {name!r}; {el} phases: {', '.join(names)} "
                             f"(or {LOWEST})")


def candidate_phases(system: str, calculator: str, library: StructureLibrary,
                     phases: list[str] | None = None, systems: list[str] | None = None) -> list[Phase]:
    """The library's phases of ``system`` (``phases`` restricts them; the elements always stay), checked.

    A name in ``phases`` (a phase name or reduced formula) that matches no phase is an error naming it and
    listing the known ones: a typo must not shrink the hull silently. ``systems``: the systems the names
    may belong to (a study's, whose ``--phases`` name phases of each); ``[system]`` for one system. The
    default accepts a phase of any system of the library and refuses only names it does not know at all.
    """
    check_elements(calculator, parse_system(system), where=f"system {system}")
    candidates = library.phases(system)
    if phases:
        wanted = set(phases)
        pool = library.all() if systems is None else [p for s in systems for p in library.phases(s)]
        known = {p.name for p in pool} | {p.formula for p in pool}
        unknown = [name for name in phases if name not in known]
        if unknown:
            scope = system if systems is None else ", ".join(systems)
            listed = {p.name for p in candidates} | {p.formula for p in candidates} if systems is None else known
            raise ValueError(f"unknown phase(s) {', '.join(unknown)} in {scope}; known: {', '.join(sorted(listed))}")
        candidates = [p for p in candidates if p.name in wanted or p.formula in wanted or len(p.elements) == 1]
    for p in candidates:
        check_elements(calculator, p.elements, where=str(p.path))
    return candidates


def relax_job(relax_maker, phase: Phase):
    """The keyed relaxation of a library phase: one key per (primitive structure, maker, calculator)."""
    meta = {"phase": phase.name, "status": phase.status, "source": phase.source}
    return relax_maker.keyed_job(primitive(phase.structure), label=phase.name, metadata=meta)


@dataclass
class HullMaker(Maker):
    """A flow of one keyed relaxation per phase (no hull job; see ``HullFlowMaker``)."""

    name: str = "hull"
    relax_maker: RelaxMaker = field(default_factory=RelaxMaker)

    def make(self, phases: list[Phase]) -> Flow:
        return Flow([relax_job(self.relax_maker, p) for p in phases], name=self.name)


@dataclass
class HullFlowMaker(Maker):
    """Relax every phase of a system and build its hull and voltage curve.

    Parameters
    ----------
    name : str
        Flow name prefix.
    relax_maker : Maker
        Any keyed relax maker (``makers_for(calculator).relax``).
    references : dict
        ``{element: phase name or "lowest"}``: elemental references chosen instead of each element's
        own phase (e.g. ``{"Sn": "Sn_alpha"}``); elements of other systems are ignored.
    """

    name: str = "hull"
    relax_maker: RelaxMaker = field(default_factory=RelaxMaker)
    references: dict = field(default_factory=dict)

    def make(self, system: str, phases: list[Phase], relax_jobs: dict | None = None) -> Flow:
        """The flow of ``system``; ``relax_jobs`` (uuid -> job) shares relaxations with other systems' flows.

        A job can belong to one flow only: a relaxation already in
        ``relax_jobs`` (the Li element of Li-In and Li-Sn) is referenced, not added again.
        """
        relax_jobs = {} if relax_jobs is None else relax_jobs
        own, outputs = [], []
        for phase in phases:
            j = relax_job(self.relax_maker, phase)
            if j.uuid not in relax_jobs:
                relax_jobs[j.uuid] = j
                own.append(j)
            outputs.append(relax_jobs[j.uuid].output)
        refs = references_for(self.references, system)
        doc = hull_document(outputs, system, refs or None)
        keyed(doc, input_hash("hull document", HULL_VERSION, system, [o.uuid for o in outputs],
                              *([refs] if refs else [])), label=f"hull {system}")
        doc.metadata["alloyflow_kind"] = "assembly"
        return Flow([*own, doc], output=doc.output, name=f"{self.name} {system}")


def hull_flow_for(system: str, calculator: str = DEFAULT_CALCULATOR, library: StructureLibrary | None = None,
                  phases: list[str] | None = None, relax_maker=None, references: dict | None = None) -> Flow:
    """The hull flow of a library system on a registry calculator (``references``: see ``HullFlowMaker``)."""
    library = library or StructureLibrary()
    candidates = candidate_phases(system, calculator, library, phases)
    check_references(references, [system], library)
    maker = relax_maker or relax_maker_for(calculator)
    return HullFlowMaker(name=f"alloyflow hull ({calculator})", relax_maker=maker,
                         references=dict(references or {})).make(system, candidates)


def run_hull_relaxations(
    system: str,
    store: ResultStore,
    calculator: str = DEFAULT_CALCULATOR,
    library: StructureLibrary | None = None,
    phases: list[str] | None = None,
    relax_maker: RelaxMaker | None = None,
    progress=None,
) -> tuple[list[RelaxationDocument], RunSummary]:
    """Relax the system's phases (reusing stored ones) and return their documents."""
    library = library or StructureLibrary()
    maker = relax_maker or relax_maker_for(calculator)
    flow = HullMaker(relax_maker=maker).make(candidate_phases(system, calculator, library, phases))
    summary = run_flow(flow, store, progress=progress)
    docs = [store.document(j.uuid, RelaxationDocument) for j in flow.jobs]
    return docs, summary


__all__ = ["HullMaker", "HullFlowMaker", "hull_document", "hull_from_documents", "hull_flow_for", "check_references",
           "candidate_phases", "run_hull_relaxations", "entries_from_documents", "calculator_info"]
