"""How many torch threads an ML potential gets: by the size of the cell it evaluates, chosen by measurement.

``python benchmarks/thread_policy.py`` (SevenNet-0 on B32 LiIn cells, 2
cores, OpenMP waiting passively as ``import alloyflow`` sets it; each
setting in a fresh process, medians of 2; "busy" = CPU-bound processes the
benchmark starts and stops itself), time per force call on 2 threads over
that on 1:

============  ========  ========  ========  =========  ==================
busy procs.   16 atoms  32 atoms  63 atoms  127 atoms  relaxation (16 at.)
============  ========  ========  ========  =========  ==================
0 (idle)      1.14      1.04      0.86      0.76       1.14
4 (2x cores)  0.99      1.06      0.97      0.88       1.13
============  ========  ========  ========  =========  ==================

A second idle series gave 1.64 at 16 atoms and 1.01 at 63. So a second
thread costs time on the cells the search and the hull relax (up to ~30
atoms) and pays from about a hundred atoms (the NEB cells of Li13In3 and
Li17Sn4, the largest hull phases), idle and loaded alike. Letting OpenMP
threads spin instead (libgomp's default) made 2 threads 0.64x on an idle
machine at 63 atoms but 2.5-7.5x slower at 2x load: never the default.

``$ALLOYFLOW_THREADS`` (``--threads N``) fixes the count for every cell.
"""

from __future__ import annotations

import os

THREADS_SPLIT_ATOMS = 64
"""Cells of fewer atoms run on one torch thread, larger ones on every core it may use (table above)."""


def available_cores() -> int:
    """Cores this process may use: ``$ALLOYFLOW_CORES`` (a parallel run's worker: its share), else its CPU
    affinity (a queue's allocation), else the machine's count."""
    share = os.environ.get("ALLOYFLOW_CORES", "")
    if share.isdigit() and int(share) > 0:
        return int(share)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_for(natoms: int) -> int:
    """Torch intra-op threads for a calculation on ``natoms`` atoms: ``$ALLOYFLOW_THREADS``, else by size."""
    fixed = int(os.environ.get("ALLOYFLOW_THREADS", "0") or 0)
    if fixed > 0:
        return fixed
    return 1 if natoms < THREADS_SPLIT_ATOMS else available_cores()


def use_threads_for(natoms: int) -> int:
    """Set torch's intra-op threads for ``natoms`` atoms (a no-op when already set); returns the count."""
    import torch

    n = threads_for(natoms)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def sized_threads(calc):
    """``calc`` with its torch threads set from the size of each structure it calculates (``threads_for``)."""
    inner = calc.calculate

    def calculate(atoms=None, *args, **kwargs):
        use_threads_for(len(atoms if atoms is not None else calc.atoms))
        return inner(atoms, *args, **kwargs)

    calc.calculate = calculate
    return calc
