"""``alloyflow study``: the study flow (hulls, then the barriers of the chosen phases) on the local engine.

The flow is ``alloyflow.workflows.flows.study.StudyFlowMaker``'s, the very
object ``alloyflow submit study`` sends to FireWorks: which phases get
barriers is decided inside its ``choose_barriers`` job. Here it runs on the
keyed local engine (one bar per stage, a kill loses only the job in flight),
and the files and report are written from the stored ``StudyDocument``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from alloyflow.calculators import calculator_info
from alloyflow.commands.common import add_predicted, library_for, relaxation_documents
from alloyflow.engine import ResultStore, RunSummary, run_flow
from alloyflow.engine.progress import stages
from alloyflow.io.barriers import write_barrier_outputs
from alloyflow.io.hull import write_hull_outputs
from alloyflow.io.layout import OutputLayout
from alloyflow.workflows.flows.study import StudySettings, study_flow
from alloyflow.workflows.schemas.study import StudyDocument


@dataclass
class StudyReport:
    summary: str
    path: Path
    data: dict


def write_study_outputs(out: Path, doc: StudyDocument) -> tuple[dict, dict, list]:
    """Hull, voltage and barrier files of a ``StudyDocument``; returns (hulls, voltages, barriers)."""
    layout = OutputLayout(out)
    hulls, voltages = {}, {}
    for h in doc.hulls:
        write_hull_outputs(layout.system(h.system), h.hull, h.voltage)
        hulls[h.system], voltages[h.system] = h.hull, h.voltage
    for choice, result in zip(doc.choices, doc.barriers):
        write_barrier_outputs(layout.barriers(choice.phase, choice.dilute, choice.mechanism), result)
    return hulls, voltages, list(doc.barriers)


def search_predicted(settings: StudySettings, store: ResultStore, library, progress: bool, timings: dict) -> RunSummary:
    """The tie-line search of every system (budgeted; its keyed jobs resume), written to ``<out>/<system>/predicted``.

    Predicted structures then join the hulls as phases of status ``predicted``
    (``add_predicted``), labelled so in every table. A search that fails is a
    warning, not a lost study: the hulls are built from the library alone.
    """
    from alloyflow.workflows.flows.search import run_search, write_search_outputs

    total = RunSummary()
    for system in settings.systems:
        ts = time.perf_counter()
        result = run_search(system, store, calculator=settings.calculator, library=library,
                            budget_minutes=settings.search_budget_minutes, progress=progress)
        write_search_outputs(store.out_dir, result)
        total.computed += result.jobs_computed
        total.reused += result.jobs_reused
        timings[f"search {system}"] = time.perf_counter() - ts
    return total


def run_study(settings: StudySettings, out: Path, progress: bool = True) -> StudyReport:
    """Build the study flow, run it on the local engine in ``out`` and write the files and report."""
    from alloyflow.io.report import write_report

    out = Path(out)
    settings.check()  # bad settings are refused here, before any job exists
    library = library_for(settings.structure_dirs)
    t0 = time.perf_counter()
    with ResultStore(out) as store:
        total, timings = RunSummary(), {}
        if settings.search:
            total += search_predicted(settings, store, library, progress, timings)
        for system in settings.systems:
            add_predicted(library, out, system)
        flow = study_flow(settings, library)
        with stages(enabled=progress) as bars:
            total += run_flow(flow, store, progress=bars)
        doc = store.document(flow.output.uuid, StudyDocument)
        hulls, voltages, barriers = write_study_outputs(out, doc)
        timings.update(total.stage_seconds)
        thermo = {}
        if settings.temperature is not None:
            from alloyflow.commands.thermo import thermo_for_system

            for h in doc.hulls:
                ts = time.perf_counter()
                thermo[h.system], _, summary = thermo_for_system(
                    h.system, store, settings.calculator, library, settings.temperature, settings.phases,
                    settings.min_length, settings.elastic, settings.diffusivity, progress,
                    relaxed=(h.hull, relaxation_documents(store, h)))
                total += summary
                timings[f"thermo {h.system} ({settings.temperature:g} K)"] = time.perf_counter() - ts
    timings["total"] = time.perf_counter() - t0
    meta = {
        "settings": asdict(settings),
        "calculator": calculator_info(settings.calculator),
        "timings_seconds": timings,
        "jobs": {"computed": total.computed, "reused": total.reused},
        "flow_output": flow.output.uuid,
    }
    path = write_report(out, hulls, voltages, barriers, meta, thermo=thermo)
    (out / "study.json").write_text(json.dumps(meta, indent=2, default=str))
    summary = (f"study of {', '.join(settings.systems)} on {calculator_info(settings.calculator)['label']}: "
               f"{total.computed} job(s) computed, {total.reused} reused from {out / 'store'}; "
               f"{timings['total']:.0f} s; report: {path}")
    return StudyReport(summary, path, meta)
