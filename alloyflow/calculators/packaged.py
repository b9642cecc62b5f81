"""Fine-tuned potentials that ship with alloyflow: registry entries read from package data, loaded on first use.

A shipped potential is a folder ``alloyflow/data/potentials/<name>/`` with

- ``weights.pth``: the tensors fine-tuning changed (a *delta* over the base
  model: SevenNet-0's last interaction block and readout), saved with
  ``torch.save`` as plain tensors and strings; the base model's own weights
  come from the installed ``sevenn`` package, whose file digest must match
  the one recorded at training (``base_sha256``);
- ``metadata.json``: name, sha256 of ``weights.pth``, base model, the labels'
  hash and counts, training settings and the errors measured at training
  (``alloyflow.ml.shipped``);
- ``NOTICE.md``: SevenNet's weights are GPL-3.0, and so are weights derived
  from them.

Registration reads the JSON only (no torch, no weights): a missing folder
registers nothing. Loading checks the digest of ``weights.pth`` against
``metadata.json``, reads it with ``torch.load(weights_only=True)``
(``torch_load_plain``), checks every tensor's name and shape against the
base model, and refuses anything else with one line. The files are part of
the installed package, never of an output folder, so nothing a study writes
can change what a shipped name means.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

from ase.calculators.calculator import Calculator

from alloyflow.calculators.mlip import torch_load_plain
from alloyflow.calculators.registry import CalculatorError, CalculatorSpec, register_calculator

POTENTIALS_DIR = Path(__file__).resolve().parent.parent / "data" / "potentials"
"""Where shipped potentials live (package data)."""

DELTA_FORMAT = "alloyflow-sevennet-delta/1"
"""The ``format`` string of a ``weights.pth`` this module can load."""


def sevennet_base_path(model: str = "7net-0") -> Path:
    """The installed checkpoint file of a shipped SevenNet model (``sevenn``'s own name resolution)."""
    from sevenn.util import pretrained_name_to_path

    return Path(pretrained_name_to_path(model))


def sevennet_with_delta(weights, sha256: str, base_sha256: str | None = None, device: str = "cpu") -> Calculator:
    """SevenNet calculator: the installed base model with the tensors of ``weights`` put in place of its own.

    ``sha256``: the digest of ``weights`` recorded beside it; ``base_sha256``:
    that of the base checkpoint fine-tuning started from (a different sevenn
    release would give another model, so it is refused).
    """
    from sevenn.calculator import SevenNetCalculator
    from sevenn.util import load_checkpoint

    path = Path(weights)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CalculatorError(f"shipped weights {path} cannot be read ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise CalculatorError(f"shipped weights {path} do not match their metadata (sha256 {digest[:12]} != "
                              f"{sha256[:12]}); reinstall alloyflow")
    payload = torch_load_plain(data, where=f"shipped weights {path}")
    if not isinstance(payload, dict) or payload.get("format") != DELTA_FORMAT \
            or not isinstance(payload.get("tensors"), dict):
        raise CalculatorError(f"shipped weights {path} are not in the {DELTA_FORMAT} format")
    base = str(payload.get("base_model", ""))
    base_path = sevennet_base_path(base)
    if base_sha256 and hashlib.sha256(base_path.read_bytes()).hexdigest() != base_sha256:
        raise CalculatorError(f"shipped weights {path} were fine-tuned from another {base} than the installed one "
                              f"({base_path}); install the sevenn version named in its metadata.json")
    cp = load_checkpoint(str(base_path))
    model = cp.build_model()
    state = model.state_dict()
    for name, tensor in payload["tensors"].items():
        if name not in state or tuple(state[name].shape) != tuple(tensor.shape):
            raise CalculatorError(f"shipped weights {path}: tensor {name!r} does not fit the {base} model")
    model.load_state_dict({**state, **payload["tensors"]})
    return SevenNetCalculator(model=model, file_type="model_instance", device=device, sevennet_config=cp.config)


def shipped_metadata(name: str) -> dict:
    """The ``metadata.json`` of shipped potential ``name``."""
    meta = POTENTIALS_DIR / name / "metadata.json"
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise CalculatorError(f"shipped potential {name!r}: {meta} is missing or unreadable ({exc})") from None


def shipped_potentials() -> list[str]:
    """Names of the potentials shipped in the package (folders with weights and metadata)."""
    if not POTENTIALS_DIR.is_dir():
        return []
    return sorted(p.name for p in POTENTIALS_DIR.iterdir()
                  if (p / "metadata.json").is_file() and (p / "weights.pth").is_file())


def register_shipped() -> list[str]:
    """Register every shipped potential as a built-in calculator (reads JSON only)."""
    names = []
    for name in shipped_potentials():
        meta = shipped_metadata(name)
        elements = frozenset(meta["elements"])
        register_calculator(CalculatorSpec(
            name=name,
            model=f"{meta['model']} ({meta['sha256'][:12]})",
            kind="mlip",
            package="sevenn",
            description=meta["description"],
            factory=partial(sevennet_with_delta, POTENTIALS_DIR / name / "weights.pth", meta["sha256"],
                            meta.get("base_sha256")),
            supported_elements=lambda elements=elements: elements,
        ))
        names.append(name)
    return names


register_shipped()
