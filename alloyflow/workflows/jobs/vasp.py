"""VASP through atomate2: the hull and NEB flows of alloyflow with VASP jobs.

The VASP work is done by atomate2's own makers (``RelaxMaker``,
``StaticMaker``, ``NebFromImagesMaker``, ``get_images_from_endpoints``);
this module only chooses their settings and adds one small job per result
that turns atomate2's task documents into alloyflow's ``RelaxationDocument``
/ ``NebDocument``, so hull, voltage and barrier analyses read VASP results
exactly as they read ML-potential ones.

``VaspRelaxMaker.keyed_job`` and ``VaspNebMaker.keyed_job`` return a *Flow*
(relax [+ static] + convert; endpoints + images + NEB + convert) whose
``uuid`` is the uuid of its converting job, itself derived from the input
hash. Every job inside gets a uuid derived from the same hash, so the local
engine (``run_cached``) and FireWorks submission skip what the store already
holds, and ``store.output(flow.uuid)`` is the alloyflow document, as for a
single ML job.

Settings (PBE, metallic; table in docs/HPC.md section 8):
- POTCARs Li_sv, In_d, Sn_d (pymatgen's defaults); ``GGA = PE`` because
  atomate2's base set is PBEsol; Methfessel-Paxton ISMEAR 1, SIGMA 0.1 eV,
  energies extrapolated to sigma -> 0 (pymatgen's ``final_energy``).
- Hull: ENCUT 650 eV = 1.3 x ENMAX(Li_sv, 499 eV) against the Pulay stress of
  the ISIF 3 relaxation, then a static at the relaxed cell whose energy is
  used. k-points: Gamma-centred, ceil(6·|b_i|) along reciprocal vector b_i
  (2π included; = KSPACING 0.167 Å⁻¹; GPAW's k-point density convention; with
  GPAW here LiIn's formation energy moved 7 meV/atom from (400 eV, 4) to (600
  eV, 6)).
- NEB: fixed (hull-relaxed) cell, ENCUT 520 eV, k-density 4 (cells >= 10 Å),
  EDIFFG -0.05 eV/Å like the ASE NEB's fmax. ``climb=True``: VTST climbing
  image (LCLIMB, IOPT 1, IBRION 3, POTIM 0), needs a VTST-patched VASP;
  ``climb=False``: plain VASP NEB (IBRION 1), whose barrier is the highest
  image. Endpoints are relaxed at fixed cell with the NEB's settings, so their
  energies compare with the images'.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from atomate2.common.jobs.neb import NebInterpolation, get_images_from_endpoints
from atomate2.vasp.jobs.core import RelaxMaker as _A2RelaxMaker
from atomate2.vasp.jobs.core import StaticMaker as _A2StaticMaker
from atomate2.vasp.jobs.neb import NebFromImagesMaker
from atomate2.vasp.sets.core import NebSetGenerator, RelaxConstVolSetGenerator, RelaxSetGenerator, StaticSetGenerator
from jobflow import Flow, Job, Maker, job
from pymatgen.core import Structure
from pymatgen.io.vasp import Kpoints

import alloyflow.calculators.dft  # noqa: F401  (registers "vasp", for calculator_info and element checks)
from alloyflow.calculators import calculator_info, check_elements
from alloyflow.engine import deterministic_uuid, input_hash, structure_fingerprint
from alloyflow.workflows.jobs.relax import RelaxationDocument

VASP = "vasp"

_COMMON_INCAR = {
    "GGA": "PE",  # PBE (atomate2's base set is PBEsol)
    "ISMEAR": 1,  # Methfessel-Paxton: metals
    "SIGMA": 0.1,
    "ISPIN": 1,  # Li, In, Sn alloys are non-magnetic
    "EDIFF": 1e-6,
    "PREC": "Accurate",
    "LREAL": False,
    "ALGO": "Normal",
    "NELM": 200,
    "LWAVE": False,
    "LCHARG": False,
    # switched off: SCAN/Bader leftovers of atomate2's base (MPScanRelaxSet) config
    "ENAUG": None,
    "LMIXTAU": None,
    "LAECHG": False,
    "LVTOT": False,
    "LELF": False,
    "LORBIT": None,
    "KSPACING": None,
}

HULL_INCAR = {**_COMMON_INCAR, "ENCUT": 650, "EDIFFG": -0.02, "NSW": 99}
"""Relaxation (ISIF 3, IBRION 2 from atomate2's RelaxSetGenerator) and static of hull phases."""

NEB_INCAR = {**_COMMON_INCAR, "ENCUT": 520, "EDIFFG": -0.05, "NSW": 200}
"""NEB images and their endpoints, at the fixed supercell."""

HULL_KPT_DENSITY = 6.0
NEB_KPT_DENSITY = 4.0


def density_kpoints(structure: Structure, density: float) -> Kpoints:
    """Gamma-centred grid with ceil(density·|b_i|) divisions (|b_i| including 2π; ASE/GPAW's convention)."""
    b = structure.lattice.reciprocal_lattice.abc
    divisions = tuple(max(1, math.ceil(density * bi - 1e-6)) for bi in b)
    return Kpoints.gamma_automatic(divisions)


@dataclass
class _DensityKpoints:
    """Mixin for atomate2 input generators: KPOINTS from ``kpt_density`` (see ``density_kpoints``)."""

    kpt_density: float = HULL_KPT_DENSITY
    auto_ismear: bool = False  # ISMEAR/SIGMA are ours, never guessed from a band gap
    auto_kspacing: bool = False
    auto_metal_kpoints: bool = False

    @property
    def kpoints_updates(self) -> Kpoints:
        return density_kpoints(self.structure, self.kpt_density)


@dataclass
class AlloyRelaxSetGenerator(_DensityKpoints, RelaxSetGenerator):
    """atomate2's relaxation set (ISIF 3) with a k-point density."""


@dataclass
class AlloyRelaxConstVolSetGenerator(_DensityKpoints, RelaxConstVolSetGenerator):
    """atomate2's fixed-cell relaxation set (ISIF 2) with a k-point density."""


@dataclass
class AlloyStaticSetGenerator(_DensityKpoints, StaticSetGenerator):
    """atomate2's static set with a k-point density."""


@dataclass
class AlloyNebSetGenerator(_DensityKpoints, NebSetGenerator):
    """atomate2's NEB set (VTST climbing image or plain NEB) with a k-point density."""


def hull_relax_maker(incar: dict | None = None, kpt_density: float = HULL_KPT_DENSITY) -> _A2RelaxMaker:
    """atomate2 VASP relaxation (cell and ions) with the hull's metallic settings."""
    gen = AlloyRelaxSetGenerator(user_incar_settings={**HULL_INCAR, **(incar or {})}, kpt_density=kpt_density)
    return _A2RelaxMaker(input_set_generator=gen)


def hull_static_maker(incar: dict | None = None, kpt_density: float = HULL_KPT_DENSITY) -> _A2StaticMaker:
    """atomate2 VASP static with the hull's metallic settings (same basis as the relaxation)."""
    settings = {**HULL_INCAR, "NSW": 0, "EDIFFG": None, **(incar or {})}
    gen = AlloyStaticSetGenerator(user_incar_settings=settings, kpt_density=kpt_density)
    return _A2StaticMaker(input_set_generator=gen)


def neb_endpoint_maker(incar: dict | None = None, kpt_density: float = NEB_KPT_DENSITY) -> _A2RelaxMaker:
    """atomate2 VASP fixed-cell relaxation of NEB endpoints (the NEB's settings, EDIFFG -0.02)."""
    settings = {**NEB_INCAR, "EDIFFG": -0.02, "NSW": 99, **(incar or {})}
    gen = AlloyRelaxConstVolSetGenerator(user_incar_settings=settings, kpt_density=kpt_density)
    return _A2RelaxMaker(name="relax endpoint", input_set_generator=gen)


def neb_images_maker(climb: bool = True, incar: dict | None = None,
                     kpt_density: float = NEB_KPT_DENSITY) -> NebFromImagesMaker:
    """atomate2 ``NebFromImagesMaker``: VTST climbing image (``climb``) or plain VASP NEB."""
    settings = {**NEB_INCAR, **({} if climb else {"IBRION": 1}), **(incar or {})}
    gen = AlloyNebSetGenerator(climbing_image=climb, user_incar_settings=settings, kpt_density=kpt_density)
    return NebFromImagesMaker(input_set_generator=gen)


def inputs_summary(maker) -> dict:
    """What of an atomate2 maker's input set enters the cache key (INCAR, k-points, POTCARs)."""
    gen = maker.input_set_generator
    return {"class": type(gen).__name__, "incar": dict(sorted(gen.user_incar_settings.items())),
            "kpt_density": getattr(gen, "kpt_density", None), "potcar": dict(gen.user_potcar_settings),
            "potcar_functional": gen.user_potcar_functional, "climbing_image": getattr(gen, "climbing_image", None)}


def keyed_step(j: Job, key: str, step: str, name: str) -> Job:
    """Name a job and give it a uuid derived from ``key`` and ``step`` (before its output is used)."""
    j.name = name
    full_key = input_hash(key, step) if step else key
    j.set_uuid(deterministic_uuid(full_key))
    j.metadata = {**(j.metadata or {}), "alloyflow_key": full_key, "alloyflow_label": name}
    return j


def task_get(obj, *path, default=None):
    """Attribute-or-key access into task documents (objects, or dicts when read back raw)."""
    for p in path:
        if obj is None:
            return default
        obj = obj.get(p) if isinstance(obj, dict) else getattr(obj, p, None)
    return default if obj is None else obj


def as_structure(obj) -> Structure:
    return obj if isinstance(obj, Structure) else Structure.from_dict(obj)


def task_succeeded(task) -> bool:
    return str(getattr(task_get(task, "state"), "value", task_get(task, "state"))) == "successful"


def ionic_steps(task) -> list:
    calcs = task_get(task, "calcs_reversed", default=[]) or task_get(task, "calculations", default=[])
    return list(task_get(calcs[0], "output", "ionic_steps", default=[])) if calcs else []


def max_force(forces) -> float:
    f = np.asarray(forces if forces is not None else [], dtype=float).reshape(-1, 3)
    return float(np.linalg.norm(f, axis=1).max()) if len(f) else 0.0


def task_elapsed(task) -> float:
    stats = task_get(task, "run_stats", default={}) or {}
    return float(sum(task_get(s, "elapsed_time", default=0.0) or 0.0 for s in stats.values()))


def vasp_summary(task) -> dict:
    calc = (task_get(task, "calcs_reversed", default=[None]) or [None])[0]
    incar = task_get(calc, "input", "incar", default={}) or {}
    return {
        "dir_name": task_get(task, "dir_name"),
        "vasp_version": task_get(calc, "vasp_version"),
        "incar": {k: incar[k] for k in ("GGA", "ENCUT", "ISMEAR", "SIGMA", "ISIF", "EDIFFG", "IBRION") if k in incar},
        "potcar": [task_get(p, "titel") for p in (task_get(calc, "input", "potcar_spec", default=[]) or [])],
    }


@job
def relaxation_document(relax, static, label: str, input_structure: Structure, key: str, metadata: dict,
                        fmax: float, relax_cell: bool) -> RelaxationDocument:
    """alloyflow's document from atomate2's VASP task documents (relaxation, then static or None)."""
    final = static if static is not None else relax
    structure = as_structure(task_get(final, "output", "structure"))
    energy = float(task_get(final, "output", "energy"))
    steps = ionic_steps(relax)
    relax_forces = task_get(steps[-1], "forces") if steps else task_get(relax, "output", "forces")
    return RelaxationDocument(
        label=label,
        formula=structure.composition.reduced_formula,
        structure=structure,
        input_structure=input_structure,
        energy=energy,
        energy_per_atom=energy / len(structure),
        volume_per_atom=structure.volume / len(structure),
        natoms=len(structure),
        # VASP reached EDIFFG within NSW (custodian's and pymatgen's judgement) for every run
        converged=task_succeeded(relax) and (static is None or task_succeeded(static)),
        max_force=max_force(relax_forces),
        n_steps=len(steps),
        fmax=fmax,
        relax_cell=relax_cell,
        calculator=calculator_info(VASP),
        input_hash=key,
        elapsed_seconds=task_elapsed(relax) + (task_elapsed(static) if static is not None else 0.0),
        metadata={**(metadata or {}), "vasp": vasp_summary(final)},
    )


@dataclass
class VaspRelaxMaker(Maker):
    """The hull's per-phase VASP work: relaxation, then (``static``) a static; a drop-in ``relax_maker``.

    ``HullMaker(relax_maker=VaspRelaxMaker())`` builds the same hull flow
    as with an ML potential, one keyed sub-flow per phase.
    """

    name: str = "vasp"
    calculator: str = VASP
    static: bool = True
    relax_maker: _A2RelaxMaker = field(default_factory=hull_relax_maker)
    static_maker: _A2StaticMaker = field(default_factory=hull_static_maker)

    @property
    def fmax(self) -> float:
        return abs(float(self.relax_maker.input_set_generator.user_incar_settings.get("EDIFFG", -0.02)))

    def settings(self) -> dict:
        return {"static": self.static, "relax": inputs_summary(self.relax_maker),
                "static_inputs": inputs_summary(self.static_maker) if self.static else None}

    def key(self, structure: Structure) -> str:
        return input_hash("vasp relax", structure_fingerprint(structure), calculator_info(VASP), self.settings())

    def keyed_job(self, structure: Structure, label: str, metadata: dict | None = None) -> Flow:
        check_elements(VASP, [el.symbol for el in structure.composition.elements], where=label)
        key = self.key(structure)
        relax = keyed_step(self.relax_maker.make(structure), key, "relax", f"vasp relax {label}")
        jobs = [relax]
        static = None
        if self.static:
            static = keyed_step(self.static_maker.make(relax.output.structure), key, "static", f"vasp static {label}")
            jobs.append(static)
        doc = relaxation_document(relax.output, static.output if static else None, label, structure, key,
                                  metadata or {}, self.fmax, True)
        keyed_step(doc, key, "", f"vasp result {label}")
        return Flow([*jobs, doc], output=doc.output, name=f"vasp {label}", uuid=doc.uuid)


@dataclass
class VaspStaticMaker(Maker):
    """A VASP single point (atomate2 static at the hull settings) as a ``RelaxationDocument``; one keyed sub-flow."""

    name: str = "vasp static"
    calculator: str = VASP
    static_maker: _A2StaticMaker = field(default_factory=hull_static_maker)

    def settings(self) -> dict:
        return {"static": inputs_summary(self.static_maker)}

    def key(self, structure: Structure) -> str:
        return input_hash("vasp static", structure_fingerprint(structure), calculator_info(VASP), self.settings())

    def keyed_job(self, structure: Structure, label: str, metadata: dict | None = None) -> Flow:
        check_elements(VASP, [el.symbol for el in structure.composition.elements], where=label)
        key = self.key(structure)
        static = keyed_step(self.static_maker.make(structure), key, "static", f"vasp static {label}")
        doc = relaxation_document(static.output, None, label, structure, key, metadata or {}, 0.0, False)
        keyed_step(doc, key, "", f"vasp static result {label}")
        return Flow([static, doc], output=doc.output, name=f"vasp static {label}", uuid=doc.uuid)


def _sort_order(structure: Structure) -> list[int]:
    """The site order atomate2's input sets write (``get_sorted_structure``: by electronegativity, stable)."""
    return sorted(range(len(structure)), key=lambda i: structure[i])


def _unsorted(structure: Structure, order: list[int]) -> Structure:
    """Back to the input's site order (``order[new] = old``)."""
    return Structure.from_sites([structure[order.index(old)] for old in range(len(order))])


@job
def neb_document(initial, final, neb, label: str, key: str, order: list[int], n_images: int, fmax: float,
                 settings: dict, metadata: dict):
    """alloyflow's ``NebDocument`` from the VASP endpoint and NEB task documents (input site order)."""
    from alloyflow.workflows.jobs.neb import NebDocument

    t0 = time.perf_counter()
    ends = [as_structure(task_get(t, "output", "structure")) for t in (initial, final)]
    images = [ends[0], *[as_structure(s) for s in task_get(neb, "images", default=[])], ends[1]]
    energies = [float(task_get(initial, "output", "energy")), *map(float, task_get(neb, "energies", default=[])),
                float(task_get(final, "output", "energy"))]
    calcs = task_get(neb, "calculations", default=[]) or []
    neb_steps = [list(task_get(c, "output", "ionic_steps", default=[])) for c in calcs]
    forces = [task_get(s[-1], "forces") for s in neb_steps if s]
    endpoint_steps = len(ionic_steps(initial)) + len(ionic_steps(final))
    imax = int(np.argmax(energies))
    hop = float(ends[0].lattice.get_all_distances(ends[0].frac_coords, ends[1].frac_coords).diagonal().max())
    n_steps = max((len(s) for s in neb_steps), default=0)
    return NebDocument(
        label=label,
        calculator=calculator_info(VASP),
        input_hash=key,
        n_images=n_images,
        energies=energies,
        images=[_unsorted(s, order) for s in images],
        forward_barrier=energies[imax] - energies[0],
        reverse_barrier=energies[imax] - energies[-1],
        endpoint_asymmetry=energies[-1] - energies[0],
        climbing_image=imax,
        converged=all(task_succeeded(t) for t in (initial, final, neb)),
        n_steps=n_steps,
        force_calls=n_steps * n_images + endpoint_steps,
        model_calls=n_steps * n_images + endpoint_steps,  # one SCF per image and step: no batching
        endpoint_force_calls=endpoint_steps,
        # as VASP reports it: with VTST the image forces are the NEB (projected) forces
        max_force=max((max_force(f) for f in forces), default=0.0),
        fmax=fmax,
        hop_distance=hop,
        endpoints_converged=task_succeeded(initial) and task_succeeded(final),
        settings=settings,
        elapsed_seconds=sum(task_elapsed(t) for t in (initial, final)) + sum(
            float(task_get(c, "run_stats", "elapsed_time", default=0.0) or 0.0) for c in calcs) + time.perf_counter() - t0,
        evaluation_seconds=0.0,
        metadata={**(metadata or {}), "vasp": {"neb_dir": task_get(neb, "dir_name"),
                                               "neb_method": str(task_get(neb, "neb_method", default=""))}},
    )


@dataclass
class VaspNebMaker(Maker):
    """A vacancy hop with VASP: endpoint relaxations, IDPP images, NEB (atomate2), one keyed sub-flow.

    A drop-in ``neb_maker`` for ``run_barriers``: same ``keyed_job``
    signature and output document as ``alloyflow.workflows.jobs.neb.NebMaker``.
    ``climb=True`` needs a VTST-patched VASP (see the module docstring).
    """

    name: str = "vasp neb"
    calculator: str = VASP
    n_images: int = 5
    climb: bool = True
    relax_endpoints: bool = True
    kpt_density: float = NEB_KPT_DENSITY
    incar: dict = field(default_factory=dict)

    @property
    def fmax(self) -> float:
        return abs(float({**NEB_INCAR, **self.incar}["EDIFFG"]))

    def makers(self):
        endpoint = (neb_endpoint_maker(self.incar, self.kpt_density) if self.relax_endpoints
                    else hull_static_maker({**NEB_INCAR, "NSW": 0, "EDIFFG": None, **self.incar}, self.kpt_density))
        return endpoint, neb_images_maker(self.climb, self.incar, self.kpt_density)

    def settings(self) -> dict:
        endpoint, images = self.makers()
        return {"n_images": self.n_images, "climb": self.climb, "relax_endpoints": self.relax_endpoints,
                "interpolation": "idpp", "endpoint": inputs_summary(endpoint), "neb": inputs_summary(images)}

    def key(self, initial: Structure, final: Structure) -> str:
        return input_hash("vasp neb", structure_fingerprint(initial), structure_fingerprint(final),
                          calculator_info(VASP), self.settings())

    def keyed_job(self, initial: Structure, final: Structure, label: str, metadata: dict | None = None) -> Flow:
        from alloyflow.workflows.jobs.neb import validate_endpoints

        check_elements(VASP, [el.symbol for el in initial.composition.elements], where=label)
        validate_endpoints(initial, final)
        key = self.key(initial, final)
        # Sort once here, as atomate2's input sets would, so that every image keeps one site order.
        order = _sort_order(initial)
        ends = [Structure.from_sites([s[i] for i in order]) for s in (initial, final)]
        endpoint_maker, images_maker = self.makers()
        e_i = keyed_step(endpoint_maker.make(ends[0]), key, "initial", f"vasp endpoint {label} initial")
        e_f = keyed_step(endpoint_maker.make(ends[1]), key, "final", f"vasp endpoint {label} final")
        # sort_tol=0: IDPP must not renumber atoms (it can, for a vacancy hop)
        ends_out = [e_i.output.output.structure, e_f.output.output.structure]
        images = get_images_from_endpoints(ends_out, self.n_images, interpolation_method=NebInterpolation.IDPP,
                                           sort_tol=0)
        keyed_step(images, key, "images", f"vasp images {label}")
        neb = keyed_step(images_maker.make(images.output), key, "neb", f"vasp neb {label}")
        doc = neb_document(e_i.output, e_f.output, neb.output, label, key, order, self.n_images, self.fmax,
                           self.settings(), metadata or {})
        keyed_step(doc, key, "", f"vasp neb result {label}")
        return Flow([e_i, e_f, images, neb, doc], output=doc.output, name=f"vasp neb {label}", uuid=doc.uuid)
