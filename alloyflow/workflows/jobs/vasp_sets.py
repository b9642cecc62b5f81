"""VASP settings of alloyflow: INCAR, k-points, atomate2 input sets and makers, custodian handlers.

What ``alloyflow.workflows.jobs.vasp`` runs (PBE, metallic; the settings and
their reasons are in that module's docstring and docs/HPC.md section 8), and
``inputs_summary``: what of a maker's inputs enters a cache key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from atomate2.vasp.jobs.core import RelaxMaker as _A2RelaxMaker
from atomate2.vasp.jobs.core import StaticMaker as _A2StaticMaker
from atomate2.vasp.jobs.neb import NebFromImagesMaker
from atomate2.vasp.run import DEFAULT_HANDLERS
from atomate2.vasp.sets.core import NebSetGenerator, RelaxConstVolSetGenerator, RelaxSetGenerator, StaticSetGenerator
from custodian.vasp.handlers import UnconvergedErrorHandler, load_vasprun
from pymatgen.core import Structure
from pymatgen.io.vasp import Kpoints

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
