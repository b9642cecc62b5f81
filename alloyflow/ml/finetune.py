"""Fine-tune SevenNet-0 on the system's own DFT data and register the result as a named potential.

Steps: ``training_structures`` (ML band images + rattled, strained copies),
``label_structures`` (keyed DFT single points with energy, forces and stress,
stored and reused like every alloyflow job), ``finetune_sevennet`` (sevenn's
own ``Trainer``, started from the shipped 7net-0 weights and optimiser
settings, a few epochs; the checkpoint goes to ``<out>/potentials/<name>/``,
the shipped file is only read), ``register_finetuned`` (a registry entry
whose model string carries the checkpoint's sha256, so cache keys change
whenever the weights do).

Why the Python trainer and not the ``sevenn`` CLI: the CLI needs a full
input.yaml and writes into the working directory; the programmatic
``Trainer.args_from_checkpoint("7net-0")`` gives the same model, losses
(per-atom energy, force, 0.01 stress) and optimiser, offline.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from pymatgen.core import Structure

from alloyflow.calculators.mlip import sevennet_elements
from alloyflow.calculators.registry import CalculatorError, CalculatorSpec, forget_cached, register_calculator
from alloyflow.workflows.jobs.labels import LabelMaker, label_structures  # noqa: F401  (re-exported)

BASE_MODEL = "7net-0"


def training_structures(bands, n_rattle: int = 2, rattle_std: float = 0.05, strain: float = 0.02,
                        seed: int = 0) -> list[tuple[str, Structure]]:
    """Every image of each ML band, plus ``n_rattle`` rattled and isotropically strained copies of each endpoint."""
    rng = np.random.default_rng(seed)
    out = []
    for b in bands:
        out += [(f"{b.label} image {k}", s) for k, s in enumerate(b.images)]
        for k in (0, len(b.images) - 1):
            for r in range(n_rattle):
                s = b.images[k].copy()
                s.scale_lattice(s.volume * (1 + rng.uniform(-strain, strain)) ** 3)
                s = Structure(s.lattice, s.species, s.cart_coords + rng.normal(0, rattle_std, (len(s), 3)),
                              coords_are_cartesian=True)
                out.append((f"{b.label} endpoint {k} rattle {r}", s))
    return out


class FineTuneResult(BaseModel):
    """A fine-tuned potential: where it is, what it was trained on, its errors before and after."""

    name: str
    registry_name: str
    checkpoint: str
    sha256: str
    base_model: str
    label_calculator: dict
    n_train: int
    n_val: int
    epochs: int
    lr: float
    reference_shifts: dict = Field(default_factory=dict,
                                   description="eV/atom per element subtracted from the DFT labels (align_references)")
    errors: dict = Field(
        description="{'base'|'finetuned': {'train'|'val': {'energy_mae_meV_atom', 'force_mae_meV_A'}}}")
    train_seconds: float
    input_hash: str = Field("", description="hash of the labels and training settings; a match is reused, not retrained")

    @property
    def validation_rose(self) -> bool:
        """True when fine-tuning made the held-out force error worse than the base model's."""
        base = self.errors.get("base", {}).get("val", {}).get("force_mae_meV_A")
        tuned = self.errors.get("finetuned", {}).get("val", {}).get("force_mae_meV_A")
        return base is not None and tuned is not None and tuned > base

    def summary(self) -> str:
        e = self.errors
        return (f"{self.name}: {self.n_train} train / {self.n_val} val structures, {self.epochs} epochs; val force MAE "
                f"{e['base']['val']['force_mae_meV_A']:.1f} -> {e['finetuned']['val']['force_mae_meV_A']:.1f} meV/Å, "
                f"val energy MAE {e['base']['val']['energy_mae_meV_atom']:.2f} -> "
                f"{e['finetuned']['val']['energy_mae_meV_atom']:.2f} meV/atom (labels: {self.label_calculator.get('model')})")


def _errors(calc, frames) -> dict:
    de, df = [], []
    for ref in frames:
        a = ref.copy()
        a.calc = calc
        de.append(abs(a.get_potential_energy() - ref.get_potential_energy()) / len(a))
        df.append(np.abs(a.get_forces() - ref.get_forces()).ravel())
    return {"energy_mae_meV_atom": 1000 * float(np.mean(de)) if de else None,
            "force_mae_meV_A": 1000 * float(np.mean(np.concatenate(df))) if df else None}


