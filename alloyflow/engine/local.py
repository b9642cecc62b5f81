"""The local runner: any jobflow ``Flow`` on a persistent, resumable job store.

Why not plain ``jobflow.run_locally``: it reruns every job of a flow. Here
each job's uuid is derived from a hash of its inputs (structure, calculator
name and version, settings; ``alloyflow.engine.keys``), so a job whose uuid is
already in the store has finished before and is skipped; references to it
resolve from the store. Jobs run one at a time and each is written to the
store as soon as it finishes, so a kill (SIGINT or SIGKILL) loses at most the
job in flight, which is redone from scratch on the next run.

Dynamic flows work as on FireWorks: a job that returns
``Response(replace=...)`` (or ``addition``/``detour``) has its new jobs run
next, depth first, before the jobs that depend on it. jobflow gives the
replacement's output the replaced job's uuid at the next index, so a replaced
job counts as finished only once that output is stored: a study killed in
the middle of a phase's NEBs reruns the (cheap) decision job, which makes the
same keyed NEB jobs again, and only the unfinished ones are computed.

The store is a maggma ``MontyStore`` (sqlite, transactional) in
``<out>/store``; a lock file refuses a second concurrent run on the same folder.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from jobflow import Flow, Job

from alloyflow.engine.keys import earlier_uuid
from alloyflow.engine.store import ResultStore

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    computed: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    assembled: int = 0
    """Planning and collecting jobs run (no force calls)."""
    assembled_reused: int = 0
    stage_seconds: dict = field(default_factory=dict)
    """Wall time of the jobs run, by their ``alloyflow_stage`` metadata (planning and collecting included)."""
    stopped: str = ""
    """Why the run stopped before the flow finished (a budget); empty when it ran to the end."""

    def __iadd__(self, other: "RunSummary") -> "RunSummary":
        self.computed += other.computed
        self.reused += other.reused
        self.failed += other.failed
        self.seconds += other.seconds
        self.assembled += other.assembled
        self.assembled_reused += other.assembled_reused
        for name, seconds in other.stage_seconds.items():
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + seconds
        self.stopped = self.stopped or other.stopped
        return self

    def message(self) -> str:
        return f"{self.computed} job(s) computed, {self.reused} reused from the store"


def jobs_in_order(flow: Flow | Job | Iterable[Job]) -> list[Job]:
    if isinstance(flow, Job):
        return [flow]
    if isinstance(flow, Flow):
        return [job for job, _ in flow.iterflow()]
    jobs: list[Job] = []
    for item in flow:
        jobs += jobs_in_order(item)
    return jobs


DYNAMIC = "alloyflow_dynamic"
"""Metadata flag of a job that answers with ``Response(replace=...)``: finished only when its replacement is."""


RETRY = "retry_next_run"
"""A stored output (a mapping) with this key true is a recorded failure, not a result: the next run computes
its job again. A dynamic job that answers without a replacement needs no flag (it is finished only once a
replacement exists); the jobs that collect its output carry the flag on (``BarrierResult.retry_next_run``)."""


def is_finished(jobstore, job: Job) -> bool:
    """Whether ``job``'s result is in ``jobstore`` (for a dynamic job: its replacement's output) and is final.

    An output marked ``RETRY`` is a failure stored so that the rest of a flow could go on; it does not count.
    A result stored under the job's key from before the face wrap
    (``alloyflow.engine.keys.EARLIER_KEY``) counts too: it is copied under
    today's uuid first (``adopt``), so references to the job resolve.
    """
    index = job.index + 1 if (job.metadata or {}).get(DYNAMIC) and job.index == 1 else job.index
    if _finished_under(jobstore, job.uuid, index):
        return True
    earlier = earlier_uuid(job)
    return bool(earlier) and _finished_under(jobstore, earlier, index) and adopt(jobstore, earlier, job)


def _finished_under(jobstore, uuid: str, index: int) -> bool:
    doc = jobstore.query_one({"uuid": uuid, "index": {"$gte": index}}, properties=["output"], sort={"index": -1})
    return doc is not None and _final(jobstore, doc.get("output"))


ADOPTED_FROM = "alloyflow_adopted_from"
"""Metadata of a document ``adopt`` copied: the uuid it was stored under."""


def adopt(jobstore, earlier_uuid: str, job: Job) -> bool:
    """Copy the documents stored under ``earlier_uuid`` under ``job``'s uuid; True once they are there.

    For results stored under a key that today's fingerprint writes
    differently (``alloyflow.engine.keys.earlier_keys``): nothing is
    recomputed and nothing stored is changed; the copy records where it came
    from (``ADOPTED_FROM``) and shares the original's data blobs. False where
    the store refuses the write (a read-only store): the job then runs.
    """
    docs = list(jobstore.query({"uuid": earlier_uuid}, load=False))
    for d in docs:
        d.pop("_id", None)
        d["uuid"] = job.uuid
        d["metadata"] = {**(d.get("metadata") or {}), "alloyflow_key": (job.metadata or {}).get("alloyflow_key"),
                         ADOPTED_FROM: earlier_uuid}
    try:
        jobstore.docs_store.update(docs, key=["uuid", "index"])
    except Exception as exc:  # noqa: BLE001 (any store's refusal)
        logger.warning("could not copy the stored result %s under %s: %s", earlier_uuid, job.uuid, exc)
        return False
    return bool(docs)


def _final(jobstore, output, depth: int = 0) -> bool:
    """False for an output marked ``RETRY``, or a stored reference (a replacement's output) that leads to one."""
    if not isinstance(output, dict):
        return True
    if output.get(RETRY):
        return False
    if output.get("@class") == "OutputReference" and output.get("uuid") and depth < 32:
        doc = jobstore.query_one({"uuid": output["uuid"]}, properties=["output"], sort={"index": -1})
        return doc is None or _final(jobstore, doc.get("output"), depth + 1)
    return True


def unfinished(flow: Flow | Job | Iterable[Job], jobstore=None) -> list[Job]:
    """The jobs of ``flow`` (flattened, in run order) that ``jobstore`` does not hold finished.

    Inside a running job ``jobstore`` defaults to that job's store (jobflow's
    ``CURRENT_JOB.store``, on the local engine as on a FireWorks or
    jobflow-remote worker), so a job that answers ``Response(replace=...)``
    leaves stored work out of its replacement; references to the left-out
    jobs resolve from the store. The jobs returned are detached from the flows
    they were built in, so they can join the replacement flow.
    """
    if jobstore is None:
        from jobflow import CURRENT_JOB

        jobstore = CURRENT_JOB.store
    jobs = jobs_in_order(flow)
    if jobstore is not None:
        jobs = [j for j in jobs if not is_finished(jobstore, j)]
    return detached(jobs)


def detached(jobs: Iterable[Job]) -> list[Job]:
    """The jobs, free of the flows they were built in (which are discarded), so they can join a new flow."""
    jobs = list(jobs)
    for j in jobs:
        j.hosts = []
    return jobs


def exposing_store(job: Job) -> Job:
    """Let ``job`` see its job store while it runs (``CURRENT_JOB.store``; jobflow's ``expose_store``).

    A job that answers ``Response(replace=...)`` needs it to leave stored work
    out of its replacement (``replacement``); without it ``CURRENT_JOB.store``
    is None and every job would be run again on a queue.
    """
    from dataclasses import replace as _copy

    job.config = _copy(job.config, expose_store=True)
    return job


def _resolved(obj, done: set, jobstore):
    """``obj`` with every reference to a job in ``done`` replaced by its stored output (lists, tuples, dicts)."""
    from jobflow import OutputReference

    if isinstance(obj, OutputReference):
        return obj.resolve(jobstore) if obj.uuid in done else obj
    if isinstance(obj, list):
        return [_resolved(x, done, jobstore) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_resolved(x, done, jobstore) for x in obj)
    if isinstance(obj, dict):
        return {k: _resolved(v, done, jobstore) for k, v in obj.items()}
    return obj


def replacement(jobs: Flow | Job | Iterable[Job], output=None, name: str = "replacement", jobstore=None) -> Flow:
    """The flow a dynamic job replaces itself with: ``jobs`` less those the store holds finished.

    References to the jobs left out are resolved from the store, in the
    remaining jobs' inputs and in ``output``: a queue (jobflow's FireWorks
    manager) refuses a replacement whose jobs reference jobs outside it, and
    recomputing them to keep the references would redo finished work. Inside
    a running job ``jobstore`` defaults to ``CURRENT_JOB.store``, which the job
    must expose (``exposing_store``); with no store every job is kept.
    """
    if jobstore is None:
        from jobflow import CURRENT_JOB

        jobstore = CURRENT_JOB.store
    seen: set = set()
    jobs = [j for j in jobs_in_order(jobs) if not (j.uuid in seen or seen.add(j.uuid))]  # shared jobs join once
    if jobstore is not None:
        done = {j.uuid for j in jobs if is_finished(jobstore, j)}
        jobs = [j for j in jobs if j.uuid not in done]
        if done:
            for j in jobs:
                j.function_args = _resolved(j.function_args, done, jobstore)
                j.function_kwargs = _resolved(j.function_kwargs, done, jobstore)
            output = _resolved(output, done, jobstore)
    return Flow(detached(jobs), output=output, name=name)


def is_assembly(job: Job) -> bool:
    return (job.metadata or {}).get("alloyflow_kind") == "assembly" or job.name == "store_inputs"


def job_label(job: Job) -> str:
    return (job.metadata or {}).get("alloyflow_label", job.name)


def job_stage(job: Job) -> str | None:
    return (job.metadata or {}).get("alloyflow_stage")


def tick_progress(progress, label: str, reused: bool, job: Job) -> None:
    if getattr(progress, "staged", False):
        progress(label, reused, job_stage(job))
    else:
        progress(label, reused)


def new_job_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"job_{datetime.now().strftime('%Y-%m-%d-%H-%M-%S-%f')}-{os.getpid()}"
    path.mkdir()
    return path


@dataclass
class Budget:
    """When a local run stops starting new computations: wall seconds from the start, or a job count.

    A budget never stops a job in flight and never skips a stored one; the
    run just returns early with ``RunSummary.stopped`` set, and the same call
    resumes where it stopped. Planning and collecting jobs (no force calls)
    are not counted and still run.
    """

    seconds: float | None = None
    max_computed: int | None = None
    t0: float = field(default_factory=time.perf_counter)

    def exhausted(self, summary: RunSummary) -> str:
        if self.max_computed is not None and summary.computed >= self.max_computed:
            return f"stopped after {self.max_computed} new jobs"
        if self.seconds is not None and time.perf_counter() - self.t0 >= self.seconds:
            return f"budget of {self.seconds / 60:.1f} min used up"
        return ""


def run_in_order(flow: Flow | Job | Iterable[Job], store: ResultStore, progress=None,
                 budget: Budget | None = None) -> RunSummary:
    """Run every unfinished job of ``flow`` (and the jobs their responses add), one at a time.

    ``alloyflow.engine.run_flow`` calls this with one worker (parameters and result as there); with more it
    runs independent jobs at once (``alloyflow.engine.parallel``).
    """
    summary = RunSummary()
    t0 = time.perf_counter()
    _run_jobs(jobs_in_order(flow), store, progress, summary, seen=set(), budget=budget)
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_jobs(jobs: list[Job], store: ResultStore, progress, summary: RunSummary, seen: set,
              budget: Budget | None = None) -> None:
    jobs = [j for j in jobs if (j.uuid, j.index) not in seen]
    announce(progress, jobs)
    for job in jobs:
        if summary.stopped:
            return
        if (job.uuid, job.index) in seen:
            continue
        seen.add((job.uuid, job.index))
        label = job_label(job)
        if is_finished(store.jobstore, job):
            record(summary, job, progress, reused=True)
            continue
        if budget is not None and not is_assembly(job) and (why := budget.exhausted(summary)):
            summary.stopped = why
            return
        begin(progress, job)
        t0 = time.perf_counter()
        response = run_one(job, store, label, summary)
        record(summary, job, progress, reused=False, seconds=time.perf_counter() - t0)
        for new in (response.replace, response.addition, response.detour):
            if new is not None:
                _run_jobs(jobs_in_order(new), store, progress, summary, seen, budget)


def announce(progress, jobs: Iterable[Job]) -> None:
    """Tell ``progress.start`` (if any) of new jobs that cost force calls, by stage."""
    if not hasattr(progress, "start"):
        return
    by_stage: dict = {}
    for j in jobs:
        if not is_assembly(j):
            by_stage[job_stage(j)] = by_stage.get(job_stage(j), 0) + 1
    progress.start(sum(by_stage.values()), by_stage)


def begin(progress, job: Job) -> None:
    """Tell ``progress.begin`` (if any) that ``job``, which costs force calls, starts computing now."""
    if hasattr(progress, "begin") and not is_assembly(job):
        progress.begin(job_label(job))


def record(summary: RunSummary, job: Job, progress, reused: bool, seconds: float = 0.0) -> None:
    """Count ``job`` as reused or run (its wall time to its stage) and tick ``progress``.

    Planning and collecting jobs cost no force calls: counted apart, not shown as progress.
    """
    if not reused:
        name = job_stage(job) or "other"
        summary.stage_seconds[name] = summary.stage_seconds.get(name, 0.0) + seconds
    if is_assembly(job):
        if reused:
            summary.assembled_reused += 1
        else:
            summary.assembled += 1
        return
    if reused:
        summary.reused += 1
    else:
        summary.computed += 1
    if progress:
        tick_progress(progress, job_label(job), reused, job)


def run_one(job: Job, store: ResultStore, label: str, summary: RunSummary):
    job_dir = new_job_dir(store.out_dir / "jobs")
    cwd = os.getcwd()
    try:
        os.chdir(job_dir)
        response = job.run(store=store.jobstore, job_dir=job_dir)
    except Exception as exc:
        summary.failed.append(label)
        raise JobFailed(label, store.out_dir, exc) from exc
    finally:
        os.chdir(cwd)
        if job_dir.is_dir() and not any(job_dir.iterdir()):
            job_dir.rmdir()
    if store.jobstore.query_one({"uuid": job.uuid, "index": job.index}, properties=["uuid"]) is None:
        summary.failed.append(label)
        raise JobFailed(label, store.out_dir, None)
    return response


def run_cached(flow: Flow | Job | Iterable[Job], store: ResultStore, progress=None, stage: str = "") -> RunSummary:
    """``run_in_order``: the flows that jobs run inside themselves (refinement, labels, elastic) stay in order."""
    return run_in_order(flow, store, progress=progress)


class JobFailed(RuntimeError):
    def __init__(self, label: str, out_dir: Path, cause: BaseException | None):
        why = f"{type(cause).__name__}: {cause}" if cause else "no output was stored"
        super().__init__(
            f"job {label!r} failed ({why}); finished jobs are kept in {out_dir}/store "
            f"and will be reused on the next run"
        )
        self.label = label
