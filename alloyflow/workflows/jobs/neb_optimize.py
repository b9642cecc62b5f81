"""Band optimizers of the CI-NEB (``alloyflow.workflows.jobs.neb``) and their stopping rule.

The band stops when every image feels at most ``fmax`` and the climbing
image at most ``climb_fmax`` (``band_converged``): the barrier is the
climbing image's energy, so its force sets the barrier's error, while the
other images only have to trace the path closely enough for the climbing
image to find the saddle. The numbers behind the defaults are in the
``alloyflow.workflows.jobs.neb`` module docstring.
"""

from __future__ import annotations

import numpy as np
from ase.mep import NEB
from ase.mep.neb import NEBOptimizer
from ase.optimize import BFGS, FIRE, LBFGS, MDMin
from ase.optimize.fire2 import FIRE2
from ase.optimize.ode import ode12r
from ase.optimize.sciopt import OptimizerConvergenceError

OPTIMIZERS = ("FIRE", "FIRE2", "MDMin", "LBFGS", "BFGS", "ODE")
"""Band optimizers; "ODE" is ASE's adaptive ``NEBOptimizer`` (Makri et al. 2019)."""

STEPPERS = {"FIRE": FIRE, "FIRE2": FIRE2, "MDMin": MDMin, "LBFGS": LBFGS, "BFGS": BFGS}
"""ASE optimizers run step by step on the band (every one of ``OPTIMIZERS`` but "ODE")."""


def image_forces(neb: NEB, forces: np.ndarray | None = None) -> np.ndarray:
    """Largest NEB force (spring and climbing terms included) on each intermediate image, eV/Å.

    Parameters
    ----------
    neb : ase.mep.NEB
        The band; its forces are computed unless given.
    forces : numpy.ndarray, optional
        ``neb.get_forces()`` (any shape holding (n_images - 2) * n_atoms vectors).

    Returns
    -------
    numpy.ndarray
        One value per intermediate image.
    """
    forces = neb.get_forces() if forces is None else forces
    norms = np.linalg.norm(np.reshape(forces, (-1, 3)), axis=1)
    return norms.reshape(neb.nimages - 2, -1).max(axis=1) if norms.size else np.zeros(neb.nimages - 2)


def climbing_index(neb: NEB) -> int | None:
    """Index among the intermediate images (0-based) of the climbing image, None without one.

    ASE sets ``neb.imax`` (index in the whole band) on every force call.
    """
    imax = getattr(neb, "imax", None)
    if not neb.climb or imax is None or not 1 <= imax <= neb.nimages - 2:
        return None
    return int(imax) - 1


def band_converged(neb: NEB, fmax: float, climb_fmax: float | None, forces: np.ndarray | None = None) -> bool:
    """Every image within ``fmax`` and the climbing image within ``min(fmax, climb_fmax)`` (eV/Å).

    ``climb_fmax=None`` (or a band without a climbing image) is the plain
    test: the largest force on any image, the climbing one included.
    """
    per_image = image_forces(neb, forces)
    if not per_image.size:
        return True
    ci = climbing_index(neb) if climb_fmax is not None else None
    if ci is not None and per_image[ci] > min(fmax, climb_fmax):
        return False
    return bool(per_image.max() <= fmax)


class ClimbingODE(NEBOptimizer):
    """ASE's ODE band optimizer, converged on every image and stopped by ``band_converged``.

    ASE's ``NEB.get_residual`` leaves the climbing image out, so the stock
    ``NEBOptimizer`` stops while the saddle point still feels large forces;
    here the residual that steers the step size is the largest NEB force on
    any image, as for FIRE, and the run stops when ``band_converged`` holds
    for ``fmax`` and ``climb_fmax``.
    """

    climb_fmax: float | None = None

    def get_residual(self, F=None, X=None):
        F = self.neb.get_forces() if F is None else F
        return float(np.linalg.norm(np.reshape(F, (-1, 3)), axis=1).max())

    def run_ode(self, fmax):
        def converged(F, X):  # F belongs to X: ode12r evaluates the forces right before asking
            return band_converged(self.neb, fmax, self.climb_fmax, F)

        try:
            ode12r(self.force_function, self.neb.get_positions().reshape(-1), fmax=fmax, rtol=self.rtol,
                   C1=self.C1, C2=self.C2, steps=self.max_steps, verbose=self.verbose, callback=self.callback,
                   residual=self.get_residual, converged=converged)
            return True
        except OptimizerConvergenceError:
            return False


def band_optimizer(name: str, neb: NEB):
    """The optimizer ``name`` (one of ``OPTIMIZERS``) on ``neb``, without a log."""
    if name == "ODE":
        return ClimbingODE(neb, method="ode", logfile=None)
    if name not in STEPPERS:
        raise ValueError(f"unknown NEB optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return STEPPERS[name](neb, logfile=None)


def optimise_band(opt, neb: NEB, fmax: float, climb_fmax: float | None, steps: int) -> bool:
    """Run ``opt`` (from ``band_optimizer``) until ``band_converged`` or ``steps`` steps; True if converged.

    ASE's step-by-step optimizers run to the tighter of the two tolerances
    and are stopped as soon as ``band_converged`` holds; the ODE optimizer
    asks ``band_converged`` itself.
    """
    if isinstance(opt, ClimbingODE):
        opt.climb_fmax = climb_fmax
        return bool(opt.run(fmax=fmax, steps=steps))
    tight = fmax if climb_fmax is None else min(fmax, climb_fmax)
    for _ in opt.irun(fmax=tight, steps=steps):
        if band_converged(neb, fmax, climb_fmax):
            return True
    return False
