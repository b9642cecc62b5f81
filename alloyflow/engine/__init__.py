"""Execution: cache keys, the job store, the local runner and the queue adapters.

``keys`` (input-hash uuids), ``store`` (the output folder's job store),
``local`` (the resumable local runner), ``parallel`` (its jobs in several
worker processes), ``fireworks`` and ``remote`` (the
same flows on a FireWorks LaunchPad or a jobflow-remote project). Nothing
here imports a flow: every adapter takes any ``Flow``.
"""

from alloyflow.engine.keys import (
    KeyedStructureMaker,
    deterministic_uuid,
    input_hash,
    keyed,
    structure_fingerprint,
)
from alloyflow.engine.local import DYNAMIC, Budget, JobFailed, RunSummary, is_finished, run_cached
from alloyflow.engine.parallel import auto_workers, default_workers, run_flow
from alloyflow.engine.store import ResultStore, StoreError

__all__ = [
    "DYNAMIC", "Budget", "auto_workers", "default_workers", "JobFailed", "KeyedStructureMaker", "is_finished", "run_flow", "ResultStore", "RunSummary", "StoreError", "deterministic_uuid",
    "input_hash", "keyed", "run_cached", "structure_fingerprint",
]
