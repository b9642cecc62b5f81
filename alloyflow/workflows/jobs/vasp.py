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

Results (checked on real VASP outputs, ``tests/test_vasp_real.py``):
- ``NebDocument.max_force`` is the NEB force VTST converges: the stored DFT
  forces of the intermediate images with the improved tangent (Henkelman and
  Jónsson 2000) projected out, plus the spring force along it, and for the
  climbing image the parallel component inverted (``neb_forces``).
- ``elapsed_seconds`` is VASP's own "Elapsed time" of each run, counted once
  (emmet's "overall" entry is their sum); a NEB's images run side by side in
  one VASP run, so its wall time is the longest image's.
- A relaxation or NEB that reaches NSW is a document with ``converged=False``
  (last structure and energies), never an error: custodian does not restart
  an ionic-only unconvergence (``IonicLimitHandler``; electronic
  unconvergence is still corrected) and atomate2 neither raises nor stops
  the children (``handle_unsuccessful=False``), so the converting job runs on
  the local engine and on FireWorks alike.
- Result-neutral INCAR tags (parallelisation, which files are written:
  ``RESULT_NEUTRAL_INCAR``) stay out of the cache keys.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from atomate2.common.jobs.neb import NebInterpolation, get_images_from_endpoints
from atomate2.vasp.jobs.core import RelaxMaker as _A2RelaxMaker
from atomate2.vasp.jobs.core import StaticMaker as _A2StaticMaker
from atomate2.vasp.jobs.neb import NebFromImagesMaker
from atomate2.vasp.run import DEFAULT_HANDLERS
from atomate2.vasp.sets.core import NebSetGenerator, RelaxConstVolSetGenerator, RelaxSetGenerator, StaticSetGenerator
from custodian.vasp.handlers import UnconvergedErrorHandler, load_vasprun
from jobflow import Flow, Job, Maker, job
from pymatgen.core import Structure
from pymatgen.io.vasp import Kpoints

import alloyflow.calculators.dft  # noqa: F401  (registers "vasp", for calculator_info and element checks)
from alloyflow.calculators import calculator_info, check_elements
from alloyflow.engine import deterministic_uuid, input_hash, structure_fingerprint
from alloyflow.workflows.jobs.relax import RelaxationDocument

logger = logging.getLogger(__name__)

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


RESULT_NEUTRAL_INCAR = frozenset({
    "NCORE", "NPAR", "KPAR", "NSIM", "LPLANE", "LSCALU", "LSCALAPACK", "NWRITE",  # parallelisation, verbosity
    "LWAVE", "LCHARG", "LVTOT", "LVHAR", "LELF", "LAECHG",  # which files are written
})
"""INCAR tags that change how VASP runs or what it writes, never its numbers: left out of the cache keys.

LREAL, PREC, ALGO, NELM, ISYM and the like change results and stay in."""


class IonicLimitHandler(UnconvergedErrorHandler):
    """custodian's ``UnconvergedErrorHandler`` that accepts a run whose ionic steps ran out (NSW).

    Electronic unconvergence is corrected as custodian does (ALGO ladder,
    mixing). A run that is electronically converged but reached NSW is
    continued from its CONTCAR at most ``ionic_restarts`` times (custodian's
    correction, IBRION 1) and then left as it is: custodian finishes without
    an error, atomate2's task document says "failed", and alloyflow stores it
    as a document with ``converged=False``. atomate2's stock handler restarts
    it until custodian's error budget is spent and then raises, so the phase
    or hop produced no document at all.
    """

    def __init__(self, output_filename: str = "vasprun.xml", ionic_restarts: int = 0) -> None:
        super().__init__(output_filename)
        self.ionic_restarts = ionic_restarts
        self.ionic_restarts_done = 0

    def check(self, directory="./") -> bool:
        try:
            v = load_vasprun(str(Path(directory) / self.output_filename))
        except Exception:
            return False
        if not v.converged_electronic:
            return True
        return not v.converged_ionic and self.ionic_restarts_done < self.ionic_restarts

    def correct(self, directory="./"):
        v = load_vasprun(str(Path(directory) / self.output_filename))
        if v.converged_electronic:
            self.ionic_restarts_done += 1
        return super().correct(directory)

    @property
    def n_applied_corrections(self):
        return UnconvergedErrorHandler.n_applied_corrections.fget(self)

    @n_applied_corrections.setter
    def n_applied_corrections(self, value) -> None:
        # custodian sets this to 0 at the start of each VASP job: the restart budget is per job too
        if value == 0:
            self.ionic_restarts_done = 0
        UnconvergedErrorHandler.n_applied_corrections.fset(self, value)


def vasp_handlers(ionic_restarts: int = 0) -> list:
    """atomate2's default custodian handlers, with ``IonicLimitHandler`` for ``UnconvergedErrorHandler``."""
    return [IonicLimitHandler(ionic_restarts=ionic_restarts) if type(h) is UnconvergedErrorHandler else h
            for h in DEFAULT_HANDLERS]


def _keep_unconverged(maker):
    """Configure an atomate2 VASP maker so that an unconverged run ends as a task document, not an error.

    ``handle_unsuccessful=False``: atomate2 neither raises nor stops the
    children (on FireWorks, stopped children are defused: the converting job
    would never run and the phase would go missing).
    """
    maker.stop_children_kwargs = {**maker.stop_children_kwargs, "handle_unsuccessful": False}
    return maker


def keep_unconverged_runs(maker):
    """An atomate2 VASP maker (relax, static) with ``vasp_handlers`` and ``handle_unsuccessful=False``."""
    maker.run_vasp_kwargs = {**maker.run_vasp_kwargs, "handlers": vasp_handlers()}
    return _keep_unconverged(maker)


def static_incar(base: dict, incar: dict | None = None) -> dict:
    """A static's INCAR: ``base`` with the overrides, never ionic steps (an ``--incar NSW=...`` is for relaxations)."""
    return {**base, **(incar or {}), "NSW": 0, "EDIFFG": None}


def hull_relax_maker(incar: dict | None = None, kpt_density: float = HULL_KPT_DENSITY) -> _A2RelaxMaker:
    """atomate2 VASP relaxation (cell and ions) with the hull's metallic settings."""
    gen = AlloyRelaxSetGenerator(user_incar_settings={**HULL_INCAR, **(incar or {})}, kpt_density=kpt_density)
    return keep_unconverged_runs(_A2RelaxMaker(input_set_generator=gen))


def hull_static_maker(incar: dict | None = None, kpt_density: float = HULL_KPT_DENSITY) -> _A2StaticMaker:
    """atomate2 VASP static with the hull's metallic settings (same basis as the relaxation)."""
    gen = AlloyStaticSetGenerator(user_incar_settings=static_incar(HULL_INCAR, incar), kpt_density=kpt_density)
    return keep_unconverged_runs(_A2StaticMaker(input_set_generator=gen))


def neb_endpoint_maker(incar: dict | None = None, kpt_density: float = NEB_KPT_DENSITY) -> _A2RelaxMaker:
    """atomate2 VASP fixed-cell relaxation of NEB endpoints (the NEB's settings, EDIFFG -0.02)."""
    settings = {**NEB_INCAR, "EDIFFG": -0.02, "NSW": 99, **(incar or {})}
    gen = AlloyRelaxConstVolSetGenerator(user_incar_settings=settings, kpt_density=kpt_density)
    return keep_unconverged_runs(_A2RelaxMaker(name="relax endpoint", input_set_generator=gen))


def neb_images_maker(climb: bool = True, incar: dict | None = None,
                     kpt_density: float = NEB_KPT_DENSITY) -> NebFromImagesMaker:
    """atomate2 ``NebFromImagesMaker``: VTST climbing image (``climb``) or plain VASP NEB.

    atomate2's NEB handlers stay (custodian's UnconvergedErrorHandler does not
    read a NEB's image folders); an unconverged band is returned, not raised.
    """
    settings = {**NEB_INCAR, **({} if climb else {"IBRION": 1}), **(incar or {})}
    gen = AlloyNebSetGenerator(climbing_image=climb, user_incar_settings=settings, kpt_density=kpt_density)
    return _keep_unconverged(NebFromImagesMaker(input_set_generator=gen))


def inputs_summary(maker) -> dict:
    """What of an atomate2 maker's input set enters the cache key (INCAR, k-points, POTCARs).

    Result-neutral INCAR tags (``RESULT_NEUTRAL_INCAR``) enter at their
    module default whatever their value (or not at all without one): the same
    calculation run on another number of cores is the same result, and keys
    of results stored before this rule are unchanged.
    """
    gen = maker.input_set_generator
    incar = {}
    for k, v in sorted(gen.user_incar_settings.items()):
        if k.upper() not in RESULT_NEUTRAL_INCAR:
            incar[k] = v
        elif k in _COMMON_INCAR:
            incar[k] = _COMMON_INCAR[k]
    return {"class": type(gen).__name__, "incar": incar,
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


def _seconds(stats) -> float:
    return float(task_get(stats, "elapsed_time", default=0.0) or 0.0)


def task_elapsed(task) -> float:
    """VASP's elapsed (wall) seconds of a task document, each run counted once.

    emmet's ``run_stats`` holds one entry per calculation and an "overall"
    entry that is their sum: the per-calculation entries are added, "overall"
    is used only when it is the only one. Without ``run_stats`` (a NEB's
    image documents) the calculations' own ``output.run_stats`` are added.
    """
    stats = task_get(task, "run_stats", default={}) or {}
    runs = [v for k, v in stats.items() if k != "overall"]
    if runs:
        return float(sum(_seconds(v) for v in runs))
    if "overall" in stats:
        return _seconds(stats["overall"])
    calcs = task_get(task, "calcs_reversed", default=[]) or task_get(task, "calculations", default=[]) or []
    return float(sum(_seconds(task_get(c, "output", "run_stats")) for c in calcs))


def neb_elapsed(neb) -> tuple[float, list[float]]:
    """Wall seconds of a VASP NEB run and each image's "Elapsed time" (the images run side by side: the longest)."""
    per_image = [_seconds(task_get(c, "output", "run_stats")) for c in (task_get(neb, "calculations", default=[]) or [])]
    return (max(per_image) if per_image else 0.0), per_image


def software_versions() -> dict:
    """Versions of the packages that ran and read the VASP jobs (this environment; the modules' own
    ``__version__``: pymatgen's distribution and its ``pymatgen.core`` can differ)."""
    from importlib import import_module

    out = {}
    for name, module in (("atomate2", "atomate2"), ("pymatgen", "pymatgen.core"), ("emmet-core", "emmet.core"),
                         ("custodian", "custodian"), ("jobflow", "jobflow")):
        try:
            out[name] = getattr(import_module(module), "__version__", None) or version(name)
        except (ImportError, PackageNotFoundError):
            out[name] = None
    return out


def _incar_of(calc) -> dict:
    return dict(task_get(calc, "input", "incar", default={}) or {})


def _nsw(calc) -> int | None:
    nsw = task_get(calc, "input", "parameters", "NSW", default=None)
    nsw = _incar_of(calc).get("NSW") if nsw is None else nsw
    return int(nsw) if nsw is not None else None


def run_problem(task) -> str | None:
    """Why a VASP task document is not a converged result (None if it is)."""
    if task is None:
        return "no VASP task document"
    if task_succeeded(task):
        return None
    calcs = task_get(task, "calcs_reversed", default=[]) or task_get(task, "calculations", default=[]) or []
    for calc in calcs[:1] if task_get(task, "calcs_reversed") else calcs:
        steps = task_get(calc, "output", "ionic_steps", default=[]) or []
        nsw = _nsw(calc)
        if nsw is not None and nsw > 1 and len(steps) >= nsw:
            return f"the ionic steps reached NSW = {nsw} before EDIFFG was met (last structure and energy kept)"
    state = task_get(task, "state")
    return f"VASP run not successful (atomate2 state {getattr(state, 'value', state)!r}; electronic convergence?)"


def vasp_summary(task) -> dict:
    calc = (task_get(task, "calcs_reversed", default=[None]) or [None])[0]
    incar = _incar_of(calc)
    return {
        "dir_name": task_get(task, "dir_name"),
        "vasp_version": task_get(calc, "vasp_version"),
        "incar": {k: incar[k] for k in ("GGA", "ENCUT", "ISMEAR", "SIGMA", "ISIF", "EDIFFG", "IBRION", "NSW")
                  if k in incar},
        "potcar": [task_get(p, "titel") for p in (task_get(calc, "input", "potcar_spec", default=[]) or [])],
        "versions": software_versions(),
    }


def incar_overrides(maker, defaults: dict) -> dict:
    """The INCAR settings of an atomate2 maker that differ from alloyflow's ``defaults`` (``--incar``)."""
    missing = object()
    return {k: v for k, v in sorted(maker.input_set_generator.user_incar_settings.items())
            if defaults.get(k, missing) != v}


@job
def relaxation_document(relax, static, label: str, input_structure: Structure, key: str, metadata: dict,
                        fmax: float, relax_cell: bool, vasp_meta: dict | None = None) -> RelaxationDocument:
    """alloyflow's document from atomate2's VASP task documents (relaxation, then static or None).

    A run that did not converge (NSW reached, or atomate2's state "failed")
    still gives a document, with ``converged=False``, its last structure and
    energies, and the reason in ``metadata["vasp"]["problems"]``.
    """
    final = static if static is not None else relax
    structure = as_structure(task_get(final, "output", "structure"))
    energy = float(task_get(final, "output", "energy"))
    steps = ionic_steps(relax)
    relax_forces = task_get(steps[-1], "forces") if steps else task_get(relax, "output", "forces")
    runs = (("relax" if relax_cell else "static", relax), ("static", static))
    problems = {name: why for name, task in runs if task is not None and (why := run_problem(task))}
    if problems:
        logger.warning("VASP %s: %s", label, "; ".join(f"{k}: {v}" for k, v in problems.items()))
    return RelaxationDocument(
        label=label,
        formula=structure.composition.reduced_formula,
        structure=structure,
        input_structure=input_structure,
        energy=energy,
        energy_per_atom=energy / len(structure),
        volume_per_atom=structure.volume / len(structure),
        natoms=len(structure),
        # VASP reached EDIFFG within NSW and every SCF converged (pymatgen's judgement) for every run
        converged=not problems,
        max_force=max_force(relax_forces),
        n_steps=len(steps),
        fmax=fmax,
        relax_cell=relax_cell,
        calculator=calculator_info(VASP),
        input_hash=key,
        elapsed_seconds=task_elapsed(relax) + (task_elapsed(static) if static is not None else 0.0),
        metadata={**(metadata or {}), "vasp": {**vasp_summary(final), **(vasp_meta or {}),
                                               **({"problems": problems} if problems else {})}},
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
        overrides = {"relax": incar_overrides(self.relax_maker, HULL_INCAR)}
        if self.static:
            overrides["static"] = incar_overrides(self.static_maker, static_incar(HULL_INCAR))
        doc = relaxation_document(relax.output, static.output if static else None, label, structure, key,
                                  metadata or {}, self.fmax, True, {"incar_overrides": overrides})
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
        overrides = {"static": incar_overrides(self.static_maker, static_incar(HULL_INCAR))}
        doc = relaxation_document(static.output, None, label, structure, key, metadata or {}, 0.0, False,
                                  {"incar_overrides": overrides})
        keyed_step(doc, key, "", f"vasp static result {label}")
        return Flow([static, doc], output=doc.output, name=f"vasp static {label}", uuid=doc.uuid)


def _sort_order(structure: Structure) -> list[int]:
    """The site order atomate2's input sets write (``get_sorted_structure``: by electronegativity, stable)."""
    return sorted(range(len(structure)), key=lambda i: structure[i])


def _unsorted(structure: Structure, order: list[int]) -> Structure:
    """Back to the input's site order (``order[new] = old``)."""
    return Structure.from_sites([structure[order.index(old)] for old in range(len(order))])


def _mic(d: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Cartesian displacements ``d`` (n x 3) under the minimum-image convention of ``lattice`` (rows = vectors)."""
    frac = d @ np.linalg.inv(lattice)
    return (frac - np.round(frac)) @ lattice


def neb_forces(positions: list, energies: list[float], forces: list, lattice, spring: float = 5.0,
               climb: bool = True) -> list[np.ndarray]:
    """The NEB forces on the intermediate images, as VTST computes them from the DFT forces.

    Improved tangent (Henkelman and Jónsson, J. Chem. Phys. 113, 9978
    (2000)): towards the higher neighbour, or at an extremum the energy-
    weighted sum of both segments; normal component of the DFT force plus
    the spring force ``spring·(|R+| - |R-|)`` along the tangent; with
    ``climb`` the highest image feels no spring and its force along the
    tangent is inverted. On the converged Si63 vacancy band of atomate2's
    test data this reproduces VTST's "FORCES: max atom" of each image to
    1e-6 eV/Å.

    Parameters
    ----------
    positions : list of (n_atoms, 3) arrays
        Cartesian positions of the whole band, endpoints included (n_images + 2).
    energies : list of float
        Energies of the whole band (VTST uses VASP's free energy, TOTEN).
    forces : list of (n_atoms, 3) arrays
        DFT forces on the intermediate images.
    lattice : (3, 3) array
        The (fixed) cell, rows are lattice vectors.
    spring : float
        Spring constant, eV/Å² (VASP's ``SPRING`` without its sign; default -5).
    climb : bool
        Whether the highest intermediate image climbs.
    """
    lattice = np.asarray(lattice, dtype=float)
    pos = [np.asarray(p, dtype=float).reshape(-1, 3) for p in positions]
    e = [float(x) for x in energies]
    top = 1 + int(np.argmax(e[1:-1])) if climb and len(e) > 2 else None
    out = []
    for i in range(1, len(pos) - 1):
        plus, minus = _mic(pos[i + 1] - pos[i], lattice), _mic(pos[i] - pos[i - 1], lattice)
        if e[i + 1] > e[i] > e[i - 1]:
            tangent = plus
        elif e[i + 1] < e[i] < e[i - 1]:
            tangent = minus
        else:
            d_max = max(abs(e[i + 1] - e[i]), abs(e[i - 1] - e[i]))
            d_min = min(abs(e[i + 1] - e[i]), abs(e[i - 1] - e[i]))
            tangent = plus * d_max + minus * d_min if e[i + 1] > e[i - 1] else plus * d_min + minus * d_max
        norm = np.linalg.norm(tangent)
        tangent = tangent / norm if norm > 0 else tangent
        f = np.asarray(forces[i - 1], dtype=float).reshape(-1, 3)
        parallel = float((f * tangent).sum())
        if i == top:
            out.append(f - 2.0 * parallel * tangent)
        else:
            out.append(f - parallel * tangent
                       + spring * (np.linalg.norm(plus) - np.linalg.norm(minus)) * tangent)
    return out


VTST_TAGS = ("LCLIMB", "IOPT", "ICHAIN")
"""INCAR tags that only a VTST-patched VASP reads (stock VASP ignores them)."""


def _local_path(dir_name) -> Path | None:
    """A task document's ``dir_name`` (possibly ``host:/path``) as a readable local folder, or None."""
    if not dir_name:
        return None
    for candidate in (str(dir_name), str(dir_name).split(":", 1)[-1]):
        if Path(candidate).is_dir():
            return Path(candidate)
    return None


def _find(folder: Path, name: str) -> Path | None:
    """``name`` in ``folder``, gzipped (atomate2 gzips its job folders once VASP is done) or not."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def outcar_header(path: Path) -> dict:
    """What an NEB image's OUTCAR says before its first SCF step: VTST's banner and NEB settings.

    VTST prints ``VTST: version ...`` and ``NEB: LCLIMB``/``NEB: SPRING``
    lines there; a stock VASP prints none (and ignores LCLIMB, IOPT, ICHAIN).
    """
    from monty.io import zopen

    info = {"vtst": None, "lclimb": None, "spring": None}
    with zopen(path, "rt") as f:
        for line in f:
            text = line.strip()
            if text.startswith("----") and "Iteration" in text:
                break
            if text.startswith("VTST: version"):
                info["vtst"] = text.split("version", 1)[1].strip(" ,")
            elif text.startswith("NEB:") and text.split()[1:2] == ["LCLIMB"]:
                info["lclimb"] = text.split()[-1].upper().startswith("T")
            elif text.startswith("NEB:") and text.split()[1:2] == ["SPRING"]:
                info["spring"] = float(text.split()[-1])
    return info


def neb_outcar_headers(neb, n_images: int) -> list[dict]:
    """Each image's OUTCAR header (``outcar_header``), read from the NEB folder as atomate2's
    ``collect_neb_output`` reads it; empty when the folder is not readable here."""
    folder = _local_path(task_get(neb, "dir_name"))
    if folder is None:
        return []
    outcars = [_find(folder / f"{k:02d}", "OUTCAR") for k in range(1, n_images + 1)]
    return [outcar_header(p) for p in outcars if p is not None]


def aligned(structure: Structure, reference: Structure) -> tuple[Structure, bool]:
    """``structure`` with its sites renumbered to match ``reference`` (same species, shortest periodic
    distances), and whether anything changed. alloyflow's own bands keep one order (``sort_tol=0``);
    this guards bands whose endpoints were renumbered between relaxation and NEB (atomate2 sorts them)."""
    from scipy.optimize import linear_sum_assignment

    d = reference.lattice.get_all_distances(reference.frac_coords, structure.frac_coords)
    if np.allclose(np.diag(d), d.min(axis=1)):
        return structure, False
    species = np.array([str(s.specie) for s in reference])
    other = np.array([str(s.specie) for s in structure])
    d = d + 1e6 * (species[:, None] != other[None, :])
    _, cols = linear_sum_assignment(d)
    if np.array_equal(cols, np.arange(len(cols))):
        return structure, False
    return Structure.from_sites([structure[int(j)] for j in cols]), True


def _last_step(calc):
    steps = task_get(calc, "output", "ionic_steps", default=[]) or []
    return steps[-1] if steps else None


def _free_energy(task_or_calc) -> float:
    """VASP's free energy (TOTEN) of the last ionic step, what VTST compares; the task energy otherwise."""
    step = _last_step(task_or_calc)
    if step is None:
        calcs = task_get(task_or_calc, "calcs_reversed", default=[]) or []
        step = _last_step(calcs[0]) if calcs else None
    value = task_get(step, "e_fr_energy")
    return float(value if value is not None else task_get(task_or_calc, "output", "energy"))


def vtst_problem(incar: dict, headers: list[dict]) -> str | None:
    """A clear message when the INCAR asks for VTST but the VASP that ran has none (None otherwise)."""
    asked = [t for t in VTST_TAGS if t in incar and incar[t] not in (False, 0, "F", ".FALSE.")]
    if not asked or not headers or any(h.get("vtst") for h in headers):
        return None
    return (f"the NEB INCAR sets VTST tags ({', '.join(asked)}) but the VASP that ran has no VTST (no 'VTST: "
            "version' line in the images' OUTCAR): stock VASP ignores them"
            + (", and with IBRION = 3, POTIM = 0 its images never move" if incar.get("IBRION") == 3 else "")
            + ". Use a VTST-patched VASP, or the plain VASP NEB: makers_for('vasp', climb=False) "
            "(alloyflow submit ... --no-climb)")


@job
def neb_document(initial, final, neb, label: str, key: str, order: list[int], n_images: int, fmax: float,
                 settings: dict, metadata: dict, vasp_meta: dict | None = None):
    """alloyflow's ``NebDocument`` from the VASP endpoint and NEB task documents (input site order).

    ``max_force`` is the NEB force of the band (``neb_forces``: tangent
    projected out of the stored DFT forces, spring and climbing terms), the
    quantity VTST converges to ``EDIFFG``; the raw DFT forces (which keep the
    component along the path) are in ``metadata["vasp"]["image_dft_max_forces"]``.
    An unconverged band (NSW reached, a failed image, VTST tags on a VASP
    without VTST) is a document with ``converged=False`` and the reasons in
    ``metadata["vasp"]["problems"]``.
    """
    from alloyflow.workflows.jobs.neb import NebDocument

    t0 = time.perf_counter()
    calcs = task_get(neb, "calculations", default=[]) or []
    ends = [as_structure(task_get(t, "output", "structure")) for t in (initial, final)]
    band_images = []
    for c, s in zip(calcs, task_get(neb, "images", default=[]) or []):
        step = _last_step(c)
        band_images.append(as_structure(task_get(step, "structure") if task_get(step, "structure") else s))
    if not band_images:
        band_images = [as_structure(s) for s in task_get(neb, "images", default=[])]
    renumbered = []
    if band_images:
        for k, near in ((0, band_images[0]), (1, band_images[-1])):
            ends[k], changed = aligned(ends[k], near)
            if changed:
                renumbered.append(("initial", "final")[k])
    images = [ends[0], *band_images, ends[1]]
    energies = [float(task_get(initial, "output", "energy")), *map(float, task_get(neb, "energies", default=[])),
                float(task_get(final, "output", "energy"))]
    neb_steps = [list(task_get(c, "output", "ionic_steps", default=[])) for c in calcs]
    dft_forces = [task_get(s[-1], "forces") for s in neb_steps if s]
    endpoint_steps = len(ionic_steps(initial)) + len(ionic_steps(final))
    imax = int(np.argmax(energies))
    hop = float(ends[0].lattice.get_all_distances(ends[0].frac_coords, ends[1].frac_coords).diagonal().max())
    n_steps = max((len(s) for s in neb_steps), default=0)

    # the NEB's INCAR (VTST tags are not in the images' vasprun.xml)
    incar = {**(_incar_of(calcs[0]) if calcs else {}), **dict(task_get(neb, "orig_inputs", "incar", default={}) or {}),
             **dict(task_get(neb, "inputs", "incar", default={}) or {})}
    headers = neb_outcar_headers(neb, n_images)
    vtst = next((h["vtst"] for h in headers if h.get("vtst")), None)
    if headers:  # what the VASP that ran did: only VTST climbs (LCLIMB defaults to true there)
        climb = bool(vtst) and next((h["lclimb"] for h in headers if h.get("lclimb") is not None), True)
        spring = next((h["spring"] for h in headers if h.get("spring") is not None), incar.get("SPRING", -5.0))
    else:
        climb, spring = bool(incar.get("LCLIMB", False)), incar.get("SPRING", -5.0)
    image_forces = []
    if len(dft_forces) == len(band_images) == n_images and n_images:
        band_energies = [_free_energy(initial), *[_free_energy(c) for c in calcs], _free_energy(final)]
        projected = neb_forces([s.cart_coords for s in images], band_energies, dft_forces, ends[0].lattice.matrix,
                               abs(float(spring)), climb)
        image_forces = [max_force(f) for f in projected]

    problems = {}
    for name, task in (("initial endpoint", initial), ("final endpoint", final), ("band", neb)):
        if why := run_problem(task):
            problems[name] = why
    if why := vtst_problem(incar, headers):
        problems["vtst"] = why
    if problems:
        logger.warning("VASP NEB %s: %s", label, "; ".join(f"{k}: {v}" for k, v in problems.items()))
    wall, per_image = neb_elapsed(neb)
    vasp = {
        "neb_dir": task_get(neb, "dir_name"),
        "neb_method": str(task_get(neb, "neb_method", default="")),
        "vtst": vtst,
        "climbing": climb,
        "spring": float(spring),
        "image_max_forces": image_forces,
        "image_dft_max_forces": [max_force(f) for f in dft_forces],
        "image_elapsed_seconds": per_image,
        **({"endpoints_renumbered": renumbered} if renumbered else {}),
        "neb_elapsed_seconds": wall,
        "versions": software_versions(),
        **(vasp_meta or {}),
        **({"problems": problems} if problems else {}),
    }
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
        converged=not problems,
        n_steps=n_steps,
        force_calls=n_steps * n_images + endpoint_steps,
        model_calls=n_steps * n_images + endpoint_steps,  # one SCF per image and step: no batching
        endpoint_force_calls=endpoint_steps,
        # the NEB force (tangent projected out, spring and climbing terms): what VTST converges to EDIFFG
        max_force=max(image_forces) if image_forces else max((max_force(f) for f in dft_forces), default=0.0),
        fmax=fmax,
        hop_distance=hop,
        endpoints_converged=not ({"initial endpoint", "final endpoint"} & set(problems)),
        settings=settings,
        # VASP's own times: endpoints one after the other, then the images side by side in one run
        elapsed_seconds=task_elapsed(initial) + task_elapsed(final) + wall + time.perf_counter() - t0,
        evaluation_seconds=0.0,
        metadata={**(metadata or {}), "vasp": vasp},
    )


@dataclass
class VaspNebMaker(Maker):
    """A vacancy hop with VASP: endpoint relaxations, IDPP images, NEB (atomate2), one keyed sub-flow.

    A drop-in ``neb_maker`` for ``run_barriers``: same ``keyed_job``
    signature and output document as ``alloyflow.workflows.jobs.neb.NebMaker``.
    ``climb=True`` needs a VTST-patched VASP (see the module docstring);
    ``climb=False`` is VASP's own NEB (no VTST tags). ``incar``: overrides
    for the endpoints and the band (result-neutral tags stay out of the key).
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
                           self.settings(), metadata or {},
                           {"incar_overrides": {k: v for k, v in sorted(self.incar.items()) if NEB_INCAR.get(k) != v}})
        keyed_step(doc, key, "", f"vasp neb result {label}")
        return Flow([e_i, e_f, images, neb, doc], output=doc.output, name=f"vasp neb {label}", uuid=doc.uuid)