def align_references(frames, model: str = BASE_MODEL):
    """Shift DFT labels by per-element energies fitted to the base model's predictions.

    Why: GPAW's PAW setups give total energies on another zero than the VASP
    data SevenNet-0 learnt (bcc Li, GPAW 300 eV: 17.6 meV/atom, measured), an
    offset that would dominate the energy loss of a few-epoch fine-tuning
    while telling nothing about barriers. A shift per element cancels in
    barriers and in formation energies.
    Returns the shifted frames and the shifts (eV/atom per element).
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from sevenn.calculator import SevenNetCalculator

    calc = SevenNetCalculator(model=model, device="cpu")
    elements = sorted({sym for a in frames for sym in a.get_chemical_symbols()})
    counts = np.array([[a.get_chemical_symbols().count(el) for el in elements] for a in frames], dtype=float)
    residual = []
    for ref in frames:
        a = ref.copy()
        a.calc = calc
        residual.append(ref.get_potential_energy() - a.get_potential_energy())
    shifts, *_ = np.linalg.lstsq(counts, np.array(residual), rcond=None)
    out = []
    for ref, n in zip(frames, counts):
        a = ref.copy()
        a.calc = SinglePointCalculator(a, energy=ref.get_potential_energy() - float(n @ shifts),
                                       forces=ref.get_forces(), stress=ref.get_stress())
        a.info = dict(ref.info)
        out.append(a)
    return out, {el: float(x) for el, x in zip(elements, shifts)}


def _sevenn_version() -> str:
    import sevenn

    return sevenn.__version__


def _training_key(frames, **settings) -> str:
    """Hash of every label (structure, energy, forces, stress) and the training settings."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for a in frames:
        for arr in (a.cell.array, a.positions, a.numbers, a.get_forces(), a.get_stress(), [a.get_potential_energy()]):
            h.update(np.round(np.asarray(arr, dtype=float), 8).tobytes())
    return h.hexdigest()


def _previous(folder: Path, key: str) -> "FineTuneResult | None":
    """The stored fine-tuning of the same labels and settings, if its checkpoint is intact."""
    meta = folder / "finetune.json"
    if not meta.is_file():
        return None
    try:
        old = FineTuneResult.model_validate_json(meta.read_text())
    except ValueError:
        return None
    ckpt = Path(old.checkpoint)
    if old.input_hash != key or not ckpt.is_file() or _sha256(ckpt) != old.sha256:
        return None
    return old


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def finetune_sevennet(frames, out_dir, name: str, label_calculator: dict, val_fraction: float = 0.25,
                      epochs: int = 2, lr: float = 1e-4, batch_size: int = 2, seed: int = 0,
                      align: bool = True) -> FineTuneResult:
    """Fine-tune 7net-0 on ``frames`` (a random ``val_fraction`` held out) into ``<out_dir>/potentials/<name>/``.

    With ``align`` the labels are first shifted by ``align_references``; errors are against the labels trained on.
    """
    import sevenn
    import torch
    from ase.io import write
    from sevenn.train.graph_dataset import SevenNetGraphDataset
    from sevenn.train.trainer import Trainer
    from sevenn.util import load_checkpoint
    from torch_geometric.loader import DataLoader

    if len(frames) < 2:
        raise ValueError(f"need at least 2 labelled structures to train and validate, got {len(frames)}")
    folder = Path(out_dir).resolve() / "potentials" / name
    key = _training_key(frames, val_fraction=val_fraction, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                        align=align, base=BASE_MODEL, sevenn=_sevenn_version())
    previous = _previous(folder, key)
    if previous is not None:
        return previous
    folder.mkdir(parents=True, exist_ok=True)
    shifts = {}
    if align:
        frames, shifts = align_references(frames)
    order = np.random.default_rng(seed).permutation(len(frames))
    n_val = max(1, int(round(val_fraction * len(frames))))
    val, train = [frames[i] for i in order[:n_val]], [frames[i] for i in order[n_val:]]
    write(folder / "train.extxyz", train, format="extxyz")
    write(folder / "val.extxyz", val, format="extxyz")

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    base = load_checkpoint(BASE_MODEL)  # read only: the shipped weights are never written
    dataset = SevenNetGraphDataset(cutoff=base.config["cutoff"], root=str(folder), files=[str(folder / "train.extxyz")],
                                   processed_name="train.pt", log=False, force_reload=True)
    args, _, _ = Trainer.args_from_checkpoint(BASE_MODEL)
    # A small fixed learning rate: the shipped schedule ends near zero, and a few epochs must stay near 7net-0.
    args["optimizer_args"] = {**args["optimizer_args"], "lr": lr}
    args["scheduler_cls"], args["scheduler_args"] = None, None
    trainer = Trainer(**args, device="cpu")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    for _ in range(epochs):
        trainer.run_one_epoch(loader, is_train=True)
    checkpoint = folder / "checkpoint.pth"
    # The config's version must be this sevenn's: an old version (7net-0's) makes the loader "patch" the
    # already-current state dict a second time, which corrupted the model
    # (measured: force error 13 -> 37 meV/Å after 0 epochs).
    config = {**base.config, "version": sevenn.__version__}
    trainer.write_checkpoint(str(checkpoint), config=config, epoch=epochs)
    train_seconds = time.perf_counter() - t0

    from sevenn.calculator import SevenNetCalculator

    errors = {}
    for tag, model in (("base", BASE_MODEL), ("finetuned", str(checkpoint))):
        calc = SevenNetCalculator(model=model, device="cpu")  # building a model costs seconds: once per model
        errors[tag] = {"train": _errors(calc, train), "val": _errors(calc, val)}
    result = FineTuneResult(name=name, registry_name=name, checkpoint=str(checkpoint), sha256=_sha256(checkpoint),
                            base_model=BASE_MODEL, label_calculator=label_calculator, n_train=len(train),
                            n_val=len(val), epochs=epochs, lr=lr, reference_shifts=shifts, errors=errors,
                            train_seconds=train_seconds, input_hash=key)
    (folder / "finetune.json").write_text(result.model_dump_json(indent=2))
    return result


