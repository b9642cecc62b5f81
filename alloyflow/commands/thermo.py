"""``alloyflow thermo``: phonon free energies, the hull and voltage at T, moduli and diffusivities.

Stages, each a set of keyed jobs in ``<out>/store`` (a rerun reuses them):
the hull relaxations (``hull_for_system``, shared with ``alloyflow hull``),
harmonic phonons of every relaxed phase (``PhononMaker``), elastic moduli
(``alloyflow.workflows.jobs.elastic``) and, for phases whose barriers are stored
under ``<out>/barriers/``, Vineyard attempt frequencies and diffusivities
(``alloyflow.workflows.jobs.attempt``, ``alloyflow.analysis.diffusion``). Part B's
modules are imported only when their stage runs.

A phase whose relaxation did not converge gets no phonons (its forces would
not be harmonic about a minimum); it is named in the result's warnings and
left out of both hulls of the thermo result. A phase with imaginary modes is
kept and flagged.
"""

from __future__ import annotations

from pathlib import Path

from alloyflow.calculators import DEFAULT_CALCULATOR
from alloyflow.engine.progress import stage
from alloyflow.engine import ResultStore, RunSummary

from alloyflow.workflows.jobs.phonons import DEFAULT_MIN_LENGTH


def _stored_barriers(out: Path, system: str) -> list:
    from pymatgen.core import Composition

    from alloyflow.io.barriers import read_barrier_json
    from alloyflow.structures.library import parse_system

    elements = set(parse_system(system))
    results = []
    for path in sorted(Path(out).glob("barriers/*/barriers.json")):
        res = read_barrier_json(path)
        formula = res.formula or res.phase
        try:
            if {str(e) for e in Composition(formula).elements} <= elements:
                results.append(res)
        except ValueError:
            continue
    return results


def _diffusion(barriers, store, calculator, warnings, progress) -> list[dict]:
    from alloyflow.analysis.diffusion import DEFAULT_TEMPERATURES, diffusivities_for
    from alloyflow.workflows.jobs.attempt import run_attempt_frequencies

    rows = []
    for res in barriers:
        name = res.phase if res.mode == "vacancy" else f"{res.phase} ({res.mode})"
        if not any(v is not None for v in res.percolation.values()):
            warnings.append(f"{name}: the computed hops do not percolate; no diffusivity")
            continue
        try:
            with stage(f"attempt frequencies {name}", enabled=progress) as bar:
                freqs = run_attempt_frequencies(res, store, calculator=calculator, progress=bar)
            nets = diffusivities_for(res, freqs, temperatures=DEFAULT_TEMPERATURES)
        except Exception as exc:  # noqa: BLE001 - one phase's failure must not lose the others
            warnings.append(f"{name}: no diffusivity ({type(exc).__name__}: {exc})")
            continue
        for net in nets:
            rows.append({"phase": res.phase, "mode": res.mode, "network": net.network, "dimension": net.dimension,
                         "barrier_ev": net.barrier_ev, "hop_id": net.hop_id, "hop_length_A": net.hop_length_A,
                         "attempt_frequency_hz": net.attempt_frequency_hz,
                         "attempt_frequency_source": net.attempt_frequency_source,
                         "diffusivity": {f"{t:g}": d for t, d in zip(net.temperatures_k, net.diffusivities_cm2_s)},
                         "assumptions": net.assumptions, "warnings": net.warnings})
    return rows


