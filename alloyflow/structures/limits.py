"""How big a cell alloyflow agrees to compute, and what it would cost (geometry only, no calculators).

A cell past the limit is refused before any job exists, with its atom count
and an estimate of the memory one force call needs, instead of a job that
runs out of memory (or runs for days) part-way through a flow.
"""

from __future__ import annotations

import os

MAX_ATOMS_ENV = "ALLOYFLOW_MAX_ATOMS"
"""Environment variable overriding ``DEFAULT_MAX_ATOMS`` (a positive integer)."""

DEFAULT_MAX_ATOMS = 600
"""Atoms per cell, by default. Sized for the 2-core, ~23 GiB machines this project runs on.

Measured with SevenNet-0 (the default potential), one torch thread, energy,
forces and stress of rattled bcc Li: 128 atoms 1.1 GB peak and 9.5 s, 432
atoms 2.1 GB and 37 s, 1024 atoms 3.9 GB and 56 s (about 0.6 GB for the model
plus 3.5 MB per atom; ``estimated_memory_gb``). Memory is not what binds at
600 atoms (~2.7 GB) but time: a CI-NEB band of 5 images needs some hundred
force calls per image, i.e. hours at this size on 2 cores. 600 was also the
supercell search's former hard cap. Raise it with ``ALLOYFLOW_MAX_ATOMS`` on a
bigger machine.
"""

MODEL_MEMORY_GB = 0.6
MEMORY_PER_ATOM_GB = 3.5e-3


def max_atoms() -> int:
    """The atom limit: ``$ALLOYFLOW_MAX_ATOMS`` if set, else ``DEFAULT_MAX_ATOMS``."""
    text = os.environ.get(MAX_ATOMS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_ATOMS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_ATOMS_ENV} must be a positive integer, got {text!r}")
    return value


def estimated_memory_gb(natoms: int) -> float:
    """Peak memory of one SevenNet-0 force call on ``natoms`` atoms, GB (``DEFAULT_MAX_ATOMS`` has the data)."""
    return MODEL_MEMORY_GB + MEMORY_PER_ATOM_GB * natoms


def too_large_message(natoms: int, what: str, limit: int | None = None) -> str:
    limit = max_atoms() if limit is None else limit
    return (f"{what} has {natoms} atoms, more than the limit of {limit} (about {estimated_memory_gb(natoms):.1f} GB "
            f"per force call with SevenNet-0, vs {estimated_memory_gb(limit):.1f} GB at the limit); "
            f"use a smaller cell or set {MAX_ATOMS_ENV}")


def check_cell_size(natoms: int, what: str = "the cell") -> None:
    """Refuse a cell of more than ``max_atoms()`` atoms (``ValueError``, one line, with the memory estimate)."""
    limit = max_atoms()
    if natoms > limit:
        raise ValueError(too_large_message(natoms, what, limit))
