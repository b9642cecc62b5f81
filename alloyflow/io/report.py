"""The study report on disk: ``report.md`` from results, or rebuilt from the stored files alone."""

from __future__ import annotations

import json
from pathlib import Path

from alloyflow.analysis.fidelity import format_fidelity
from alloyflow.analysis.report import barrier_section, comparison_section, hull_section, table, thermo_section
from alloyflow.io.barriers import read_barrier_json
from alloyflow.io.files import write_text_atomic
from alloyflow.io.hull import read_hull_json, read_voltage_json
from alloyflow.io.thermo import load_thermo_results
from alloyflow.workflows.schemas.fidelity import FidelityResult


def load_fidelity_results(out: Path) -> list[FidelityResult]:
    return [FidelityResult.model_validate_json(p.read_text()) for p in sorted(Path(out).glob("barriers/*/fidelity.json"))]


def write_report(out: Path, hulls: dict, voltages: dict, barriers: list, meta: dict, thermo: dict | None = None) -> Path:
    calc = meta["calculator"]
    label = f"{calc['label']}, {calc['name']} {calc['version']}"
    timing_rows = [[k, f"{v:.1f}"] for k, v in meta["timings_seconds"].items()]
    parts = [
        "# alloyflow study report",
        "",
        f"Systems: {', '.join(hulls)}. Every energy and barrier below was computed with **{label}**"
        + (" — an ML potential, not DFT." if calc["kind"] == "mlip" else "."),
        "",
        *[hull_section(system, hulls[system], voltages[system]) + "\n" for system in hulls],
    ]
    if barriers:
        parts += [barrier_section(barriers), ""]
    fidelity = load_fidelity_results(out)
    if fidelity:
        parts += ["## Barrier fidelity (ML vs DFT//ML, DFT, fine-tuned)", "", format_fidelity(fidelity), ""]
    if thermo:
        parts += [thermo_section(thermo), ""]
    parts += [comparison_section(hulls, voltages, barriers, label), ""]
    parts += ["## Jobs and timings", "",
              f"Jobs: {meta['jobs']['computed']} computed in this run, {meta['jobs']['reused']} reused from the store.",
              "", table(["stage", _time_header(meta, "this run")], timing_rows), ""]
    computing = last_computing_run(meta)
    if computing is not None and meta["jobs"].get("computed", 0) == 0:
        rows = [[k, f"{v:.1f}"] for k, v in computing.get("timings_seconds", {}).items()]
        parts += [f"The last run that computed jobs ({computing.get('finished', 'time not recorded')}): "
                  f"{computing.get('jobs', {}).get('computed', '?')} computed, "
                  f"{computing.get('jobs', {}).get('reused', '?')} reused.", "",
                  table(["stage", _time_header(computing, "that run")], rows), ""]
    return write_text_atomic(Path(out) / "report.md", "\n".join(parts))


def _time_header(run: dict, which: str) -> str:
    """Stage times are wall times in order; with workers, the stages' jobs overlap and their times add up."""
    workers = run.get("workers", 1) if isinstance(run, dict) else 1
    if not isinstance(workers, int) or workers <= 1:
        return f"wall time {which} (s)"
    return f"time in jobs {which}, {workers} at once (s; total: wall time)"


RUNS_KEPT = 50
"""Runs whose jobs and timings ``study.json`` keeps (newest last)."""


def _runs(meta) -> list[dict]:
    runs = meta.get("runs") if isinstance(meta, dict) else None
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


def last_computing_run(meta: dict) -> dict | None:
    """The newest run in ``meta["runs"]`` that computed at least one job, or None."""
    return next((r for r in reversed(_runs(meta))
                 if isinstance(r.get("jobs"), dict) and (r["jobs"].get("computed") or 0) > 0), None)


def write_study_json(out: Path, meta: dict) -> Path:
    """``<out>/study.json``: this run's ``meta`` plus the jobs and timings of earlier runs (``runs``).

    A rerun that reuses everything would otherwise overwrite the timings of
    the run that computed the study; an unreadable earlier file only loses
    its history.
    """
    path = Path(out) / "study.json"
    try:
        earlier = _runs(json.loads(path.read_text()))
    except (OSError, ValueError):
        earlier = []
    run = {k: meta[k] for k in ("finished", "jobs", "timings_seconds", "workers") if k in meta}
    meta["runs"] = (earlier + [run])[-RUNS_KEPT:]
    write_text_atomic(path, json.dumps(meta, indent=2, default=str))
    return path


def load_stored_results(out: Path):
    """Hulls, voltages and barriers from a study folder's JSON files (no calculation)."""
    out = Path(out)
    hulls, voltages = {}, {}
    for hull_json in sorted(out.glob("*/hull.json")):
        system = hull_json.parent.name
        hulls[system] = read_hull_json(hull_json)
        voltage_json = hull_json.parent / "voltage.json"
        voltages[system] = read_voltage_json(voltage_json) if voltage_json.exists() else None
    barriers = [read_barrier_json(path) for path in sorted(out.glob("barriers/*/barriers.json"))]
    return hulls, voltages, barriers


def rebuild_report(out: Path) -> Path:
    """``report.md`` from the stored JSON files alone: for results that came back from HPC."""
    out = Path(out)
    hulls, voltages, barriers = load_stored_results(out)
    if not hulls:
        raise ValueError(f"no stored hull.json under {out}")
    meta_path = out / "study.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.setdefault("calculator", next(iter(hulls.values())).calculator)
    meta.setdefault("timings_seconds", {})
    meta.setdefault("jobs", {"computed": 0, "reused": 0})
    return write_report(out, hulls, voltages, barriers, meta, thermo=load_thermo_results(out))
