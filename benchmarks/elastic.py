"""Cost of the beyond-0-K descriptors: elastic moduli per phase and Vineyard attempt frequencies.

    python benchmarks/elastic.py [--calculator sevennet] [--phases Li In LiIn Sn LiSn] [--threads N]

Moduli: each library phase (primitive cell) is relaxed, then strained 24
times (6 Voigt components x 4 amounts) with the ions relaxed at fixed cell;
the table gives the force calls and wall time of the fit (the relaxation
is listed separately). Attempt frequency: a vacancy hop in a 15-atom bcc-Li
cell (the test suite's band), by the Vineyard formula in the "atom" and
"local" modes. Runs in a fresh temporary store; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings


def _bcc_li_band(calculator: str):
    import numpy as np
    from pymatgen.core import Lattice, Structure

    from alloyflow.workflows.jobs.neb import NebMaker

    a = 3.44
    ini = Structure.from_spacegroup("Im-3m", Lattice.cubic(a), ["Li"], [[0, 0, 0]])
    ini.make_supercell(2)
    ini.remove_sites([0])
    j = int(np.argmin([np.linalg.norm(site.coords - [a / 2] * 3) for site in ini]))
    fin = ini.copy()
    fin.replace(j, "Li", coords=[0, 0, 0], coords_are_cartesian=True)
    return NebMaker(calculator=calculator, n_images=3, fmax=0.05).run(ini, fin, label="bcc Li hop")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calculator", default=None)
    parser.add_argument("--phases", nargs="+", default=["Li", "In", "LiIn", "Sn", "LiSn"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        os.environ["ALLOYFLOW_THREADS"] = str(args.threads)

    from alloyflow.analysis.diffusion import diffusivity
    from alloyflow.calculators import (
        DEFAULT_CALCULATOR,
        calculator_info,
        get_calculator,
    )
    from alloyflow.structures.library import StructureLibrary
    from alloyflow.workflows.jobs.attempt import AttemptFrequencyMaker, band_states
    from alloyflow.workflows.jobs.elastic import run_elastic
    from alloyflow.engine import ResultStore

    calculator = args.calculator or DEFAULT_CALCULATOR
    info = calculator_info(calculator)
    t_load = time.perf_counter()
    get_calculator(calculator)
    t_load = time.perf_counter() - t_load
    library = StructureLibrary()
    print(f"elastic/attempt benchmark: {info['label']} {info['version']}, "
          f"torch threads={os.environ.get('ALLOYFLOW_THREADS', 'all')}, cores={os.cpu_count()}, model load {t_load:.1f} s")
    print(f"\n{'phase':<8}{'atoms':>6}{'relax s':>9}{'fit calls':>10}{'fit s':>8}{'B_VRH':>8}{'G_VRH':>8}  Born-stable")
    with tempfile.TemporaryDirectory() as tmp, ResultStore(tmp) as store:
        for name in args.phases:
            phase = library.get(name)
            t0 = time.perf_counter()
            doc = run_elastic({name: phase.structure}, store, calculator)[name]
            total = time.perf_counter() - t0
            stable = "yes" if doc.mechanically_stable else f"NO (min eig {min(doc.eigenvalues):.1f} GPa)"
            print(f"{name:<8}{len(doc.structure):>6}{total - doc.elapsed_seconds:>9.1f}{doc.n_force_calls:>10}"
                  f"{doc.elapsed_seconds:>8.1f}{doc.bulk_modulus_vrh:>8.1f}{doc.shear_modulus_vrh:>8.1f}  "
                  f"{stable}")
    print("(GPa; relaxed-ion moduli; 'relax s' includes store I/O)")

    t0 = time.perf_counter()
    band = _bcc_li_band(calculator)
    t_band = time.perf_counter() - t0
    initial, saddle, moving = band_states(band)
    a = initial.lattice.get_all_distances(initial.frac_coords[moving], band.images[-1].frac_coords[moving])[0, 0]
    barrier = max(band.forward_barrier, band.reverse_barrier)
    print(f"\nbcc Li vacancy hop (15-atom cell, 3 images): barrier {1000 * barrier:.0f} meV, hop {a:.2f} Å, "
          f"band {band.force_calls} force calls in {t_band:.1f} s")
    print(f"{'mode':<7}{'atoms':>6}{'calls':>7}{'seconds':>9}{'nu (THz)':>10}{'D(300 K)':>11}{'D(688 K)':>11}  flags")
    for mode in ("atom", "local"):
        doc = AttemptFrequencyMaker(calculator=calculator, mode=mode).run(initial, saddle, moving, label="bcc Li")
        d = [diffusivity(barrier, a, doc.nu_hz, 3, t) for t in (300.0, 688.15)]
        print(f"{mode:<7}{doc.n_atoms_in_hessian:>6}{doc.n_force_calls:>7}{doc.elapsed_seconds:>9.1f}"
              f"{doc.nu_hz / 1e12:>10.2f}{d[0]:>11.2e}{d[1]:>11.2e}  {'; '.join(doc.flags) or '-'}")
    print("(D in cm²/s per unit vacancy site fraction, d = 3; see alloyflow.analysis.diffusion)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
