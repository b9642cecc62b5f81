"""Which jobs of a flow a queue still needs: neither stored nor queued by an earlier submission.

Both queue adapters (FireWorks, jobflow-remote) send only these. A job that
is stored is left out and references to it resolve from the job store when
its children run. A job already queued by an earlier submission is left out
too, and so is every job downstream of it: a queue cannot make a new job
wait on another submission's job, so those are named in the result and a
later ``submit`` (once the earlier work has finished) adds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from jobflow import Flow, Job

from alloyflow.engine.local import is_finished


@dataclass
class Pending:
    """The split of a flow's jobs (flattened, in run order)."""

    jobs: list[tuple[Job, list[str]]] = field(default_factory=list)
    """(job, uuids of its parents among the pending jobs)."""
    done: list[str] = field(default_factory=list)
    """Labels of jobs the job store holds finished."""
    queued: list[str] = field(default_factory=list)
    """Labels of jobs queued by an earlier submission, or downstream of one."""
    total: int = 0


def label(job: Job) -> str:
    return (job.metadata or {}).get("alloyflow_label", job.name)


def pending_jobs(flow: Flow | Job, reader, queued: Callable[[list[Job]], set[str]] | None = None) -> Pending:
    """Split ``flow`` into pending, stored and queued jobs.

    Parameters
    ----------
    flow : Flow or Job
        Any jobflow flow.
    reader : JobStore
        The store workers write results to (connected).
    queued : callable, optional
        ``jobs -> uuids`` of those already on the queue (FireWorks LaunchPad, jobflow-remote queue store).
    """
    pairs = list(flow.iterflow()) if isinstance(flow, Flow) else [(flow, [])]
    on_queue = queued([j for j, _ in pairs]) if queued is not None else set()
    out = Pending(total=len(pairs))
    kept: set[str] = set()
    skipped: set[str] = set()
    for job, parents in pairs:
        if is_finished(reader, job):
            out.done.append(label(job))
            continue
        if job.uuid in on_queue or any(p in skipped for p in parents):
            out.queued.append(label(job))
            skipped.add(job.uuid)
            continue
        out.jobs.append((job, [p for p in parents if p in kept]))
        kept.add(job.uuid)
    return out
