"""One registry that turns a calculator name into an ASE calculator.

Every number alloyflow writes carries ``calculator_info(name)``: the registry
name, the model, the package version and the kind of method (``mlip``, ``dft``
or ``test``), so an ML barrier can never be mistaken for a DFT one.

Backends are registered lazily: importing this module imports no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Callable

from ase.calculators.calculator import Calculator

from alloyflow.calculators.threads import available_cores, sized_threads

DEFAULT_CALCULATOR = "sevennet"
"""The one place the default potential is set (SevenNet-0: closest offline stand-in for PBE)."""

WORKFLOW_DEFAULTS: dict[str, str] = {
    "hull": "sevennet",
    "barriers": "sevennet",
    "study": "sevennet",
    "thermo": "sevennet",
    "search": "sevennet",
    "refine": "sevennet",
}
"""Default potential per workflow, set from ``benchmarks/fidelity.py`` against GPAW (PBE) here.

Measured (docs/validation.md, "Barrier fidelity"): formation energies of 7 small Li-In and
Li-Sn phases against GPAW//SevenNet-0 (PW 400 eV, k-density 4), MAE in
meV/atom: SevenNet-0 8.7, 7net-l3i5 6.8, 7net-mf-0 (PBE) 11.2, CHGNet 15.6;
shortest vacancy hops of LiIn (15 atoms) and Li2Sn5 (27 atoms), ML minus
DFT//SevenNet-0 in meV: SevenNet-0 +60 / -5, 7net-l3i5 +51 / +45,
7net-mf-0 +4 / -174, CHGNet -48 / -332. SevenNet-0 stays the default of
every workflow: it has the smallest barrier error; l3i5's 1.9 meV/atom
gain on formation energies is below the 7 meV/atom by which the GPAW
reference itself moves between (400 eV, k4) and (600 eV, k6), at 3.8x the
cost per force call (480 vs 127 ms, 28 atoms); and one potential per study
keeps hull distances (metastability corrections) and barriers consistent.
A fine-tuned potential is specific to the system it was trained on: it is
chosen per study (``--calculator <name>`` after ``alloyflow refine
--finetune``), never globally.

