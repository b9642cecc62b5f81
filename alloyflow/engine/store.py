"""The job store of an output folder: montydb (sqlite) in ``<out>/store``, indexed on its keys, and the run lock.

One bad document does not cost the others: a row whose BSON does not decode
(found when the store is opened) and a document whose output does not
deserialize (found when it is read) are moved to ``<out>/store/quarantine/``,
named on stderr, and their jobs count as not run, so the next run recomputes
them while every other finished job is reused. A store whose sqlite file
itself is damaged is still an error (``StoreError``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
import sys
from pathlib import Path
from typing import Any

from jobflow import JobStore

from alloyflow.engine.indexed import IndexedMontyStore


class StoreError(RuntimeError):
    """The output folder's store is locked by another run or unreadable."""


class CorruptDocument(StoreError):
    """A stored job output that cannot be read back; it was moved to the quarantine, so its job reruns."""

    def __init__(self, message: str, uuid: str):
        super().__init__(message)
        self.uuid = uuid


DATABASE = "alloyflow"
QUARANTINE = "quarantine"


def _report(message: str) -> None:
    print(f"alloyflow: warning: {message}", file=sys.stderr, flush=True)


def _bson_string(raw: bytes, field: str) -> str | None:
    """The first string element ``field`` in raw (possibly damaged) BSON bytes, or None."""
    tag = b"\x02" + field.encode() + b"\x00"
    at = raw.find(tag)
    if at < 0 or at + len(tag) + 4 > len(raw):
        return None
    (size,) = struct.unpack_from("<i", raw, at + len(tag))
    start = at + len(tag) + 4
    if not 0 < size <= 512 or start + size > len(raw):
        return None
    try:
        return raw[start:start + size - 1].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _describe(doc: dict | None = None, raw: bytes | None = None) -> str:
    """``'relax LiIn' (uuid ...)`` from a document, or from the readable parts of its raw bytes."""
    if doc is not None:
        label = (doc.get("metadata") or {}).get("alloyflow_label") or doc.get("name")
        uuid = doc.get("uuid")
    else:
        label = _bson_string(raw, "alloyflow_label") or _bson_string(raw, "name")
        uuid = _bson_string(raw, "uuid")
    parts = [repr(label) if label else "a job", f"(uuid {uuid})" if uuid else ""]
    return " ".join(p for p in parts if p)


