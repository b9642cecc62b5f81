"""The record of flows sent to a queue from an output folder: ``<out>/submitted.json``.

``alloyflow submit`` appends one entry per flow (what it is, the uuid of the
job whose output is the flow's result, where workers write results, and the
settings that rebuild the flow); ``alloyflow report`` reads the entries back
to collect the results from the job store. Plain JSON, read with ``json``:
nothing in it is ever executed or unpickled.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from alloyflow.io.files import OutputFileError, write_text_atomic
from alloyflow.io.layout import OutputLayout

KINDS = ("study", "barriers", "hull")


def read_submissions(out) -> list[dict]:
    """The entries of ``<out>/submitted.json`` (empty when nothing was submitted from ``out``)."""
    path = OutputLayout(out).submitted
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise OutputFileError(f"{path} is truncated or corrupt ({exc}); submit again to rewrite it") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("kind") in KINDS for e in entries):
        raise OutputFileError(f"{path} does not hold a list of submissions ({', '.join(KINDS)})")
    return entries


def record_submission(out, kind: str, name: str, output_uuid: str, output_index: int, store: str,
                      settings: dict) -> Path:
    """Add (or refresh) the entry of one submitted flow; an entry per ``output_uuid``.

    Parameters
    ----------
    kind : str
        ``study``, ``barriers`` or ``hull``.
    output_uuid, output_index : str, int
        Where the flow's result lands in the job store (index 2 for a job answered by a replacement).
    store : str
        ``"out"`` (``<out>/store``) or ``"jobflow"`` (the workers' ``JOB_STORE``).
    settings : dict
        What rebuilds the flow (plain JSON).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown submission kind {kind!r}; known: {', '.join(KINDS)}")
    entries = [e for e in read_submissions(out) if e["output_uuid"] != output_uuid]
    entries.append({"kind": kind, "name": name, "output_uuid": output_uuid, "output_index": output_index,
                    "store": store, "settings": settings,
                    "submitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return write_text_atomic(OutputLayout(out).submitted, json.dumps(entries, indent=1, default=str) + "\n")
