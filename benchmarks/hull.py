"""Time the whole Li-In + Li-Sn hull: relaxations, wall time, peak memory.

    python benchmarks/hull.py [--calculator sevennet] [--systems Li-In Li-Sn] [--threads N]

Runs in a fresh temporary store (nothing reused) and prints one row per
relaxation and a summary. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calculator", default=None)
    parser.add_argument("--systems", nargs="+", default=["Li-In", "Li-Sn"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        os.environ["ALLOYFLOW_THREADS"] = str(args.threads)

    from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, get_calculator
    from alloyflow.engine import ResultStore
    from alloyflow.workflows.flows.hull import run_hull_relaxations

    calculator = args.calculator or DEFAULT_CALCULATOR
    t_load = time.perf_counter()
    get_calculator(calculator)
    t_load = time.perf_counter() - t_load
    rows, total_steps, t0 = [], 0, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, ResultStore(tmp) as store:
        for system in args.systems:
            ts = time.perf_counter()
            docs, summary = run_hull_relaxations(system, store, calculator=calculator)
            for d in docs:
                rows.append((system, d.label, d.natoms, d.n_steps, d.elapsed_seconds, d.converged))
                total_steps += d.n_steps
            rows.append((system, "(system total, incl. store I/O)", "", "", time.perf_counter() - ts, ""))
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    info = calculator_info(calculator)
    print(f"hull benchmark: {info['label']} {info['version']}, torch threads={os.environ.get('ALLOYFLOW_THREADS', 'all')}, "
          f"cores={os.cpu_count()}")
    print(f"{'system':<7}{'phase':<34}{'atoms':>6}{'steps':>7}{'seconds':>9}  converged")
    for system, label, natoms, steps, seconds, conv in rows:
        print(f"{system:<7}{label:<34}{natoms!s:>6}{steps!s:>7}{seconds:>9.1f}  {conv}")
    n_relax = sum(1 for r in rows if r[3] != "")
    print(f"\nrelaxations: {n_relax}, force calls (optimizer steps): {total_steps}, model load: {t_load:.1f} s")
    print(f"wall time: {wall:.1f} s, per force call: {wall / max(total_steps, 1) * 1000:.0f} ms, "
          f"peak RSS: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
