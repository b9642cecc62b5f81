"""Harmonic phonons of a relaxed phase with phonopy on any registry calculator.

Why phonopy directly rather than atomate2's force-field ``PhononMaker``: that
maker builds its calculator from its own list of force-field names, whereas
alloyflow's registry also holds fine-tuned checkpoints, DFT backends and the
mock test potential; and it writes a full phonon task document (force
constants, DOS, band objects) through a multi-job flow, while the store here
keeps one small document per phase under a key made of its inputs, so that a
rerun reuses it. The physics is the same: finite displacements (0.01 Å,
phonopy's symmetry-reduced set) in a supercell, force constants, harmonic
free energy on a q-mesh.

The unit cell is the standard primitive cell (Setyawan–Curtarolo setting),
so pymatgen's ``HighSymmKpath`` band path applies to it as is (seekpath is not
installed here). Thermodynamic functions are computed by
``alloyflow.analysis.thermo.harmonic_properties`` from the stored mesh
frequencies, so the stored numbers can be recomputed at any temperature.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field
from pymatgen.core import Structure

from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, get_calculator
from alloyflow.engine import KeyedStructureMaker

IMAGINARY_THRESHOLD_THZ = -0.1
"""A mode below this (THz, imaginary modes as negative numbers) flags the phase
dynamically unstable. The three acoustic modes at Γ are excluded (they are
zero by translational invariance, which the symmetrised force constants
enforce), so numerical noise there never raises the flag."""

DEFAULT_MIN_LENGTH = 11.0
"""Å, the smallest perpendicular width of a phonon supercell. Measured with
SevenNet-0: bcc Li in the 54-atom 3×3×3 conventional cell (10.3 Å wide) shows a
spurious imaginary T1 mode at the zone-boundary N point, which that cell
does not hold; 11 Å gives the 125-atom 5×5×5 primitive cell and no imaginary
mode. The 105/108-atom primitive cells of Li17Sn4 and Li22Sn5 are 11.4 Å
wide, so 11 Å keeps them at one cell."""



class PhononBands(BaseModel):
    """Phonon dispersion along the high-symmetry path, for plotting (THz)."""

    kpath_scheme: str = "setyawan_curtarolo"
    segments: list[list[str]] = Field(description="[start, end] labels of each straight segment")
    distances: list[list[float]] = Field(description="path coordinate per q-point, per segment (1/Å)")
    frequencies: list[list[list[float]]] = Field(description="[segment][q-point][band], THz")


class PhononDocument(BaseModel):
    """Harmonic phonons of one phase; energies per atom, S and Cv in k_B per atom."""

    label: str
    formula: str
    natoms: int = Field(description="atoms in the (standard primitive) unit cell")
    structure: Structure = Field(description="the unit cell the phonons were computed in")
    supercell_matrix: list[list[int]]
    supercell_natoms: int
    displacement: float = Field(description="Å")
    n_displacements: int = Field(description="symmetry-distinct displaced supercells")
    n_force_calls: int = Field(description="displaced supercells + the undisplaced one (residual forces subtracted)")
    mesh: list[int]
    mesh_frequencies: list[list[float]] = Field(description="THz per irreducible q-point; imaginary as negative")
    mesh_weights: list[int]
    temperatures: list[float] = Field(description="K")
    free_energy: list[float] = Field(description="F_vib, eV/atom, real modes only")
    entropy: list[float] = Field(description="S_vib, k_B/atom")
    heat_capacity: list[float] = Field(description="C_v, k_B/atom")
    zero_point_energy: float = Field(description="eV/atom")
    min_frequency_mesh: float = Field(description="THz, Γ acoustic modes excluded")
    min_frequency_band: float | None = Field(default=None, description="THz on the band path, Γ acoustic excluded")
    imaginary_modes: bool
    imaginary_threshold_thz: float = IMAGINARY_THRESHOLD_THZ
    imaginary_fraction: float = Field(description="fraction of mesh modes below the threshold (weighted)")
    bands: PhononBands | None = None
    calculator: dict
    input_hash: str
    elapsed_seconds: float
    warnings: list[str] = Field(default_factory=list)
    metadata: dict = Field(default_factory=dict)

    model_config = {"arbitrary_types_allowed": True}

    def free_energy_at(self, temperature: float) -> float:
        """F_vib (eV/atom) at ``temperature`` from the stored mesh frequencies (exact, no interpolation)."""
        from alloyflow.analysis.thermo import harmonic_properties

        props = harmonic_properties(self.mesh_frequencies, self.mesh_weights, self.natoms, [temperature])
        return float(props["free_energy"][0])


def standard_primitive(structure: Structure, symprec: float = 1e-3):
    """(standard primitive cell, HighSymmKpath) in the Setyawan–Curtarolo setting."""
    from pymatgen.symmetry.bandstructure import HighSymmKpath
    import warnings

    for tol in (symprec, 1e-2, 0.1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                kpath = HighSymmKpath(structure, path_type="setyawan_curtarolo", symprec=tol)
            except Exception:  # noqa: BLE001 - try a looser tolerance
                continue
        if kpath.prim is not None and abs(kpath.prim.volume / len(kpath.prim) - structure.volume / len(structure)) < 1e-3:
            return kpath.prim, kpath
    raise ValueError(f"no standard primitive cell found for {structure.composition.reduced_formula}")


def widths(matrix) -> np.ndarray:
    """Perpendicular widths (interplanar spacings) of a cell given as lattice rows, Å."""
    m = np.asarray(matrix, dtype=float)
    volume = abs(np.linalg.det(m))
    return np.array([volume / np.linalg.norm(np.cross(m[(i + 1) % 3], m[(i + 2) % 3])) for i in range(3)])


def choose_supercell(unit: Structure, min_length: float, symprec: float = 1e-3) -> np.ndarray:
    """Smallest 'diagonal-ish' supercell (phonopy convention) at least ``min_length`` wide in every direction.

    Width is the perpendicular distance between opposite faces (the diameter
    of the largest sphere the cell holds), stricter than the lattice-vector
    lengths: a body-centred primitive cell can have 13.7 Å vectors and be
    3 Å thin (LiSn_beta). Two candidates: a diagonal multiple of the
    primitive cell and one of the conventional cell; the one with fewer atoms
    wins (ties: the conventional, more isotropic one).
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    prim = unit.lattice.matrix
    n = [max(1, int(np.ceil(min_length / w - 1e-9))) for w in widths(prim)]
    best = np.diag(n)
    try:
        conv = SpacegroupAnalyzer(unit, symprec=symprec).get_conventional_standard_structure()
        m = conv.lattice.matrix @ np.linalg.inv(prim)  # conv rows = m @ prim rows
        if np.allclose(m, np.round(m), atol=1e-4) and round(abs(np.linalg.det(m))) >= 1:
            nc = [max(1, int(np.ceil(min_length / w - 1e-9))) for w in widths(conv.lattice.matrix)]
            cand = np.diag(nc) @ np.round(m).astype(int)
            if abs(np.linalg.det(cand)) <= abs(np.linalg.det(best)):
                best = cand
    except Exception:  # noqa: BLE001 - the diagonal primitive supercell is always valid
        pass
    # phonopy: supercell lattice (columns) = unit lattice (columns) @ S, i.e. S = best^T.
    return np.asarray(best, dtype=int).T


