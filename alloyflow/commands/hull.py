"""``alloyflow hull``: the hull flow of a system on the local engine, then its files."""

from __future__ import annotations

from pathlib import Path

from alloyflow.calculators import DEFAULT_CALCULATOR
from alloyflow.commands.common import CommandResult, add_predicted, library_for, relaxation_documents
from alloyflow.engine import ResultStore, run_flow
from alloyflow.engine.progress import stage
from alloyflow.engine.store import CorruptDocument
from alloyflow.io.hull import write_hull_outputs
from alloyflow.workflows.flows.hull import candidate_phases, hull_flow_for
from alloyflow.workflows.schemas.study import HullDocument


def hull_for_system(system, store, calculator, library, phases=None, progress=True, out_dir=None, references=None):
    """Run the hull flow of ``system`` and write its files.

    A stored document that turns out corrupt when read is quarantined (with
    every other corrupt one) and its job recomputed in a second pass.
    ``references``: elemental references chosen by phase name (``--reference Sn=Sn_alpha``).
    Returns (hull, voltage, summary, files, relaxation documents).
    """
    add_predicted(library, store.out_dir, system)  # structures found by `alloyflow search` join the hull
    if phases:  # one system: every --phases name must be one of its phases
        candidate_phases(system, calculator, library, phases, systems=[system])
    flow = hull_flow_for(system, calculator, library, phases, references=references)
    with stage(f"{system} relaxations", enabled=progress) as bar:
        summary = run_flow(flow, store, progress=bar)
    try:
        doc = store.document(flow.output.uuid, HullDocument)
        relaxations = relaxation_documents(store, doc)
    except CorruptDocument:
        store.quarantine_corrupt()
        with stage(f"{system} relaxations (recomputing quarantined jobs)", enabled=progress) as bar:
            again = run_flow(flow, store, progress=bar)
        again.computed += summary.computed
        again.reused -= summary.computed
        summary = again
        doc = store.document(flow.output.uuid, HullDocument)
        relaxations = relaxation_documents(store, doc)
    files = write_hull_outputs(out_dir or store.out_dir / system, doc.hull, doc.voltage)
    return doc.hull, doc.voltage, summary, files, relaxations


def run_hull_command(system, calculator=DEFAULT_CALCULATOR, out=Path("alloyflow-out"), structure_dirs=(),
                     phases=None, progress=True, references=None) -> CommandResult:
    from alloyflow.analysis.outputs import format_hull_table, format_voltage_table

    library = library_for(structure_dirs, systems=[system])
    with ResultStore(out) as store:
        hull, voltage, summary, files, _ = hull_for_system(system, store, calculator, library, phases, progress,
                                                           references=references)
    text = "\n".join([
        format_hull_table(hull), "", format_voltage_table(voltage) if voltage else "no voltage curve", "",
        f"relaxations: {summary.message()}",
        f"files: {', '.join(str(p) for p in files.values())}",
    ])
    return CommandResult(text, files, summary, (hull, voltage))
