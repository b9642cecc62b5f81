"""Fine-tune SevenNet-0 on the system's own DFT data and register the result as a named potential.

Steps: ``training_structures`` (ML band images + rattled, strained copies),
``label_structures`` (keyed DFT single points with energy, forces and stress,
stored and reused like every alloyflow job), ``finetune_sevennet`` (sevenn's
own ``Trainer``, started from the shipped 7net-0 weights and optimiser
settings, a few epochs; the checkpoint goes to ``<out>/potentials/<name>/``,
the shipped file is only read), ``register_finetuned`` (a registry entry
whose model string carries the checkpoint's sha256, so cache keys change
whenever the weights do).

Trust (``alloyflow.calculators.user``): ``finetune_sevennet`` records the
checkpoint and the sha256 it computed in the per-user trusted record; only
recorded checkpoints (or one the user names with ``--potential PATH``) become
``--calculator`` choices, never a ``<out>/potentials/*/finetune.json``; every
load checks that digest and uses ``torch.load(weights_only=True)``.

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

from alloyflow.calculators.mlip import sevennet_from_checkpoint
from alloyflow.calculators.registry import CalculatorError, is_builtin
from alloyflow.calculators.user import (  # noqa: F401  (register_finetuned ... re-exported)
    register_finetuned,
    register_potential_file,
    register_trusted_potentials,
    sha256_of,
    trust_potential,
    trusted_record,
    trusted_registry_path,
)
from alloyflow.ml.frames import fit_shifts, predict, shift_frames
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
    from sevenn.calculator import SevenNetCalculator

    calc = SevenNetCalculator(model=model, device="cpu")
    shifts = fit_shifts(frames, [predict(calc, a)[0] for a in frames])
    return shift_frames(frames, shifts), shifts


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
    """The stored fine-tuning of the same labels and settings, if this installation made it and it is intact."""
    meta = folder / "finetune.json"
    ckpt = folder / "checkpoint.pth"
    record = trusted_record(ckpt)
    if not meta.is_file() or record is None:
        return None
    try:
        old = FineTuneResult.model_validate_json(meta.read_text())
    except ValueError:
        return None
    if (old.input_hash != key or Path(old.checkpoint).resolve() != ckpt.resolve() or not ckpt.is_file()
            or old.sha256 != record["sha256"] or sha256_of(ckpt) != record["sha256"]):
        return None
    return old


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
    if is_builtin(name):
        raise CalculatorError(f"{name!r} is a built-in calculator; choose another name for a fine-tuned potential")
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
    digest = sha256_of(checkpoint)
    trust_potential(name, checkpoint, digest)  # this installation made it: a calculator choice from now on

    from sevenn.calculator import SevenNetCalculator

    errors = {}
    # building a model costs seconds: once per model
    for tag, calc in (("base", SevenNetCalculator(model=BASE_MODEL, device="cpu")),
                      ("finetuned", sevennet_from_checkpoint(checkpoint, digest))):
        errors[tag] = {"train": _errors(calc, train), "val": _errors(calc, val)}
    result = FineTuneResult(name=name, registry_name=name, checkpoint=str(checkpoint), sha256=digest,
                            base_model=BASE_MODEL, label_calculator=label_calculator, n_train=len(train),
                            n_val=len(val), epochs=epochs, lr=lr, reference_shifts=shifts, errors=errors,
                            train_seconds=train_seconds, input_hash=key)
    (folder / "finetune.json").write_text(result.model_dump_json(indent=2))
    return result


def load_finetuned(out_dir, name: str) -> FineTuneResult:
    """Register a potential fine-tuned earlier by this installation in study ``out_dir`` (e.g. from a new process).

    The checkpoint's digest comes from the per-user trusted record; a
    ``finetune.json`` the installation did not write (or one that disagrees
    with the record) is refused.
    """
    folder = Path(out_dir).resolve() / "potentials" / name
    checkpoint = folder / "checkpoint.pth"
    record = trusted_record(checkpoint)
    if record is None:
        raise CalculatorError(f"no fine-tuned potential {name!r} of this installation in {folder} (none recorded in "
                              f"{trusted_registry_path()}); if you trust the file, name it: --potential {checkpoint}")
    meta = folder / "finetune.json"
    try:
        result = FineTuneResult.model_validate_json(meta.read_text())
    except (OSError, ValueError):
        raise CalculatorError(f"fine-tuned potential {name!r}: {meta} is missing or unreadable") from None
    if result.sha256 != record["sha256"] or Path(result.checkpoint).resolve() != checkpoint:
        raise CalculatorError(f"fine-tuned potential {name!r}: {meta} does not match the trusted record "
                              f"(sha256 {result.sha256[:12]} != {record['sha256'][:12]})")
    register_finetuned(name, checkpoint, record["sha256"])
    return result
