"""Commands as functions: hull, barriers and the whole study, with resume.

Every stage runs through the same ``ResultStore`` in ``<out>/store``, so the
hull relaxations of ``alloyflow hull`` are reused by ``alloyflow study`` and a
killed study picks up where it stopped. Files written here are regenerated
from the store on every run; the store is the only state.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info
from alloyflow.progress import stage
from alloyflow.structures import StructureLibrary, parse_system
from alloyflow.workflows.engine import ResultStore, RunSummary


@dataclass
class CommandResult:
    text: str
    files: dict = field(default_factory=dict)
    summary: RunSummary = field(default_factory=RunSummary)
    data: object = None


def _library(structure_dirs) -> StructureLibrary:
    return StructureLibrary(user_dirs=structure_dirs or ())


def hull_for_system(system, store, calculator, library, phases=None, progress=True, out_dir=None):
    """Relax, build hull and voltage, write files; returns (hull, voltage, summary, files, relaxation documents)."""
    from alloyflow.analysis.hull import build_hull
    from alloyflow.analysis.outputs import write_hull_outputs
    from alloyflow.analysis.voltage import voltage_profile
    from alloyflow.workflows.hull import entries_from_documents, run_hull_relaxations

    elements = parse_system(system)
    predicted = (out_dir or store.out_dir / system) / "predicted"
    if predicted.is_dir() and any(predicted.glob("*.cif")) and not any(
        p.path.parent == predicted for p in library.all()
    ):
        # Structures found by `alloyflow search` in this folder join the hull.
        library.add_folder(predicted)
    with stage(f"{system} relaxations", enabled=progress) as bar:
        docs, summary = run_hull_relaxations(system, store, calculator=calculator, library=library, phases=phases,
                                             progress=bar)
    entries = entries_from_documents(docs)
    hull = build_hull(entries, system)
    host = [e for e in elements if e != "Li"][0]
    try:
        voltage = voltage_profile(entries, host=host, working_ion="Li")
    except ValueError as exc:  # no stable Li-M compound: a hull, but no voltage curve
        hull.warnings.append(str(exc))
        voltage = None
    files = write_hull_outputs(out_dir or store.out_dir / system, hull, voltage)
    return hull, voltage, summary, files, docs


def run_hull_command(system, calculator=DEFAULT_CALCULATOR, out=Path("alloyflow-out"), structure_dirs=(),
                     phases=None, progress=True) -> CommandResult:
    from alloyflow.analysis.outputs import format_hull_table, format_voltage_table

    library = _library(structure_dirs)
    with ResultStore(out) as store:
        hull, voltage, summary, files, _ = hull_for_system(system, store, calculator, library, phases, progress)
    text = "\n".join([
        format_hull_table(hull), "", format_voltage_table(voltage) if voltage else "no voltage curve", "",
        f"relaxations: {summary.message()}",
        f"files: {', '.join(str(p) for p in files.values())}",
    ])
    return CommandResult(text, files, summary, (hull, voltage))


def _barrier_out(out: Path, phase: str, dilute: bool) -> Path:
    return out / "barriers" / (f"{phase}-dilute-Li" if dilute else phase)


def barriers_for_phase(phase, store, calculator, library, system=None, dilute=False, progress=True,
                       e_above_hull=None, **neb_options):
    from alloyflow.analysis.migration import write_barrier_outputs
    from alloyflow.workflows.barriers import run_barriers

    with stage(f"{phase} barriers", enabled=progress) as bar:
        result = run_barriers(phase, store, calculator=calculator, system=system, library=library, dilute=dilute,
                              progress=bar, e_above_hull=e_above_hull, **neb_options)
    files = write_barrier_outputs(_barrier_out(store.out_dir, phase, dilute), result)
    return result, files, RunSummary(computed=bar.computed, reused=bar.reused)


def run_barriers_command(phase, system=None, calculator=DEFAULT_CALCULATOR, out=Path("alloyflow-out"),
                         structure_dirs=(), progress=True, dilute=False, **neb_options) -> CommandResult:
    from alloyflow.analysis.migration import format_barrier_table

    library = _library(structure_dirs)
    with ResultStore(out) as store:
        result, files, summary = barriers_for_phase(phase, store, calculator, library, system=system,
                                                    dilute=dilute, progress=progress, **neb_options)
    text = format_barrier_table([result]) + f"\nfiles: {', '.join(str(p) for p in files.values())}"
    text += f"\njobs: {summary.message()}"
    return CommandResult(text, files, summary, data=result)


def barrier_table_text(out: Path, phases, calculator=DEFAULT_CALCULATOR) -> str:
    """The cross-phase table from stored ``barriers.json`` files (no calculation)."""
    from alloyflow.analysis.migration import format_barrier_table, read_barrier_json

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


# --------------------------------------------------------------------------- study


@dataclass
class StudySettings:
    systems: list[str]
    calculator: str = DEFAULT_CALCULATOR
    barriers: list[str] = field(default_factory=lambda: ["reference"])
    min_image_distance: float = 10.0
    n_images: int = 5
    fmax: float = 0.05
    # Li17Sn4 has 15 distinct hops in a 104-atom cell (about 45 min on 2 cores):
    # the study takes the 6 shortest per phase; percolation then uses those only
    # and each result says so. `--max-hops 0` computes all.
    max_hops: int | None = 6
    max_length: float | None = None
    structure_dirs: list[str] = field(default_factory=list)
    phases: list[str] | None = None
    # Finite temperature (off unless a temperature is given): phonons, moduli, diffusivities.
    temperature: float | None = None
    min_length: float = 11.0
    elastic: bool = True
    diffusivity: bool = True


@dataclass
class StudyReport:
    summary: str
    path: Path
    data: dict


def _barrier_phases(settings: StudySettings, hulls: dict) -> list[tuple[str, str, dict]]:
    """(phase, system, extra options) triples whose barriers the study computes.

    ``reference`` adds, for a Li-In system, the reference study's dilute proxy
    for lowly lithiated In: one Li on 36 In sites (LiIn35).
    """
    from alloyflow.analysis.reference_data import REFERENCE_BARRIER_PHASES

    choice = settings.barriers
    if choice == ["none"]:
        return []
    triples: list[tuple[str, str, dict]] = []
    seen: set[str] = set()
    for system, hull in hulls.items():
        names = {p.name for p in hull.phases} | {p.formula for p in hull.phases}
        if choice == ["auto"]:
            wanted = [p.name for p in hull.phases if p.stable and "Li" in p.formula]
        elif choice == ["reference"]:
            wanted = [f for f in REFERENCE_BARRIER_PHASES if f in names]
        else:
            wanted = [f for f in choice if f in names]
        for name in wanted:
            if name not in seen:
                seen.add(name)
                triples.append((name, system, {}))
        if choice == ["reference"] and hull.host == "In":
            triples.append(("In", system, {"dilute": True, "n_host_sites": 36}))
    return triples


def run_study(settings: StudySettings, out: Path, progress: bool = True) -> StudyReport:
    from alloyflow.analysis.report import write_report

    library = _library(settings.structure_dirs)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    total = RunSummary()
    hulls, voltages, relaxations = {}, {}, {}
    barriers = []
    neb_options = dict(min_image_distance=settings.min_image_distance, n_images=settings.n_images,
                       fmax=settings.fmax, max_hops=settings.max_hops, max_length=settings.max_length)
    with ResultStore(out) as store:
        for system in settings.systems:
            ts = time.perf_counter()
            hull, voltage, summary, _, docs = hull_for_system(system, store, settings.calculator, library,
                                                              settings.phases, progress)
            hulls[system], voltages[system], relaxations[system] = hull, voltage, docs
            total += summary
            timings[f"hull {system}"] = time.perf_counter() - ts
        pairs = _barrier_phases(settings, hulls)
        for i, (phase, system, extra) in enumerate(pairs, 1):
            ts = time.perf_counter()
            e_hull = next((p.e_above_hull for p in hulls[system].phases if p.name == phase or p.formula == phase),
                          None)
            if progress:
                print(f"[stage {len(settings.systems) + i}/{len(settings.systems) + len(pairs)}] barriers {phase}",
                      flush=True)
            if extra.get("dilute"):
                e_hull = None
            result, _, summary = barriers_for_phase(phase, store, settings.calculator, library, system=system,
                                                    progress=progress, e_above_hull=e_hull, **neb_options, **extra)
            barriers.append(result)
            total += summary
            timings[f"barriers {phase}{' (dilute Li)' if extra.get('dilute') else ''}"] = time.perf_counter() - ts
        thermo = {}
        if settings.temperature is not None:
            from alloyflow.workflows.thermo import thermo_for_system

            for system in settings.systems:
                ts = time.perf_counter()
                thermo[system], _, summary = thermo_for_system(
                    system, store, settings.calculator, library, settings.temperature, settings.phases,
                    settings.min_length, settings.elastic, settings.diffusivity, progress,
                    relaxed=(hulls[system], relaxations[system]))
                total += summary
                timings[f"thermo {system} ({settings.temperature:g} K)"] = time.perf_counter() - ts
        reused, computed = total.reused, total.computed
    timings["total"] = time.perf_counter() - t0
    meta = {
        "settings": asdict(settings),
        "calculator": calculator_info(settings.calculator),
        "timings_seconds": timings,
        "jobs": {"computed": computed, "reused": reused},
    }
    path = write_report(out, hulls, voltages, barriers, meta, thermo=thermo)
    (out / "study.json").write_text(json.dumps(meta, indent=2, default=str))
    summary = (f"study of {', '.join(settings.systems)} on {calculator_info(settings.calculator)['label']}: "
               f"{computed} job(s) computed, {reused} reused from {out / 'store'}; "
               f"{timings['total']:.0f} s; report: {path}")
    return StudyReport(summary, path, meta)
