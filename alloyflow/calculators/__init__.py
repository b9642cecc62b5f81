"""Calculators: one registry from a name to an ASE calculator, its provenance and its limits.

``registry`` holds the specs and imports no backend; ``mlip`` registers the
ML potentials (SevenNet, CHGNet), ``dft`` the DFT codes (GPAW, VASP), and
``mock`` is the analytic test potential. Importing this package registers
them all without importing torch, sevenn, chgnet or gpaw.
"""

from alloyflow.calculators import dft, mlip, mock, packaged  # noqa: F401  (registration)
from alloyflow.calculators.registry import (
    DEFAULT_CALCULATOR,
    SYSTEM_DEFAULTS,
    WORKFLOW_DEFAULTS,
    CalculatorError,
    CalculatorSpec,
    available_calculators,
    calculator_info,
    check_elements,
    default_calculator,
    elements_up_to,
    get_calculator,
    get_spec,
    is_builtin,
    register_calculator,
    set_torch_threads,
)

__all__ = [
    "DEFAULT_CALCULATOR", "SYSTEM_DEFAULTS", "WORKFLOW_DEFAULTS", "CalculatorError", "CalculatorSpec", "available_calculators",
    "calculator_info", "check_elements", "default_calculator", "elements_up_to", "get_calculator", "get_spec",
    "is_builtin", "register_calculator", "set_torch_threads",
]
