"""Relaxation and single-point Makers on any registered ASE calculator.

The optimisation itself is atomate2's ``AseRelaxer`` (FIRE + FrechetCellFilter,
optional FixSymmetry). The Maker returns a compact ``RelaxationDocument``
instead of atomate2's task document: hull and barrier analyses need the final
structure, energy, convergence and provenance, not the whole trajectory, and
a small document keeps the file-backed store fast.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Iterator

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field
from pymatgen.core import Structure

from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, get_calculator
from alloyflow.engine import KeyedStructureMaker
from alloyflow.structures.cells import right_handed


class RelaxationDocument(BaseModel):
    """Output of a relaxation or single point; energies in eV."""

    label: str = Field(description="phase name or image label")
    formula: str
    structure: Structure
    input_structure: Structure
    energy: float
    energy_per_atom: float
    volume_per_atom: float
    natoms: int
    converged: bool
    max_force: float = Field(description="largest residual atomic force, eV/Å")
    n_steps: int = Field(
        description="trajectory frames: the start, one per optimizer step and the last again (1 for a single point)")
    force_calls: int | None = Field(
        None, description="calculations the calculator actually ran (energy, forces, stress); None: not counted")
    fmax: float
    relax_cell: bool
    calculator: dict
    input_hash: str
    elapsed_seconds: float
    metadata: dict = Field(default_factory=dict)

    model_config = {"arbitrary_types_allowed": True}


class UnconvergedRelaxation(RuntimeError):
    pass


@contextmanager
def counting_calculations(calc) -> Iterator[list[int]]:
    """Count the calculations ``calc`` runs inside the block; yields a one-element list holding the count.

    Counts calls of ``calc.calculate``, which ASE's ``Calculator`` makes only
    when the atoms changed or a property is missing (results it still holds
    are free), so the count is what the potential actually computed. The
    calculator is the shared, cached one: its own method is restored on exit.
    """
    count = [0]
    own = vars(calc).get("calculate")
    inner = calc.calculate

    def calculate(*args, **kwargs):
        count[0] += 1
        return inner(*args, **kwargs)

    calc.calculate = calculate
    try:
        yield count
    finally:
        if vars(calc).get("calculate") is calculate:  # not replaced meanwhile
            if own is None:
                del calc.calculate
            else:
                calc.calculate = own


@dataclass
class RelaxMaker(KeyedStructureMaker, Maker):
    """Relax ions (and, with ``relax_cell``, the cell) with a registry calculator.

    ``steps <= 1`` gives a single point.
    """

    key_kind: ClassVar[str] = "relax"
    name: str = "relax"
    calculator: str = DEFAULT_CALCULATOR
    fmax: float = 0.02
    steps: int = 400
    relax_cell: bool = True
    fix_symmetry: bool = True
    symprec: float = 1e-3
    optimizer: str = "FIRE"
    calculator_kwargs: dict = field(default_factory=dict)

    @job
    def make(self, structure: Structure, label: str = "", metadata: dict | None = None) -> RelaxationDocument:
        return self.run(structure, label=label, metadata=metadata)

    def run(self, structure: Structure, label: str = "", metadata: dict | None = None) -> RelaxationDocument:
        """Relax outside jobflow (used by the job and by notebooks).

        The calculator sees ``structure`` on a right-handed basis
        (``right_handed``: CHGNet's stress has the wrong sign on a left-handed
        cell); the key and ``input_structure`` are the structure as given.
        """
        calc = get_calculator(self.calculator, **self.calculator_kwargs)
        t0 = time.perf_counter()
        with counting_calculations(calc) as calls:
            out = self._run(calc, right_handed(structure))
        final, n_steps, energy, forces, converged = out
        max_force = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
        return RelaxationDocument(
            label=label,
            formula=final.composition.reduced_formula,
            structure=final,
            input_structure=structure,
            energy=energy,
            energy_per_atom=energy / len(final),
            volume_per_atom=final.volume / len(final),
            natoms=len(final),
            converged=converged,
            max_force=max_force,
            n_steps=n_steps,
            force_calls=calls[0],
            fmax=self.fmax,
            relax_cell=self.relax_cell,
            calculator=calculator_info(self.calculator),
            input_hash=self.key(structure),
            elapsed_seconds=time.perf_counter() - t0,
            metadata=metadata or {},
        )

    def _run(self, calc, structure: Structure):
        """(final structure, trajectory frames, energy, forces, converged) of ``structure`` on ``calc``."""
        from atomate2.ase.utils import AseRelaxer

        if self.steps > 1:
            relaxer = AseRelaxer(
                calc,
                optimizer=self.optimizer,
                relax_cell=self.relax_cell,
                fix_symmetry=self.fix_symmetry,
                symprec=self.symprec,
            )
            result = relaxer.relax(
                structure, fmax=self.fmax, steps=self.steps, final_atoms_object_file=None, use_emmet_models=False
            )
            final = result.final_mol_or_struct
            n_steps = len(result.trajectory.frame_properties)
            forces = np.array(result.trajectory.frame_properties[-1]["forces"])
            energy = float(result.trajectory.frame_properties[-1]["energy"])
            converged = bool(result.converged)
        else:
            from pymatgen.io.ase import AseAtomsAdaptor

            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.calc = calc
            energy = float(atoms.get_potential_energy())
            forces = atoms.get_forces()
            final, n_steps, converged = structure.copy(), 1, True
        return final, n_steps, energy, forces, converged


@dataclass
class StaticMaker(RelaxMaker):
    """Single point: energy, forces and stress of the given structure."""

    name: str = "static"
    steps: int = 1
    relax_cell: bool = False
