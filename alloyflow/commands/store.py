"""``alloyflow store check``: read every document of an output folder's job store; quarantine the unreadable.

Opening the store already moves rows whose BSON does not decode to
``<out>/store/quarantine``; the check then deserializes every stored output
(as a reuse would) and moves those that fail there too. Their jobs are
recomputed by the next run; every other finished job is reused.
"""

from __future__ import annotations

from pathlib import Path

from alloyflow.engine import ResultStore
from alloyflow.io.layout import OutputLayout


def check_store(out: str | Path) -> str:
    """Check the job store of ``out``; a summary (documents readable, what was quarantined)."""
    layout = OutputLayout(out)
    if not layout.store.is_dir():
        raise ValueError(f"no job store in {layout.root} (expected {layout.store})")
    with ResultStore(out) as store:
        store.quarantine_corrupt()
        count = store.count()
        moved = list(store.quarantined)
    lines = [f"job store {store.store_dir}: {count} readable document(s)"]
    if moved:
        lines.append(f"moved to {store.quarantine_dir} ({len(moved)}): {'; '.join(moved)}")
        lines.append("their jobs are recomputed by the next run of the command that made them")
    else:
        lines.append("every document reads back; nothing quarantined")
    return "\n".join(lines)