The shipped ``alloyflow-LiInSn`` (docs/shipped-potential.md) is not a
default. The 55-label potential went through the complete default study
(2026-12-07): its barriers were closer to the reference study's PBE on all
five phases with a number in both (mean distance 96 against SevenNet-0's 128
meV), but its Li-In hull was not: the search's LiIn2, L1_0 LiIn and Li5Sn,
none of them trained on, were 25-59 meV/atom too deep against GPAW on its
own geometries and lay on its hulls. Those orderings were then labelled
(``benchmarks/label_extend.py``) and the potential retrained on 97 labels
(2026-12-07), its last block alone first (complete default study: barriers
mean distance to PBE 106 meV against SevenNet-0's 128 and the 55-label
potential's 96, Spearman 0.80 against 0.90), then, shipped now, its last
two blocks (``TRAINABLE``): formation energies of 24 labelled phases
against GPAW, MAE 4.4 against SevenNet-0's 12.9 meV/atom; validation
frames 10.1 against 28.6 meV/atom; LiIn2 14 meV/atom too deep instead of
60; Li2Sn5 / LiSn / bcc Li barriers in the study's cells 372 / 340 / 99
meV against SevenNet-0's 308 / 252 / 47 and PBE's 434 / 457 / 69. It is
not the default: in its complete default study (2026-12-07) the five
barriers are as close to PBE as the 55-label potential's (mean distance
97 meV against SevenNet-0's 128) but their rank order agrees less
(Spearman 0.60 against 0.90: bcc Li, 30 meV above PBE where SevenNet-0's
is 22 below, lies above Li13In3 75 and Li17Sn4 86, far below PBE's 172
and 263); B32 LiIn stays mechanically unstable on it (7 meV); and its
labels are GPAW's PBE, which differs from the reference's VASP PBE by 23
meV/atom on Li3In2. (Its Li-Sn hull is not a reason: with beta-Sn as the
Sn zero, the default since 2026-12-07, Li2Sn5 is on it and its minimum,
-417.8 meV/atom, is 1.2 from the reference's; with alpha-Sn, 50 meV/atom
lower on GPAW and on it, Li2Sn5 was 9.5 above, as on GPAW's own labels.) Switching re-keys every stored result. Until
then ``--calculator alloyflow-LiInSn`` is the closer choice for Li-Sn
barriers and formation energies, and says so in every number it labels.
"""


def default_calculator(workflow: str | None = None) -> str:
    """The registry name a workflow uses when none is given."""
    return WORKFLOW_DEFAULTS.get(workflow or "", DEFAULT_CALCULATOR)


class CalculatorError(ValueError):
    """An unknown calculator, or elements a calculator cannot treat."""


@dataclass(frozen=True)
class CalculatorSpec:
    name: str
    model: str
    kind: str  # "mlip", "dft" or "test"
    package: str
    description: str
    factory: Callable[..., Calculator]
    supported_elements: Callable[[], frozenset[str]] = field(default=lambda: frozenset())
    batched: bool = False
    runner: str = "ase"
    """How jobs use it: "ase" (an in-process ASE calculator) or "vasp" (atomate2 VASP makers, a batch job)."""

    @property
    def version(self) -> str:
        try:
            return version(self.package)
        except PackageNotFoundError:
            return "not installed"

    @property
    def label(self) -> str:
        """How a number from this calculator is labelled in tables and plots."""
        tag = {"mlip": "ML potential", "dft": "DFT", "test": "TEST ONLY"}[self.kind]
        return f"{self.model} ({tag})"


_REGISTRY: dict[str, CalculatorSpec] = {}
_CACHE: dict[tuple, Calculator] = {}
_BUILTIN: set[str] = set()


def register_calculator(spec: CalculatorSpec, user: bool = False) -> None:
    """Add ``spec`` to the registry.

    ``user=True`` marks a potential the user brought (a fine-tuned checkpoint):
    it may replace an earlier user entry of the same name, never a built-in
    one (``sevennet``, ``sevennet-mf0``, ``gpaw``, ...), so a name seen in a
    command line or a stored result always means what alloyflow ships.
    """
    if user:
        if spec.name in _BUILTIN:
            raise CalculatorError(f"{spec.name!r} is a built-in calculator; a user potential cannot take its name")
    else:
        _BUILTIN.add(spec.name)
    _REGISTRY[spec.name] = spec


def is_builtin(name: str) -> bool:
    """True for a calculator alloyflow itself registers (a name no user potential may take)."""
    return name in _BUILTIN


def available_calculators() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str | None = None) -> CalculatorSpec:
    name = name or DEFAULT_CALCULATOR
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CalculatorError(
            f"unknown calculator {name!r}; available: {', '.join(available_calculators())}"
        ) from None


def calculator_info(name: str | None = None) -> dict[str, str]:
    """Name, model, version and kind: recorded in every stored document."""
    spec = get_spec(name)
    return {"name": spec.name, "model": spec.model, "version": spec.version, "kind": spec.kind, "label": spec.label}


def set_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads: ``n``, else $ALLOYFLOW_THREADS, else all cores.

    ML calculators from ``get_calculator`` then set their own count per calculation (``threads_for``).
    """
    n = n or int(os.environ.get("ALLOYFLOW_THREADS", "0") or 0) or available_cores()
    import torch

    torch.set_num_threads(n)
    return n


def get_calculator(name: str | None = None, **kwargs) -> Calculator:
    """An ASE calculator for ``name``; ML models are loaded once per process."""
    spec = get_spec(name)
    key = (spec.name, tuple(sorted(kwargs.items())))
    if key not in _CACHE:
        if spec.kind == "mlip":
            set_torch_threads()
        calc = spec.factory(**kwargs)
        # a torch potential gets its thread count per calculation, from the cell's size (``threads``)
        _CACHE[key] = sized_threads(calc) if spec.kind == "mlip" else calc
    return _CACHE[key]


def check_elements(name: str | None, elements, where: str = "") -> None:
    """Raise a clear error if the calculator cannot treat one of ``elements``."""
    spec = get_spec(name)
    supported = spec.supported_elements()
    if not supported:
        return
    missing = sorted(set(map(str, elements)) - supported)
    if missing:
        place = f" in {where}" if where else ""
        raise CalculatorError(
            f"calculator {spec.name!r} ({spec.model}) does not support element(s) {', '.join(missing)}{place}"
        )


def elements_up_to(z_max: int) -> frozenset[str]:
    from pymatgen.core.periodic_table import Element

    return frozenset(Element.from_Z(z).symbol for z in range(1, z_max + 1))


def forget_cached(name: str) -> None:
    """Drop every calculator built under ``name`` (its checkpoint changed)."""
    for key in [k for k in _CACHE if k[0] == name]:
        del _CACHE[key]
