"""Independent jobs of a flow in several worker processes, on the same keyed store as the local runner.

The local runner (``alloyflow.engine.local``) runs one job at a time. Most
of a study's jobs do not depend on one another (the tie-line search's
relaxations, the hull phases, the endpoint relaxations and bands of a
phase), and one SevenNet-0 calculation on the cells the study evaluates
uses one core well and a second one poorly (``alloyflow.calculators.threads``),
so ``run_parallel`` keeps ``workers`` such calculations going at once:

* a job is started as soon as every job it references is stored (its
  ``input_uuids``), first come first served: a response's new jobs queue
  behind those already waiting, so phases are computed in the order they
  were planned. (Putting them first, as the in-order runner does, ran the
  study's phases last-planned first and left B32 LiIn's 400 s band, planned
  at 6 min, to run alone at the end: a 7-minute tail on one worker of two.)
* jobs that plan or collect (``alloyflow_kind = assembly``), answer with a
  replacement (``DYNAMIC``) or read the store (``expose_store``) run in this
  process, which owns the store; every other job runs in a worker, which
  gets it with its inputs resolved (JSON, as a queue gets it), runs it
  against an in-memory job store and sends the documents back to be stored
  here, each as soon as its job ends: a kill loses only the jobs in flight;
* workers are spawned (not forked: torch's thread pools do not survive a
  fork), each with ``cores // workers`` cores for its torch threads
  (``$ALLOYFLOW_CORES``), the parent's warning filters and the potentials
  the user registered; a worker whose parent died exits within a second.

Jobs and their outputs are the same as on the local runner: only the order
in which independent jobs finish differs. The command line starts one
worker per core with an ML potential (``alloyflow --workers``); the Python
API runs in order unless ``workers`` or ``$ALLOYFLOW_WORKERS`` says
otherwise. A script that asks for workers needs the usual
``if __name__ == "__main__":`` guard: spawned processes import the main
module (a notebook needs nothing).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from jobflow import Job
from monty.json import MontyDecoder, MontyEncoder

from alloyflow.calculators.threads import available_cores
from alloyflow.engine.local import (
    DYNAMIC,
    Budget,
    JobFailed,
    RunSummary,
    announce,
    begin,
    is_assembly,
    is_finished,
    job_label,
    jobs_in_order,
    new_job_dir,
    record,
    run_in_order,
    run_one,
)
from alloyflow.engine.store import ResultStore

MAX_WORKERS = 4
"""Most workers ``default_workers`` picks by itself: each holds its own copy of the model (~0.5 GB)."""

_QUIET_LOGGERS = ("jobflow", "maggma")


def default_workers() -> int:
    """Worker processes of a local run: ``$ALLOYFLOW_WORKERS``, else 1 (the CLI picks its own default)."""
    try:
        return max(1, int(os.environ.get("ALLOYFLOW_WORKERS", "1") or 1))
    except ValueError:
        raise ValueError(f"ALLOYFLOW_WORKERS must be an integer >= 1, got {os.environ['ALLOYFLOW_WORKERS']!r}") \
            from None


def auto_workers() -> int:
    """The workers a command line run gets by default: one per usable core, at most ``MAX_WORKERS``."""
    return max(1, min(available_cores(), MAX_WORKERS))


def _runs_here(job: Job) -> bool:
    """Planning, collecting, replacing and store-reading jobs run in the process that owns the store."""
    return is_assembly(job) or bool((job.metadata or {}).get(DYNAMIC)) or bool(job.config.expose_store)


def _watch_parent(ppid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os._exit(1)


def _start_worker(ppid: int, cores: int, filters: list, levels: dict, potentials: list) -> None:
    """Worker initializer: its share of cores, the parent's quietness and user potentials; dies with the parent."""
    os.environ["ALLOYFLOW_CORES"] = str(cores)
    os.environ["ALLOYFLOW_WORKERS"] = "1"  # a job that runs a flow of its own runs it here, in order
    warnings.filters[:] = filters
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    if potentials:
        from alloyflow.calculators.user import register_finetuned

        for name, path, digest in potentials:
            register_finetuned(name, path, digest, verify=False)
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()


