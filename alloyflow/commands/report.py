"""``alloyflow report``: files and ``report.md`` of an output folder, from its job store.

For flows sent to a queue (``<out>/submitted.json``) the results are read
from the job store the workers wrote to (``<out>/store`` or the jobflow
``JOB_STORE``): the study's ``StudyDocument``, a phase's ``BarrierResult``,
a hull's relaxation documents. Each becomes the same files the local
commands write; what has not finished yet is named. Then ``report.md`` is
rebuilt from the files of the folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alloyflow.analysis.migration import BarrierResult
from alloyflow.engine.fireworks import reading_store
from alloyflow.engine.local import is_finished
from alloyflow.engine.store import ResultStore, as_dict
from alloyflow.io.barriers import write_barrier_outputs
from alloyflow.io.hull import write_hull_outputs
from alloyflow.io.layout import OutputLayout
from alloyflow.io.report import rebuild_report
from alloyflow.io.submissions import read_submissions
from alloyflow.workflows.schemas.study import HullDocument, StudyDocument


@dataclass
class Collected:
    """What ``collect`` found: finished submissions, and the jobs still missing per unfinished one."""

    finished: list[str] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    report: Path | None = None

    def message(self) -> str:
        lines = [f"collected from the job store: {', '.join(self.finished)}"] if self.finished else []
        for name, labels in self.missing.items():
            shown = ", ".join(labels[:8]) + (f" and {len(labels) - 8} more" if len(labels) > 8 else "")
            lines.append(f"not finished yet: {name} (missing: {shown})")
        if self.report is not None:
            lines.append(f"report: {self.report}")
        elif self.finished:
            lines.append("no hull in this folder yet, so no report.md: the barrier files are written")
        return "\n".join(lines)


def _rebuild(entry: dict):
    """The flow of a submission, rebuilt from its recorded settings (same keys as when it was sent)."""
    from alloyflow.commands.common import library_for

    s = dict(entry["settings"])
    s.setdefault("screen", False)  # submissions recorded before hop screening converged every hop
    if entry["kind"] == "study":
        from alloyflow.workflows.flows.study import StudySettings, study_flow

        return study_flow(StudySettings(**s), library_for(s.get("structure_dirs")))
    if entry["kind"] == "barriers":
        from alloyflow.workflows.flows.barriers import barrier_flow

        phase, system, calc = s.pop("phase"), s.pop("system"), s.pop("calculator")
        library = library_for(s.pop("structure_dirs", ()))
        return barrier_flow(phase, calc, system, library, s.pop("n_images"), s.pop("fmax"), **s)
    from alloyflow.commands.submit import hull_flow, incar_relax_maker

    return hull_flow(s["system"], s["calculator"], phases=s.get("phases"), structure_dirs=s.get("structure_dirs", ()),
                     relax_maker=incar_relax_maker(s["calculator"], s.get("incar")), references=s.get("references"))


def _missing(entry: dict, reader) -> list[str]:
    labels = []
    for job, _ in _rebuild(entry).iterflow():
        if not is_finished(reader, job):
            labels.append((job.metadata or {}).get("alloyflow_label", job.name))
    return labels or ["the jobs added at run time (barrier NEBs and their collection)"]


def _write(entry: dict, output, layout: OutputLayout) -> None:
    from alloyflow.commands.study import write_study_outputs

    if entry["kind"] == "study":
        write_study_outputs(layout.root, StudyDocument.model_validate(as_dict(output)))
    elif entry["kind"] == "hull":
        doc = HullDocument.model_validate(as_dict(output))
        write_hull_outputs(layout.system(doc.system), doc.hull, doc.voltage)
    elif entry["kind"] == "barriers":
        s = entry["settings"]
        write_barrier_outputs(layout.barriers(s["phase"], s.get("dilute", False)),
                              BarrierResult.model_validate(as_dict(output)))


def collect(out: str | Path) -> Collected:
    """Write the files of every finished submission of ``out``, then ``report.md``."""
    layout = OutputLayout(out)
    found = Collected()
    for entry in read_submissions(out):
        name = f"{entry['kind']} {entry['name']}"
        reader = reading_store(None if entry["store"] == "jobflow" else ResultStore(out))
        done = reader.query_one({"uuid": entry["output_uuid"], "index": {"$gte": entry["output_index"]}},
                                properties=["uuid"])
        if done is None:
            found.missing[name] = _missing(entry, reader)
            continue
        _write(entry, reader.get_output(entry["output_uuid"], load=True), layout)
        found.finished.append(name)
    if any(layout.root.glob("*/hull.json")):
        found.report = rebuild_report(layout.root)
    elif not found.missing and not found.finished:
        raise ValueError(f"nothing to report in {layout.root}: no stored hull.json and no submitted flow")
    return found