def _phonopy_atoms(structure: Structure):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=[str(s.specie) for s in structure], cell=structure.lattice.matrix,
                        scaled_positions=structure.frac_coords)


def _forces(calc, cell) -> np.ndarray:
    from ase import Atoms

    atoms = Atoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
    atoms.calc = calc
    return np.array(atoms.get_forces())


def _drop_gamma_acoustic(qpoints, frequencies) -> np.ndarray:
    """Frequencies with the three lowest modes at Γ replaced by 0 (zero by translational invariance)."""
    freqs = np.array(frequencies, dtype=float)
    for i, q in enumerate(np.asarray(qpoints)):
        if np.allclose(q - np.round(q), 0.0, atol=1e-8):
            order = np.argsort(np.abs(freqs[i]))[:3]
            freqs[i, order] = 0.0
    return freqs


@dataclass
class PhononMaker(KeyedStructureMaker, Maker):
    """Harmonic phonons of a relaxed (primitive) structure with a registry calculator."""

    key_kind: ClassVar[str] = "phonons"
    name: str = "phonons"
    calculator: str = DEFAULT_CALCULATOR
    min_length: float = 11.0
    displacement: float = 0.01
    mesh_length: float = 60.0
    t_max: float = 1000.0
    t_step: float = 10.0
    band_points: int = 21
    imaginary_threshold_thz: float = IMAGINARY_THRESHOLD_THZ
    symprec: float = 1e-3
    calculator_kwargs: dict = field(default_factory=dict)

    @job
    def make(self, structure: Structure, label: str = "", metadata: dict | None = None) -> PhononDocument:
        return self.run(structure, label=label, metadata=metadata)

    def run(self, structure: Structure, label: str = "", metadata: dict | None = None) -> PhononDocument:
        """Phonons outside jobflow (used by the job, the benchmark and notebooks)."""
        from phonopy import Phonopy

        from alloyflow.analysis.thermo import harmonic_properties

        t0 = time.perf_counter()
        unit, kpath = standard_primitive(structure, self.symprec)
        smat = choose_supercell(unit, self.min_length, self.symprec)
        phonon = Phonopy(_phonopy_atoms(unit), supercell_matrix=smat, primitive_matrix=None,
                         symprec=self.symprec, log_level=0)
        phonon.generate_displacements(distance=self.displacement)
        calc = get_calculator(self.calculator, **self.calculator_kwargs)
        residual = _forces(calc, phonon.supercell)
        displaced = phonon.supercells_with_displacements
        phonon.forces = np.array([_forces(calc, cell) - residual for cell in displaced])
        phonon.produce_force_constants(show_drift=False)
        phonon.symmetrize_force_constants(show_drift=False)

        phonon.run_mesh(self.mesh_length, is_gamma_center=True)
        mesh = phonon.get_mesh_dict()
        freqs = _drop_gamma_acoustic(mesh["qpoints"], mesh["frequencies"])
        weights = np.asarray(mesh["weights"], dtype=int)
        temps = np.arange(0.0, self.t_max + 0.5 * self.t_step, self.t_step)
        props = harmonic_properties(freqs, weights, len(unit), temps)
        nonzero = freqs[freqs != 0.0]
        min_mesh = float(nonzero.min()) if nonzero.size else 0.0
        below = (freqs < self.imaginary_threshold_thz) * weights[:, None]
        fraction = float(below.sum() / (weights.sum() * freqs.shape[1]))

        warnings: list[str] = []
        bands, min_band = None, None
        try:
            bands, min_band = self._bands(phonon, kpath)
        except Exception as exc:  # noqa: BLE001 - the band path is for plots; the mesh decides
            warnings.append(f"no band path ({type(exc).__name__}: {exc})")
        imaginary = min_mesh < self.imaginary_threshold_thz or (
            min_band is not None and min_band < self.imaginary_threshold_thz)
        if imaginary:
            warnings.append(f"imaginary modes: min {min(min_mesh, min_band if min_band is not None else 0):.2f} THz "
                            f"(threshold {self.imaginary_threshold_thz} THz); F_vib uses the real modes only")
        return PhononDocument(
            label=label,
            formula=unit.composition.reduced_formula,
            natoms=len(unit),
            structure=unit,
            supercell_matrix=np.asarray(smat).tolist(),
            supercell_natoms=len(phonon.supercell),
            displacement=self.displacement,
            n_displacements=len(displaced),
            n_force_calls=len(displaced) + 1,
            mesh=[int(m) for m in mesh.get("mesh", phonon.mesh_numbers)],
            mesh_frequencies=np.round(freqs, 6).tolist(),
            mesh_weights=weights.tolist(),
            temperatures=temps.tolist(),
            free_energy=props["free_energy"].tolist(),
            entropy=props["entropy"].tolist(),
            heat_capacity=props["heat_capacity"].tolist(),
            zero_point_energy=float(props["zero_point_energy"]),
            min_frequency_mesh=min_mesh,
            min_frequency_band=min_band,
            imaginary_modes=bool(imaginary),
            imaginary_threshold_thz=self.imaginary_threshold_thz,
            imaginary_fraction=fraction,
            bands=bands,
            calculator=calculator_info(self.calculator),
            input_hash=self.key(structure),
            elapsed_seconds=time.perf_counter() - t0,
            warnings=warnings,
            metadata=metadata or {},
        )

    def _bands(self, phonon, kpath) -> tuple[PhononBands, float]:
        points = kpath.kpath["kpoints"]
        segments, paths = [], []
        for branch in kpath.kpath["path"]:
            for a, b in zip(branch[:-1], branch[1:]):
                segments.append([a, b])
                start, end = np.asarray(points[a]), np.asarray(points[b])
                paths.append([start + (end - start) * t for t in np.linspace(0.0, 1.0, self.band_points)])
        phonon.run_band_structure(paths, labels=None)
        bs = phonon.get_band_structure_dict()
        freqs = [_drop_gamma_acoustic(q, f) for q, f in zip(bs["qpoints"], bs["frequencies"])]
        flat = np.concatenate([f.ravel() for f in freqs])
        flat = flat[flat != 0.0]
        bands = PhononBands(
            segments=segments,
            distances=[np.round(d, 5).tolist() for d in bs["distances"]],
            frequencies=[np.round(f, 4).tolist() for f in freqs],
        )
        return bands, float(flat.min()) if flat.size else 0.0


