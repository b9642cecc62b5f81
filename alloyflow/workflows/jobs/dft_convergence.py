"""Choose DFT settings per system by converging the quantity that will be reported.

What is converged is not the total energy (which converges slowly and
does not matter) but the number the study reports: a barrier (saddle minus
initial endpoint of a band) or a formation energy. Errors of a cutoff or a
k-point grid largely cancel in such differences, so the settings chosen are
much cheaper than those converging total energies.

The procedure, one parameter at a time:
1. scan the first parameter (GPAW: ``ecut``) with the others at their
   middle values; take as reference the most accurate (last) value and
   choose the cheapest value whose quantity lies within ``tolerance`` of it;
2. scan the next parameter (``kpt_density``) at the chosen earlier values,
   same rule.
The result says whether the choice is *bracketed*: if only the last value of
a scan is within tolerance, the scan did not show convergence and the result
is flagged (extend the list). Every single point is a keyed ``LabelMaker``
job, so a later refinement at the chosen settings reuses them.
"""

from __future__ import annotations

from typing import Callable

from pydantic import BaseModel, Field
from pymatgen.core import Structure

from alloyflow.engine import ResultStore
from alloyflow.workflows.jobs.labels import LabelMaker, single_point

DEFAULT_SCANS = (("ecut", (250.0, 300.0, 350.0, 400.0, 500.0)), ("kpt_density", (2.0, 3.0, 4.0, 5.0)))
"""GPAW's scans: plane-wave cutoff (eV) and k-point density (1/Å)."""


class ScanPoint(BaseModel):
    settings: dict
    value: float | None = Field(description="the quantity at these settings; None if a single point failed")
    seconds: float
    error: str = ""


class ParameterScan(BaseModel):
    parameter: str
    points: list[ScanPoint]
    chosen: float | None
    bracketed: bool = Field(description="a cheaper value than the reference was within tolerance")


class ConvergenceResult(BaseModel):
    quantity: str
    tolerance: float
    calculator: str
    scans: list[ParameterScan]
    settings: dict = Field(description="chosen settings (the calculator_kwargs to use)")
    converged: bool = Field(description="every scan bracketed and no single point failed")
    dft_seconds: float

    def summary(self) -> str:
        parts = []
        for s in self.scans:
            vals = ", ".join(f"{p.settings[s.parameter]:g}: " + ("failed" if p.value is None else f"{1000 * p.value:.1f}")
                             for p in s.points)
            parts.append(f"{s.parameter} [{vals}] -> {s.chosen}{'' if s.bracketed else ' (NOT bracketed)'}")
        return (f"{self.quantity} (meV) within {1000 * self.tolerance:.0f} meV: " + "; ".join(parts)
                + f"; {self.dft_seconds:.0f} s of {self.calculator}")


def _value(structures: dict[str, Structure], quantity: Callable[[dict], float], settings: dict, calculator: str,
           store: ResultStore) -> ScanPoint:
    maker = LabelMaker(calculator=calculator, calculator_kwargs=settings)
    energies, seconds = {}, 0.0
    for label, s in structures.items():
        doc, reused, error = single_point(maker, s, label, store)
        if doc is None:
            return ScanPoint(settings=settings, value=None, seconds=seconds, error=f"{label}: {error}")
        energies[label] = doc["energy"]
        seconds += 0.0 if reused else doc["elapsed_seconds"]
    return ScanPoint(settings=settings, value=float(quantity(energies)), seconds=seconds)


def converge_settings(
    structures: dict[str, Structure],
    quantity: Callable[[dict], float],
    store: ResultStore,
    calculator: str = "gpaw",
    scans=DEFAULT_SCANS,
    tolerance: float = 0.01,
    fixed: dict | None = None,
    quantity_name: str = "quantity",
) -> ConvergenceResult:
    """Converge ``quantity(energies_by_label)`` (eV) parameter by parameter; see the module docstring."""
    chosen = dict(fixed or {})
    middle = {name: values[len(values) // 2] for name, values in scans}
    results, ok = [], True
    for name, values in scans:
        base = {**middle, **chosen}
        points = [_value(structures, quantity, {**base, name: v}, calculator, store) for v in values]
        ref = points[-1].value
        pick, bracketed = None, False
        if ref is not None and all(p.value is not None for p in points):
            within = [k for k, p in enumerate(points) if abs(p.value - ref) <= tolerance]
            # cheapest value from which every more accurate one also stays within tolerance
            k = next(k for k in within if all(j in within for j in range(k, len(points))))
            pick, bracketed = values[k], k < len(points) - 1
        ok = ok and bracketed
        chosen[name] = pick if pick is not None else values[-1]
        results.append(ParameterScan(parameter=name, points=points, chosen=pick, bracketed=bracketed))
    return ConvergenceResult(quantity=quantity_name, tolerance=tolerance, calculator=calculator, scans=results,
                             settings=chosen, converged=ok,
                             dft_seconds=sum(p.seconds for s in results for p in s.points))


def converge_for_band(neb_doc, store: ResultStore, calculator: str = "gpaw", scans=DEFAULT_SCANS,
                      tolerance: float = 0.01, fixed: dict | None = None) -> ConvergenceResult:
    """Converge the DFT//ML barrier of ``neb_doc``: E(climbing image) − E(initial endpoint)."""
    ci = neb_doc.climbing_image
    structures = {f"{neb_doc.label} image 0": neb_doc.images[0], f"{neb_doc.label} image {ci}": neb_doc.images[ci]}
    first, top = structures

    def barrier(e):
        return e[top] - e[first]

    return converge_settings(structures, barrier, store, calculator, scans, tolerance, fixed,
                             quantity_name=f"{neb_doc.label} DFT//ML barrier")
