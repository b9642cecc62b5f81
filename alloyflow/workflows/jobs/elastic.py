"""Elastic tensor, bulk and shear moduli by a strain–stress fit on any registered calculator.

The relaxed cell is strained along each of the 6 independent Voigt strains
(default ±0.5 % and ±1 %; shear components as engineering strains), the
ions of every strained cell are relaxed at fixed cell (relaxed-ion moduli:
in multi-atom metallic cells internal relaxations soften C, most of all the
shear constants, and clamped-ion moduli would overestimate them), and each
column of the 6×6 tensor is the slope of a linear fit of the six stress
components against that strain (pymatgen
``ElasticTensor.from_independent_strains``, with the reference cell's stress
as the zero-strain point). Stresses are Cauchy stresses, tension positive.

Why not atomate2's elastic flow: it runs one job per deformation through
its own force-field makers (its own force-field names, trajectories stored),
so it cannot run the registry calculators (mock, GPAW, fine-tuned models)
and does not fit the compact keyed documents of this store; here a whole
fit is one keyed job that a rerun reuses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.units import GPa
from jobflow import Maker, job
from pydantic import BaseModel, Field
from pymatgen.analysis.elasticity import Stress
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, check_elements, get_calculator
from alloyflow.engine import KeyedStructureMaker, ResultStore, run_cached
from alloyflow.engine.guarded import job_error
from alloyflow.analysis.elastic import voigt_strain, strained_structure, born_stable, fit_elastic_tensor, moduli, VolumeExpansionPerLi, volume_expansion_per_li  # noqa: F401

DEFAULT_STRAINS = (-0.01, -0.005, 0.005, 0.01)


class ElasticDocument(BaseModel):
    """Relaxed-ion elastic constants of one phase; moduli and stresses in GPa."""

    label: str
    formula: str
    structure: Structure = Field(description="the reference (relaxed) cell")
    elastic_tensor: list[list[float]] = Field(description="6x6 Voigt matrix C_ij, GPa (IEEE order xx yy zz yz xz xy)")
    bulk_modulus_vrh: float
    shear_modulus_vrh: float
    bulk_modulus_voigt: float
    bulk_modulus_reuss: float
    shear_modulus_voigt: float
    shear_modulus_reuss: float
    youngs_modulus: float = Field(description="isotropic (VRH) Young's modulus, GPa")
    poisson_ratio: float = Field(description="isotropic (VRH) Poisson ratio")
    universal_anisotropy: float
    mechanically_stable: bool = Field(description="Born criteria: C positive definite")
    eigenvalues: list[float] = Field(description="eigenvalues of the Voigt matrix, GPa")
    residual_stress: list[float] = Field(description="Voigt stress of the reference cell, GPa")
    max_residual_stress: float = Field(description="largest |component| of residual_stress, GPa")
    fit_rms_error: float = Field(description="RMS of stress minus the linear fit over the fitted cells, GPa")
    strains: list[float]
    relax_ions: bool
    fmax: float
    ions_converged: bool
    n_deformations: int
    max_ion_relaxation: float = Field(0.0, description="largest ionic relaxation in a strained cell, Å")
    excluded_strains: list[list[float]] = Field(default_factory=list, description="Voigt strains left out of the fit")
    n_force_calls: int
    elapsed_seconds: float
    calculator: dict
    input_hash: str
    warnings: list[str] = Field(default_factory=list)
    metadata: dict = Field(default_factory=dict)

    model_config = {"arbitrary_types_allowed": True}

    @property
    def calculator_info(self) -> dict:
        return self.calculator


class _CountingCalculator(Calculator):
    """Delegates to a registry calculator and counts its evaluations (one per new geometry)."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, inner: Calculator):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        inner_atoms = self.atoms.copy()
        inner_atoms.calc = self.inner
        self.calls += 1
        energy = float(inner_atoms.get_potential_energy())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.array(inner_atoms.get_forces()),
            "stress": np.array(inner_atoms.get_stress(voigt=True)),
        }


