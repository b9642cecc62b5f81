"""``alloyflow barriers``: the Li-migration barriers of one phase, and the cross-phase table."""

from __future__ import annotations

from pathlib import Path

from alloyflow.calculators import DEFAULT_CALCULATOR
from alloyflow.commands.common import CommandResult, library_for
from alloyflow.engine import ResultStore, RunSummary
from alloyflow.engine.progress import stage


def _barrier_out(out: Path, phase: str, dilute: bool) -> Path:
    return out / "barriers" / (f"{phase}-dilute-Li" if dilute else phase)


def barriers_for_phase(phase, store, calculator, library, system=None, dilute=False, progress=True,
                       e_above_hull=None, **neb_options):
    from alloyflow.io.barriers import write_barrier_outputs
    from alloyflow.workflows.flows.barriers import run_barriers

    with stage(f"{phase} barriers", enabled=progress) as bar:
        result = run_barriers(phase, store, calculator=calculator, system=system, library=library, dilute=dilute,
                              progress=bar, e_above_hull=e_above_hull, **neb_options)
    files = write_barrier_outputs(_barrier_out(store.out_dir, phase, dilute), result)
    return result, files, RunSummary(computed=bar.computed, reused=bar.reused)


def check_barrier_cell(library, phase, system=None, dilute=False, min_image_distance: float = 10.0,
                       n_host_sites: int | None = None, dilute_mode: str = "substitution", **_) -> None:
    """Refuse a supercell too small for the hops or too large for the machine, before any job or store exists.

    On the library's (unrelaxed) cell; the flow checks the relaxed cell again, hop by hop.
    """
    from alloyflow.structures.library import primitive
    from alloyflow.structures.migration import check_barrier_supercell

    structure = primitive(library.get(phase, system).structure)
    check_barrier_supercell(structure, min_image_distance, dilute=dilute, n_host_sites=n_host_sites, mode=dilute_mode)


def run_barriers_command(phase, system=None, calculator=DEFAULT_CALCULATOR, out=Path("alloyflow-out"),
                         structure_dirs=(), progress=True, dilute=False, **neb_options) -> CommandResult:
    from alloyflow.analysis.migration import format_barrier_table

    library = library_for(structure_dirs)
    check_barrier_cell(library, phase, system, dilute, **neb_options)
    with ResultStore(out) as store:
        result, files, summary = barriers_for_phase(phase, store, calculator, library, system=system,
                                                    dilute=dilute, progress=progress, **neb_options)
    text = format_barrier_table([result]) + f"\nfiles: {', '.join(str(p) for p in files.values())}"
    text += f"\njobs: {summary.message()}"
    return CommandResult(text, files, summary, data=result)


def barrier_table_text(out: Path, phases, calculator=DEFAULT_CALCULATOR) -> str:
    """The cross-phase table from stored ``barriers.json`` files (no calculation)."""
    from alloyflow.analysis.migration import format_barrier_table
    from alloyflow.io.barriers import read_barrier_json

    results, missing = [], []
    for phase in phases:
        path = _barrier_out(out, phase, False) / "barriers.json"
        if not path.exists():
            missing.append(phase)
            continue
        results.append(read_barrier_json(path))
    text = format_barrier_table(results) if results else "no stored barriers"
    if missing:
        text += f"\nnot computed yet (run 'alloyflow barriers PHASE --out {out}'): {', '.join(missing)}"
    return text
