"""CI-NEB barrier bias and cost per band optimizer and climbing-image tolerance (issue 18, items 1 and 4).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/neb_bias.py \
        [--cases emt:Cu emt:Al sevennet:Li sevennet:LiSn sevennet:Li2Sn5] \
        [--optimizers ODE BFGS LBFGS FIRE] [--climb-fmax none 0.02 0.01] [--fmax 0.05] \
        [--ref-fmax 0.005] [--ref-optimizers BFGS] [--report]

For each case (calculator:phase): one vacancy hop, endpoints relaxed once at
fixed cell (keeping the vacancy cell's symmetry, as ``NebMaker``'s first
trial does, to 0.005 eV/Å) and shared by every band, then ``NebMaker`` bands
(``relax_endpoints=False``, IDPP start, climbing image, improved tangent, 5
images) for each optimizer and climbing-image tolerance ``climb_fmax`` at
``--fmax``, and a reference band converged to ``--ref-fmax`` on every image.
The bias is a band's barrier minus the reference's (meV). Force calls are
single-structure evaluations of the band (``NebDocument.force_calls``).

Cases: ``emt:Cu`` and ``emt:Al`` are fcc vacancy hops in a 2x2x2
conventional cell (31 atoms) on ASE's EMT; ``sevennet:<phase>`` (or another
registry calculator) the shortest distinct Li vacancy hop of a library phase
(``benchmarks/neb.py`` ``hop_endpoints``) in a supercell with images at least
``--min-image-distance`` Å apart (Li 14, LiSn 23, Li2Sn5 41 atoms at 7 Å).

Each case is written to ``benchmarks/out/neb_bias/<calculator>_<phase>.json``;
the markdown tables printed at the end cover every case stored there
(``--report`` prints them without computing). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ALLOYFLOW_THREADS", "1")

OUT = Path(__file__).resolve().parent / "out" / "neb_bias"


def emt_name() -> str:
    """Register ASE's EMT as a user calculator "emt-bench" and return the name."""
    from ase.calculators.emt import EMT

    from alloyflow.calculators import registry

    if "emt-bench" not in registry.available_calculators():
        registry.register_calculator(registry.CalculatorSpec(
            name="emt-bench", model="EMT", kind="test", package="ase", description="ASE's EMT (Cu, Al, ...)",
            factory=lambda **kw: EMT()), user=True)
    return "emt-bench"


def fcc_vacancy_hop(element: str):
    """Vacancy on atom 0 of a 2x2x2 conventional fcc cell (31 atoms); a nearest neighbour hops into it."""
    import numpy as np
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = bulk(element, "fcc", cubic=True).repeat(2)
    j = int(np.argsort(atoms.get_all_distances(mic=True)[0])[1])
    initial = atoms.copy()
    del initial[0]
    final = initial.copy()
    final.positions[j - 1] = atoms.positions[0]
    return AseAtomsAdaptor.get_structure(initial), AseAtomsAdaptor.get_structure(final)


def case_endpoints(case: str, min_image_distance: float):
    """(calculator name, initial, final, info) of ``case`` ("emt:Cu", "sevennet:LiSn", ...), endpoints unrelaxed."""
    calc, phase = case.split(":")
    if calc == "emt":
        initial, final = fcc_vacancy_hop(phase)
        return emt_name(), initial, final, {"natoms": len(initial), "generator": "fcc 2x2x2 conventional"}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from neb import hop_endpoints

    from alloyflow.structures.library import StructureLibrary

    structure = StructureLibrary().load(phase).get_primitive_structure()
    initial, final, info = hop_endpoints(structure, min_image_distance)
    return calc, initial, final, {"natoms": len(initial), **{k: v for k, v in info.items() if k != "hop"}}


def band(maker_kwargs: dict, initial, final) -> dict:
    """One ``NebMaker`` band on fixed endpoints: barrier, cost and final forces."""
    from alloyflow.workflows.jobs.neb import NebMaker

    maker = NebMaker(relax_endpoints=False, **maker_kwargs)
    t0, c0 = time.perf_counter(), time.process_time()
    doc = maker.run(initial, final, label="bias")
    return {
        "optimizer": maker.optimizer, "fmax": maker.fmax, "climb_fmax": maker.climb_fmax,
        "converged": doc.converged, "steps": doc.n_steps, "force_calls": doc.force_calls,
        "barrier": doc.forward_barrier, "max_force": doc.max_force, "climb_force": doc.climb_max_force,
        "climbing_image": doc.climbing_image, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
    }