def phonon_jobs(structures: dict[str, Structure], maker: PhononMaker) -> dict:
    """The keyed phonon job of each named structure, not run (name -> Job; ``run_phonons`` runs these).

    Each uuid is the input hash of (structure, calculator, ``maker`` settings),
    so a job stored by ``run_phonons`` or by a thermo flow is found by the other.
    """
    return {name: maker.keyed_job(s, label=name, metadata={"phase": name}) for name, s in structures.items()}


def run_phonons(structures: dict[str, Structure], store, calculator: str = DEFAULT_CALCULATOR,
                progress=None, maker: PhononMaker | None = None) -> dict[str, PhononDocument]:
    """Phonons of each named structure (one keyed job each; stored ones are reused)."""
    from jobflow import Flow

    from alloyflow.engine import run_cached

    maker = maker or PhononMaker(calculator=calculator)
    jobs = phonon_jobs(structures, maker)
    run_cached(Flow(list(jobs.values()), name="phonons"), store, progress=progress)
    out = {}
    for name, j in jobs.items():
        doc = store.output(j.uuid)
        out[name] = doc if isinstance(doc, PhononDocument) else PhononDocument.model_validate(
            doc if isinstance(doc, dict) else doc.model_dump())
    return out


__all__ = ["PhononMaker", "PhononDocument", "PhononBands", "phonon_jobs", "run_phonons", "choose_supercell",
           "standard_primitive", "widths", "IMAGINARY_THRESHOLD_THZ"]
