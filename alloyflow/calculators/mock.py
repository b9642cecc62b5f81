"""A cheap analytic pair potential for unit tests; never for science.

Every element gets a Morse well whose equilibrium distance is the sum of
metallic radii, and unlike pairs bind more strongly than like pairs, so binary
systems have negative formation energies and a non-trivial convex hull. Energy,
forces and stress are analytic, which lets the relax, NEB and phonon code paths
run in milliseconds in tests.
"""

from __future__ import annotations

import os
import time

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list
from pymatgen.core.periodic_table import Element

from alloyflow.calculators.registry import CalculatorSpec, elements_up_to, register_calculator

MOCK_VERSION = "1.0"


def _radius(symbol: str) -> float:
    el = Element(symbol)
    r = el.metallic_radius or el.atomic_radius or 1.5
    return float(r)


def _well_depth(symbol: str) -> float:
    # Heavier, more cohesive elements get deeper wells; the exact value is
    # irrelevant, it only has to be smooth and element dependent.
    return 0.25 + 0.02 * (Element(symbol).Z % 17)


class MockPairPotential(Calculator):
    """Morse pair potential with a cosine taper to zero at ``cutoff``."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")
    name = "mock"

    def __init__(self, alpha: float = 1.4, mixing_bonus: float = 0.35, cutoff: float = 6.0, delay: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.delay = delay
        self.alpha = alpha
        self.mixing_bonus = mixing_bonus
        self.cutoff = cutoff


    def _pair_params(self, symbols: np.ndarray, i: np.ndarray, j: np.ndarray):
        uniq = sorted(set(symbols))
        radius = {s: _radius(s) for s in uniq}
        depth = {s: _well_depth(s) for s in uniq}
        si, sj = symbols[i], symbols[j]
        r0 = np.array([radius[a] + radius[b] for a, b in zip(si, sj)])
        d0 = np.array([np.sqrt(depth[a] * depth[b]) for a, b in zip(si, sj)])
        d0 = np.where(si != sj, d0 * (1.0 + self.mixing_bonus), d0)
        return r0, d0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.delay:
            time.sleep(self.delay)
        atoms = self.atoms
        i, j, dist, vec = neighbor_list("ijdD", atoms, self.cutoff)
        symbols = np.array(atoms.get_chemical_symbols())
        r0, d0 = self._pair_params(symbols, i, j)
        a = self.alpha
        expo = np.exp(-a * (dist - r0))
        morse = d0 * (expo**2 - 2.0 * expo)
        dmorse = d0 * (-2.0 * a * expo**2 + 2.0 * a * expo)

        taper_start = self.cutoff - 1.0
        x = np.clip((dist - taper_start) / (self.cutoff - taper_start), 0.0, 1.0)
        fc = 0.5 * (1.0 + np.cos(np.pi * x))
        dfc = np.where((x > 0) & (x < 1), -0.5 * np.pi * np.sin(np.pi * x) / (self.cutoff - taper_start), 0.0)

        # Each pair appears twice in the full neighbour list.
        pair_energy = morse * fc
        energy = 0.5 * pair_energy.sum()
        de_dr = dmorse * fc + morse * dfc
        fvec = (0.5 * de_dr / dist)[:, None] * vec
        forces = np.zeros((len(atoms), 3))
        np.add.at(forces, i, fvec)
        np.add.at(forces, j, -fvec)

        virial = -(fvec[:, :, None] * vec[:, None, :]).sum(axis=0)
        stress = -virial / atoms.get_volume()
        voigt = np.array([stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]])

        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces,
            "stress": voigt,
        }


def _mock_factory(**kwargs) -> Calculator:
    # Tests that kill a run mid-way need jobs that last long enough to be killed.
    kwargs.setdefault("delay", float(os.environ.get("ALLOYFLOW_MOCK_DELAY", "0")))
    return MockPairPotential(**kwargs)


class _MockSpec(CalculatorSpec):
    """The mock's version is its own (``MOCK_VERSION``), not a package's."""

    @property
    def version(self) -> str:
        return MOCK_VERSION


register_calculator(
    _MockSpec(
        name="mock",
        model="mock-Morse",
        kind="test",
        package="alloyflow",
        description="analytic Morse pair potential for unit tests only",
        factory=_mock_factory,
        supported_elements=lambda: elements_up_to(94),
    )
)
