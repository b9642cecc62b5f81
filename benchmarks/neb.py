"""alloyflow's CI-NEB against ASE's stock CI-NEB, and batched against image-by-image.

    python benchmarks/neb.py [--phases Li LiSn] [--calculator sevennet] [--min-image-distance 7]
                             [--n-images 5] [--fmax 0.05] [--optimizers FIRE ODE] [--threads 1]

For each phase: one vacancy hop (the shortest distinct Li hop from
``alloyflow.structures.migration`` when that module exists, else the two
closest Li sites of a diagonal supercell), endpoints relaxed once at fixed cell
and shared by every run, then

- stock ASE: linear interpolation (mic=True, which the boundary-crossing hops
  need), ``NEB(method="aseneb", climb=True)``, FIRE, one calculator per image;
- alloyflow: ``NebMaker`` (IDPP, climbing image, improved tangent, each
  optimizer of ``--optimizers``), batched and, for the first optimizer, also
  image by image;
- one band (the converged one) evaluated repeatedly, batched vs image by image.

Force calls are single-structure evaluations (band and endpoints); wall and CPU
times are per NEB run, endpoint relaxation excluded. Not a test: nothing is
asserted. Other processes on the machine inflate wall times; CPU time (one
torch thread) is the steadier number.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


def simple_vacancy_hop(structure, min_image_distance: float):
    """Vacancy hop between the two closest Li sites of a diagonal supercell (fallback generator)."""
    sc = structure.copy()
    sc.make_supercell([max(1, math.ceil(min_image_distance / x)) for x in sc.lattice.abc])
    li = [i for i, s in enumerate(sc) if s.species_string == "Li"]
    dm = sc.distance_matrix[np.ix_(li, li)] + np.eye(len(li)) * 1e9
    a, b = np.unravel_index(np.argmin(dm), dm.shape)
    ia, ib = li[a], li[b]
    # Li on A moves into the vacancy on B; the image of B nearest to A keeps the hop short.
    _, image = sc[ia].distance_and_image(sc[ib])
    target = sc[ib].frac_coords + image
    initial = sc.copy()
    initial.remove_sites([ib])
    ia -= int(ib < ia)
    final = initial.copy()
    final.replace(ia, "Li", coords=target)
    return initial, final, {"natoms": len(initial), "hop_length": float(dm[a, b]), "generator": "benchmark"}


def hop_endpoints(structure, min_image_distance: float):
    try:
        from alloyflow.structures.migration import distinct_hops, vacancy_hop_endpoints
    except ImportError:
        return simple_vacancy_hop(structure, min_image_distance)
    hop = distinct_hops(structure)[0]
    initial, final, info = vacancy_hop_endpoints(structure, hop, min_image_distance=min_image_distance)
    return initial, final, {**info, "generator": "alloyflow.structures.migration"}


class CountingCalculator(Calculator):
    """Per-image ASE calculator that counts the evaluations it forwards to the shared model."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, name: str, counter: list):
        super().__init__()
        self.name_, self.counter = name, counter

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from alloyflow.workflows.jobs.batched import evaluate_batch

        super().calculate(atoms, properties, system_changes)
        ((energy, forces),) = evaluate_batch(self.name_, [self.atoms], batched=False)
        self.counter[0] += 1
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


