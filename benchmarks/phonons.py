"""Phonon cost per phase: supercell atoms, force calls, wall time (and the imaginary-mode flag).

    python benchmarks/phonons.py [--calculator sevennet] [--system Li-In] [--phases Li In LiIn] \
        [--min-length 12] [--threads N]

Relaxes each phase's primitive cell (as the hull does, fmax 0.02 eV/Å) in a
fresh temporary store, then runs ``PhononMaker`` on it and prints one row per
phase. The relaxation is not counted in the phonon time. Not a test: nothing
is asserted.
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
    parser.add_argument("--system", default="Li-In")
    parser.add_argument("--phases", nargs="+", default=None, help="default: every library phase of the system")
    parser.add_argument("--min-length", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        os.environ["ALLOYFLOW_THREADS"] = str(args.threads)

    from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, get_calculator
    from alloyflow.engine import ResultStore
    from alloyflow.workflows.flows.hull import run_hull_relaxations
    from alloyflow.workflows.jobs.phonons import PhononMaker
    from alloyflow.workflows.jobs.phonons import DEFAULT_MIN_LENGTH

    calculator = args.calculator or DEFAULT_CALCULATOR
    min_length = args.min_length or DEFAULT_MIN_LENGTH
    get_calculator(calculator)
    with tempfile.TemporaryDirectory() as tmp, ResultStore(tmp) as store:
        docs, _ = run_hull_relaxations(args.system, store, calculator=calculator, phases=args.phases)
    if args.phases:
        docs = [d for d in docs if d.label in args.phases or d.formula in args.phases]
    maker = PhononMaker(calculator=calculator, min_length=min_length)
    rows, t0 = [], time.perf_counter()
    for d in docs:
        ts = time.perf_counter()
        ph = maker.run(d.structure, label=d.label)
        wall = time.perf_counter() - ts
        rows.append((d.label, ph.natoms, ph.supercell_natoms, ph.n_displacements, ph.n_force_calls, wall,
                     min(ph.min_frequency_mesh, ph.min_frequency_band if ph.min_frequency_band is not None else 0.0),
                     ph.imaginary_modes, 1000 * ph.free_energy_at(300.0)))
    total = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    info = calculator_info(calculator)
    print(f"phonon benchmark: {info['label']} {info['version']}, {args.system}, min supercell length {min_length:g} Å, "
          f"torch threads={os.environ.get('ALLOYFLOW_THREADS', 'all')}, cores={os.cpu_count()}")
    print(f"{'phase':<12}{'atoms':>6}{'supercell':>10}{'displ.':>7}{'force calls':>12}{'seconds':>9}"
          f"{'s/call':>8}{'min ν THz':>10}  imag.  F_vib(300 K) meV/at")
    for label, n, nsc, ndisp, calls, wall, fmin, imag, f300 in rows:
        print(f"{label:<12}{n:>6}{nsc:>10}{ndisp:>7}{calls:>12}{wall:>9.1f}{wall / calls:>8.2f}{fmin:>10.2f}  "
              f"{'yes' if imag else 'no':<5}  {f300:.1f}")
    calls = sum(r[4] for r in rows)
    print(f"\nphases: {len(rows)}, force calls: {calls}, phonon wall time: {total:.1f} s, peak RSS: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
