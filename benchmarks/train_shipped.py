"""Train the shipped Li-In-Sn potential from the exported GPAW labels and write it as package data (issue 16).

    python benchmarks/label_campaign.py export          # labels so far -> alloyflow/data/labels
    python benchmarks/train_shipped.py [--epochs 60] [--lr 1e-3] [--seed 0 | --seeds 0 1] [--threads 1]

The shipped potential is ``--seed 1`` on the 97 labels of commit 333aea9: of
seeds 0 and 1 it had the lower error on the frames that choose the epoch
(4.4 against 5.2 meV/atom, forces 7.9 both); the validation frames played
no part in the choice. ``--seeds 0 1`` makes that choice in one command: it
trains each seed in turn (in ``<dest>.seeds/``), keeps the one with the lowest
energy error on the stop frames (forces break a tie) and records every
seed's score in ``metadata.json`` (``training.seed_choice``).

Reads ``alloyflow/data/labels/li_in_sn_gpaw_{train,validation}.extxyz`` and
their ``manifest.json``, fine-tunes SevenNet-0's last layers
(``alloyflow.ml.shipped``) and writes ``weights.pth``, ``metadata.json`` and
``NOTICE.md`` to ``alloyflow/data/potentials/alloyflow-LiInSn/``, where the
registry finds it (``alloyflow.calculators.packaged``). Prints the error and
formation-energy tables that go into docs/shipped-potential.md. Deterministic for a given
label set, seed and thread count (torch's CPU kernels).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "alloyflow" / "data" / "labels"
NAME = "alloyflow-LiInSn"
REFERENCES = {"Li": "element/Li/relaxed", "In": "element/In/relaxed", "Sn": "element/Sn/relaxed"}
"""Elemental references of the formation energies: bcc Li, tetragonal In, beta-Sn (the labels' relaxed cells)."""

NOTICE = """# {name}: license

`weights.pth` holds tensors of SevenNet-0 (7net-0, Park et al., J. Chem. Theory
Comput. 2024) fine-tuned on alloyflow's GPAW PBE labels. SevenNet's weights are
distributed under the GNU General Public License v3.0 (GPL-3.0-only); weights
derived from them are under the same license. The file holds only the
tensors fine-tuning changed; the rest comes from the `sevenn` package you
install. The labels it was trained on are in `alloyflow/data/labels/`
(their hashes in `metadata.json`).
"""


def seed_score(meta: dict) -> tuple[float, float]:
    """What chooses among seeds: the stop frames' energy error, then their force error (never validation's)."""
    stop = meta["errors"][NAME]["stop"]
    return stop["energy_mae_meV_atom"], stop["force_mae_meV_A"]


def train_seeds(train, seeds: list[int], dest: Path) -> dict:
    """Train every seed into ``<dest>.seeds/seed-N`` (kept, so a killed run loses one seed), copy the best to
    ``dest`` and record all scores in its ``metadata.json``. A seed whose folder holds finished weights is
    not trained again."""
    import shutil

    work = dest.parent / f"{dest.name}.seeds"
    metas = {}
    for seed in seeds:
        folder = work / f"seed-{seed}"
        done = folder / "metadata.json"
        stored = json.loads(done.read_text()) if done.exists() else None
        if stored is not None and stored["training"]["seed"] == seed:
            metas[seed] = stored
            print(f"seed {seed}: trained before ({folder}), reused")
            continue
        metas[seed] = train(seed, folder)
        print(f"seed {seed}: stop frames {seed_score(metas[seed])[0]:.2f} meV/atom, "
              f"{seed_score(metas[seed])[1]:.1f} meV/Å")
    best = min(seeds, key=lambda s: seed_score(metas[s]))
    meta = metas[best]
    meta["training"]["seed_choice"] = {
        str(s): {"stop_energy_mae_meV_atom": seed_score(m)[0], "stop_force_mae_meV_A": seed_score(m)[1]}
        for s, m in metas.items()}
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("weights.pth", "NOTICE.md"):
        shutil.copyfile(work / f"seed-{best}" / name, dest / name)
    (dest / "metadata.json").write_text(json.dumps(meta, indent=1))
    print(f"kept seed {best} of {', '.join(map(str, seeds))} (lowest stop-frame energy error)")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--dest", type=Path, default=ROOT / "alloyflow" / "data" / "potentials" / NAME)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-final", type=float, default=None,
                    help="decay the learning rate from --lr to this on a cosine over the epochs (default: fixed)")
    ap.add_argument("--band-energy-weight", type=float, default=1.0,
                    help="weight of the band images' energies in the loss, the other frames' being 1 (default: 1)")
    ap.add_argument("--element-energy-weight", type=float, default=1.0,
                    help="weight of the one-element cells' energies in the loss (the formation energies' "
                         "references), the other frames' being 1 (default: 1)")
    ap.add_argument("--band-relative-weight", type=float, default=1.0,
                    help="add this times the band-relative energy loss (each band cell's total energies relative "
                         "to their mean, eV^2, one band cell per step) to every training step (default: 1; 0 gives "
                         "7net-0's loss and sevenn's step, as the shipped 97-label potential was trained)")
    ap.add_argument("--average-from", type=int, default=None,
                    help="also try the mean of the trained tensors from this epoch to the last (default: off)")
    ap.add_argument("--trainable", nargs="+", default=None, metavar="PREFIX",
                    help="name prefixes of the SevenNet-0 tensors to train (default: alloyflow.ml.shipped.TRAINABLE, "
                         "the last two interaction blocks '3_' '4_' and the readout)")
    ap.add_argument("--batch-size", type=int, default=4)
    seeds = ap.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="seed of the initial shuffle and the batches (default 0)")
    seeds.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                       help="train each seed in turn and keep the one with the lowest stop-frame energy error")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from ase.io import read

    from alloyflow.ml.frames import band_labels
    from alloyflow.ml.shipped import TRAINABLE, file_sha256, train_shipped

    torch.set_num_threads(args.threads)
    trainable = tuple(args.trainable or TRAINABLE)
    files = {split: args.labels / f"li_in_sn_gpaw_{split}.extxyz" for split in ("train", "validation")}
    frames = {split: read(path, index=":") for split, path in files.items()}
    manifest = json.loads((args.labels / "manifest.json").read_text())
    labels_meta = {"files": {p.name: file_sha256(p) for p in files.values()},
                   "counts": {k: len(v) for k, v in frames.items()},
                   "planned": manifest.get("total_planned", {}), "dft": manifest.get("dft", {}).get("label", ""),
                   "settings": {k: manifest.get("settings", {}).get(k) for k in
                                ("ecut", "kpt_density", "width", "xc", "gpaw_version", "gpaw-data_version")}}
    description = (f"SevenNet-0 with its last layers fine-tuned on {len(frames['train'])} GPAW PBE labels of "
                   "Li-In-Sn (alloyflow's label campaign); Li, In, Sn only")
    aliases, planned = band_labels(manifest)

    def train(seed: int, dest: Path) -> dict:
        meta = train_shipped(frames["train"], frames["validation"], dest, NAME, description, epochs=args.epochs,
                             lr=args.lr, lr_final=args.lr_final, batch_size=args.batch_size, seed=seed,
                             band_energy_weight=args.band_energy_weight,
                             element_energy_weight=args.element_energy_weight,
                             band_relative_weight=args.band_relative_weight, average_from=args.average_from,
                             trainable=trainable,
                             references=REFERENCES, labels_meta=labels_meta, aliases=aliases, planned=planned)
        (dest / "NOTICE.md").write_text(NOTICE.format(name=NAME))
        return meta

    if args.seeds is None:
        meta = train(args.seed, args.dest)
    else:
        meta = train_seeds(train, sorted(set(args.seeds)), args.dest)
    chosen = meta["training"]["chosen"]
    chosen = f"epoch {chosen}" if isinstance(chosen, int) else chosen
    print(f"\n{NAME}: {meta['trained_parameters']} parameters trained, {chosen} of {args.epochs} chosen, "
          f"{meta['training']['seconds']:.0f} s; weights {args.dest / 'weights.pth'} "
          f"({(args.dest / 'weights.pth').stat().st_size / 1e6:.2f} MB)\n")
    print("| set | frames | model | energy MAE (meV/atom) | force MAE (meV/Å) | stress MAE (GPa) |")
    print("|---|---|---|---|---|---|")
    for part in ("fit", "stop", "validation"):
        for model, d in meta["errors"].items():
            e = d[part]
            if e:
                print(f"| {part} | {e['n']} | {model} | {e['energy_mae_meV_atom']:.2f} | {e['force_mae_meV_A']:.1f} | "
                      f"{e['stress_mae_GPa']:.2f} |")
    print("\nFormation energies, same geometries (meV/atom):\n")
    models = list(meta["errors"])
    print(f"| phase | split | GPAW PBE | {' | '.join(models)} |")
    print("|---|---|---|" + "---|" * len(models))
    forms = {m: meta["errors"][m]["formation_meV_atom"] for m in models}
    for label, row in forms[models[0]].items():
        print(f"| {label} | {row['split']} | {row['dft']:.1f} | "
              + " | ".join(f"{forms[m][label]['ml']:.1f}" for m in models) + " |")
    for m in models:
        d = [abs(r["ml"] - r["dft"]) for r in forms[m].values()]
        dv = [abs(r["ml"] - r["dft"]) for r in forms[m].values() if r["split"] == "validation"]
        print(f"- {m}: MAE {sum(d) / len(d):.1f} meV/atom over {len(d)} phases"
              + (f"; held-out phases {sum(dv) / len(dv):.1f}" if dv else ""))
    bands = {m: meta["errors"][m]["band_barriers_meV"] for m in models}
    if bands[models[0]]:
        print("\nForward barriers on the labelled SevenNet-0 band images (meV; GPAW//SevenNet-0 is DFT on those "
              "images, each model on the same images):\n")
        print(f"| band | split | images labelled | GPAW//SevenNet-0 | {' | '.join(models)} |")
        print("|---|---|---|---|" + "---|" * len(models))
        for band, row in bands[models[0]].items():
            print(f"| {band} | {row['split']} | {len(row['images'])} of {row['band_images']} | {row['dft']:.0f} | "
                  + " | ".join(f"{bands[m][band]['ml']:.0f}" for m in models) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
