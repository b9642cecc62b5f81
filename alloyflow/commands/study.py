"""``alloyflow study``: the study flow (hulls, then the barriers of the chosen phases) on the local engine.

The flow is ``alloyflow.workflows.flows.study.StudyFlowMaker``'s, the very
object ``alloyflow submit study`` sends to FireWorks: which phases get
barriers is decided inside its ``choose_barriers`` job. Here it runs on the
keyed local engine (one bar per stage, a kill loses only the job in flight),
and the files and report are written from the stored ``StudyDocument``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from alloyflow.calculators import calculator_info
from alloyflow.commands.common import add_predicted, library_for
from alloyflow.engine import ResultStore, RunSummary, default_workers, run_flow
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
    """Hull, voltage, barrier and thermo files of a ``StudyDocument``; returns (hulls, voltages, barriers)."""
    layout = OutputLayout(out)
    hulls, voltages = {}, {}
    for h in doc.hulls:
        write_hull_outputs(layout.system(h.system), h.hull, h.voltage)
        hulls[h.system], voltages[h.system] = h.hull, h.voltage
    for choice, result in zip(doc.choices, doc.barriers):
        write_barrier_outputs(layout.barriers(choice.phase, choice.dilute, choice.mechanism), result)
    if doc.thermo:  # a study run with a temperature: <out>/<system>/thermo/
        from alloyflow.io.thermo import write_thermo_outputs

        for system, result in doc.thermo.items():
            write_thermo_outputs(layout.thermo(system), result)
    return hulls, voltages, list(doc.barriers)


def write_search_results(store: ResultStore, flow) -> list:
    """``<out>/<system>/search.json`` and the predicted CIFs of the study's searches, from the store."""
    from alloyflow.io.search import write_search_outputs
    from alloyflow.workflows.flows.study import search_outputs
    from alloyflow.workflows.schemas.search import SearchResult

    results = []
    for uuid in search_outputs(flow).values():
        result = store.document(uuid, SearchResult)
        write_search_outputs(store.out_dir, result)
        results.append(result)
    return results


def run_study(settings: StudySettings, out: Path, progress: bool = True) -> StudyReport:
    """Build the study flow, run it on the local engine in ``out`` and write the files and report."""
    from alloyflow.io.report import write_report, write_study_json

    out = Path(out)
    settings.check()  # bad settings are refused here, before any job exists
    library = library_for(settings.structure_dirs)
    t0 = time.perf_counter()
    with ResultStore(out) as store:
        total, timings = RunSummary(), {}
        if not settings.search:  # without the search in the flow, an earlier search's structures join
            for system in settings.systems:
                add_predicted(library, out, system)
        flow = study_flow(settings, library)
        with stages(enabled=progress) as bars:
            total += run_flow(flow, store, progress=bars)
        write_search_results(store, flow)
        doc = store.document(flow.output.uuid, StudyDocument)
        hulls, voltages, barriers = write_study_outputs(out, doc)
        timings.update(total.stage_seconds)
        thermo = dict(doc.thermo)  # the flow's thermo stage (a temperature given), written with the files
    timings["total"] = time.perf_counter() - t0
    meta = {
        "settings": asdict(settings),
        "calculator": calculator_info(settings.calculator),
        "timings_seconds": timings,
        "jobs": {"computed": total.computed, "reused": total.reused},
        "workers": default_workers(),
        "flow_output": flow.output.uuid,
    }
    meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_study_json(out, meta)  # adds the earlier runs, which the report quotes
    path = write_report(out, hulls, voltages, barriers, meta, thermo=thermo)
    summary = (f"study of {', '.join(settings.systems)} on {calculator_info(settings.calculator)['label']}: "
               f"{total.computed} job(s) computed, {total.reused} reused from {out / 'store'}; "
               f"{timings['total']:.0f} s; report: {path}")
    return StudyReport(summary, path, meta)