def stock_ase_neb(initial, final, calculator, n_images, fmax, max_steps) -> dict:
    from ase.mep import NEB
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    ini = AseAtomsAdaptor.get_atoms(initial)
    fin = ini.copy()
    fin.set_scaled_positions(final.frac_coords)
    images = [ini] + [ini.copy() for _ in range(n_images)] + [fin]
    counter = [0]
    for image in images:
        image.calc = CountingCalculator(calculator, counter)
    t0, c0 = time.perf_counter(), time.process_time()
    neb = NEB(images, climb=True, method="aseneb")
    neb.interpolate(mic=True, apply_constraint=False)
    opt = FIRE(neb, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    energies = [image.get_potential_energy() for image in images]
    return {
        "method": "ASE stock (linear, aseneb, FIRE)",
        "converged": converged,
        "steps": opt.nsteps,
        "force_calls": counter[0],
        "barrier": max(energies) - energies[0],
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
    }


def alloyflow_neb(initial, final, calculator, n_images, fmax, max_steps, optimizer, batched) -> tuple[dict, object]:
    from alloyflow.workflows.jobs.neb import NebMaker

    maker = NebMaker(calculator=calculator, n_images=n_images, fmax=fmax, max_steps=max_steps,
                     optimizer=optimizer, batched=batched, relax_endpoints=False)
    t0, c0 = time.perf_counter(), time.process_time()
    doc = maker.run(initial, final, label="benchmark")
    row = {
        "method": f"alloyflow IDPP+CI+IT {optimizer} {'batched' if batched else 'one-by-one'}",
        "converged": doc.converged,
        "steps": doc.n_steps,
        "force_calls": doc.force_calls,
        "barrier": doc.forward_barrier,
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
    }
    return row, doc


def band_timing(doc, calculator, repeats: int) -> dict:
    """Evaluate the inner images of ``doc`` ``repeats`` times, batched and one by one (fresh positions each time)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from alloyflow.workflows.jobs.batched import evaluate_batch

    band = [AseAtomsAdaptor.get_atoms(s) for s in doc.images[1:-1]]
    out = {}
    for batched in (False, True, False, True):  # interleaved, so drifting load hits both alike
        wall = cpu = 0.0
        for r in range(repeats):
            for k, atoms in enumerate(band):  # a tiny shift defeats the calculators' result caches
                atoms.positions[0, 0] += 1e-4 * (r + 1) * (-1) ** k
            t0, c0 = time.perf_counter(), time.process_time()
            evaluate_batch(calculator, band, batched=batched)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
        prev = out.get(batched, (math.inf, math.inf))
        out[batched] = (min(prev[0], wall / repeats), min(prev[1], cpu / repeats))
    return {"natoms": len(band[0]), "images": len(band), "single": out[False], "batched": out[True]}


def _print_phase(phase, info, rows, timing, endpoint_seconds) -> None:
    stock = rows[0]
    print(f"\n== {phase}: {info['natoms']} atoms, hop {info.get('hop_length', float('nan')):.2f} Å "
          f"({info['generator']}), endpoint relaxation {endpoint_seconds:.0f} s")
    print(f"{'method':<44}{'conv':>5}{'steps':>6}{'calls':>7}{'barrier eV':>11}{'wall s':>8}{'cpu s':>8}"
          f"{'calls/stock':>12}{'wall/stock':>11}")
    for r in rows:
        print(f"{r['method']:<44}{'yes' if r['converged'] else 'NO':>5}{r['steps']:>6}{r['force_calls']:>7}"
              f"{r['barrier']:>11.4f}{r['wall']:>8.1f}{r['cpu']:>8.1f}"
              f"{r['force_calls'] / stock['force_calls']:>12.2f}{r['wall'] / stock['wall']:>11.2f}")
    s, b = timing["single"], timing["batched"]
    print(f"band of {timing['images']} images × {timing['natoms']} atoms, one evaluation: image-by-image "
          f"{s[0]:.3f} s wall / {s[1]:.3f} s cpu, batched {b[0]:.3f} s / {b[1]:.3f} s "
          f"-> speed-up {s[0] / b[0]:.2f}× wall, {s[1] / b[1]:.2f}× cpu")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", nargs="+", default=["Li", "LiSn"])
    parser.add_argument("--calculator", default=None)
    parser.add_argument("--min-image-distance", type=float, default=7.0)
    parser.add_argument("--n-images", type=int, default=5)
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--optimizers", nargs="+", default=["FIRE"],
                        help="alloyflow band optimizers to compare; the first is also run image by image")
    parser.add_argument("--repeats", type=int, default=3, help="band evaluations per timing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (sets ALLOYFLOW_THREADS)")
    parser.add_argument("--no-stock", action="store_true", help="skip ASE's stock NEB")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        os.environ["ALLOYFLOW_THREADS"] = str(args.threads)

    from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, get_calculator
    from alloyflow.structures.library import StructureLibrary
    from alloyflow.workflows.jobs.relax import RelaxMaker

    calculator = args.calculator or DEFAULT_CALCULATOR
    get_calculator(calculator)
    info = calculator_info(calculator)
    print(f"NEB benchmark: {info['label']} {info['version']}, torch threads={os.environ.get('ALLOYFLOW_THREADS', 'all')}, "
          f"cores={os.cpu_count()}, {args.n_images} images, fmax {args.fmax} eV/Å, "
          f"min image distance {args.min_image_distance} Å")
    lib = StructureLibrary()
    relax = RelaxMaker(calculator=calculator, relax_cell=False, fix_symmetry=False, fmax=0.02)
    summary = []
    for phase in args.phases:
        structure = lib.load(phase).get_primitive_structure()
        initial, final, hop_info = hop_endpoints(structure, args.min_image_distance)
        t0 = time.perf_counter()
        initial, final = relax.run(initial).structure, relax.run(final).structure
        endpoint_seconds = time.perf_counter() - t0
        common = (initial, final, calculator, args.n_images, args.fmax, args.max_steps)
        rows = [] if args.no_stock else [stock_ase_neb(*common)]
        docs = []
        for k, optimizer in enumerate(args.optimizers):
            row, doc = alloyflow_neb(*common, optimizer, True)
            rows.append(row)
            docs.append(doc)
            if k == 0:
                rows.append(alloyflow_neb(*common, optimizer, False)[0])
        if args.no_stock:
            rows.insert(0, rows[0])
        timing = band_timing(docs[0], calculator, args.repeats)
        _print_phase(phase, hop_info, rows, timing, endpoint_seconds)
        summary.append((phase, rows, timing))

    print("\nsummary (first alloyflow optimizer vs stock; batched vs image-by-image):")
    for phase, rows, timing in summary:
        stock, ours, ours_single = rows[0], rows[1], rows[2]
        print(f"  {phase:<8} force calls {ours['force_calls']}/{stock['force_calls']} = "
              f"{ours['force_calls'] / stock['force_calls']:.2f}, NEB wall {ours['wall'] / stock['wall']:.2f} of stock; "
              f"batched NEB {ours_single['wall'] / ours['wall']:.2f}× faster (wall), band evaluation "
              f"{timing['single'][0] / timing['batched'][0]:.2f}× (wall) / "
              f"{timing['single'][1] / timing['batched'][1]:.2f}× (cpu)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
