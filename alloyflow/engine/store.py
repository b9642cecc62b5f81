"""The job store of an output folder: a maggma ``MontyStore`` (sqlite) in ``<out>/store`` and the run lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from jobflow import JobStore
from maggma.stores import MontyStore


class StoreError(RuntimeError):
    """The output folder's store is locked by another run or unreadable."""


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

    def document(self, uuid: str, model):
        """The stored output of job ``uuid`` as a ``model`` (a pydantic class): the one reader of documents."""
        return model.model_validate(as_dict(self.output(uuid)))


def as_dict(output) -> Any:
    """A stored output as plain data (pydantic documents come back as models from a live run)."""
    return output.model_dump() if hasattr(output, "model_dump") else output
