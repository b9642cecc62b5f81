"""Vineyard maths without a calculator: normal-mode frequencies of a Hessian and the attempt prefactor.

The Hessians come from ``alloyflow.workflows.jobs.attempt`` (finite differences
on a registry calculator); everything here is numbers in, numbers out.
"""

from __future__ import annotations

import math

import numpy as np
from ase import units

_OMEGA = math.sqrt(units._e / units._amu) * 1e10  # rad/s per sqrt(eV/Å²/amu)


def signed_frequencies_thz(hessian: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Normal-mode frequencies (THz, ascending) of a Hessian in eV/Å²; imaginary ones negative."""
    h = np.asarray(hessian, dtype=float)
    m = np.repeat(np.asarray(masses, dtype=float), 3)
    if h.shape != (m.size, m.size):
        raise ValueError(f"Hessian shape {h.shape} does not match {m.size // 3} atoms")
    lam = np.linalg.eigvalsh(0.5 * (h + h.T) / np.sqrt(np.outer(m, m)))
    return np.sign(lam) * np.sqrt(np.abs(lam)) * _OMEGA / (2 * np.pi) / 1e12


def vineyard_prefactor(freq_initial_thz, freq_saddle_thz, n_drop: int = 0) -> float:
    """ν* in Hz from the two (signed, ascending) spectra: all initial modes over all but the lowest saddle mode.

    ``n_drop`` near-zero modes (rigid translations) are removed from each
    state first, those of smallest magnitude. Computed in logs.
    """
    fi = np.asarray(freq_initial_thz, dtype=float)
    fs = np.asarray(freq_saddle_thz, dtype=float)
    if fi.size != fs.size or fi.size < 1:
        raise ValueError(f"initial and saddle spectra must have the same non-zero length ({fi.size} vs {fs.size})")
    if n_drop:
        fi = np.sort(fi[np.argsort(np.abs(fi))[n_drop:]])
        fs = np.sort(fs[np.argsort(np.abs(fs))[n_drop:]])
    fs = fs[1:]  # the unstable (lowest, imaginary) mode
    if (fi <= 0).any() or (fs <= 0).any():
        raise ValueError("Vineyard formula needs real frequencies (all initial, all but one saddle mode)")
    return float(np.exp(np.log(fi).sum() - np.log(fs).sum()) * 1e12)
