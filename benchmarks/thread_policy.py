"""Which torch thread setting survives a busy machine: SevenNet-0 force calls and a relaxation, idle and loaded.

Each configuration runs in a fresh Python process (so ``OMP_WAIT_POLICY`` and
the thread counts apply before torch starts):

- torch intra-op threads: 1, 2 (here: all cores), ...;
- OpenMP wait policy: libgomp's default (threads spin before they sleep) or ``PASSIVE``
  (alloyflow's default since this measurement);
- background load: none, or ``--load N`` busy processes that this script starts
  before and kills after each measurement (``--load 4`` = 2x the cores of a
  2-core machine).

Workloads (SevenNet-0, the default potential): force calls on B32 LiIn
cells of 16 and 32 atoms (what the search and the hull relax) and 63 and 127
atoms (vacancy cells, what a NEB band costs; ``--cells``), and one
relaxation of a rattled 16-atom cell. The table gives seconds per force
call (median over repeats) and the ratio to the first thread count in the
same load.

    python benchmarks/thread_policy.py [--threads 1 2] [--load 0 4] [--interop 0 1] [--repeats 2]
                                       [--cells 1x1x1 2x1x1 2x2x1-1 2x2x2-1] [--out FILE]

Other processes running at the same time are listed in the output (the
machine's load average before each measurement), so a reader can judge the
noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKER = r"""
import json, os, time
import numpy as np
import torch
if os.environ.get("BENCH_INTEROP"):
    torch.set_num_interop_threads(int(os.environ["BENCH_INTEROP"]))
from alloyflow.calculators import get_calculator
from alloyflow.structures.library import StructureLibrary
from alloyflow.workflows.jobs.relax import RelaxMaker
from pymatgen.io.ase import AseAtomsAdaptor

calc = get_calculator("sevennet")
lib = StructureLibrary()
base = lib.get("LiIn").structure  # B32, 16 atoms in the conventional cell
rng = np.random.default_rng(7)

def atoms_of(structure):
    a = AseAtomsAdaptor.get_atoms(structure)
    a.positions += rng.normal(0, 0.03, a.positions.shape)
    a.calc = calc
    return a

out = {"per_call": {}}
for spec in os.environ["BENCH_CELLS"].split():  # "2x2x1-1": 2x2x1 conventional cells less one Li (a vacancy cell)
    reps, _, vacancy = spec.partition("-")
    cell = base * tuple(int(x) for x in reps.split("x"))
    if vacancy:
        cell.remove_sites([0])
    a = atoms_of(cell)
    a.get_forces()  # warm-up (graph build, lazy init)
    n = int(os.environ["BENCH_CALLS"])
    t0 = time.perf_counter()
    for _ in range(n):
        a.positions += 1e-4
        a.get_forces()
    out["per_call"][str(len(a))] = (time.perf_counter() - t0) / n
rattled = base.copy(); rattled.perturb(0.05, min_distance=0.02)
t0 = time.perf_counter()
doc = RelaxMaker(calculator="sevennet", fmax=0.02, steps=60).run(rattled, label="bench")
out["relax_seconds"] = time.perf_counter() - t0
out["relax_steps"] = doc.n_steps if hasattr(doc, "n_steps") else None
out["torch_threads"] = torch.get_num_threads()
out["interop_threads"] = torch.get_num_interop_threads()
print("RESULT " + json.dumps(out))
"""


def busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def measure(threads: int, policy: str | None, load: int, calls: int, interop: int | None = None,
            cells: tuple = ("1x1x1", "2x2x1-1")) -> dict:
    env = {**os.environ, "ALLOYFLOW_THREADS": str(threads or ""), "OPENBLAS_NUM_THREADS": "1",
           "BENCH_CALLS": str(calls),
           "BENCH_CELLS": " ".join(cells),
           "PYTHONWARNINGS": "ignore", "BENCH_INTEROP": str(interop or "")}
    # "default" is libgomp's own (spin, then sleep): an empty value, which libgomp ignores with a warning,
    # keeps alloyflow (which sets PASSIVE when the variable is unset) from choosing for it
    env["OMP_WAIT_POLICY"] = policy or ""
    hogs = busy(load)
    try:
        time.sleep(1.0 if load else 0.0)
        before = os.getloadavg()[0]
        res = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=1800)
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.wait()
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(res.stderr[-2000:])
    return {**json.loads(line[7:]), "loadavg_before": round(before, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="torch threads; 0: alloyflow's default (by cell size, alloyflow.calculators.threads)")
    ap.add_argument("--policies", nargs="+", default=["default", "PASSIVE"])
    ap.add_argument("--load", type=int, nargs="+", default=[0, 4], help="busy background processes")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--calls", type=int, default=15, help="force calls per cell per measurement")
    ap.add_argument("--interop", type=int, nargs="+", default=[0],
                    help="torch inter-op threads (0: torch's default, one per core)")
    ap.add_argument("--cells", nargs="+", default=["1x1x1", "2x1x1", "2x2x1-1", "2x2x2-1"],
                    help="B32 LiIn cells: conventional-cell repeats, '-1' for one Li removed")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/thread_policy.json"))
    args = ap.parse_args(argv)

    rows = []
    for load in args.load:
        for rep in range(args.repeats):  # configurations interleaved, so drifting background load hits all alike
            for threads in args.threads:
                for policy in args.policies:
                    for interop in args.interop:
                        r = measure(threads, None if policy == "default" else policy, load, args.calls, interop,
                                    tuple(args.cells))
                        rows.append({"load": load, "threads": threads, "policy": policy, "repeat": rep,
                                     "interop": interop, **r})
                        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))

    def value(r, key):
        return r["per_call"][key] if key in r.get("per_call", {}) else r[key]

    def med(load, threads, policy, interop, key):
        return statistics.median(value(r, key) for r in rows
                                 if (r["load"], r["threads"], r["policy"], r.get("interop", 0))
                                 == (load, threads, policy, interop))

    print(f"\nSevenNet-0 on {os.cpu_count()} cores; seconds per force call (median of {args.repeats}); "
          "ratio = time / time at the first thread count, same policy, inter-op threads and load")
    keys = [*rows[0]["per_call"], "relax_seconds"]
    head = " | ".join(f"{k} atoms s/call | ratio" for k in keys[:-1])
    print(f"| busy processes | torch threads | inter-op threads | OMP wait policy | {head} | relaxation (16 atoms) s "
          "| ratio |")
    print("|---" * (4 + 2 * len(keys)) + "|")
    for load in args.load:
        for policy in args.policies:
            for interop in args.interop:
                base = {k: med(load, args.threads[0], policy, interop, k) for k in keys}
                for threads in args.threads:
                    v = {k: med(load, threads, policy, interop, k) for k in keys}
                    cells = " | ".join(f"{v[k]:.3f} | {v[k] / base[k]:.2f}" for k in keys)
                    print(f"| {load} | {threads} | {interop or 'default'} | {policy} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
