"""Keyed DFT single points that keep energy, forces and stress: one job for refinement and training.

``refine_band`` (DFT//ML barriers) and ``label_structures`` (fine-tuning
labels) ask for single points on the same band images. Both go through
``LabelMaker``, whose job key is the structure, the calculator and its
settings, so an image refined once is a training label for free, and the
active-learning loop never pays twice for one geometry.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from jobflow import Maker, job
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from alloyflow.calculators import calculator_info, get_calculator
from alloyflow.engine import JobFailed, KeyedStructureMaker, ResultStore, run_cached


class SinglePointError(RuntimeError):
    """A single point that gave no usable number (non-finite energy or forces)."""


@dataclass
class LabelMaker(KeyedStructureMaker, Maker):
    """Keyed single point: energy (eV), forces (eV/Å) and stress (Voigt, eV/Å³, ASE sign convention)."""

    key_kind: ClassVar[str] = "label"
    name: str = "label"
    calculator: str = "gpaw"
    calculator_kwargs: dict = field(default_factory=dict)

    def settings(self) -> dict:
        return self.calculator_kwargs

    @job
    def make(self, structure: Structure, label: str = "", metadata: dict | None = None) -> dict:
        return self.run(structure, label)

    def run(self, structure: Structure, label: str = "") -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = get_calculator(self.calculator, **self.calculator_kwargs)
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces()
        stress = atoms.get_stress()
        if not math.isfinite(energy) or not np.all(np.isfinite(forces)):
            # Raised, so the job fails and nothing unusable is stored as a result.
            raise SinglePointError(f"{label or structure.formula}: non-finite energy or forces from {self.calculator}")
        return {"label": label, "structure": structure.as_dict(), "energy": energy, "forces": forces.tolist(),
                "stress": stress.tolist(), "natoms": len(structure), "calculator": calculator_info(self.calculator),
                "settings": dict(self.calculator_kwargs), "input_hash": self.key(structure),
                "elapsed_seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def single_point(maker: LabelMaker, structure: Structure, label: str, store: ResultStore) -> tuple[dict | None, bool, str]:
    """``(document, reused, error message)``: the stored single point, computed if missing."""
    j = maker.keyed_job(structure, label)
    try:
        summary = run_cached(j, store)
    except JobFailed as exc:
        return None, False, str(exc)
    return store.output(j.uuid), summary.computed == 0, ""


@job
def stored_label(document: dict) -> dict:
    """A single point computed elsewhere (a campaign's worker process, or an earlier run's exported labels).

    Keyed with ``LabelMaker.key`` of its structure (``keyed``), it is found and reused exactly as one
    computed by ``LabelMaker.make``.
    """
    return document


def label_structures(structures, store: ResultStore, calculator: str = "gpaw",
                     calculator_kwargs: dict | None = None):
    """DFT labels as ASE Atoms (single-point calculators); failed single points are listed, not used."""
    from ase.calculators.singlepoint import SinglePointCalculator

    maker = LabelMaker(calculator=calculator, calculator_kwargs=dict(calculator_kwargs or {}))
    frames, failures = [], []
    for label, s in structures:
        d, reused, error = single_point(maker, s, label, store)
        if d is None:
            failures.append(f"{label}: {error}")
            continue
        atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(d["structure"]))
        atoms.calc = SinglePointCalculator(atoms, energy=d["energy"], forces=np.array(d["forces"]),
                                           stress=np.array(d["stress"]))
        atoms.info.update(label=label, reused=reused, dft_seconds=0.0 if reused else d["elapsed_seconds"])
        frames.append(atoms)
    return frames, failures
