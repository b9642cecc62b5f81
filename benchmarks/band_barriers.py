"""Barriers on the labelled band images: GPAW//SevenNet-0 against ML potentials on the same images (issue 16).

    python benchmarks/label_campaign.py export     # the labels so far -> alloyflow/data/labels
    python benchmarks/band_barriers.py [--models sevennet alloyflow-LiInSn] [--threads 1]

Reads the exported labels, keeps the band images (``<system>/<phase>/hop<id>/image<k>``), evaluates
every model on them and prints, per band, the forward barrier ``max_k E(k) - E(0)`` over the labelled
images from the GPAW labels (DFT on SevenNet-0's band: DFT//ML) and from each model
(``alloyflow.ml.frames.band_barriers``). No DFT is run. The campaign's bands are SevenNet-0 CI-NEBs in
11-27-atom cells (vacancy images 6 Å apart), not the study's 10 Å cells: compare models with each
other here, and with the study's barriers only as a check of the trend.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "alloyflow" / "data" / "labels"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--models", nargs="+", default=["sevennet", "alloyflow-LiInSn"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ["ALLOYFLOW_THREADS"] = str(args.threads)
    import warnings

    warnings.filterwarnings("ignore")
    from ase.io import read

    from alloyflow.calculators import get_calculator
    from alloyflow.ml.frames import BAND_IMAGE, band_barriers, band_labels, predict

    frames = [a for split in ("train", "validation")
              for a in read(args.labels / f"li_in_sn_gpaw_{split}.extxyz", index=":")]
    images = [a for a in frames if BAND_IMAGE.fullmatch(str(a.info.get("label", "")))]
    manifest = json.loads((args.labels / "manifest.json").read_text())
    aliases, planned = band_labels(manifest)
    if not images:
        print(f"no band image is labelled yet in {args.labels}")
        return 0
    rows = {}
    for model in args.models:
        calc = get_calculator(model)
        rows[model] = band_barriers(images, [predict(calc, a) for a in images], aliases, planned)
    first = rows[args.models[0]]
    if not first:
        print(f"{len(images)} band images labelled, but no band has its initial endpoint and an inner image of its own yet")
        return 0
    print(f"Forward barriers (meV) on the labelled SevenNet-0 band images ({len(images)} labelled images):\n")
    print(f"| band | split | atoms | images labelled | GPAW//SevenNet-0 | {' | '.join(args.models)} |")
    print("|---|---|---|---|---|" + "---|" * len(args.models))
    natoms = {str(a.info["label"]).rsplit("/image", 1)[0]: len(a) for a in images}
    for band, row in first.items():
        print(f"| {band} | {row['split']} | {natoms.get(band, '')} | {len(row['images'])} of {row['band_images']} | "
              f"{row['dft']:.0f} | " + " | ".join(f"{rows[m][band]['ml']:.0f}" for m in args.models) + " |")
    out = ROOT / "benchmarks" / "out" / "band_barriers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
