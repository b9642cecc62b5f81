"""Barrier results on disk: ``barriers.json``, ``barriers.csv`` and one energy profile per hop."""

from __future__ import annotations

import json
from pathlib import Path

from alloyflow.analysis.migration import BarrierResult, barrier_csv_text, plot_profile
from alloyflow.io.files import figure_key, save_figure_once, write_text_atomic


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_barrier_outputs(out_dir, result: BarrierResult) -> dict[str, Path]:
    """``barriers.json``, ``barriers.csv`` and one ``profile_<phase>_<hop>.png`` per hop with a profile.

    The folder holds one result: profiles of an earlier run whose hops are gone (or have no profile now)
    are removed.
    """
    out = Path(out_dir)
    files = {
        "json": write_text_atomic(out / "barriers.json", json.dumps(result.model_dump(mode="json"), indent=1)),
        "csv": write_text_atomic(out / "barriers.csv", barrier_csv_text(result)),
    }
    for hop in result.hops:
        if hop.energies:
            name = f"profile_{_safe(result.phase)}_{hop.id}.png"
            key = figure_key("profile", hop.model_dump(mode="json"), result.calculator, result.phase)
            draw = lambda tmp, hop=hop: (  # noqa: E731
                plot_profile(hop, result.calculator, result.phase).savefig(tmp, dpi=120, format="png"))
            files[f"profile_{hop.id}"] = save_figure_once(out / name, key, draw)
    kept = set(files.values())
    for old in out.glob("profile_*.png"):
        if old not in kept:
            old.unlink(missing_ok=True)
    return files


def read_barrier_json(path) -> BarrierResult:
    """A stored ``barriers.json``; an unreadable one is a clear error that says how to rebuild it."""
    path = Path(path)
    try:
        return BarrierResult.model_validate_json(path.read_text())
    except ValueError:
        raise ValueError(f"{path} is unreadable; rerun 'alloyflow barriers {path.parent.name}' to rebuild it "
                         "from the store") from None
