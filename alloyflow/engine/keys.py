"""Cache keys: a job's uuid is the hash of what determines its result.

``input_hash`` hashes JSON-serialisable inputs; ``structure_fingerprint`` is
what identifies a structure (lattice, species, wrapped fractional
coordinates, rounded); ``keyed`` gives a jobflow ``Job`` the uuid derived from
its key, so a finished job is found in any store (local or the workers') and
never computed twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid as uuidlib
from dataclasses import fields
from contextvars import ContextVar
from typing import Any, Callable, ClassVar, Iterable

from jobflow import Job
from monty.json import jsanitize

from alloyflow.calculators import calculator_info, check_elements
from alloyflow.engine.guarded import run_guarded
from alloyflow.structures.limits import check_cell_size


def input_hash(*parts: Any) -> str:
    """A stable sha256 of JSON-serialisable inputs (structures via ``as_dict``)."""
    payload = json.dumps(jsanitize(parts, strict=False, allow_bson=False, enum_values=True), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


FACE_NOISE = 1e-9
"""A fractional coordinate this close to a cell face (0 or 1) lies on it; which side is rounding noise."""

_FACES: ContextVar = ContextVar("alloyflow_faces", default=None)
"""How ``structure_fingerprint`` writes coordinates on a cell face: None (today: 0.0) or an ``_EarlierFaces``."""


def structure_fingerprint(structure) -> dict:
    """What identifies a structure for caching: lattice, species and coordinates, rounded.

    Fractional coordinates are wrapped into [0, 1) after rounding, so a site on
    a cell face is 0.0 however it was computed. Before, ``round(x % 1.0, 6)``
    wrote 1.0 for -2e-16 and 0.0 for +2e-16: the same site had two keys, and
    which one a store held depended on the last bit of a matrix product (a
    band stored for ``tests/test_study_flow.py`` was no longer found on a
    later install). Keys written that way are still found (``earlier_keys``).
    """
    faces = _FACES.get()
    wrap = _wrapped if faces is None else faces.value
    return {
        "lattice": [[round(x, 6) for x in row] for row in structure.lattice.matrix.tolist()],
        "species": [str(s.specie) for s in structure],
        "frac": [[wrap(x) for x in s.frac_coords] for s in structure],
    }


def _wrapped(x: float) -> float:
    v = round(float(x) % 1.0, 6)
    return 0.0 if v >= 1.0 else v


class _EarlierFaces:
    """The fingerprints written before the wrap: ``round(x % 1.0, 6)``, which may be 1.0.

    ``bits`` None: each coordinate as this machine's arithmetic gives it. An
    integer: coordinates within ``FACE_NOISE`` of a face are 1.0 where its bit
    (in the order met) is set and 0.0 elsewhere, the keys another machine's
    rounding noise could have written. ``near`` counts those coordinates.
    """

    def __init__(self, bits: int | None = None):
        self.bits, self.near, self.differs = bits, 0, False

    def value(self, x: float) -> float:
        wrapped = float(x) % 1.0
        if self.bits is None or FACE_NOISE <= wrapped <= 1.0 - FACE_NOISE:
            v = round(wrapped, 6)
            self.differs |= v >= 1.0  # today's fingerprint writes 0.0 here
            return v
        k, self.near = self.near, self.near + 1
        return 1.0 if self.bits >> k & 1 else 0.0


def _with_faces(faces: _EarlierFaces, key_fn: Callable[..., str], *args) -> str:
    token = _FACES.set(faces)
    try:
        return key_fn(*args)
    finally:
        _FACES.reset(token)


def earlier_key(key_fn: Callable[..., str], *args) -> str | None:
    """``key_fn(*args)`` as alloyflow computed it before the face wrap, or None where it is today's key."""
    faces = _EarlierFaces()
    old = _with_faces(faces, key_fn, *args)
    return old if faces.differs else None


MAX_FACE_VARIANTS = 12
"""At most 2**this earlier keys per job are tried (``earlier_keys``): beyond that only this machine's own."""


def earlier_keys(key_fn: Callable[..., str], *args) -> list[str]:
    """Every key ``key_fn(*args)`` may have had before the face wrap, on any machine (today's key left out).

    Each coordinate within ``FACE_NOISE`` of a cell face was written as 0.0
    or 1.0 by the sign of its rounding noise; all 2**n combinations are
    listed when n <= ``MAX_FACE_VARIANTS``, else only this machine's.
    """
    today = key_fn(*args)
    count = _EarlierFaces(0)
    _with_faces(count, key_fn, *args)
    if count.near > MAX_FACE_VARIANTS:
        found = {_with_faces(_EarlierFaces(), key_fn, *args)}
    else:
        found = {_with_faces(_EarlierFaces(bits), key_fn, *args) for bits in range(2 ** count.near)}
    found.discard(today)
    return sorted(found)


