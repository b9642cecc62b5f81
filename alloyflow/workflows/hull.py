"""The hull flow: relax every phase of a system, then hand entries to analysis."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobflow import Flow, Maker
from pymatgen.entries.computed_entries import ComputedStructureEntry

from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, check_elements
from alloyflow.structures.library import Phase, StructureLibrary, parse_system
from alloyflow.workflows.engine import ResultStore, RunSummary, run_cached
from alloyflow.workflows.relax import RelaxationDocument, RelaxMaker


def primitive(structure):
    """Relax the primitive cell: Li17Sn4's 420-atom conventional cell has 105 atoms."""
    prim = structure.get_primitive_structure(tolerance=0.01)
    return prim if len(prim) < len(structure) else structure.copy()


@dataclass
class HullMaker(Maker):
    """A flow of one relaxation per phase, each keyed by its inputs."""

    name: str = "hull"
    relax_maker: RelaxMaker = field(default_factory=RelaxMaker)

    def make(self, phases: list[Phase]) -> Flow:
        jobs = []
        for phase in phases:
            structure = primitive(phase.structure)
            meta = {"phase": phase.name, "status": phase.status, "source": phase.source}
            jobs.append(self.relax_maker.keyed_job(structure, label=phase.name, metadata=meta))
        return Flow(jobs, name=self.name)


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
    elements = parse_system(system)
    check_elements(calculator, elements, where=f"system {system}")
    candidates = library.phases(system)
    if phases:
        wanted = set(phases)
        candidates = [p for p in candidates if p.name in wanted or p.formula in wanted or len(p.elements) == 1]
    for p in candidates:
        check_elements(calculator, p.elements, where=str(p.path))
    from alloyflow.workflows.submit import relax_maker_for

    maker = relax_maker or relax_maker_for(calculator)
    flow = HullMaker(relax_maker=maker).make(candidates)
    summary = run_cached(flow, store, progress=progress)
    docs = [RelaxationDocument.model_validate(_as_dict(store.output(j.uuid))) for j in flow.jobs]
    return docs, summary


def _as_dict(output):
    return output if isinstance(output, dict) else output.model_dump()


def entries_from_documents(docs: list[RelaxationDocument]) -> list[ComputedStructureEntry]:
    """One ``ComputedStructureEntry`` per relaxed phase, provenance in ``data``."""
    entries = []
    for doc in docs:
        entries.append(
            ComputedStructureEntry(
                doc.structure,
                doc.energy,
                entry_id=doc.label,
                data={
                    "phase": doc.label,
                    "status": doc.metadata.get("status", ""),
                    "source": doc.metadata.get("source", ""),
                    "converged": doc.converged,
                    "max_force": doc.max_force,
                    "calculator": doc.calculator,
                    "input_hash": doc.input_hash,
                },
            )
        )
    return entries


__all__ = ["HullMaker", "run_hull_relaxations", "entries_from_documents", "calculator_info"]