def run_case(case: str, args) -> dict:
    from alloyflow.calculators import calculator_info
    from alloyflow.workflows.jobs.neb import ENDPOINT_SYMPREC
    from alloyflow.workflows.jobs.relax import RelaxMaker

    calc, initial, final, info = case_endpoints(case, args.min_image_distance)
    relax = RelaxMaker(calculator=calc, relax_cell=False, fix_symmetry=True, symprec=ENDPOINT_SYMPREC, fmax=0.005,
                       steps=1000)
    initial, final = relax.run(initial).structure, relax.run(final).structure
    common = {"calculator": calc, "n_images": args.n_images, "max_steps": args.max_steps}
    refs = [band({**common, "optimizer": o, "fmax": args.ref_fmax, "max_steps": 3000}, initial, final)
            for o in args.ref_optimizers]
    print(f"{case}: reference(s) " + ", ".join(
        f"{r['optimizer']} {1000 * r['barrier']:.2f} meV ({r['force_calls']} calls, conv {r['converged']})"
        for r in refs), flush=True)
    rows = []
    for optimizer in args.optimizers:
        for cf in args.climb_fmax:
            row = band({**common, "optimizer": optimizer, "fmax": args.fmax, "climb_fmax": cf}, initial, final)
            rows.append(row)
            print(f"  {optimizer:<6} climb_fmax {cf!s:<5} calls {row['force_calls']:>4} "
                  f"bias {1000 * (row['barrier'] - refs[0]['barrier']):+7.2f} meV conv {row['converged']}", flush=True)
    out = {"case": case, "calculator": calculator_info(calc), "info": info, "n_images": args.n_images,
           "fmax": args.fmax, "ref_fmax": args.ref_fmax, "references": refs, "rows": rows,
           "threads": os.environ.get("ALLOYFLOW_THREADS")}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{case.replace(':', '_')}.json").write_text(json.dumps(out, indent=1, default=str))
    return out


def report(order: list[str] | None = None) -> None:
    """Markdown tables over every case stored in ``OUT``."""
    cases = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    if order:
        cases.sort(key=lambda c: order.index(c["case"]) if c["case"] in order else len(order))
    if not cases:
        print("no stored cases")
        return
    print("\n### Reference bands\n")
    print("| case | atoms | reference | fmax eV/Å | barrier meV | force calls | converged |")
    print("|---|---|---|---|---|---|---|")
    for c in cases:
        for r in c["references"]:
            print(f"| {c['case']} | {c['info']['natoms']} | {r['optimizer']} | {r['fmax']} | "
                  f"{1000 * r['barrier']:.2f} | {r['force_calls']} | {'yes' if r['converged'] else 'NO'} |")
    settings = []
    for c in cases:
        for r in c["rows"]:
            if (r["optimizer"], r["climb_fmax"]) not in settings:
                settings.append((r["optimizer"], r["climb_fmax"]))
    names = [c["case"] for c in cases]
    print(f"\n### Bias (meV, band at fmax {cases[0]['fmax']} minus reference) / force calls\n")
    print("| optimizer | climb_fmax | " + " | ".join(names) + " | max abs bias | total calls |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for opt, cf in settings:
        cells, biases, calls = [], [], 0
        for c in cases:
            r = next((r for r in c["rows"] if (r["optimizer"], r["climb_fmax"]) == (opt, cf)), None)
            if r is None:
                cells.append("–")
                continue
            bias = 1000 * (r["barrier"] - c["references"][0]["barrier"])
            biases.append(abs(bias))
            calls += r["force_calls"]
            cells.append(f"{bias:+.2f} / {r['force_calls']}{'' if r['converged'] else ' (NC)'}")
        print(f"| {opt} | {cf if cf is not None else '–'} | " + " | ".join(cells)
              + f" | {max(biases):.2f} | {calls} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+",
                        default=["emt:Cu", "emt:Al", "sevennet:Li", "sevennet:LiSn", "sevennet:Li2Sn5"])
    parser.add_argument("--optimizers", nargs="+", default=["ODE", "BFGS", "LBFGS", "FIRE"])
    parser.add_argument("--climb-fmax", nargs="+", default=["none", "0.02", "0.01"],
                        help="climbing-image tolerances, eV/Å ('none': the band's fmax)")
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--ref-fmax", type=float, default=0.005)
    parser.add_argument("--ref-optimizers", nargs="+", default=["BFGS"])
    parser.add_argument("--n-images", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--min-image-distance", type=float, default=7.0)
    parser.add_argument("--report", action="store_true", help="print the tables of the stored cases only")
    args = parser.parse_args(argv)
    args.climb_fmax = [None if v.lower() == "none" else float(v) for v in args.climb_fmax]
    warnings.filterwarnings("ignore")
    if not args.report:
        import torch

        torch.set_num_threads(1)
        for case in args.cases:
            t0 = time.perf_counter()
            run_case(case, args)
            print(f"{case}: {time.perf_counter() - t0:.0f} s", flush=True)
    report(args.cases)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
