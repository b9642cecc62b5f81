"""A NEB's path before any force call: endpoint checks and atom order, and the IDPP start band.

Split from ``alloyflow.workflows.jobs.neb`` (which re-exports every name):
what is checked about two endpoints before a job exists
(``matched_final``: one hopping atom, atoms in one order, one cell), and
the interpolation of the intermediate images (linear, then IDPP with a
tight tolerance and a stall test).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.geometry import find_mic
from ase.mep import NEB
from ase.mep.neb import IDPP
from ase.optimize import MDMin
from pymatgen.core import Structure

from alloyflow.structures.migration import MOVE_TOLERANCE, remap_to_reference

LATTICE_TOL = 1e-3
"""Largest difference (Å) between the endpoints' lattice vectors; NEB needs one cell."""

SAME_MINIMUM_TOL = 0.3
"""Relaxed endpoints whose atoms all lie closer than this (Å) are one minimum."""

IDPP_FMAX = 0.001
"""IDPP convergence (its own units); ASE's default 0.1 leaves one-atom hops linear."""

IDPP_STEPS = 1000
"""Most IDPP optimiser steps (MDMin)."""

IDPP_STALL_STEPS = 50
IDPP_STALL_GAIN = 0.01
"""IDPP stops once it has stalled: when its lowest residual so far is not ``IDPP_STALL_GAIN``
(relative) below the lowest one ``IDPP_STALL_STEPS`` steps earlier.

On fcc vacancy hops (31 atoms, ASE's EMT Cu and Al) the IDPP residual falls
from 0.04 to 0.006 in about 20 steps and then creeps (0.0058 and 0.0041
after 1000 steps, never ``IDPP_FMAX``): a whole NEB run took 36-38 s of CPU,
almost all of it in 1000 IDPP steps. The stall test stops after 95-97 steps
(whole run 3.7-3.8 s); the bands differ by at most 0.003 Å and the CI-NEB
barriers from them by 0.4 meV (Cu) and 0.03 meV (Al), well inside the band's
``fmax`` (``tests/test_neb_robustness.py``).

Not in the cache key, and keys stored before the stall test stay valid:
where IDPP converges before the stall test can act (bcc Li, LiSn and Li2Sn5
vacancy hops reach ``IDPP_FMAX`` in 22-24 steps, the test acts from step
``IDPP_STALL_STEPS`` on) the band is the same to the bit; where it stalled,
the earlier run only polished the start guess longer, and the band converged
from it to the same ``fmax`` is the same path within that tolerance.
"""


class EndpointError(ValueError):
    """Endpoints that cannot define one migration path; the message says why."""



def validate_endpoints(initial: Structure, final: Structure, lattice_tol: float = LATTICE_TOL) -> None:
    """Raise ``EndpointError`` unless both endpoints have the same atoms, order and cell."""
    if len(initial) != len(final):
        raise EndpointError(f"endpoints have different numbers of atoms: {len(initial)} (initial) vs {len(final)} (final)")
    species_i = [str(s.specie) for s in initial]
    species_f = [str(s.specie) for s in final]
    if species_i != species_f:
        diff = [k for k, (a, b) in enumerate(zip(species_i, species_f)) if a != b]
        k = diff[0]
        raise EndpointError(
            f"endpoints differ in species order at {len(diff)} site(s), first at site {k}: "
            f"{species_i[k]} (initial) vs {species_f[k]} (final)"
        )
    dl = np.abs(initial.lattice.matrix - final.lattice.matrix).max()
    if dl > lattice_tol:
        raise EndpointError(
            f"endpoints have different lattices (largest difference {dl:.4f} Å > {lattice_tol} Å): "
            f"abc {tuple(round(x, 4) for x in initial.lattice.abc)} vs {tuple(round(x, 4) for x in final.lattice.abc)}"
        )


def endpoint_displacements(initial: Structure, final: Structure) -> np.ndarray:
    """Per-site displacement lengths (Å) from ``initial`` to ``final`` under the minimum image, in ``initial``'s cell.

    ``final``'s fractional coordinates are read in ``initial``'s cell, as the
    band does (``NebMaker.run``).
    """
    cart = (final.frac_coords - initial.frac_coords) @ initial.lattice.matrix
    _, lengths = find_mic(cart, initial.lattice.matrix, initial.lattice.pbc)
    return np.asarray(lengths, dtype=float)