@dataclass
class ElasticMaker(KeyedStructureMaker, Maker):
    """Relaxed-ion elastic tensor of a relaxed structure by a strain–stress fit.

    ``strains``: amounts applied along each of the 6 Voigt components (no 0;
    the reference cell is the zero point). ``relax_ions``: relax the ions of
    every strained cell at fixed cell with ``optimizer`` to ``fmax`` eV/Å.
    A strained cell whose ions move more than ``max_ion_shift`` Å has
    transformed rather than responded linearly (seen: SevenNet-0 β-Sn at 1 %
    strain, ions 0.4 Å); it is left out of the fit, with a warning.
    """

    key_kind: ClassVar[str] = "elastic"
    name: str = "elastic"
    calculator: str = DEFAULT_CALCULATOR
    strains: tuple[float, ...] = DEFAULT_STRAINS
    relax_ions: bool = True
    fmax: float = 0.01
    steps: int = 200
    optimizer: str = "BFGS"
    max_ion_shift: float = 0.1
    calculator_kwargs: dict = field(default_factory=dict)

    def check(self, structure: Structure, label: str) -> None:
        amounts = [float(x) for x in self.strains]
        if len(amounts) < 2 or any(abs(x) < 1e-6 or abs(x) > 0.05 for x in amounts) or len(set(amounts)) != len(amounts):
            raise ValueError(f"strains must be >= 2 distinct non-zero amounts with |strain| <= 0.05, got {self.strains}")
        if self.optimizer not in ("BFGS", "FIRE", "LBFGS"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use BFGS, FIRE or LBFGS")
        if len(structure) == 0:
            raise ValueError(f"{label}: empty structure")
        check_elements(self.calculator, [el.symbol for el in structure.composition.elements], where=label)

    @job
    def make(self, structure: Structure, label: str = "", metadata: dict | None = None) -> ElasticDocument:
        return self.run(structure, label=label, metadata=metadata)

    def _stress(self, structure: Structure, calc: _CountingCalculator) -> tuple[Stress, bool, float, float]:
        """Cauchy stress (GPa, tension positive) after relaxing the ions at fixed cell, and the largest ion shift (Å)."""
        from ase.optimize import BFGS, FIRE, LBFGS

        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = calc
        converged = True
        start = atoms.get_positions().copy()
        if self.relax_ions and len(atoms) > 1:
            opt = {"BFGS": BFGS, "FIRE": FIRE, "LBFGS": LBFGS}[self.optimizer](atoms, logfile=None)
            converged = bool(opt.run(fmax=self.fmax, steps=self.steps))
        forces = atoms.get_forces()
        max_force = float(np.linalg.norm(forces, axis=1).max())
        stress = Stress(atoms.get_stress(voigt=False) / GPa)
        shift = atoms.get_positions() - start
        shift -= shift.mean(axis=0)  # a rigid translation is no relaxation
        return stress, converged, max_force, float(np.linalg.norm(shift, axis=1).max())

    def run(self, structure: Structure, label: str = "", metadata: dict | None = None) -> ElasticDocument:
        """Strain, relax, fit (outside jobflow too)."""
        self.check(structure, label)
        t0 = time.perf_counter()
        calc = _CountingCalculator(get_calculator(self.calculator, **self.calculator_kwargs))
        warnings: list[str] = []
        eq_stress, ok, fmax_ref, _ = self._stress(structure, calc)
        all_ok = ok
        strains, stresses, shifts = [], [], []
        for index in range(6):
            for amount in self.strains:
                strain = voigt_strain(index, float(amount))
                stress, ok, _, shift = self._stress(strained_structure(structure, strain), calc)
                all_ok &= ok
                strains.append(strain)
                stresses.append(stress)
                shifts.append(shift)
        # Ions that move far under a small strain have left the reference basin (a strain-induced
        # transformation); such cells are no linear response. Fit without them while every component
        # keeps a strained point, and say so.
        jumped = [k for k, d in enumerate(shifts) if d > self.max_ion_shift]
        excluded: list[list[float]] = []
        if jumped:
            kept = [k for k in range(len(strains)) if k not in jumped]
            components = {int(np.argmax(np.abs(strains[k].voigt))) for k in kept}
            where = ", ".join(f"Voigt {int(np.argmax(np.abs(strains[k].voigt))) + 1} at {float(np.max(strains[k].voigt) + np.min(strains[k].voigt)):+.3%}"
                              for k in jumped)
            if components == set(range(6)):
                excluded = [[float(x) for x in strains[k].voigt] for k in jumped]
                warnings.append(f"ions moved > {self.max_ion_shift} Å under strain ({where}): the structure transforms "
                                "under small strain; those cells are left out of the fit")
                strains = [strains[k] for k in kept]
                stresses = [stresses[k] for k in kept]
            else:
                warnings.append(f"ions moved > {self.max_ion_shift} Å under strain ({where}) for every amount of some "
                                "component: the fit includes transformed cells and the tensor is not a linear response")
        tensor = fit_elastic_tensor(strains, stresses, eq_stress)
        c = np.asarray(tensor.voigt, dtype=float)
        predicted = [c @ np.asarray(e.voigt) + np.asarray(eq_stress.voigt) for e in strains]
        rms = float(np.sqrt(np.mean([(np.asarray(s.voigt) - p) ** 2 for s, p in zip(stresses, predicted)])))
        scale = float(np.abs(c).max()) * max(abs(float(x)) for x in self.strains)
        if rms > 0.05 * scale:
            warnings.append(f"the stress is not linear in the strain (fit RMS {rms:.3f} GPa, {rms / scale:.0%} of the "
                            "largest stress change): use smaller strains")
        stable, eig = born_stable(c)
        residual = [float(x) for x in eq_stress.voigt]
        if not all_ok:
            warnings.append(f"an ionic relaxation of a strained cell did not reach fmax {self.fmax} eV/Å in {self.steps} steps")
        if max(abs(x) for x in residual) > 0.5:
            warnings.append(f"the reference cell is not relaxed: residual stress up to {max(abs(x) for x in residual):.2f} GPa")
        if not self.relax_ions and len(structure) > 1:
            warnings.append("clamped-ion moduli (ions not relaxed): upper bounds for multi-atom cells")
        if not stable:
            warnings.append(f"mechanically unstable: smallest eigenvalue of C is {min(eig):.1f} GPa")
        return ElasticDocument(
            label=label,
            formula=structure.composition.reduced_formula,
            structure=structure,
            elastic_tensor=[[float(x) for x in row] for row in c],
            **moduli(tensor),
            mechanically_stable=stable,
            eigenvalues=eig,
            residual_stress=residual,
            max_residual_stress=max(abs(x) for x in residual),
            fit_rms_error=rms,
            strains=[float(x) for x in self.strains],
            relax_ions=self.relax_ions,
            fmax=self.fmax,
            ions_converged=all_ok and fmax_ref < 10 * self.fmax,
            n_deformations=6 * len(self.strains),
            max_ion_relaxation=max(shifts),
            excluded_strains=excluded,
            n_force_calls=calc.calls,
            elapsed_seconds=time.perf_counter() - t0,
            calculator=calculator_info(self.calculator),
            input_hash=self.key(structure),
            warnings=warnings,
            metadata=metadata or {},
        )


def elastic_job(structure: Structure, name: str, maker: ElasticMaker, tolerant: bool = False):
    """The keyed elastic job of an already relaxed cell, not run: the job ``run_elastic(relax=False)`` runs.

    Parameters
    ----------
    structure : Structure
        A relaxed cell; it is reduced to its primitive cell first (as ``run_elastic`` does), so the key
        is ``run_elastic``'s and a stored result is reused by either.
    name : str
        Phase name (label and ``metadata["phase"]``).
    maker : ElasticMaker
        The settings and calculator (part of the key).
    tolerant : bool
        Same key, but a failing fit is returned as an error record (``alloyflow.engine.guarded``).

    Raises
    ------
    TypeError, ValueError
        For a cell the maker refuses (elements, size, strains), before any job exists.
    """
    from alloyflow.structures.library import primitive

    if not isinstance(structure, Structure):
        raise TypeError(f"{name}: expected a pymatgen Structure, got {type(structure).__name__}")
    return maker.keyed_job(primitive(structure), label=name, metadata={"phase": name}, tolerant=tolerant)


def run_elastic(
    structures: dict[str, Structure],
    store: ResultStore,
    calculator: str = DEFAULT_CALCULATOR,
    progress=None,
    relax: bool = True,
    maker: ElasticMaker | None = None,
) -> dict[str, ElasticDocument]:
    """Elastic documents of ``structures`` (name -> structure), as keyed jobs reused on a rerun.

    Each structure is reduced to its primitive cell. ``relax``: first relax
    it (ions and cell) with the relax maker the hull uses, so a library
    structure reuses the hull's stored relaxation; pass ``relax=False`` for
    cells that are relaxed already.
    """
    from alloyflow.workflows.jobs.relax import RelaxationDocument, RelaxMaker

    if not structures:
        raise ValueError("no structures given")
    maker = maker or ElasticMaker(calculator=calculator)
    if maker.calculator != calculator:
        raise ValueError(f"maker calculator {maker.calculator!r} differs from calculator {calculator!r}")
    out: dict[str, ElasticDocument] = {}
    for name, structure in structures.items():
        if not isinstance(structure, Structure):
            raise TypeError(f"{name}: expected a pymatgen Structure, got {type(structure).__name__}")
        from alloyflow.structures.library import primitive

        reference = primitive(structure)  # what the hull relaxes, so its stored relaxation is reused
        relax_warning = None
        if relax:
            # the hull's relax maker on an ASE backend (the same key, so the hull's relaxation is reused)
            rjob = RelaxMaker(calculator=calculator).keyed_job(reference, label=name, metadata={"phase": name})
            run_cached(rjob, store, progress=progress)
            rdoc = store.output(rjob.uuid)
            rdoc = rdoc if isinstance(rdoc, RelaxationDocument) else RelaxationDocument.model_validate(rdoc)
            reference = rdoc.structure
            if not rdoc.converged:
                relax_warning = f"the cell relaxation of {name} did not converge (max force {rdoc.max_force:.3f} eV/Å)"
        ejob = maker.keyed_job(reference, label=name, metadata={"phase": name})
        run_cached(ejob, store, progress=progress)
        doc = store.output(ejob.uuid)
        if job_error(doc):  # stored by a thermo flow's tolerant job
            raise ValueError(f"{name}: the stored elastic job failed ({job_error(doc)})")
        doc = doc if isinstance(doc, ElasticDocument) else ElasticDocument.model_validate(doc)
        if relax_warning:
            doc.warnings.append(relax_warning)
        out[name] = doc
    return out


