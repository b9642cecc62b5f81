"""Train the potential alloyflow ships: SevenNet-0 with its last layers fine-tuned on the GPAW label campaign.

Why only the last layers (``TRAINABLE``: the fourth and fifth interaction
blocks and the readout, 301 k of SevenNet-0's 863 k parameters): with a
hundred labels of three elements, fine-tuning every weight forgets what
the universal model knew (one earlier iteration on 8-10 labels raised the
formation-energy MAE from 8.7 to 38 meV/atom, issue 16), while the frozen
first three blocks keep SevenNet-0's description of each environment. The
fifth block alone (95 k parameters, the potential shipped on 55 and 97
labels) left LiIn2 30 meV/atom too deep and the LiSn saddles 19-61 meV
low on their labelled images; with the fourth block too, on the same 97
labels, LiIn2 is 14 too deep and the LiSn saddles within 15 meV
(docs/shipped-potential.md). Only the changed tensors are stored (``weights.pth``,
1.2 MB), over the base weights the installed ``sevenn`` provides
(``alloyflow.calculators.packaged``).

Data: the campaign's training frames fit; about one frame in ``STOP_EVERY`` of
them (by a hash of its label, never a band image or a one-element cell:
``stop_indices``) is kept out to choose the epoch (the lowest stop score,
energy per atom and force mean squared errors as the loss weighs them); the
campaign's validation set (whole phases and a whole hop, never trained on
nor used to choose) is only reported. Labels are shifted per element onto
SevenNet-0's energy zero first (``fit_shifts``, fitted on the
training frames only): the shifts cancel in formation energies and barriers.

The metadata written beside the weights holds every number measured here:
errors of SevenNet-0 and of the fine-tuned model on the three sets,
formation energies of the relaxed phases against GPAW on the same geometries,
the forward barriers of the labelled band images against DFT//ML on the same
images (``band_barriers``), and the energies of the three smallest labelled
cells (``checks``), which a test recomputes through the registry.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from alloyflow.calculators.packaged import DELTA_FORMAT, sevennet_base_path
from alloyflow.ml.frames import band_barriers, errors, fit_shifts, formation_energies, predict, shift_frames
from alloyflow.ml.frames import shift_of, stop_score

BASE_MODEL = "7net-0"

TRAINABLE = ("3_", "4_", "reduce_input_to_hidden", "reduce_hidden_to_energy", "rescale_atomic_energy")
"""Name prefixes of the SevenNet-0 tensors that are trained (the last two interaction blocks and the readout)."""

STOP_EVERY = 5
"""One training frame in this many (sorted by label) chooses the epoch instead of being fitted."""


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


BAND_KINDS = ("neb_endpoint", "neb_saddle", "neb_image")
"""``info["kind"]`` of the campaign's band images: the frames ``band_energy_weight`` weighs."""

STOP_RULE = f"crc32(label) % {STOP_EVERY} == 0; band images and one-element cells always fitted"
"""``stop_indices`` in words, recorded in the metadata. Until 2026-12-07 (the shipped potential of 97 labels):
every fifth frame in label order, band images included; with the set growing between sessions that moved
frames between fit and stop, and on 135 labels it took the Li2Sn5 saddle out of the fit. The hash alone then
took all three In cells out (formation energies of every Li-In phase 8-18 meV/atom too deep), hence the
one-element cells' exemption."""


def one_element(atoms) -> bool:
    """Whether ``atoms`` is a cell of one element (a formation energy's zero, or its strained or rattled copy)."""
    return len(set(atoms.get_chemical_symbols())) == 1


def stop_indices(frames, every: int = STOP_EVERY) -> set[int]:
    """Indices of the frames that choose the epoch (none below ``every`` frames).

    A frame chooses when the crc32 of its label is divisible by ``every``: a rule per label, so a label added
    later moves no other frame between fit and stop. Always fitted: band images (``BAND_KINDS``), the few
    frames a barrier rests on (a held-out band, the validation set's, measures how they carry over), and
    cells of one element, the zeros of every formation energy.
    """
    if len(frames) < every:
        return set()
    return {i for i, atoms in enumerate(frames) if atoms.info.get("kind") not in BAND_KINDS
            and not one_element(atoms)
            and zlib.crc32(atoms.info.get("label", str(i)).encode()) % every == 0}