def _compute(payload: str, job_dir: str, extra_stores: list[str]) -> tuple[list, dict, str | None]:
    """Run one job (JSON, inputs resolved) in a worker; returns its store documents and its response's flows."""
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    job = json.loads(payload, cls=MontyDecoder)
    store = JobStore(MemoryStore(), additional_stores={name: MemoryStore() for name in extra_stores})
    store.connect()
    cwd = os.getcwd()
    try:
        os.chdir(job_dir)
        response = job.run(store=store, job_dir=Path(job_dir))
    finally:
        os.chdir(cwd)
    docs = [{k: v for k, v in d.items() if k != "_id"} for d in store.docs_store.query({})]
    data = {name: [{k: v for k, v in d.items() if k != "_id"} for d in s.query({})]
            for name, s in store.additional_stores.items()}
    new = {key: getattr(response, key) for key in ("replace", "addition", "detour")
           if getattr(response, key) is not None}
    return docs, data, json.dumps(new, cls=MontyEncoder) if new else None


def _user_potentials() -> list:
    from alloyflow.calculators.user import registered_files

    return registered_files()


class _Pool:
    """The spawned workers, started on first use."""

    def __init__(self, n: int):
        self.n = n
        self._executor: ProcessPoolExecutor | None = None

    def submit(self, *args):
        if self._executor is None:
            cores = max(1, available_cores() // self.n)
            levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
            self._executor = ProcessPoolExecutor(
                self.n, mp_context=get_context("spawn"), initializer=_start_worker,
                initargs=(os.getpid(), cores, list(warnings.filters), levels, _user_potentials()))
        return self._executor.submit(_compute, *args)

    def close(self, cancel: bool = False) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=not cancel, cancel_futures=cancel)
            self._executor = None


