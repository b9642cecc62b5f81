"""The tie-line search's outputs: ``<out>/<system>/search.json`` and the predicted CIFs, and its text summary."""

from __future__ import annotations

import json
from pathlib import Path

from pymatgen.core import Structure

from alloyflow.io.files import write_text_atomic
from alloyflow.io.layout import OutputLayout
from alloyflow.workflows.schemas.search import SearchResult

NEAR_HULL = 0.025  # eV/atom: about kT at room temperature, the "within 25 meV/atom"
PREDICTED_SOURCE = "# SOURCE: alloyflow search"


def _mev(value: float | None, missing: str) -> str:
    return f"{value * 1000:.1f} meV/atom" if value is not None else missing


def format_search_summary(result: SearchResult) -> str:
    """The search in a few lines: counts, the near-hull structures per composition, the new hull."""
    lines = [
        f"{result.system} structure search on {result.calculator.get('label', '?')}: "
        f"{result.generated} generated, {result.screened} screened, {result.relaxed} relaxed, "
        f"{len(result.candidates)} new after deduplication; {result.wall_seconds:.0f} s "
        f"({result.jobs_computed} jobs computed, {result.jobs_reused} reused)",
    ]
    if not result.complete:
        lines.append(f"INCOMPLETE ({result.stopped or 'some jobs failed'}): run the same command again to resume")
        if not result.compositions:
            return "\n".join(lines)
    near = {}
    for x in result.near_hull:  # the best one per composition; search.json lists them all
        if x.formula not in near or x.e_above_hull < near[x.formula].e_above_hull:
            near[x.formula] = x
    lines.append(f"within {NEAR_HULL * 1000:.0f} meV/atom of the hull ({len(result.near_hull)} structures, "
                 f"{len(near)} compositions; lowest of each):")
    for x in sorted(near.values(), key=lambda x: x.x_li):
        lines.append(f"  {x.formula:<9}{x.e_above_hull * 1000:6.1f} meV/atom  {x.name}  ({x.method} of {x.parent})")
    if not near:
        lines.append("  none")
    lines.append(f"{'composition':<12}{'gen':>5}{'scr':>5}{'rlx':>5}  {'single point':>13}  {'relaxed, new hull':>18}")
    for c in result.compositions:
        spv, rv = _mev(c.best_single_point_e_above_hull, "-"), _mev(c.best_relaxed_e_above_hull, "-")
        lines.append(f"{c.formula:<12}{c.generated:>5}{c.screened:>5}{c.relaxed:>5}  {spv:>13}  {rv:>18}")
    if result.hull:
        lines.append(f"new hull, stable: {', '.join(result.hull.stable_set)}")
    if result.rediscovered:
        lines.append("rediscovered library phases: " + ", ".join(f"{k} = {v}" for k, v in result.rediscovered.items()))
    if result.dilute:
        d = result.dilute
        lines.append(f"dilute proxy {d.formula} ({d.parent}): {_mev(d.e_above_hull, 'not relaxed yet')} above the hull")
    if result.failed:
        lines.append(f"failed jobs (retried next run): {', '.join(result.failed)}")
    return "\n".join(lines)


def predicted_cif(result: SearchResult, name: str) -> str:
    """The CIF text of a new structure, with the ``SOURCE``/``STATUS: predicted`` headers the library reads."""
    x = next(c for c in result.candidates if c.name == name)
    header = (f"{PREDICTED_SOURCE}, {x.method} of {x.parent}; relaxed on {result.calculator.get('label')} "
              f"{result.calculator.get('version')}; {_mev(x.e_above_hull, 'n/a')} above the hull\n"
              f"# STATUS: predicted (structure search, not an observed phase)\n")
    return header + Structure.from_dict(x.structure).to(fmt="cif")


def write_search_outputs(out_dir: str | Path, result: SearchResult) -> dict[str, Path]:
    """``<out>/<system>/search.json`` and one CIF per new structure in ``<out>/<system>/predicted/``.

    The CIFs carry ``# SOURCE:``/``# STATUS: predicted`` headers, so
    ``StructureLibrary(user_dirs=[<out>/<system>/predicted])`` reloads them.
    An incomplete search (its budget ran out before the flow finished) writes
    nothing: the files of an earlier complete search stay as they are.
    """
    if not result.complete and not result.compositions:
        return {}
    layout = OutputLayout(Path(out_dir))
    pred = layout.predicted(result.system)
    pred.mkdir(parents=True, exist_ok=True)
    names = {x.name for x in result.candidates if x.structure is not None}
    for old in pred.glob("*.cif"):  # regenerated from the store: drop what an earlier search wrote
        if old.stem not in names and old.read_text(errors="replace").startswith(PREDICTED_SOURCE):
            old.unlink()
    files = {"search.json": write_text_atomic(layout.system(result.system) / "search.json",
                                              json.dumps(json.loads(result.model_dump_json()), indent=1))}
    for name in sorted(names):
        files[name] = write_text_atomic(pred / f"{name}.cif", predicted_cif(result, name))
    return files


__all__ = ["format_search_summary", "write_search_outputs", "predicted_cif", "NEAR_HULL"]