def energy_weight(atoms, band: float = 1.0, element: float = 1.0) -> float:
    """The loss weight of a frame's energy: ``band`` for a band image (``BAND_KINDS``), ``element`` for a cell of
    one element (the formation energies' references and their strains, rattles, vacancies), else 1."""
    if atoms.info.get("kind") in BAND_KINDS:
        return band
    return element if one_element(atoms) else 1.0


def band_groups(frames) -> list[list[int]]:
    """Indices of the band images among ``frames`` (``BAND_KINDS``) grouped by cell: same composition, size and
    lattice (to 1e-3 Å), so that the hops of one phase computed in one supercell form one group (their
    energies are comparable, and an endpoint dropped as another hop's duplicate still anchors that hop's
    saddle). One list per cell with at least two frames, in a fixed order."""
    groups: dict[tuple, list[int]] = {}
    for i, atoms in enumerate(frames):
        if atoms.info.get("kind") in BAND_KINDS:
            cell = tuple(np.round(np.asarray(atoms.cell), 3).ravel().tolist())
            groups.setdefault((atoms.get_chemical_formula(), len(atoms), cell), []).append(i)
    return [idx for _, idx in sorted(groups.items()) if len(idx) >= 2]


def relative_energy_loss(model, graphs):
    """Mean squared error (eV²) of one band's total energies taken relative to the band's mean.

    A barrier is a difference of total energies within one band, so this is the part of the energy error
    that reaches a barrier, in a barrier's own unit: a per-element shift or any offset the whole band shares
    cancels, and a 27-atom image counts as a barrier does, not per atom as in the per-frame energy loss.
    ``graphs`` are sevenn graphs of one band's frames (same composition and size).
    """
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(list(graphs))
    pred, ref = model(batch)["inferred_total_energy"], batch["total_energy"]
    return (((pred - pred.mean()) - (ref - ref.mean())) ** 2).mean()


def _train_epoch(trainer, loader, bands, weight: float) -> None:
    """One epoch of sevenn's training step (``Trainer.run_one_epoch``), each step's loss plus ``weight`` times
    the relative energy loss of the next band of ``bands`` (an endless iterator of graph lists)."""
    import torch

    trainer.model.train()
    for batch in loader:
        trainer.optimizer.zero_grad()
        output = trainer.model(batch.to(trainer.device))
        total = torch.zeros(1)
        for loss_def, w in trainer.loss_functions:
            part = loss_def.get_loss(output, trainer.model)
            if part is not None:
                total = total + part * w
        total = total + weight * relative_energy_loss(trainer.model, next(bands))
        total.backward()
        trainer.optimizer.step()


def _fit_dataset(dataset_cls, frames, shifts: dict, cutoff: float, work, weights: tuple[float, float] | None):
    """The fitted frames as sevenn graphs, in order; with ``weights`` (band, element), a list of graphs carrying
    their loss weights (sevenn's ``data_weight``: the energy's ``energy_weight``, forces and stress 1)."""
    from ase.io import write

    Path(work).mkdir(parents=True, exist_ok=True)
    path = Path(work) / "fit.extxyz"
    write(path, shift_frames(frames, shifts), format="extxyz")
    dataset = dataset_cls(cutoff=cutoff, root=str(work), files=[str(path)], processed_name="fit.pt", log=False,
                          force_reload=True)
    if weights is None:
        return dataset
    graphs = _graphs_in_order(dataset, frames, shifts)
    for graph, atoms in zip(graphs, frames, strict=True):
        graph["data_weight"] = {"energy": energy_weight(atoms, *weights), "force": 1.0, "stress": 1.0}
    return graphs


def _graphs_in_order(dataset, frames, shifts: dict) -> list:
    """The graphs of ``dataset`` as a list, checked to be ``frames`` in their order (size and shifted energy)."""
    graphs = [dataset[i] for i in range(len(dataset))]
    for graph, atoms in zip(graphs, frames, strict=True):
        energy = atoms.get_potential_energy() - shift_of(atoms, shifts)  # sevenn keeps it in float32
        same = abs(float(graph["total_energy"]) - energy) <= 1e-6 * max(1.0, abs(energy))
        if int(graph["num_atoms"]) != len(atoms) or not same:
            raise RuntimeError("sevenn's dataset reordered the frames")  # weights or bands would land on others
    return graphs


def _calculator(model, config, tensors: dict | None = None):
    """A calculator on a copy of ``model`` (with ``tensors`` loaded over its own); ``model`` is left as it is."""
    from sevenn.calculator import SevenNetCalculator

    m = copy.deepcopy(model)
    if tensors:
        m.load_state_dict({**m.state_dict(), **tensors})
    m.set_is_batch_data(False)
    m.eval()
    return SevenNetCalculator(model=m, file_type="model_instance", device="cpu", sevennet_config=config)


