"""Why batching a band's images into one SevenNet-0 call does (not) pay on CPU: where a call's time goes.

    python benchmarks/batching.py [--sizes 16 38 55 104] [--images 5] [--threads 1 2] [--repeats 5]

For each cell size (bcc-Li vacancy-free supercells rattled by 0.05 Å, so every
image differs as in a band) and torch thread count, in this process:

- graph: ``unlabeled_atoms_to_graph`` per image (the neighbour list, numpy);
- collate: ``Batch.from_data_list`` of the images' graphs;
- model: the forward pass with forces (autograd) of one image, and of all
  images in one batch;
- whole: ``evaluate_batch`` image by image against batched.

CPU time (``time.process_time``) per band of ``--images`` images, median of
``--repeats``; CPU time is steadier than wall time on a shared machine,
and with several threads it counts every thread (so it also shows threads
that spin). Wall time is printed beside it. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def cells(n_atoms: int, images: int, seed: int = 0):
    import numpy as np
    from ase.build import bulk

    base = bulk("Li", "bcc", a=3.44, cubic=True)  # 2 atoms
    reps = max(1, round((n_atoms / 2) ** (1 / 3)))
    best = min(((i, j, k) for i in range(1, 6) for j in range(1, 6) for k in range(1, 6)),
               key=lambda r: (abs(2 * r[0] * r[1] * r[2] - n_atoms), max(r) - min(r)))
    del reps
    atoms = base.repeat(best)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(images):
        a = atoms.copy()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        out.append(a)
    return out


def timed(fn, repeats: int):
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def profile(n_atoms: int, n_images: int, threads: int, repeats: int) -> dict:
    import sevenn._keys as KEY
    import torch
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.data import Batch

    from alloyflow.calculators import get_calculator
    from alloyflow.workflows.jobs.batched import evaluate_batch

    torch.set_num_threads(threads)
    calc = get_calculator("sevennet")
    images = cells(n_atoms, n_images)
    model = calc.model

    def graphs():
        gs = []
        for a in images:
            g = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, calc.cutoff, with_shift=False))
            if calc.modal:
                g[KEY.DATA_MODALITY] = calc.modal
            gs.append(g)
        return gs

    gs = graphs()
    edges = int(sum(g[KEY.EDGE_IDX].shape[1] for g in gs))

    def model_single():
        for g in graphs_ready:
            model(g.clone())

    def model_batched():
        model.set_is_batch_data(True)
        try:
            model(Batch.from_data_list([g.clone() for g in graphs_ready]))
        finally:
            model.set_is_batch_data(False)

    graphs_ready = gs
    evaluate_batch("sevennet", images[:1], batched=False)  # warm-up (model load, first-call costs)
    model_batched()
    row = {"atoms": len(images[0]), "images": n_images, "threads": threads, "edges_per_image": edges / n_images}
    for name, fn in (("graph", graphs),
                     ("collate", lambda: Batch.from_data_list([g.clone() for g in gs])),
                     ("model image by image", model_single),
                     ("model batched", model_batched),
                     ("whole image by image", lambda: evaluate_batch("sevennet", images, batched=False)),
                     ("whole batched", lambda: evaluate_batch("sevennet", images, batched=True,
                                                              max_atoms=10**6))):
        row[name] = timed(fn, repeats)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 38, 54, 128])
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/batching.json"))
    args = ap.parse_args(argv)
    rows = []
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    for threads in args.threads:
        for size in args.sizes:
            row = profile(size, args.images, threads, args.repeats)
            rows.append(row)
            print(json.dumps(row), flush=True)
    cols = ["graph", "collate", "model image by image", "model batched", "whole image by image", "whole batched"]
    print("\nCPU s per band (wall s in brackets)\n")
    print("| atoms | threads | edges/image | " + " | ".join(cols) + " | whole: one by one / batched |")
    print("|" + "---|" * (len(cols) + 4))
    for r in rows:
        cells_ = [f"{r[c][0]:.3f} ({r[c][1]:.3f})" for c in cols]
        ratio = r["whole image by image"][0] / r["whole batched"][0]
        print(f"| {r['atoms']} | {r['threads']} | {r['edges_per_image']:.0f} | " + " | ".join(cells_)
              + f" | {ratio:.2f} |")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
