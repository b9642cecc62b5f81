"""Ab initio entries of the calculator registry: ``gpaw`` (local PAW DFT) and ``vasp``.

``gpaw`` is ASE's GPAW calculator in plane-wave mode, PBE, Fermi-Dirac
smearing and a k-point *density* (points per Å⁻¹, ASE's convention: a grid
of ceil(density·|b_i|) points along reciprocal vector b_i including 2π, i.e.
the inverse of VASP's KSPACING). It runs through every alloyflow Maker
(``RelaxMaker(calculator="gpaw", calculator_kwargs={...})``) like an ML
potential, one structure at a time. Install it with ``.ci/install-gpaw.sh``.

Settings and cache keys: the factory's keyword arguments (``ecut``,
``kpt_density``, ``width``...) are the Maker's ``calculator_kwargs`` and so
part of every job's input hash; ``gpaw_settings(**kwargs)`` gives the
resolved settings (defaults filled in) to record next to a result. The
registry's ``version`` of ``gpaw`` names the GPAW and gpaw-data (PAW setups)
versions and the defaults, and the version is part of every key: changing a
default here, or the setups, recomputes rather than silently reusing old
numbers.

Default numbers (measured here, Li/In/LiIn single points on SevenNet-0 cells):
- ``ecut`` 600 eV: In's PAW setup has a large Pulay stress at 400 eV and cell
  relaxations collapse; 600 eV is the cutoff at which they were seen to work.
  Single points at fixed cells are fine at 400 eV, which is what CI uses.
- ``kpt_density`` 6 Å: LiIn's formation energy is -0.2748 eV/atom at
  (400 eV, density 4) and -0.2817 at (600 eV, density 6): 7 meV/atom apart;
  CI uses the cheaper pair (Li, In, LiIn in about 40 s on 2 cores).
- ``width`` 0.1 eV Fermi-Dirac; the energy reported is GPAW's extrapolation
  to zero width, forces and stress are those of the free energy.

``vasp`` is registered for provenance only (``calculator_info("vasp")``,
element checks, CLI choices): VASP runs through atomate2's VASP makers
(``alloyflow.workflows.jobs.vasp``), never as an in-process ASE calculator, so its
factory raises a ``CalculatorError`` that says so.

Nothing here imports gpaw at import time: ``register_dft_calculators`` only
adds specs; the factory imports gpaw on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ase.calculators.calculator import Calculator, all_changes

from alloyflow.calculators.registry import CalculatorError, CalculatorSpec, elements_up_to, register_calculator

GPAW_DEFAULTS: dict = {
    "ecut": 600.0,  # eV, plane-wave cutoff
    "kpt_density": 6.0,  # k-points per Å⁻¹ (ASE/GPAW convention), Gamma-centred
    "width": 0.1,  # eV, Fermi-Dirac smearing
    "xc": "PBE",
    "gamma": True,
    "energy_tolerance": None,  # eV per valence electron; None: GPAW's default (5e-4)
    "maxiter": None,  # SCF iterations before GPAW gives up (KohnShamConvergenceError); None: GPAW's default (333)
    "txt": None,  # no log; a path keeps GPAW's text output (useful on HPC)
}
"""Keyword arguments of the ``gpaw`` factory and their defaults."""


def gpaw_settings(**kwargs) -> dict:
    """The resolved GPAW settings (defaults filled in), with GPAW and gpaw-data versions."""
    unknown = set(kwargs) - set(GPAW_DEFAULTS)
    if unknown:
        raise CalculatorError(
            f"unknown gpaw setting(s) {', '.join(sorted(unknown))}; known: {', '.join(GPAW_DEFAULTS)}"
        )
    settings = {**GPAW_DEFAULTS, **kwargs}
    settings["mode"] = "pw"
    settings["occupations"] = "fermi-dirac"
    for pkg in ("gpaw", "gpaw-data"):
        settings[f"{pkg}_version"] = _pkg_version(pkg)
    return settings


def _symmetry_broken_errors() -> tuple[type[BaseException], ...]:
    try:
        from gpaw.new.symmetry import SymmetryBrokenError
    except ImportError:  # other GPAW versions: nothing to catch
        return ()
    return (SymmetryBrokenError,)


class GpawCalculator(Calculator):
    """ASE calculator that evaluates GPAW, starting a fresh GPAW when symmetry breaks.

    Why a wrapper and not the bare ``gpaw.GPAW``: the registry hands one
    calculator instance to many structures (a hull, a NEB band). GPAW keeps
    the k-point symmetry of the first structure it saw and raises
    ``SymmetryBrokenError`` when the atoms move to a lower symmetry (seen here
    on a bcc-Li vacancy band: endpoint then saddle image). Here that error
    starts a new GPAW calculation for the new atoms; otherwise GPAW is reused
    and keeps its wave functions between ionic steps.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, gpaw_parameters: dict, **kwargs):
        super().__init__(**kwargs)
        self.gpaw_parameters = gpaw_parameters
        self._gpaw = None

    def _new_gpaw(self):
        from gpaw import GPAW

        return GPAW(**self.gpaw_parameters)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms.copy()
        for attempt in range(2):
            if self._gpaw is None:
                self._gpaw = self._new_gpaw()
            atoms.calc = self._gpaw
            try:
                self.results = {
                    "energy": atoms.get_potential_energy(),  # extrapolated to zero smearing
                    "free_energy": atoms.get_potential_energy(force_consistent=True),
                }
                if "forces" in properties:
                    self.results["forces"] = atoms.get_forces()
                if "stress" in properties:
                    self.results["stress"] = atoms.get_stress()
                return
            except _symmetry_broken_errors():
                if attempt:
                    raise
                self._gpaw = None  # new symmetry: a new calculation


