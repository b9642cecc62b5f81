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
7net-mf-0 +4 / -174, CHGNet -48 / -332. SevenNet-0 is the default of
every workflow outside Li-In-Sn: it has the smallest barrier error; l3i5's 1.9 meV/atom
gain on formation energies is below the 7 meV/atom by which the GPAW
reference itself moves between (400 eV, k4) and (600 eV, k6), at 3.8x the
cost per force call (480 vs 127 ms, 28 atoms); and one potential per study
keeps hull distances (metastability corrections) and barriers consistent.
A fine-tuned potential is specific to the system it was trained on: it is
chosen per study (``--calculator <name>`` after ``alloyflow refine
--finetune``), never globally; the shipped one by system (below).

Li-In-Sn systems default to the shipped ``alloyflow-LiInSn`` (``SYSTEM_DEFAULTS``,
2026-12-08; docs/shipped-potential.md, "176 labels"): SevenNet-0 with its
last two blocks fine-tuned on 176 GPAW PBE labels (157 trained), band-relative
loss. It beats SevenNet-0 on both counts the label campaign was for:
- formation energies against GPAW on the labels' geometries: MAE 6.6 against
  11.4 meV/atom over 30 phases, 9.2 against 31.4 on the 3 held out;
  validation frames 6.4 against 21.3 meV/atom;
- barriers in the study's cells against GPAW on SevenNet-0's own paths
  (DFT//ML, ``alloyflow refine``): Li2Sn5 +31, LiSn +24, Li17Sn4 +26 meV
  against SevenNet-0's -48, -56, +17 (largest error 31 against 56); bcc Li
  69 meV, PBE's 69 (SevenNet-0 47).
Its complete default study (2026-12-08) keeps SevenNet-0's rank order of
the reference study's five barriers (Spearman 0.90) at a mean distance to
the reference's PBE of 89 meV (SevenNet-0 128), puts the Li-In hull
minimum on the reference's Li3In2 (-315.0 meV/atom; GPAW's label -316.9,
the reference's VASP -293.4) and the Li-Sn one on Li5Sn2 (-422.9; the
reference Li13Sn5 -419.0, here 0.1 above the hull). Still off: the search's
LiIn2 and Li5Sn orderings are 22-25 meV/atom deeper than GPAW (not on its
hulls), B32 LiIn stays mechanically unstable, and LiSn / Li17Sn4 stay 126 /
174 meV below the reference's numbers, as GPAW itself does on these paths.
Interim: the campaign's last 19 labels are not in it yet. SevenNet-0 stays
the default elsewhere and for any system with another element; every number
names the potential that made it, so switching re-keys stored results, never
mixes them.
"""


SYSTEM_DEFAULTS: tuple[tuple[frozenset[str], str], ...] = ((frozenset({"Li", "In", "Sn"}), "alloyflow-LiInSn"),)
"""Per chemical system: a potential fine-tuned on it replaces the workflow default when every element of the
command's systems or phase lies in its span (reasons in ``WORKFLOW_DEFAULTS``'s note)."""

SYSTEM_DEFAULT_WORKFLOWS = frozenset({"hull", "barriers", "study", "thermo", "search", "refine"})
"""The workflows whose default follows the system: one potential per study, so hull distances, barriers and
the refined bands come from the same one."""


def default_calculator(workflow: str | None = None, elements=None) -> str:
    """The registry name a workflow uses when none is given.

    Parameters
    ----------
    workflow
        ``"study"``, ``"barriers"``, ... (``WORKFLOW_DEFAULTS``); None or unknown: ``DEFAULT_CALCULATOR``.
    elements
        The elements of the systems or phase the command treats. Where all of them lie in a span of
        ``SYSTEM_DEFAULTS`` (Li, In, Sn), that span's fine-tuned potential is the default of the
        ``SYSTEM_DEFAULT_WORKFLOWS``; None keeps the workflow's own default.
    """
    if elements and workflow in SYSTEM_DEFAULT_WORKFLOWS:
        wanted = set(elements)
        for span, name in SYSTEM_DEFAULTS:
            if wanted <= span and name in _REGISTRY:
                return name
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