def register_finetuned(name: str, checkpoint, sha256: str | None = None, verify: bool = True) -> CalculatorSpec:
    """Register ``checkpoint`` as calculator ``name``; a file that does not load raises ``CalculatorError``.

    The model string carries the checkpoint's sha256 (first 12 digits), which enters every cache key.
    ``verify=False`` (with the recorded ``sha256``) neither hashes nor loads the
    checkpoint now (the command line registers a study's potentials at
    start-up); a changed or bad file then fails on first use, with the same errors.
    """
    path = Path(checkpoint).resolve()
    if name in ("sevennet", "chgnet", "mock", "gpaw", "vasp"):
        raise CalculatorError(f"{name!r} is a built-in calculator; choose another name for a fine-tuned potential")
    if not path.is_file():
        raise CalculatorError(f"fine-tuned potential {name!r}: checkpoint {path} not found")

    def check_digest() -> str:
        digest = _sha256(path)
        if sha256 and digest != sha256:
            raise CalculatorError(f"fine-tuned potential {name!r}: {path} changed since training (sha256 "
                                  f"{digest[:12]} != {sha256[:12]})")
        return digest

    def factory(device: str = "cpu"):
        from sevenn.calculator import SevenNetCalculator

        if not verify:
            check_digest()  # deferred from registration: the file is read once, when the model is built
        try:
            return SevenNetCalculator(model=str(path), device=device)
        except Exception as exc:  # a truncated or foreign file: say so, leave the registry as it was
            raise CalculatorError(f"fine-tuned potential {name!r}: {path} does not load as a SevenNet checkpoint "
                                  f"({type(exc).__name__}: {exc}); the default potential is unaffected") from None

    # Without verification the recorded digest names the model, so start-up reads no checkpoint.
    digest = check_digest() if verify or not sha256 else sha256
    if verify:
        factory()

    spec = CalculatorSpec(
        name=name,
        model=f"SevenNet-0 fine-tuned {name} ({digest[:12]})",
        kind="mlip",
        package="sevenn",
        description=f"SevenNet-0 fine-tuned on DFT labels; checkpoint {path}",
        factory=factory,
        supported_elements=sevennet_elements,
    )
    register_calculator(spec)
    # A model cached under this name would be the previous checkpoint's: drop it.
    forget_cached(name)
    return spec


def register_study_potentials(out_dir) -> list[str]:
    """Register every potential fine-tuned in study ``out_dir`` (cheap: models load on first use)."""
    names = []
    for meta in sorted(Path(out_dir).glob("potentials/*/finetune.json")):
        try:
            result = FineTuneResult.model_validate_json(meta.read_text())
            register_finetuned(result.registry_name, result.checkpoint, result.sha256, verify=False)
        except (ValueError, CalculatorError):
            continue  # a broken or moved potential: the others, and the built-in ones, stay usable
        names.append(result.registry_name)
    return names


def load_finetuned(out_dir, name: str) -> FineTuneResult:
    """Register a potential fine-tuned earlier in study ``out_dir`` (e.g. from a new process)."""
    meta = Path(out_dir).resolve() / "potentials" / name / "finetune.json"
    if not meta.is_file():
        raise CalculatorError(f"no fine-tuned potential {name!r} in {meta.parent}")
    result = FineTuneResult.model_validate_json(meta.read_text())
    register_finetuned(name, result.checkpoint, result.sha256)
    return result