class ResultStore:
    """A folder that holds the job store, job folders and the run lock.

    ``quarantined``: what opening (and reading) moved to ``<out>/store/quarantine``, one description each.
    """

    def __init__(self, out_dir: str | Path):
        # Absolute: run_locally changes directory into each job folder.
        self.out_dir = Path(out_dir).resolve()
        self.store_dir = self.out_dir / "store"
        self._make_folders(out_dir)
        self._lock_fh = None
        self.quarantined: list[str] = []
        self.jobstore = self._open()

    def _make_folders(self, given) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.store_dir.mkdir(exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            blocking = next((p for p in (self.store_dir, *self.store_dir.parents) if p.exists() and not p.is_dir()),
                            self.out_dir)
            raise StoreError(f"cannot use {given} as the output folder: {blocking} is a file, not a folder; "
                             "pick another --out") from None
        except PermissionError:
            raise StoreError(f"cannot create the output folder {given} or its store: permission denied; "
                             "pick another --out or make it writable") from None
        except OSError as exc:
            raise StoreError(f"cannot create the output folder {given}: {exc.strerror or exc}") from None

    @property
    def quarantine_dir(self) -> Path:
        return self.store_dir / QUARANTINE

    def _connect(self) -> JobStore:
        docs = IndexedMontyStore("outputs", database_path=str(self.store_dir), database_name=DATABASE, key="uuid")
        data = IndexedMontyStore("data", database_path=str(self.store_dir), database_name=DATABASE, key="blob_uuid")
        store = JobStore(docs, additional_stores={"data": data})
        store.connect()
        for collection in (docs, data):  # decodes every stored document once: an undecodable one is found here
            collection.refresh()
        return store

    def _open(self) -> JobStore:
        try:
            return self._connect()
        except Exception as exc:
            error = exc
        try:  # one undecodable row must not cost every finished job: move such rows aside, then retry
            moved = self._quarantine_undecodable()
        except Exception:  # the sqlite file itself is damaged
            moved = []
        if moved:
            try:
                return self._connect()
            except Exception as exc:
                error = exc
        raise StoreError(
            f"the job store in {self.store_dir} is unreadable ({type(error).__name__}: {error}). "
            f"Move the folder aside to start afresh; nothing else in {self.out_dir} was changed."
        ) from None

    def _quarantine_undecodable(self) -> list[str]:
        """Rows of the store's sqlite collections whose BSON does not decode, moved to the quarantine."""
        import bson

        moved = []
        for collection in sorted((self.store_dir / DATABASE).glob("*.collection")):
            conn = sqlite3.connect(collection, timeout=60)
            try:
                if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":  # a damaged file: left as it is
                    raise sqlite3.DatabaseError(f"{collection} fails sqlite's quick_check")
                bad = []
                for key, value in conn.execute("SELECT k, v FROM documents"):
                    raw = value if isinstance(value, bytes) else str(value).encode("latin-1")
                    try:
                        bson.decode(raw)
                    except Exception:
                        bad.append((key, raw))
                for key, raw in bad:
                    name = key.hex() if isinstance(key, bytes) else str(key)
                    self._keep(f"{collection.stem}-{name}.bson", raw)
                    with conn:
                        conn.execute("DELETE FROM documents WHERE k = ?", (key,))
                    moved.append(_describe(raw=raw) + ("" if collection.stem == "outputs" else
                                                       f" in the {collection.stem} collection"))
            finally:
                conn.close()
        if moved:
            self.quarantined += moved
            _report(f"{len(moved)} unreadable document(s) of the job store moved to {self.quarantine_dir}: "
                    f"{'; '.join(moved)}; their jobs will be recomputed, every other finished job is reused")
        return moved

    def _keep(self, name: str, raw: bytes) -> Path:
        """``raw`` into the quarantine folder (fsynced before anything is deleted from the store)."""
        self.quarantine_dir.mkdir(exist_ok=True)
        path = self.quarantine_dir / name
        with open(path, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        return path

    def quarantine(self, uuid: str, index: int | None = None, why: str = "") -> list[str]:
        """Move the stored document(s) of job ``uuid`` (one ``index``, or all) to the quarantine; descriptions."""
        import bson

        criteria: dict = {"uuid": uuid, **({"index": index} if index is not None else {})}
        docs = list(self.jobstore.docs_store.query(criteria))
        moved = []
        for doc in docs:
            raw = bson.encode({k: v for k, v in doc.items() if k != "_id"})
            self._keep(f"outputs-{uuid}-{doc.get('index')}.bson", raw)
            self.jobstore.docs_store.remove_docs({"uuid": uuid, "index": doc.get("index")})
            moved.append(_describe(doc))
        if moved:
            self.quarantined += moved
            _report(f"the stored output of {'; '.join(moved)} does not deserialize"
                    f"{f' ({why})' if why else ''}; moved to {self.quarantine_dir}, its job will be recomputed")
        return moved

    def corrupt_documents(self) -> list[dict]:
        """Documents (uuid, index, name, metadata) whose output does not deserialize: reads every output."""
        bad = []
        for doc in self.jobstore.docs_store.query({}, properties=["uuid", "index", "name", "metadata"]):
            try:
                found = self.jobstore.query_one({"uuid": doc["uuid"], "index": doc["index"]},
                                                properties=["output"], load=True)
                _deserialize(found["output"])
            except Exception as exc:
                bad.append({**doc, "error": type(exc).__name__})
        return bad

    def quarantine_corrupt(self) -> list[str]:
        """Move every document whose output does not deserialize to the quarantine (reads the whole store)."""
        moved = []
        for doc in self.corrupt_documents():
            moved += self.quarantine(doc["uuid"], doc["index"], why=doc["error"])
        return moved

    def __enter__(self) -> "ResultStore":
        self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.close_readers()
        self.unlock()

    def close_readers(self) -> None:
        """Close the store indexes' sqlite connections, so that montydb's write-ahead log is folded into the file."""
        for collection in (self.jobstore.docs_store, *self.jobstore.additional_stores.values()):
            if hasattr(collection, "close_reader"):
                collection.close_reader()

    def lock(self) -> None:
        path = self.out_dir / ".alloyflow.lock"
        try:
            self._lock_fh = open(path, "w")
        except OSError as exc:  # a read-only output folder
            raise StoreError(f"cannot write to the output folder {self.out_dir} ({exc.strerror or exc}); "
                             "pick another --out or make it writable") from None
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
        """The stored output of job ``uuid`` as a ``model`` (a pydantic class): the one reader of documents.

        An output that does not deserialize (or, stored as ``model``, does not validate as one) is moved to
        the quarantine and a ``CorruptDocument`` raised: the next run of the flow recomputes its job. An
        output of another class is the caller's mistake, raised as it is.
        """
        try:
            output = self.output(uuid)
        except ValueError as exc:
            if "has no outputs" in str(exc):
                raise
            raise self._corrupt(uuid, exc) from None
        except Exception as exc:
            raise self._corrupt(uuid, exc) from None
        data = as_dict(output)
        if not isinstance(data, dict) or data.get("@class", model.__name__) != model.__name__:
            return model.model_validate(data)
        try:
            return model.model_validate(data)
        except ValueError as exc:
            raise self._corrupt(uuid, exc) from None

    def _corrupt(self, uuid: str, exc: Exception) -> CorruptDocument:
        moved = self.quarantine(uuid, why=type(exc).__name__)
        what = moved[0] if moved else f"job {uuid}"
        return CorruptDocument(
            f"the stored output of {what} in {self.store_dir} is corrupt ({type(exc).__name__}); it was moved "
            f"to {self.quarantine_dir}: run the command again to recompute it (every other job is reused)", uuid)


def _deserialize(output) -> None:
    """Decode a stored output as a reuse would (``MontyDecoder``) and validate alloyflow's pydantic documents."""
    import importlib

    from monty.json import MontyDecoder
    from pydantic import BaseModel

    MontyDecoder().process_decoded(output)
    if isinstance(output, dict) and str(output.get("@module", "")).startswith("alloyflow."):
        cls = getattr(importlib.import_module(output["@module"]), str(output.get("@class")), None)
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            cls.model_validate(output)


def as_dict(output) -> Any:
    """A stored output as plain data (pydantic documents come back as models from a live run)."""
    return output.model_dump() if hasattr(output, "model_dump") else output
