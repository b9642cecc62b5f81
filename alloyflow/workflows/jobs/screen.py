"""A cheap estimate of a hop's barrier: single points along the IDPP path between unrelaxed endpoints.

The barrier flow screens every hop this way before it converges any band
(``alloyflow.analysis.screening`` decides which hops need a full CI-NEB).
One hop costs ``n_images + 2`` single points (one batched model call for
the images) instead of the endpoint relaxations and the band optimisation
of a CI-NEB (hundreds of force calls). Nothing relaxes, so the estimate is
that of a path the MEP can only lower in the middle while the relaxed
endpoints also lie lower: it is neither an upper nor a lower bound of the
converged barrier, and the screening rule therefore uses a measured ratio
(``alloyflow.analysis.screening.SCREEN_FACTOR``) rather than trusting it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field
from pymatgen.io.ase import AseAtomsAdaptor

from alloyflow.analysis.screening import SCREEN_FACTOR
from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, check_elements
from alloyflow.engine.keys import input_hash, keyed_by, maker_settings, structure_fingerprint
from alloyflow.structures.cells import right_handed
from alloyflow.workflows.jobs.batched import BatchEvaluator
from alloyflow.workflows.jobs.neb import IDPP_FMAX, interpolate_band, matched_final

SCREEN_METHOD = "single points on the IDPP path between unrelaxed endpoints (no relaxation)"


class ScreenDocument(BaseModel):
    """The energies along a hop's unrelaxed IDPP path; barriers in eV."""

    label: str = ""
    calculator: dict
    input_hash: str
    method: str = SCREEN_METHOD
    n_images: int
    energies: list[float] = Field(description="eV, endpoints included")
    forward_estimate: float = Field(description="max(E) - E(initial), eV")
    reverse_estimate: float = Field(description="max(E) - E(final), eV")
    force_calls: int
    idpp_steps: int = 0
    elapsed_seconds: float = 0.0
    settings: dict = Field(default_factory=dict)
    metadata: dict = Field(default_factory=dict)

    @property
    def estimate(self) -> float:
        """max(forward, reverse): the estimate of the hop's cost in the percolation network."""
        return max(self.forward_estimate, self.reverse_estimate)


@dataclass
class ScreenMaker(Maker):
    """Screen one hop: IDPP interpolation between the endpoints as given, then single points.

    Parameters
    ----------
    calculator : str
        Registry name (an ASE calculator: an ML potential, GPAW or the mock).
    n_images : int
        Intermediate images; 7 samples the path's maximum more finely than the band's 5 at no real cost.
    factor : float
        How far the barrier flow trusts these estimates: a hop is left screened-only when ``factor``
        times its estimate lies at or above the highest threshold (``alloyflow.analysis.screening``).
    """

    name: str = "screen"
    calculator: str = DEFAULT_CALCULATOR
    n_images: int = 7
    factor: float = SCREEN_FACTOR
    calculator_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.n_images < 1:
            raise ValueError(f"a screen needs at least one intermediate image, got n_images={self.n_images}")
        if not 0 < self.factor <= 1:
            raise ValueError(f"the screening factor must lie in (0, 1], got {self.factor}")

    def settings(self) -> dict:
        """What the screen's document depends on (the factor only changes which hops get a band)."""
        return maker_settings(self, exclude=("factor",), extra={"idpp_fmax": IDPP_FMAX})

    def key(self, initial, final) -> str:
        return input_hash("screen", structure_fingerprint(initial), structure_fingerprint(final),
                          calculator_info(self.calculator), self.settings())

    def keyed_job(self, initial, final, label: str, metadata: dict | None = None):
        """A job whose uuid is the input hash, so a finished screen is reused."""
        check_elements(self.calculator, [el.symbol for el in initial.composition.elements], where=label)
        matched_final(initial, final)
        j = self.make(initial, final, label=label, metadata=metadata or {})
        j.name = f"{self.name} {label}"
        return keyed_by(j, self.key, initial, final, label=f"{self.name} {label}")

    @job
    def make(self, initial, final, label: str = "", metadata: dict | None = None) -> ScreenDocument:
        return self.run(initial, final, label, metadata)

    def run(self, initial, final, label: str = "", metadata: dict | None = None) -> ScreenDocument:
        """The screen outside jobflow: same endpoint checks and cell handling as ``NebMaker.run``."""
        t0 = time.perf_counter()
        ini_s, fin_s = right_handed(initial), right_handed(matched_final(initial, final))
        ini = AseAtomsAdaptor.get_atoms(ini_s)
        fin = ini.copy()
        fin.set_scaled_positions(fin_s.frac_coords)
        images = [ini] + [ini.copy() for _ in range(self.n_images)] + [fin]
        idpp_steps, _ = interpolate_band(images, "idpp")
        evaluator = BatchEvaluator(self.calculator, calculator_kwargs=self.calculator_kwargs)
        energies = [float(e) for e, _ in evaluator([images[0], images[-1]])]
        energies[1:1] = [float(e) for e, _ in evaluator(images[1:-1])]
        top = float(np.max(energies))
        return ScreenDocument(
            label=label, calculator=calculator_info(self.calculator), input_hash=self.key(initial, final),
            n_images=self.n_images, energies=energies, forward_estimate=top - energies[0],
            reverse_estimate=top - energies[-1], force_calls=evaluator.force_calls, idpp_steps=idpp_steps,
            elapsed_seconds=time.perf_counter() - t0, settings=self.settings(), metadata=metadata or {},
        )
