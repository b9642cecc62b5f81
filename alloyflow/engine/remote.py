"""Send any flow to a jobflow-remote project (the queue store is MongoDB; see docs/HPC.md).

``submit_remote`` is ``jobflow_remote.submit_flow`` with the filter every
alloyflow adapter applies (``alloyflow.engine.pending``): jobs whose output
the project's job store holds are left out (their outputs are read from the
store: ``allow_external_references``), and so are jobs already in the queue
store. jobflow-remote keeps a unique index on ``(uuid, index)``, and
alloyflow's uuids are input hashes, so without the filter a second
submission that shares a job with the first (the Li relaxation of Li-In and
Li-Sn, a phase of two studies) would fail on a duplicate key.

jobflow-remote is imported only when a controller is needed: it is an
optional dependency (``pip install jobflow-remote``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobflow import Flow

from alloyflow.engine.keys import earlier_uuid
from alloyflow.engine.local import detached
from alloyflow.engine.pending import Pending, pending_jobs


class RemoteError(RuntimeError):
    """jobflow-remote is missing or its project cannot be opened."""


@dataclass
class RemoteSubmitResult:
    name: str
    db_ids: list[str] = field(default_factory=list)
    pending: Pending = field(default_factory=Pending)

    def message(self) -> str:
        p = self.pending
        text = (f"{self.name}: {len(self.db_ids)} job(s) added to the jobflow-remote queue "
                f"({len(p.done)} already in the job store, {len(p.queued)} already queued or waiting on queued jobs)")
        if p.queued:
            text += "\nsubmit again once the earlier submission has finished to add the jobs that wait on it"
        return text


def controller(project: str | None = None):
    """The ``JobController`` of a jobflow-remote project (the current one by default)."""
    try:
        from jobflow_remote import JobController
    except ImportError:
        raise RemoteError("jobflow-remote is not installed: pip install jobflow-remote (docs/HPC.md)") from None
    try:
        return JobController.from_project_name(project)
    except Exception as exc:  # noqa: BLE001 - configuration errors of any kind: one line
        raise RemoteError(f"jobflow-remote project {project or '(current)'} cannot be opened: {exc}") from None


def queued_uuids(jobs_collection, jobs) -> set[str]:
    """uuids of ``jobs`` already in a jobflow-remote queue store (any state: the (uuid, index) key is taken).

    A job queued under its uuid from before the face wrap (``alloyflow.engine.keys.earlier_uuid``) counts.
    """
    by_uuid = {earlier_uuid(j): j.uuid for j in jobs}
    by_uuid.update({j.uuid: j.uuid for j in jobs})
    by_uuid.pop(None, None)
    if not by_uuid:
        return set()
    docs = jobs_collection.find({"uuid": {"$in": list(by_uuid)}}, projection={"uuid": 1})
    return {by_uuid[d["uuid"]] for d in docs}


def pending_flow(flow: Flow, jobstore, jobs_collection=None) -> tuple[Flow | None, Pending]:
    """The flow of ``flow``'s jobs that are neither in ``jobstore`` nor in the queue (``jobs_collection``)."""
    jobstore.connect()
    queued = (lambda jobs: queued_uuids(jobs_collection, jobs)) if jobs_collection is not None else None
    pending = pending_jobs(flow, jobstore, queued)
    if not pending.jobs:
        return None, pending
    return Flow(detached(j for j, _ in pending.jobs), name=flow.name), pending


def submit_remote(flow: Flow, project: str | None = None, worker: str | None = None, exec_config=None,
                  resources=None, jc=None) -> RemoteSubmitResult:
    """Add the pending jobs of ``flow`` to a jobflow-remote project's queue.

    Parameters
    ----------
    flow : Flow
        Any flow (``study_flow``, ``barrier_flow``, ``hull_flow_for``).
    project, worker : str, optional
        jobflow-remote project and worker names (defaults: the current project, its first worker).
    exec_config, resources : optional
        Passed to jobflow-remote (modules to load, queue resources).
    jc : JobController, optional
        An open controller (default: ``controller(project)``).
    """
    jc = jc if jc is not None else controller(project)
    new, pending = pending_flow(flow, jc.jobstore, jc.jobs)
    result = RemoteSubmitResult(name=flow.name, pending=pending)
    if new is None:
        return result
    if worker is None:
        workers = list(jc.project.workers)
        if not workers:
            raise RemoteError(f"jobflow-remote project {jc.project.name} has no worker configured")
        worker = workers[0]
    result.db_ids = jc.add_flow(new, worker, allow_external_references=True, exec_config=exec_config,
                                resources=resources)
    return result
