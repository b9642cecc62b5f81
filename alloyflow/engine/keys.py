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
from typing import Any, ClassVar, Iterable

from jobflow import Job
from monty.json import jsanitize

from alloyflow.calculators import calculator_info, check_elements
from alloyflow.engine.guarded import run_guarded
from alloyflow.structures.limits import check_cell_size


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


def keyed(job: Job, key: str, label: str | None = None) -> Job:
    """Give ``job`` a uuid derived from ``key`` and record the key as metadata."""
    job.set_uuid(deterministic_uuid(key))  # moves the output reference along with the uuid
    job.metadata = {**(job.metadata or {}), "alloyflow_key": key, "alloyflow_label": label or job.name}
    return job


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
        return keyed(j, self.key(structure), label=j.name)