def matched_final(initial: Structure, final: Structure, move_tol: float = MOVE_TOLERANCE,
                  lattice_tol: float = LATTICE_TOL) -> Structure:
    """``final`` with its atoms in ``initial``'s order; ``EndpointError`` unless at most one atom moves.

    A NEB interpolates atom ``k`` of the initial endpoint to atom ``k`` of the
    final one, so both must list the same atoms in the same order and only
    the hopping atom may move by more than ``move_tol`` Å (minimum image).
    Endpoints listed in different orders (a supercell builder, a file
    written by another code) are reordered onto ``initial`` when the
    same-species assignment of least displacement (``remap_to_reference``)
    leaves exactly one atom (or none) moving; otherwise the one-line error
    says how many atoms move. ``final`` comes back unchanged when its order
    is already right. No moving atom is left to the same-minimum test that
    follows the endpoint relaxations.
    """
    same_cell = len(initial) == len(final) and (
        np.abs(initial.lattice.matrix - final.lattice.matrix).max() <= lattice_tol)
    same_order = [s.species for s in initial] == [s.species for s in final]
    if same_cell and initial.composition == final.composition:
        n = int((endpoint_displacements(initial, final) > move_tol).sum()) if same_order else None
        if n is None or n > 1:
            remapped, disp = remap_to_reference(initial, final)
            if (disp > move_tol).sum() <= 1:
                return remapped
    validate_endpoints(initial, final, lattice_tol)  # atom counts, species order, cell
    disp = endpoint_displacements(initial, final)
    movers = np.flatnonzero(disp > move_tol)
    if len(movers) > 1:
        _, disp_reordered = remap_to_reference(initial, final)
        raise EndpointError(
            f"{len(movers)} atoms move more than {move_tol} Å between the endpoints (up to {disp.max():.2f} Å; "
            f"{int((disp_reordered > move_tol).sum())} in the closest reordering of the final one): a NEB needs "
            f"one hopping atom, listed in the same order in both endpoints"
        )
    return final


def mic_displacements(initial: Atoms, final: Atoms) -> np.ndarray:
    """Per-atom displacement lengths from initial to final under the minimum image."""
    _, lengths = find_mic(final.get_positions() - initial.get_positions(), initial.cell, initial.pbc)
    return lengths


def idpp_relax(neb: NEB, fmax: float = IDPP_FMAX, steps: int = IDPP_STEPS, stall_steps: int = IDPP_STALL_STEPS,
               stall_gain: float = IDPP_STALL_GAIN) -> tuple[int, float]:
    """ASE's ``idpp_interpolate`` (MDMin on the IDPP surface, minimum image) that also stops on a stall.

    Stops at an IDPP residual (largest per-atom NEB force) of ``fmax``, after
    ``steps`` steps, or once the lowest residual so far is not ``stall_gain``
    (relative) below the lowest one ``stall_steps`` steps earlier (see
    ``IDPP_STALL_GAIN``); ``stall_steps=0`` turns the stall test off, which is
    ASE's ``idpp_interpolate``. Returns (steps taken, final residual). The
    images' own calculators are restored afterwards.
    """
    d1 = neb.images[0].get_all_distances(mic=True)
    d2 = neb.images[-1].get_all_distances(mic=True)
    d = (d2 - d1) / (neb.nimages - 1)
    real_calcs = [image.calc for image in neb.images]
    for i, image in enumerate(neb.images):
        image.calc = IDPP(d1 + i * d, mic=True)
    best: list[float] = []
    try:
        opt = MDMin(neb, trajectory=None, logfile=None)
        for _ in opt.irun(fmax=fmax, steps=steps):
            residual = float(np.linalg.norm(neb.get_forces(), axis=1).max()) if neb.natoms else 0.0
            best.append(min(residual, best[-1]) if best else residual)
            n = len(best) - 1  # optimizer steps so far
            if stall_steps and n >= stall_steps and best[n] > (1.0 - stall_gain) * best[n - stall_steps]:
                break
    finally:
        for image, calc in zip(neb.images, real_calcs):
            image.calc = calc
    return int(opt.nsteps), residual


def interpolate_band(images: list[Atoms], method: str = "idpp",
                     neb_method: str = "improvedtangent") -> tuple[int, float]:
    """Fill the intermediate images: linear (minimum image), then IDPP unless ``method="linear"``.

    ASE's ``NEB.interpolate(method="idpp")`` stops at an IDPP force of 0.1,
    which the linear band of a one-atom hop already meets (IDPP forces are
    tiny), so it returns the linear band unchanged; ``IDPP_FMAX`` is tight
    enough to move the hopping atom around its neighbours, and a stalled IDPP
    stops early (``IDPP_STALL_GAIN``). The IDPP optimisation runs on a plain
    NEB so that it sees the IDPP calculators, not the batched potential.
    Returns the IDPP steps and final IDPP residual ((0, nan) for "linear").
    """
    if method not in ("idpp", "linear"):
        raise ValueError(f"unknown interpolation {method!r}; use 'idpp' or 'linear'")
    neb = NEB(images, method=neb_method, allow_shared_calculator=True)
    neb.interpolate(method="linear", mic=True, apply_constraint=False)
    if method == "idpp":
        return idpp_relax(neb, IDPP_FMAX, IDPP_STEPS, IDPP_STALL_STEPS, IDPP_STALL_GAIN)
    return 0, float("nan")
