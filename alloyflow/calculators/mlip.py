"""The ML potentials and the test potential: registry entries only.

Each factory imports its package (torch, sevenn, chgnet) when a calculator is
first built, never at import: ``alloyflow calculators`` and every command
that only reads stored results stay light.
"""

from __future__ import annotations

from functools import partial

from ase.calculators.calculator import Calculator

from alloyflow.calculators.registry import CalculatorSpec, elements_up_to, get_calculator, register_calculator


def _sevennet_factory(model: str = "7net-0", modal: str | None = None, device: str = "cpu") -> Calculator:
    from sevenn.calculator import SevenNetCalculator

    kwargs = {"model": model, "device": device}
    if modal:
        kwargs["modal"] = modal
    return SevenNetCalculator(**kwargs)


def sevennet_elements() -> frozenset[str]:
    from ase.data import chemical_symbols

    calc = get_calculator("sevennet")
    return frozenset(chemical_symbols[z] for z in calc.type_map)


def _chgnet_factory(model_name: str = "0.3.0", device: str = "cpu") -> Calculator:
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    return CHGNetCalculator(model=CHGNet.load(model_name=model_name, use_device=device, verbose=False), use_device=device)


register_calculator(
    CalculatorSpec(
        name="sevennet",
        model="SevenNet-0",
        kind="mlip",
        package="sevenn",
        description="SevenNet-0 (7net-0), PBE-trained universal potential; the default",
        factory=_sevennet_factory,
        supported_elements=sevennet_elements,
        batched=True,
    )
)
# Other shipped SevenNet models, for cross-checks (benchmarks/fidelity.py). Evaluated one structure at a
# time: batching bought SevenNet-0 nothing on CPU (workflows/batched.py).
for _name, _model, _checkpoint, _modal, _description in (
    ("sevennet-mf0", "SevenNet-MF-0 (PBE modal)", "7net-mf-0", "PBE", "7net-mf-0 multi-fidelity SevenNet, PBE head"),
    ("sevennet-l3i5", "SevenNet-l3i5", "7net-l3i5", None, "7net-l3i5 (lmax 3, 5 layers), SevenNet-0's data; 3.8x slower"),
):
    register_calculator(
        CalculatorSpec(
            name=_name,
            model=_model,
            kind="mlip",
            package="sevenn",
            description=f"{_description}; fidelity cross-check",
            factory=partial(_sevennet_factory, _checkpoint, _modal),
            supported_elements=sevennet_elements,
        )
    )
register_calculator(
    CalculatorSpec(
        name="chgnet",
        model="CHGNet-0.3.0",
        kind="mlip",
        package="chgnet",
        description="CHGNet 0.3.0; 2-3x faster cross-check, softens Li-Sn barriers",
        factory=_chgnet_factory,
        supported_elements=lambda: elements_up_to(94),
        batched=True,
    )
)
