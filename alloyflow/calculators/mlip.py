"""The ML potentials and the test potential: registry entries only.

Each factory imports its package (torch, sevenn, chgnet) when a calculator is
first built, never at import: ``alloyflow calculators`` and every command
that only reads stored results stay light.
"""

from __future__ import annotations

import hashlib
import io
from functools import partial
from pathlib import Path

from ase.calculators.calculator import Calculator

from alloyflow.calculators.registry import (
    CalculatorError,
    CalculatorSpec,
    elements_up_to,
    get_calculator,
    register_calculator,
)


def _sevennet_factory(model: str = "7net-0", modal: str | None = None, device: str = "cpu") -> Calculator:
    from sevenn.calculator import SevenNetCalculator

    kwargs = {"model": model, "device": device}
    if modal:
        kwargs["modal"] = modal
    return SevenNetCalculator(**kwargs)


def _numpy_globals() -> list:
    """The numpy names a SevenNet checkpoint pickles (its config holds arrays), allowed by ``weights_only``."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    # numpy 1 pickles the function as numpy.core..., numpy 2 as numpy._core...: the same function.
    # numeric dtype classes only: an object array could carry arbitrary Python objects
    dtypes = [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"]
    return [(reconstruct, "numpy.core.multiarray._reconstruct"), (reconstruct, "numpy._core.multiarray._reconstruct"),
            np.ndarray, np.dtype, *dict.fromkeys(dtypes)]


def _refusal(exc: Exception) -> str:
    """What torch's long weights_only message says was refused, in a few words."""
    import re

    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"but got (<[^>]+>)", text)
    if found:
        return f"it pickles {found.group(1)}, which is not plain data"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:160]


def torch_load_plain(data: bytes, where: str = "checkpoint"):
    """Bytes read with ``torch.load(weights_only=True)``: tensors, numeric arrays and plain containers only.

    The restricted unpickler refuses any other global (a class, ``os.system``,
    ...), so a hostile file raises ``CalculatorError`` instead of running code.
    """
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, AttributeError, TypeError) as exc:
        raise CalculatorError(f"{where} does not load as plain weights (torch.load weights_only=True refused it: "
                              f"{_refusal(exc)}); it was not used") from None


def load_checkpoint_weights_only(data: bytes, where: str = "checkpoint") -> dict:
    """A SevenNet checkpoint read by ``torch_load_plain``: a config and a model state dict, nothing else runs."""
    payload = torch_load_plain(data, where)
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict) \
            or not isinstance(payload.get("model_state_dict"), dict):
        raise CalculatorError(f"{where} is not a SevenNet checkpoint (no config and model_state_dict)")
    return payload


def sevennet_from_checkpoint(checkpoint, sha256: str | None = None, device: str = "cpu",
                             modal: str | None = None) -> Calculator:
    """A SevenNet calculator from a checkpoint file, never unpickling anything but weights.

    The file is read once; its sha256 is checked against ``sha256`` (the
    digest recorded when alloyflow wrote it, or the one the user was shown)
    before anything is unpickled, and the bytes are then loaded with
    ``torch.load(weights_only=True)`` (numpy arrays allowed, nothing else).
    sevenn's own loader (``SevenNetCalculator(model=path)``, sevenn 0.13)
    calls ``torch.load(weights_only=False)``, which runs any code a pickle
    carries; it is bypassed: the model is built from the already-loaded
    dictionary. The shipped models (``7net-0`` ...) still go through sevenn's
    loader: they come with the installed package.
    """
    from sevenn.calculator import SevenNetCalculator
    from sevenn.checkpoint import SevenNetCheckpoint

    path = Path(checkpoint).resolve()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CalculatorError(f"checkpoint {path} cannot be read ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256:
        raise CalculatorError(f"checkpoint {path} changed since it was registered (sha256 {digest[:12]} != "
                              f"{sha256[:12]}); it was not loaded")
    payload = load_checkpoint_weights_only(data, where=f"checkpoint {path}")

    class _LoadedCheckpoint(SevenNetCheckpoint):
        """sevenn's checkpoint tool box on the dictionary read above (its ``_load`` would unpickle the file)."""

        def _load(self) -> None:
            import sevenn.checkpoint as sc

            self._config_original = payload["config"]
            self._model_state_dict = payload["model_state_dict"]
            self._optimizer_state_dict = payload.get("optimizer_state_dict", {})
            self._scheduler_state_dict = payload.get("scheduler_state_dict", {})
            self._epoch = payload.get("epoch")
            self._time = payload.get("time", "Not found")
            self._hash = payload.get("hash", "Not found")
            self._config = sc._config_cp_routine(self._config_original)
            self._loaded = True

    cp = _LoadedCheckpoint(path)
    try:
        model = cp.build_model()
    except Exception as exc:  # a config or state dict that does not fit: one line, no traceback
        raise CalculatorError(f"checkpoint {path} does not build a SevenNet model ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    kwargs = {"modal": modal} if modal else {}
    return SevenNetCalculator(model=model, file_type="model_instance", device=device, sevennet_config=cp.config,
                              **kwargs)


SEVENNET_0_ELEMENTS = elements_up_to(83) | frozenset({"Ac", "Th", "Pa", "U", "Np", "Pu"})
"""The 89 elements of SevenNet-0's type map (H-Bi and Ac-Pu), read from the model once and checked by a test.

Why a table: checking a structure's elements must not load the model, or a
rerun whose jobs are all stored would spend tens of seconds and most of a
GB loading weights it never uses.
"""


def sevennet_elements() -> frozenset[str]:
    return SEVENNET_0_ELEMENTS


def model_elements(name: str = "sevennet") -> frozenset[str]:
    """The elements of a loaded SevenNet model's type map (loads the model)."""
    from ase.data import chemical_symbols

    calc = get_calculator(name)
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
