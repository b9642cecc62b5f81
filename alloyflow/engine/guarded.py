"""Jobs whose failure is a result: the maker's ``run`` or, if it raises, an error record under the same key.

A flow that gathers many independent results (the moduli of every phase,
the attempt frequencies of every barrier result) must not lose them all
to one failure, on the local engine (where a failing job stops the run) or
on a queue (where it stops the jobs that depend on it). ``run_guarded``
runs ``maker.run(*args, label=..., metadata=...)`` and, when that raises,
returns ``{"job_error": "<type>: <message>", "label": ...}`` instead; the
collecting job reports it as a warning. The job is keyed as the maker's own
job (``keyed_job(..., tolerant=True)``), so a successful result is the very
document the plain job stores and either reuses the other's. Like an NEB
whose endpoints collapse (``endpoint_error``), a failure is stored: a rerun
reports it again rather than recomputing it.
"""

from __future__ import annotations

from typing import Any

from jobflow import job

JOB_ERROR = "job_error"
"""Key of the error record a guarded job returns when its maker raises."""


@job
def run_guarded(maker, args: list, label: str = "", metadata: dict | None = None) -> Any:
    """``maker.run(*args, label=label, metadata=metadata)``, or an error record if it raises."""
    try:
        return maker.run(*args, label=label, metadata=metadata)
    except Exception as exc:  # noqa: BLE001 - the failure is this job's result
        return {JOB_ERROR: f"{type(exc).__name__}: {exc}", "label": label}


def job_error(output) -> str | None:
    """The error message of a guarded job's stored output (None for a real result)."""
    data = output.model_dump() if hasattr(output, "model_dump") else output
    return data.get(JOB_ERROR) if isinstance(data, dict) else None


__all__ = ["JOB_ERROR", "job_error", "run_guarded"]