def _gpaw_factory(**kwargs) -> GpawCalculator:
    """A GPAW calculator (plane waves, PBE, Fermi-Dirac, k-point density)."""
    try:
        from gpaw import PW, FermiDirac
    except ImportError:
        raise CalculatorError(
            "calculator 'gpaw' needs GPAW: run .ci/install-gpaw.sh (apt libraries + pip gpaw, gpaw-data)"
        ) from None
    gpaw_settings(**kwargs)  # rejects unknown keys with a clear message
    s = {**GPAW_DEFAULTS, **kwargs}
    params = {
        "mode": PW(float(s["ecut"])),
        "xc": s["xc"],
        "kpts": {"density": float(s["kpt_density"]), "gamma": bool(s["gamma"])},
        "occupations": FermiDirac(float(s["width"])),
        "txt": s["txt"],
    }
    if s["energy_tolerance"]:
        params["convergence"] = {"energy": float(s["energy_tolerance"])}
    if s["maxiter"]:
        params["maxiter"] = int(s["maxiter"])
    return GpawCalculator(params)


def _vasp_factory(**kwargs):
    raise CalculatorError(
        "calculator 'vasp' is not an in-process ASE calculator: VASP jobs are atomate2 makers "
        "(alloyflow.workflows.jobs.vasp) run on a machine with VASP, e.g. through 'alloyflow submit' (docs/HPC.md)"
    )


def _pkg_version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


class _GpawSpec(CalculatorSpec):
    """The ``gpaw`` spec; its version also names the setups and the default settings."""

    @property
    def version(self) -> str:
        d = GPAW_DEFAULTS
        gpaw = _pkg_version("gpaw")
        if gpaw == "not installed":
            return gpaw
        defaults = f"PW{d['ecut']:g} k{d['kpt_density']:g} FD{d['width']:g}"
        return f"{gpaw} (gpaw-data {_pkg_version('gpaw-data')}; defaults {defaults})"


def register_dft_calculators() -> None:
    """Add ``gpaw`` and ``vasp`` to the registry (cheap: imports neither code)."""
    register_calculator(
        _GpawSpec(
            name="gpaw",
            model="GPAW-PBE",
            kind="dft",
            package="gpaw",
            description="GPAW plane-wave PAW DFT, PBE, Fermi-Dirac (local, real DFT; slow)",
            factory=_gpaw_factory,
            supported_elements=lambda: elements_up_to(86),
        )
    )
    register_calculator(
        CalculatorSpec(
            name="vasp",
            model="VASP-PBE (atomate2)",
            kind="dft",
            package="atomate2",
            description="VASP PBE through atomate2 makers; runs on HPC (docs/HPC.md)",
            factory=_vasp_factory,
            supported_elements=lambda: elements_up_to(94),
            runner="vasp",
        )
    )


register_dft_calculators()
