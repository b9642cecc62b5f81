"""``alloyflow thermo``: phonon free energies, the hull and voltage at T, moduli and diffusivities.

The hull relaxations run first (``hull_for_system``, shared with ``alloyflow
hull``); then the thermo flow of ``alloyflow.workflows.flows.thermo``
(``ThermoFlowMaker``) runs on the keyed local engine in ``<out>/store``: its
planning job adds the harmonic phonons of every relaxed phase, their elastic
moduli and, for phases whose barriers are stored under ``<out>/barriers/``,
Vineyard attempt frequencies, and a collecting job makes the ``ThermoResult``.
Every force job is keyed by its inputs, so a rerun reuses it.

A phase whose relaxation did not converge gets no phonons (its forces would
not be harmonic about a minimum); it is named in the result's warnings and
left out of both hulls of the thermo result. A phase with imaginary modes is
kept and flagged.
"""

from __future__ import annotations

from pathlib import Path

from alloyflow.calculators import DEFAULT_CALCULATOR
from alloyflow.engine.progress import stages
from alloyflow.engine import ResultStore, RunSummary, run_flow

from alloyflow.workflows.jobs.phonons import DEFAULT_MIN_LENGTH


def stored_barriers(out: Path, system: str) -> list:
    """The barrier results stored under ``<out>/barriers/*/barriers.json`` whose phase lies in ``system``."""
    from alloyflow.io.barriers import read_barrier_json
    from alloyflow.workflows.flows.thermo import barriers_of_system

    return barriers_of_system([read_barrier_json(p) for p in sorted(Path(out).glob("barriers/*/barriers.json"))],
                              system)


def thermo_for_system(system: str, store: ResultStore, calculator: str = DEFAULT_CALCULATOR, library=None,
                      temperature: float = 300.0, phases: list[str] | None = None,
                      min_length: float = DEFAULT_MIN_LENGTH, elastic: bool = True, diffusivity: bool = True,
                      progress: bool = True, out_dir: Path | None = None, relaxed=None,
                      references: dict | None = None):
    """Run every stage for one system in an open store; returns (ThermoResult, files, RunSummary).

    ``relaxed``: ``(hull, relaxation documents)`` the caller already has;
    otherwise the hull stage runs here. The thermo stage is the flow of
    ``thermo_flow_maker(calculator, min_length, elastic, diffusivity, references)``; ``references``:
    elemental references chosen by phase name (``--reference Sn=Sn_alpha``), for every hull here.
    """
    from alloyflow.analysis.thermo import ThermoResult
    from alloyflow.io.thermo import write_thermo_outputs
    from alloyflow.structures import StructureLibrary
    from alloyflow.workflows.flows.thermo import check_temperature, thermo_flow_maker
    from alloyflow.commands.hull import hull_for_system

    check_temperature(temperature)
    library = library or StructureLibrary()
    summary = RunSummary()
    if phases:
        known = {p.name for p in library.phases(system)} | {p.formula for p in library.phases(system)}
        unknown = [p for p in phases if p not in known]
        if unknown:
            raise ValueError(f"unknown phase(s) {', '.join(unknown)} in {system}; known: {', '.join(sorted(known))}")
    if relaxed is None:
        _, _, hsum, _, docs = hull_for_system(system, store, calculator, library, phases, progress,
                                              references=references)
        summary += hsum
    else:
        _, docs = relaxed
    barriers, missing = None, None
    if diffusivity:
        barriers = stored_barriers(store.out_dir, system)
        missing = (f"no stored barriers for {system} in {store.out_dir / 'barriers'}: no diffusivities "
                   f"(run 'alloyflow barriers PHASE --system {system}' first)")
    flow = thermo_flow_maker(calculator, min_length, elastic, diffusivity, references).make(
        system, docs, barriers=barriers, temperature=temperature, missing_barriers=missing)
    with stages(enabled=progress) as bars:
        summary += run_flow(flow, store, progress=bars)
    result = store.document(flow.output.uuid, ThermoResult)
    files = write_thermo_outputs((out_dir or store.out_dir / system) / "thermo", result)
    return result, files, summary


def run_thermo(system: str, temperature: float = 300.0, calculator: str = DEFAULT_CALCULATOR,
               out: Path = Path("alloyflow-out"), phases: list[str] | None = None,
               min_length: float = DEFAULT_MIN_LENGTH, elastic: bool = True, diffusivity: bool = True,
               structure_dirs=(), progress: bool = True, references: dict | None = None):
    """``alloyflow thermo``: returns a ``CommandResult`` (text table, files, job summary, ThermoResult)."""
    from alloyflow.analysis.thermo import format_thermo_table
    from alloyflow.structures import StructureLibrary
    from alloyflow.commands.common import CommandResult

    library = StructureLibrary(user_dirs=structure_dirs or ())
    with ResultStore(out) as store:
        result, files, summary = thermo_for_system(system, store, calculator, library, temperature, phases,
                                                   min_length, elastic, diffusivity, progress,
                                                   references=references)
    text = "\n".join([format_thermo_table(result), "", f"jobs: {summary.message()}",
                      f"files: {', '.join(str(p) for p in files.values())}"])
    return CommandResult(text, files, summary, result)


__all__ = ["run_thermo", "thermo_for_system", "stored_barriers", "DEFAULT_MIN_LENGTH"]