def train_shipped(train, validation, dest, name: str, description: str, epochs: int = 60, lr: float = 1e-3,
                  lr_final: float | None = None, batch_size: int = 4, eval_every: int = 2, seed: int = 0,
                  band_energy_weight: float = 1.0, element_energy_weight: float = 1.0,
                  band_relative_weight: float = 0.0, average_from: int | None = None, trainable=TRAINABLE,
                  references: dict[str, str] | None = None, labels_meta: dict | None = None,
                  aliases: dict[str, str] | None = None, planned=(), log=print) -> dict:
    """Fine-tune SevenNet-0's ``trainable`` tensors on ``train``; write ``weights.pth`` and ``metadata.json`` in ``dest``.

    Parameters
    ----------
    train, validation : list of ase.Atoms
        Labelled frames (energy, forces, stress; ``info["label"]``, ``info["kind"]``, ``info["split"]``). One
        training frame in ``STOP_EVERY`` chooses the epoch; ``validation`` is only measured.
    dest : path
        Folder of the shipped potential (``alloyflow/data/potentials/<name>``).
    name, description : str
        Registry name and its one-line description.
    epochs, lr, batch_size, eval_every, seed : training settings
        Adam (7net-0's optimiser and loss) at ``lr``, or, with ``lr_final``, from ``lr`` down to ``lr_final``
        on a cosine over the epochs; the stop score is measured every ``eval_every`` epochs and the best
        epoch's tensors are kept.
    band_energy_weight : float
        Weight of the energy term of the band images (``BAND_KINDS``) in the loss, the other frames' being 1. A
        barrier is a difference of two total energies of one cell, so a per-atom error of a 27-atom image
        counts 27 times in it; weighting those frames' energies more asks the fit to hold the energies along a
        band. 1 gives 7net-0's loss unchanged.
    element_energy_weight : float
        Weight of the energy term of the one-element cells. A formation energy subtracts the elements' energies
        per atom, so an error there shifts every compound's (seed 0 of the two-block training came out 7.4
        meV/atom too shallow on average; weight 10 removed that, docs/shipped-potential.md). 1 gives 7net-0's loss unchanged.
    band_relative_weight : float
        Weight of a second energy term: every training step adds this times ``relative_energy_loss`` of one
        fitted band cell (``band_groups``, in turn), the total energies of its images relative to their mean (eV²): a 30 meV error
        of a barrier adds 1e-3 at weight 1, where the per-atom energy and force terms of a fitted frame are
        around 1e-5 and 1e-4. It fits what a barrier depends on (energy differences along a band) without
        asking each frame's energy to move. 0 (the default) gives 7net-0's loss and sevenn's training step.
    average_from : int, optional
        Also keep the mean of the trained tensors over the epochs from this one to the last (a stochastic
        weight average): it is a candidate like each evaluated epoch, chosen if its stop score is lower.
        At a fixed learning rate the errors jump from epoch to epoch; the average smooths them.
    trainable : tuple of str
        Name prefixes of the trained tensors (``TRAINABLE``); all others stay SevenNet-0's.
    references : dict, optional
        Element -> label of its relaxed elemental frame, for the formation energies in the metadata.
    labels_meta : dict, optional
        What the labels are (files and their sha256, counts, DFT settings), copied into the metadata.
    aliases : dict, optional
        Labels dropped as duplicates -> the label they repeat, for the band barriers (``band_barriers``).
    planned : iterable of str, optional
        Every label of the campaign's set (the labels' manifest), for the bands' lengths (``band_barriers``).
    log : callable
        Receives one line per evaluated epoch.

    Returns
    -------
    dict
        The metadata written to ``metadata.json``.
    """
    import sevenn
    import torch
    from sevenn.calculator import SevenNetCalculator
    from sevenn.train.graph_dataset import SevenNetGraphDataset
    from sevenn.train.trainer import Trainer
    from sevenn.util import load_checkpoint
    from torch_geometric.loader import DataLoader

    if not train:
        raise ValueError("no training labels")
    if not epochs >= 1 or not lr > 0 or (lr_final is not None and not 0 < lr_final <= lr):
        raise ValueError(f"epochs must be >= 1, lr > 0 and 0 < lr_final <= lr, got {epochs}, {lr} and {lr_final}")
    if average_from is not None and not 1 <= average_from <= epochs:
        raise ValueError(f"average_from must be an epoch, 1 to {epochs}, got {average_from}")
    for what, w in (("band_energy_weight", band_energy_weight), ("element_energy_weight", element_energy_weight)):
        if not 0 < w < float("inf"):
            raise ValueError(f"{what} must be a finite number > 0, got {w}")
    if not 0 <= band_relative_weight < float("inf"):
        raise ValueError(f"band_relative_weight must be a finite number >= 0, got {band_relative_weight}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    frames = [*train, *validation]
    stop = stop_indices(train)
    parts = {"fit": [i for i in range(len(train)) if i not in stop], "stop": sorted(stop),
             "validation": list(range(len(train), len(frames)))}
    args, _, _ = Trainer.args_from_checkpoint(BASE_MODEL)
    model = args["model"]
    trained = [k for k, p in model.named_parameters() if k.startswith(tuple(trainable))]
    unmatched = [t for t in trainable if not t or not any(k.startswith(t) for k in trained)]  # "" would train all
    if unmatched:
        raise ValueError(f"trainable prefix(es) {unmatched} name no tensor of SevenNet-0")
    base_calc = SevenNetCalculator(model=BASE_MODEL, device="cpu")
    base_pred = [predict(base_calc, a) for a in frames]  # once: shifts, SevenNet-0's errors and formation energies
    shifts = fit_shifts(train, [p[0] for p in base_pred[:len(train)]])
    for k, p in model.named_parameters():
        p.requires_grad = k in trained
    config = load_checkpoint(BASE_MODEL).config
    args["optimizer_args"] = {**args["optimizer_args"], "lr": lr}
    args["scheduler_cls"], args["scheduler_args"] = None, None
    if lr_final is not None:  # stepped once per epoch: lr on the first epoch, lr_final on the last
        args["scheduler_cls"] = torch.optim.lr_scheduler.CosineAnnealingLR
        args["scheduler_args"] = {"T_max": max(1, epochs - 1), "eta_min": lr_final}
    weighted = (band_energy_weight, element_energy_weight) != (1.0, 1.0)
    if weighted:  # 7net-0's loss with per-frame weights (a weighted mean of the squared errors)
        from sevenn.train.loss import get_loss_functions_from_config

        args["loss_functions"] = get_loss_functions_from_config({**config, "use_weight": True})
    trainer = Trainer(**args, device="cpu")
    chooser = "stop" if parts["stop"] else "fit"  # the frames that choose the epoch
    curve, best, average = [], None, None
    t0 = time.perf_counter()

    def evaluate(tensors: dict, epoch, best):
        """Measure the model with ``tensors`` on the choosing and validation frames; the better of it and ``best``."""
        calc = _calculator(trainer.model, config, tensors)
        pred = {i: predict(calc, frames[i]) for w in (chooser, "validation") for i in parts[w]}
        err = {w: errors([frames[i] for i in parts[w]], [pred[i] for i in parts[w]], shifts)
               for w in (chooser, "validation")}
        point = {"epoch": epoch, "seconds": time.perf_counter() - t0, "stop": err[chooser],
                 "validation": err["validation"]}
        curve.append(point)
        log(f"epoch {epoch}: stop {point['stop']['energy_mae_meV_atom']:.2f} meV/atom "
            f"{point['stop']['force_mae_meV_A']:.1f} meV/Å; validation "
            f"{point['validation'].get('energy_mae_meV_atom', float('nan')):.2f} meV/atom "
            f"{point['validation'].get('force_mae_meV_A', float('nan')):.1f} meV/Å")
        score = stop_score([frames[i] for i in parts[chooser]], [pred[i] for i in parts[chooser]], shifts)
        return (score, epoch, tensors) if best is None or score < best[0] else best

    with tempfile.TemporaryDirectory(prefix="alloyflow-train-") as work:
        dataset = _fit_dataset(SevenNetGraphDataset, [frames[i] for i in parts["fit"]], shifts, config["cutoff"],
                               work, (band_energy_weight, element_energy_weight) if weighted else None)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        fit_frames = [frames[i] for i in parts["fit"]]
        band_idx = band_groups(fit_frames) if band_relative_weight > 0 else []
        if band_relative_weight > 0 and not band_idx:
            raise ValueError("band_relative_weight > 0 but no band has two fitted images")
        if band_idx:
            flat = [i for idx in band_idx for i in idx]
            band_frames = [fit_frames[i] for i in flat]
            graphs = _graphs_in_order(_fit_dataset(SevenNetGraphDataset, band_frames, shifts, config["cutoff"],
                                                   Path(work) / "bands", None), band_frames, shifts)
            at = {i: k for k, i in enumerate(flat)}
            bands = itertools.cycle([[graphs[at[i]] for i in idx] for idx in band_idx])
        for epoch in range(1, epochs + 1):
            if band_idx:
                _train_epoch(trainer, loader, bands, band_relative_weight)
            else:
                trainer.run_one_epoch(loader, is_train=True)
            trainer.scheduler_step()  # no scheduler: nothing
            if average_from is not None and epoch >= average_from:
                state, n = trainer.model.state_dict(), epoch - average_from
                average = {k: state[k].detach().clone() if average is None else average[k] + (state[k] - average[k])
                           / (n + 1) for k in trained}
            if epoch % eval_every and epoch != epochs:
                continue
            state = trainer.model.state_dict()
            best = evaluate({k: state[k].detach().clone() for k in trained}, epoch, best)
        if average is not None:
            best = evaluate(average, f"mean of {average_from}-{epochs}", best)
    train_seconds = time.perf_counter() - t0
    _, best_epoch, tensors = best
    weights = dest / "weights.pth"
    torch.save({"format": DELTA_FORMAT, "base_model": BASE_MODEL, "tensors": tensors}, weights)
    model.load_state_dict({**model.state_dict(), **tensors})
    tuned = _calculator(model, config)
    tuned_pred = [predict(tuned, a) for a in frames]
    measured = {}
    for tag, pred in (("SevenNet-0", base_pred), (name, tuned_pred)):
        measured[tag] = {w: errors([frames[i] for i in idx], [pred[i] for i in idx], shifts) for w, idx in parts.items()}
        if references:
            measured[tag]["formation_meV_atom"] = formation_energies(frames, pred, references)
        measured[tag]["band_barriers_meV"] = band_barriers(frames, pred, aliases, planned)
    smallest = sorted(range(len(frames)), key=lambda i: len(frames[i]))[:3]  # the smallest cells: a cheap load test
    checks = [{"label": frames[i].info.get("label", ""), "energy_eV": tuned_pred[i][0],
               "max_force_eV_A": float(np.linalg.norm(tuned_pred[i][1], axis=1).max())} for i in smallest]
    meta = {
        "name": name, "model": f"SevenNet-0 fine-tuned {name}", "description": description,
        "format": DELTA_FORMAT, "sha256": file_sha256(weights), "base_model": BASE_MODEL,
        "base_sha256": file_sha256(sevennet_base_path(BASE_MODEL)), "sevenn_version": sevenn.__version__,
        "torch_version": torch.__version__, "license": "GPL-3.0-only (derived from SevenNet-0's weights)",
        "elements": sorted({s for a in [*train, *validation] for s in a.get_chemical_symbols()}),
        "trainable": list(trainable), "trained_parameters": int(sum(t.numel() for t in tensors.values())),
        "labels": labels_meta or {}, "n_fit": len(parts["fit"]), "n_stop": len(stop), "n_validation": len(validation),
        "stop_rule": STOP_RULE,
        "reference_shifts_eV_atom": shifts,
        "training": {"epochs": epochs, "chosen_epoch": best_epoch if isinstance(best_epoch, int) else epochs,
                     "chosen": best_epoch if isinstance(best_epoch, int) else f"epochs {average_from}-{epochs} averaged",
                     "average_from": average_from, "lr": lr, "batch_size": batch_size, "seed": seed,
                     "lr_final": lr_final, "band_energy_weight": band_energy_weight,
                     "element_energy_weight": element_energy_weight,
                     "band_relative_weight": band_relative_weight, "relative_bands": len(band_idx),
                     "loss": "7net-0's (energy/atom, force, stress)"
                             + (f"; band images' energy weighted {band_energy_weight:g}"
                                if band_energy_weight != 1.0 else "")
                             + (f"; one-element cells' energy weighted {element_energy_weight:g}"
                                if element_energy_weight != 1.0 else "")
                             + (f"; plus {band_relative_weight:g} x band-relative energy (eV^2) per step"
                                if band_relative_weight > 0 else ""),
                     "optimizer": f"Adam (7net-0's settings, {'fixed' if lr_final is None else 'cosine'} lr)",
                     "seconds": round(train_seconds, 1), "threads": torch.get_num_threads()},
        "errors": measured, "curve": curve,
        "checks": checks,
    }
    (dest / "metadata.json").write_text(json.dumps(meta, indent=1))
    return meta