def run_flow(flow, store: ResultStore, progress=None, budget: Budget | None = None,
             workers: int | None = None) -> RunSummary:
    """Run every unfinished job of ``flow`` (and the jobs their responses add) on the keyed local store.

    Parameters
    ----------
    flow : Flow, Job or iterable of them
        Any jobflow flow; keyed jobs (``alloyflow.engine.keys.keyed``) are reused when stored.
    store : ResultStore
        The output folder's store; job folders go to ``<out>/jobs`` (empty ones are removed).
    progress : callable, optional
        ``(label, reused) -> None`` after each job, or ``(label, reused, stage)`` if it has
        ``staged = True``; its ``start(n, by_stage)``, if any, is told of every job as it becomes known,
        and its ``begin(label)``, if any, of every job that costs force calls as it starts computing.
    budget : Budget, optional
        Stop starting new computations once it is used up (``RunSummary.stopped`` says so).
    workers : int, optional
        Jobs computed at once, each in its own process (default ``default_workers()``: 1 unless
        ``$ALLOYFLOW_WORKERS`` says otherwise); 1 runs them in order in this process
        (``alloyflow.engine.local.run_in_order``).

    Returns
    -------
    RunSummary
        Jobs computed and reused, and the wall time.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        return run_in_order(flow, store, progress=progress, budget=budget)
    summary = RunSummary()
    t0 = time.perf_counter()
    run_parallel(jobs_in_order(flow), store, progress, summary, workers, budget)
    summary.seconds = time.perf_counter() - t0
    return summary


def run_parallel(jobs: list[Job], store: ResultStore, progress, summary: RunSummary, workers: int,
                 budget: Budget | None = None) -> None:
    """Run the unfinished ``jobs`` (and the jobs their responses add) with ``workers`` worker processes.

    Counts, progress ticks and the budget work as in ``alloyflow.engine.local.run_in_order``; a failed
    job stops new starts, the jobs in flight are stored, then ``JobFailed`` is raised.
    ``summary.stage_seconds`` sums the jobs' own wall times (more than the run's, jobs overlapping).
    """
    run = _Run(store, progress, summary, budget, _Pool(workers), workers)
    try:
        run.add(jobs_in_order(jobs))
        run.loop()
    finally:
        run.pool.close(cancel=True)


class _Run:
    def __init__(self, store, progress, summary, budget, pool, workers):
        self.store, self.progress, self.summary, self.budget = store, progress, summary, budget
        self.pool, self.workers = pool, workers
        self.queue: list[Job] = []
        self.seen: set = set()
        self.owner: dict[str, Job] = {}
        self.done: set[str] = set()
        self.running: dict = {}
        self.deps: dict[tuple, frozenset] = {}
        self.failure: tuple[str, BaseException] | None = None
        self.extra = list(store.jobstore.additional_stores)

    def add(self, jobs: list[Job]) -> None:
        """Queue ``jobs``: stored ones are counted as reused now, the others wait for their inputs."""
        fresh = list({(j.uuid, j.index): j for j in jobs if (j.uuid, j.index) not in self.seen}.values())
        announce(self.progress, fresh)  # stored ones included: they tick the bars as reused, as in order
        new = []
        for job in fresh:
            key = (job.uuid, job.index)
            self.seen.add(key)
            self.owner.setdefault(job.uuid, job)
            if is_finished(self.store.jobstore, job):
                self.done.add(job.uuid)
                record(self.summary, job, self.progress, reused=True)
                continue
            new.append(job)
            # jobflow finds references by serialising the inputs (milliseconds for a structure): once per job
            self.deps[key] = frozenset(job.input_uuids)
        self.queue += new

    def ready(self, job: Job) -> bool:
        return all(u in self.done or u not in self.owner for u in self.deps[(job.uuid, job.index)])

    def loop(self) -> None:
        while self.queue or self.running:
            started = self.start_ready()
            if self.running:
                finished, _ = wait(list(self.running), timeout=None if not started else 0.05,
                                   return_when=FIRST_COMPLETED)
                for future in finished:
                    self.collect(future)
            elif self.queue and not started and not (self.failure or self.summary.stopped):
                # nothing runs and nothing is ready: a job waits on one that will never be stored (a dynamic
                # job that answered without a replacement); run it as the sequential runner would
                self.run_here(self.queue.pop(0))
            if self.failure and not self.running:
                label, exc = self.failure
                raise JobFailed(label, self.store.out_dir, exc) from exc
            if self.summary.stopped and not self.running:
                return

    def start_ready(self) -> bool:
        """Start every ready job a free worker (or this process) can take; True if any started."""
        started = False
        i = 0
        while i < len(self.queue) and not self.failure and not self.summary.stopped:
            job = self.queue[i]
            if not self.ready(job):
                i += 1
                continue
            here = _runs_here(job)
            if not here and len(self.running) >= self.workers:
                i += 1
                continue
            if not is_assembly(job) and (why := self.exhausted()):
                self.summary.stopped = why
                break
            self.queue.pop(i)
            started = True
            if here:
                self.run_here(job)
                i = 0  # what it stored may have made earlier jobs ready
            else:
                self.submit(job)
        return started

    def exhausted(self) -> str:
        """The budget's verdict, counting the jobs in flight as computed (they will be)."""
        if self.budget is None:
            return ""
        cap = self.budget.max_computed
        if cap is not None and self.summary.computed + len(self.running) >= cap:
            return f"stopped after {cap} new jobs"
        return self.budget.exhausted(self.summary)

    def run_here(self, job: Job) -> None:
        t0 = time.perf_counter()
        try:
            response = run_one(job, self.store, job_label(job), self.summary)
        except JobFailed as exc:
            self.failure = (job_label(job), exc.__cause__ or exc)
            return
        self.finish(job, time.perf_counter() - t0)
        for new in (response.replace, response.addition, response.detour):
            if new is not None:
                self.add(jobs_in_order(new))

    def submit(self, job: Job) -> None:
        resolved = job.resolve_args(self.store.jobstore, inplace=False)
        payload = json.dumps(resolved, cls=MontyEncoder)
        job_dir = new_job_dir(self.store.out_dir / "jobs")
        future = self.pool.submit(payload, str(job_dir), self.extra)
        self.running[future] = (job, job_dir, time.perf_counter())
        begin(self.progress, job)

    def collect(self, future) -> None:
        job, job_dir, t0 = self.running.pop(future)
        if job_dir.is_dir() and not any(job_dir.iterdir()):
            job_dir.rmdir()
        try:
            docs, data, new = future.result()
        except BaseException as exc:  # noqa: BLE001 (reported as the job's failure, after the others are stored)
            self.summary.failed.append(job_label(job))
            self.failure = self.failure or (job_label(job), exc)
            return
        for name, blobs in data.items():
            if blobs:
                self.store.jobstore.additional_stores[name].update(blobs, key="blob_uuid")
        if docs:
            self.store.jobstore.docs_store.update(docs, key=["uuid", "index"])
        if not any(d.get("uuid") == job.uuid and d.get("index") == job.index for d in docs):
            self.summary.failed.append(job_label(job))
            self.failure = self.failure or (job_label(job), RuntimeError("no output was stored"))
            return
        self.finish(job, time.perf_counter() - t0)
        if new:
            flows = json.loads(new, cls=MontyDecoder)
            for key in ("replace", "addition", "detour"):
                if key in flows:
                    self.add(jobs_in_order(flows[key]))

    def finish(self, job: Job, seconds: float) -> None:
        owner = self.owner.get(job.uuid, job)
        if is_finished(self.store.jobstore, owner):
            self.done.add(job.uuid)
        record(self.summary, job, self.progress, reused=False, seconds=seconds)