NOT_IN_KEY = ("name", "calculator")
"""Maker fields never in a settings dict: the job's name, and the calculator (keyed by ``calculator_info``)."""


def maker_settings(maker, exclude: Iterable[str] = (), extra: dict | None = None,
                   legacy: dict | None = None) -> dict:
    """Every dataclass field of ``maker`` that can change its result, for its cache key.

    Derived from the fields, so a new field enters the key unless it is
    listed in ``exclude`` (fields that change speed only, such as batching);
    ``name`` and ``calculator`` never enter (the calculator is keyed by its
    ``calculator_info``). ``extra`` adds module constants a result depends on.
    ``legacy`` maps fields added after stores existed to the value that
    reproduces the earlier results exactly: at that value the field is left
    out, so results stored before it existed keep their keys (never change
    these values).
    """
    skip = {*NOT_IN_KEY, *exclude}
    legacy = legacy or {}
    out = {f.name: getattr(maker, f.name) for f in fields(maker)
           if f.name not in skip and not (f.name in legacy and getattr(maker, f.name) == legacy[f.name])}
    return {**out, **(extra or {})}


def deterministic_uuid(key: str) -> str:
    return str(uuidlib.UUID(bytes=bytes.fromhex(key)[:16]))


EARLIER_KEY = "alloyflow_earlier_key"
"""Job metadata: the key this machine gave the job before the face wrap (``earlier_key``), where it differs."""


def earlier_uuid(job: Job) -> str | None:
    """The uuid ``job`` had before the face wrap, where it differs (``EARLIER_KEY``)."""
    key = (job.metadata or {}).get(EARLIER_KEY)
    return deterministic_uuid(key) if key else None


def keyed(job: Job, key: str, label: str | None = None, earlier: str | None = None) -> Job:
    """Give ``job`` a uuid derived from ``key`` and record the key as metadata.

    ``earlier``: the job's key before the face wrap (``earlier_key``), where it
    differs; ``alloyflow.engine.local.is_finished`` finds a result stored under
    it and copies it under today's uuid.
    """
    job.set_uuid(deterministic_uuid(key))  # moves the output reference along with the uuid
    job.metadata = {**(job.metadata or {}), "alloyflow_key": key, "alloyflow_label": label or job.name}
    if earlier and earlier != key:
        job.metadata[EARLIER_KEY] = earlier
    return job


def keyed_by(job: Job, key_fn: Callable[..., str], *args, label: str | None = None) -> Job:
    """``keyed(job, key_fn(*args), label)``, with the job's key from before the face wrap (``earlier_key``)."""
    return keyed(job, key_fn(*args), label=label, earlier=earlier_key(key_fn, *args))


class KeyedStructureMaker:
    """Mixin for Makers of one structure whose job uuid is the hash of its inputs.

    The key is ``input_hash(key_kind, structure, calculator_info, settings())``,
    so a finished job is found in the store and reused. Subclasses set
    ``key_kind`` (and ``not_in_key``) and define ``make``; ``settings()``
    covers every dataclass field but those.
    """

    key_kind: ClassVar[str] = ""
    not_in_key: ClassVar[tuple[str, ...]] = ()
    """Fields that change speed, not results (left out of the key)."""

    def settings(self) -> dict:
        """What enters the key besides structure and calculator: every result-changing field."""
        return maker_settings(self, self.not_in_key)

    def key(self, structure) -> str:
        return input_hash(self.key_kind, structure_fingerprint(structure), calculator_info(self.calculator),
                          self.settings())

    def check(self, structure, label: str) -> None:
        """Refuse bad input before a job exists (default: elements the calculator cannot treat)."""
        check_elements(self.calculator, [el.symbol for el in structure.composition.elements], where=label)

    def check_size(self, structure, label: str) -> None:
        """Refuse a cell of more atoms than the limit ($ALLOYFLOW_MAX_ATOMS, default 600), with its memory estimate."""
        check_cell_size(len(structure), f"{label} ({structure.composition.reduced_formula})")

    def keyed_job(self, structure, label: str, metadata: dict | None = None, tolerant: bool = False) -> Job:
        """A job whose uuid is the input hash, so a finished one is reused.

        ``tolerant``: the same key, but a failure of ``run`` is returned as an error record
        (``alloyflow.engine.guarded``) instead of raised, for flows that collect many results.
        """
        self.check_size(structure, label)  # every maker, also those that override ``check``
        self.check(structure, label)
        if tolerant:
            j = run_guarded(self, [structure], label=label, metadata=metadata or {})
        else:
            j = self.make(structure, label=label, metadata=metadata or {})
        j.name = f"{self.name} {label}"
        return keyed_by(j, self.key, structure, label=j.name)
