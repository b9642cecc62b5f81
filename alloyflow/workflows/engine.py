"""Local execution with a persistent, resumable job store.

Why not plain ``jobflow.run_locally``: it reruns every job of a flow. Here
each job's uuid is derived from a hash of its inputs (structure, calculator
name and version, settings), so a job whose uuid is already in the store has
finished before and is skipped; references to it resolve from the store
(``allow_external_references``). Jobs run one at a time and each is written to
the store as soon as it finishes, so a kill (SIGINT or SIGKILL) loses at most
the job in flight, which is redone from scratch on the next run.

The store is a maggma ``MontyStore`` (sqlite, transactional) in
``<out>/store``; a lock file refuses a second concurrent run on the same folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

from jobflow import Flow, Job, JobStore
from maggma.stores import MontyStore
from monty.json import jsanitize

logger = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The output folder's store is locked by another run or unreadable."""


def input_hash(*parts: Any) -> str:
    """A stable sha256 of JSON-serialisable inputs (structures via ``as_dict``)."""
    payload = json.dumps(jsanitize(parts, strict=False, allow_bson=False, enum_values=True), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def structure_fingerprint(structure) -> dict:
    """What identifies a structure for caching: lattice, species and coordinates, rounded."""
    return {
        "lattice": [[round(x, 6) for x in row] for row in structure.lattice.matrix.tolist()],
        "species": [str(s.specie) for s in structure],
        "frac": [[round(x % 1.0, 6) for x in s.frac_coords] for s in structure],
    }


def deterministic_uuid(key: str) -> str:
    return str(uuidlib.UUID(bytes=bytes.fromhex(key)[:16]))


def keyed(job: Job, key: str, label: str | None = None) -> Job:
    """Give ``job`` a uuid derived from ``key`` and record the key as metadata."""
    job.uuid = deterministic_uuid(key)
    job.metadata = {**(job.metadata or {}), "alloyflow_key": key, "alloyflow_label": label or job.name}
    return job


class KeyedStructureMaker:
    """Mixin for Makers of one structure whose job uuid is the hash of its inputs.

    The key is ``input_hash(key_kind, structure, calculator_info, settings())``,
    so a finished job is found in the store and reused. Subclasses set
    ``key_kind`` and define ``settings()``, ``make`` and ``check``.
    """

    key_kind: ClassVar[str] = ""

    def key(self, structure) -> str:
        from alloyflow.calculators import calculator_info

        return input_hash(self.key_kind, structure_fingerprint(structure), calculator_info(self.calculator),
                          self.settings())

    def check(self, structure, label: str) -> None:
        """Refuse bad input before a job exists (default: elements the calculator cannot treat)."""
        from alloyflow.calculators import check_elements

        check_elements(self.calculator, [el.symbol for el in structure.composition.elements], where=label)

    def keyed_job(self, structure, label: str, metadata: dict | None = None) -> Job:
        """A job whose uuid is the input hash, so a finished one is reused."""
        self.check(structure, label)
        j = self.make(structure, label=label, metadata=metadata or {})
        j.name = f"{self.name} {label}"
        return keyed(j, self.key(structure), label=j.name)


@dataclass
class RunSummary:
    computed: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __iadd__(self, other: "RunSummary") -> "RunSummary":
        self.computed += other.computed
        self.reused += other.reused
        self.failed += other.failed
        self.seconds += other.seconds
        return self

    def message(self) -> str:
        return f"{self.computed} job(s) computed, {self.reused} reused from the store"


class ResultStore:
    """A folder that holds the job store, job folders and the run lock."""

    def __init__(self, out_dir: str | Path):
        # Absolute: run_locally changes directory into each job folder.
        self.out_dir = Path(out_dir).resolve()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir = self.out_dir / "store"
        self.store_dir.mkdir(exist_ok=True)
        self._lock_fh = None
        self.jobstore = self._open()

    def _open(self) -> JobStore:
        docs = MontyStore("outputs", database_path=str(self.store_dir), database_name="alloyflow", key="uuid")
        data = MontyStore("data", database_path=str(self.store_dir), database_name="alloyflow", key="blob_uuid")
        store = JobStore(docs, additional_stores={"data": data})
        try:
            store.connect()
            store.docs_store.count()
            data.count()
        except Exception as exc:
            raise StoreError(
                f"the job store in {self.store_dir} is unreadable ({type(exc).__name__}: {exc}). "
                f"Move the folder aside to start afresh; nothing else in {self.out_dir} was changed."
            ) from None
        return store

    def __enter__(self) -> "ResultStore":
        self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    def lock(self) -> None:
        path = self.out_dir / ".alloyflow.lock"
        self._lock_fh = open(path, "w")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            raise StoreError(f"another alloyflow run is using {self.out_dir}; wait for it or pick another --out") from None
        self._lock_fh.write(str(os.getpid()))
        self._lock_fh.flush()

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def has(self, uuid: str) -> bool:
        return self.jobstore.query_one({"uuid": uuid}, properties=["uuid"]) is not None

    def output(self, uuid: str, load: bool = True) -> Any:
        return self.jobstore.get_output(uuid, load=load)

    def count(self) -> int:
        return self.jobstore.count()


def _jobs_in_order(flow: Flow | Job | Iterable[Job]) -> list[Job]:
    if isinstance(flow, Job):
        return [flow]
    if isinstance(flow, Flow):
        return [job for job, _ in flow.iterflow()]
    jobs: list[Job] = []
    for item in flow:
        jobs += _jobs_in_order(item)
    return jobs


def run_cached(
    flow: Flow | Job | Iterable[Job],
    store: ResultStore,
    progress=None,
    stage: str = "",
) -> RunSummary:
    """Run the jobs of ``flow`` that the store does not hold yet, one at a time.

    ``progress`` is an optional callable ``(label, reused: bool) -> None``
    called after each job; if it has ``start(total)`` that is called first
    (the CLI drives a progress bar with it).
    """
    from jobflow.managers.local import run_locally

    summary = RunSummary()
    t0 = time.perf_counter()
    jobs = _jobs_in_order(flow)
    if hasattr(progress, "start"):
        progress.start(len(jobs))
    for job in jobs:
        label = (job.metadata or {}).get("alloyflow_label", job.name)
        if store.has(job.uuid):
            summary.reused += 1
            if progress:
                progress(label, True)
            continue
        # A job may belong to only one flow; run it in a one-job flow of its own.
        hosts, job.hosts = job.hosts, []
        try:
            run_locally(
                Flow([job]),
                store=store.jobstore,
                create_folders=True,
                root_dir=store.out_dir / "jobs",
                log=False,
                allow_external_references=True,
                raise_immediately=True,
            )
        except Exception as exc:
            summary.failed.append(label)
            raise JobFailed(label, store.out_dir, exc) from exc
        finally:
            job.hosts = hosts
        if not store.has(job.uuid):
            summary.failed.append(label)
            raise JobFailed(label, store.out_dir, None)
        summary.computed += 1
        if progress:
            progress(label, False)
    summary.seconds = time.perf_counter() - t0
    return summary


class JobFailed(RuntimeError):
    def __init__(self, label: str, out_dir: Path, cause: BaseException | None):
        why = f"{type(cause).__name__}: {cause}" if cause else "no output was stored"
        super().__init__(
            f"job {label!r} failed ({why}); finished jobs are kept in {out_dir}/store "
            f"and will be reused on the next run"
        )
        self.label = label
