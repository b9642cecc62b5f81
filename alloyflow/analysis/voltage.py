"""Nontopotactic (two-phase) voltage curve of Li in a host metal M.

Each voltage plateau is a two-phase region between neighbouring stable phases
of the Li–M hull, at V = -(mu_Li - mu_Li(bcc Li)) / e. The plateaus come from
``PhaseDiagram.get_element_profile`` rather than from pymatgen's
``ConversionElectrode``: the element profile works on any entry type
(``ComputedEntry``, ``PDEntry`` rebuilt from ``hull.json``), whereas
``ConversionElectrode`` reads ``entry.structure`` for volumes and so needs
``ComputedStructureEntry``; and the profile gives the critical compositions
directly, which is what the step edges (Li per host atom) and plateau labels
are made of. Both give the same voltages (checked in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import scipy.constants as const
from pydantic import BaseModel, Field
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Element

from alloyflow.analysis.hull import (
    HullResult,
    binary_system,
    calculator_of,
    entries_from_hull,
    phase_diagram,
    reference_entries,
)

FARADAY = const.e * const.N_A  # C/mol
_X_TOL = 1e-8  # Li per host atom; steps narrower than this are numerical noise


class VoltageStep(BaseModel):
    """One plateau: Li_x M with x_start <= x <= x_end is a two-phase mixture."""

    x_start: float = Field(description="Li per host atom at the start of the plateau")
    x_end: float = Field(description="Li per host atom at the end of the plateau")
    voltage: float = Field(description="V vs Li/Li+")
    phases: list[str] = Field(description="the two coexisting phases, Li-poor first")


class VoltageResult(BaseModel):
    host: str
    working_ion: str
    calculator: dict
    steps: list[VoltageStep]
    average_voltage: float = Field(description="capacity-weighted over 0..max_li_per_host, V vs Li/Li+")
    max_li_per_host: float = Field(description="Li per host atom in the most Li-rich stable phase")
    final_phase: str = Field(description="the most Li-rich stable phase (end of the curve)")
    host_molar_mass: float = Field(description="g/mol")
    capacity_mAh_per_g: float = Field(description="gravimetric, per gram of host metal")
    warnings: list[str] = Field(default_factory=list)


def _as_phase_diagram(source, host: str | None, working_ion: str,
                      references=None) -> tuple[PhaseDiagram, str, dict, list[str]]:
    """Accept a PhaseDiagram, a list of entries or a HullResult; infer the host."""
    if isinstance(source, HullResult):
        entries = entries_from_hull(source)
        host = host or source.host
        calc, warns = source.calculator, [w for w in source.warnings if "volume" not in w]
    elif isinstance(source, PhaseDiagram):
        entries = list(source.all_entries)
        calc, warns = calculator_of(entries)
    elif isinstance(source, Sequence) and not isinstance(source, str):
        entries = list(source)
        calc, warns = calculator_of(entries)
    else:
        raise TypeError(f"expected entries, a PhaseDiagram or a HullResult, got {type(source).__name__}")

    elements = sorted({str(el) for e in entries for el in e.composition.elements})
    if host is None:
        hosts = [el for el in elements if el != working_ion]
        if len(hosts) != 1:
            raise ValueError(f"cannot infer the host metal from elements {elements}; pass host=")
        host = hosts[0]
    if host not in elements:
        raise ValueError(f"host {host} is not among the entries' elements {elements}")
    if working_ion != "Li":
        raise ValueError(f"only Li is supported as the working ion, not {working_ion!r}")
    system = f"{working_ion}-{host}"
    binary_system(system)
    if isinstance(source, PhaseDiagram) and set(elements) == {working_ion, host}:
        return source, host, calc, warns
    if not isinstance(source, HullResult):  # the hull's elemental references (entries_from_hull keeps a hull's)
        entries = reference_entries(entries, system, references).kept
    return phase_diagram(entries, system), host, calc, warns


def _label(entries) -> str:
    return "+".join(sorted({e.composition.reduced_formula for e in entries}))


def voltage_profile(source, host: str | None = None, working_ion: str = "Li", references=None) -> VoltageResult:
    """Voltage curve for lithiating ``host`` from the stable phases of its Li–M hull.

    ``source`` is a list of entries, a ``PhaseDiagram`` or a ``HullResult``;
    ``host`` defaults to the one non-Li element. Entries get the hull's
    elemental references (``alloyflow.analysis.hull.reference_entries``: each
    element's own phase, β-Sn not a lower α-Sn, unless ``references`` chooses
    another); a ``PhaseDiagram`` is taken as it is; a ``HullResult`` keeps its
    own. The curve runs from pure M
    (x = 0) to the most Li-rich stable phase; beyond it Li plates at 0 V.
    """
    pd, host, calc, warns = _as_phase_diagram(source, host, working_ion, references)
    ion = Element(working_ion)
    mu_ref = pd.el_refs[ion].energy_per_atom

    # Each profile point is a stable phase on the Li–M line; its "evolution" is
    # the Li taken up per formula unit of M (i.e. Li per host atom, x), its
    # chemical potential the one of the two-phase field just Li-richer.
    points = sorted(pd.get_element_profile(ion, Composition(host)), key=lambda p: p["evolution"])
    points = [p for p in points if p["critical_composition"].get_atomic_fraction(ion) < 1.0 - 1e-12]
    if len(points) < 2:
        raise ValueError(
            f"no stable Li–{host} compound on the hull: there is no voltage curve "
            "(Li would plate on pure host at 0 V)"
        )

    steps = []
    for lo, hi in zip(points[:-1], points[1:]):
        x0, x1 = _snap(lo["evolution"]), _snap(hi["evolution"])
        if x1 - x0 < _X_TOL:
            continue
        steps.append(
            VoltageStep(
                x_start=x0,
                x_end=x1,
                voltage=-(float(lo["chempot"]) - mu_ref),
                phases=[_label(lo["entries"]), _label(hi["entries"])],
            )
        )

    x_max = steps[-1].x_end
    average = sum(s.voltage * (s.x_end - s.x_start) for s in steps) / x_max
    molar_mass = float(Element(host).atomic_mass)
    negative = [f"{s.phases[0]}/{s.phases[1]}" for s in steps if s.voltage < 0]
    if negative:
        warns.append(f"negative voltage plateaus (should not happen on a hull): {', '.join(negative)}")
    return VoltageResult(
        host=host,
        working_ion=working_ion,
        calculator=calc,
        steps=steps,
        average_voltage=average,
        max_li_per_host=x_max,
        final_phase=steps[-1].phases[1],
        host_molar_mass=molar_mass,
        capacity_mAh_per_g=gravimetric_capacity(x_max, molar_mass),
        warnings=warns,
    )


def _snap(x: float) -> float:
    """x is a ratio of small integers (atoms per cell); pymatgen's reaction
    balancing leaves ~1e-16 noise (1.0000000000000004) that would reach the JSON."""
    frac = Fraction(float(x)).limit_denominator(1000)
    return float(frac) if abs(float(frac) - x) < 1e-9 else float(x)


def gravimetric_capacity(li_per_host: float, host_molar_mass: float) -> float:
    """mAh per gram of host: x·F / (3.6 · M), since 1 mAh = 3.6 C."""
    return li_per_host * FARADAY / (3.6 * host_molar_mass)


__all__ = ["VoltageStep", "VoltageResult", "voltage_profile", "gravimetric_capacity", "FARADAY"]