def thermo_for_system(system: str, store: ResultStore, calculator: str = DEFAULT_CALCULATOR, library=None,
                      temperature: float = 300.0, phases: list[str] | None = None,
                      min_length: float = DEFAULT_MIN_LENGTH, elastic: bool = True, diffusivity: bool = True,
                      progress: bool = True, out_dir: Path | None = None, relaxed=None):
    """Run every stage for one system in an open store; returns (ThermoResult, files, RunSummary).

    ``relaxed``: ``(hull, relaxation documents)`` the caller already has (a
    study computes the 0 K hull first); otherwise the hull stage runs here.
    """
    from alloyflow.analysis.thermo import thermo_result
    from alloyflow.io.thermo import write_thermo_outputs
    from alloyflow.structures import StructureLibrary
    from alloyflow.workflows.flows.hull import entries_from_documents
    from alloyflow.workflows.jobs.phonons import PhononMaker, run_phonons
    from alloyflow.commands.hull import hull_for_system

    if temperature is None or temperature < 0:
        raise ValueError(f"temperature must be >= 0 K, not {temperature}")
    library = library or StructureLibrary()
    summary = RunSummary()
    if phases:
        known = {p.name for p in library.phases(system)} | {p.formula for p in library.phases(system)}
        unknown = [p for p in phases if p not in known]
        if unknown:
            raise ValueError(f"unknown phase(s) {', '.join(unknown)} in {system}; known: {', '.join(sorted(known))}")
    if relaxed is None:
        hull, _, hsum, _, docs = hull_for_system(system, store, calculator, library, phases, progress)
        summary += hsum
    else:
        hull, docs = relaxed
    warnings = []
    unconverged = [d.label for d in docs if not d.converged]
    if unconverged:
        warnings.append(f"unconverged relaxation(s), no phonons: {', '.join(unconverged)}")
    relaxed = {d.label: d.structure for d in docs if d.converged}
    maker = PhononMaker(calculator=calculator, min_length=min_length)
    t_max = max(maker.t_max, temperature)
    maker.t_max = t_max
    with stage(f"{system} phonons", enabled=progress) as bar:
        phonon_docs = run_phonons(relaxed, store, calculator=calculator, progress=bar, maker=maker)
    summary += RunSummary(computed=bar.computed, reused=bar.reused)

    elastic_docs = {}
    if elastic:
        from alloyflow.workflows.jobs.elastic import run_elastic

        with stage(f"{system} elastic moduli", enabled=progress) as bar:
            for name, structure in relaxed.items():
                try:
                    elastic_docs.update(run_elastic({name: structure}, store, calculator=calculator, progress=bar,
                                                    relax=False))
                except Exception as exc:  # noqa: BLE001 - one phase's failure must not lose the others
                    warnings.append(f"{name}: no elastic moduli ({type(exc).__name__}: {exc})")
        summary += RunSummary(computed=bar.computed, reused=bar.reused)
    diffusion = []
    if diffusivity:
        barriers = _stored_barriers(store.out_dir, system)
        if not barriers:
            warnings.append(f"no stored barriers for {system} in {store.out_dir / 'barriers'}: no diffusivities "
                            f"(run 'alloyflow barriers PHASE --system {system}' first)")
        diffusion = _diffusion(barriers, store, calculator, warnings, progress)

    entries = entries_from_documents([d for d in docs if d.converged])
    result = thermo_result(entries, phonon_docs, system, temperature, elastic=elastic_docs, diffusion=diffusion)
    result.warnings = [*hull.warnings, *warnings, *result.warnings]
    result.warnings = list(dict.fromkeys(result.warnings))
    files = write_thermo_outputs((out_dir or store.out_dir / system) / "thermo", result)
    return result, files, summary


def run_thermo(system: str, temperature: float = 300.0, calculator: str = DEFAULT_CALCULATOR,
               out: Path = Path("alloyflow-out"), phases: list[str] | None = None,
               min_length: float = DEFAULT_MIN_LENGTH, elastic: bool = True, diffusivity: bool = True,
               structure_dirs=(), progress: bool = True):
    """``alloyflow thermo``: returns a ``CommandResult`` (text table, files, job summary, ThermoResult)."""
    from alloyflow.analysis.thermo import format_thermo_table
    from alloyflow.structures import StructureLibrary
    from alloyflow.commands.common import CommandResult

    library = StructureLibrary(user_dirs=structure_dirs or ())
    with ResultStore(out) as store:
        result, files, summary = thermo_for_system(system, store, calculator, library, temperature, phases,
                                                   min_length, elastic, diffusivity, progress)
    text = "\n".join([format_thermo_table(result), "", f"jobs: {summary.message()}",
                      f"files: {', '.join(str(p) for p in files.values())}"])
    return CommandResult(text, files, summary, result)


__all__ = ["run_thermo", "thermo_for_system", "DEFAULT_MIN_LENGTH"]
