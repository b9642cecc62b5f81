"""Fidelity of the offline potentials against GPAW (PBE): formation energies and barriers.

    python benchmarks/fidelity.py [--out DIR] [--potentials sevennet,chgnet,...] [--no-finetune]

1. Formation energies of small Li-In and Li-Sn phases: each potential relaxes
   each phase (cell and ions); GPAW single points on the SevenNet-0 geometries
   give the reference (GPAW//SevenNet-0, a geometry error of second order).
   Energies are relative to the same potential's Li, In and beta-Sn.
2. Barriers of the shortest vacancy hop of LiIn and Li2Sn5 in small cells
   (``--min-image-distance``, 3 images): each potential's own CI-NEB band
   (ML) and GPAW single points on its endpoints and climbing image (DFT//ML).
3. Fine-tuned: the active-learning loop (``alloyflow.ml.active``)
   starting from SevenNet-0's bands of both phases, GPAW labels, one
   fine-tuned SevenNet-0 for both phases; its barriers (ML) and their
   DFT//ML refinement, and its formation energies.

Everything is a keyed job in ``<out>/store``: an interrupted run resumes, a
rerun only prints. Costs (DFT single points and their wall time, training
time) are printed beside the numbers. Not a CI test: about an hour of one
core for GPAW on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

POTENTIALS = ("sevennet", "chgnet", "sevennet-mf0", "sevennet-l3i5")
FORMATION_PHASES = {"Li-In": ("Li", "In", "LiIn", "Li3In2", "LiIn3", "Li3In"),
                    "Li-Sn": ("Li", "Sn", "LiSn", "Li5Sn2", "Li2Sn5")}
BARRIER_PHASES = (("LiIn", "Li-In"), ("Li2Sn5", "Li-Sn"))
ELEMENT_PHASES = {"Li": "Li", "In": "In", "Sn": "Sn"}  # beta-Sn: the library's "Sn"


def _relaxed(store, calc, lib, system, name):
    from alloyflow.engine import run_cached
    from alloyflow.workflows.flows.hull import primitive
    from alloyflow.workflows.jobs.relax import RelaxationDocument, RelaxMaker

    job = RelaxMaker(calculator=calc, relax_cell=True).keyed_job(primitive(lib.get(name, system).structure), label=name)
    run_cached(job, store)
    out = store.output(job.uuid)
    return RelaxationDocument.model_validate(out if isinstance(out, dict) else out.model_dump())


def _formation(energy_per_atom: dict, comps: dict) -> dict:
    """eV/atom relative to the element phases of the same method."""
    out = {}
    for name, comp in comps.items():
        if len(comp) == 1:
            continue
        n = sum(comp.values())
        out[name] = energy_per_atom[name] - sum(c / n * energy_per_atom[ELEMENT_PHASES[el]] for el, c in comp.items())
    return out


def formation_energies(store, calcs, lib, dft_kwargs, log):
    from alloyflow.workflows.jobs.labels import LabelMaker, single_point

    rows, cost = {}, {"dft_single_points": 0, "dft_seconds": 0.0}
    for system, names in FORMATION_PHASES.items():
        comps = {n: {el.symbol: c for el, c in lib.get(n, system).composition.items()} for n in names}
        per_calc = {}
        for calc in calcs:
            t0 = time.perf_counter()
            docs = {n: _relaxed(store, calc, lib, system, n) for n in names}
            per_calc[calc] = (docs, _formation({n: d.energy_per_atom for n, d in docs.items()}, comps))
            log(f"{system} {calc}: relaxed {len(names)} phases in {time.perf_counter() - t0:.0f} s")
        gpaw_e = {}
        maker = LabelMaker(calculator="gpaw", calculator_kwargs=dft_kwargs)
        for n, d in per_calc["sevennet"][0].items():
            doc, reused, error = single_point(maker, d.structure, f"{system} {n}", store)
            if doc is None:
                raise SystemExit(f"GPAW single point on {n} failed: {error}")
            gpaw_e[n] = doc["energy"] / doc["natoms"]
            if not reused:
                cost["dft_single_points"] += 1
                cost["dft_seconds"] += doc["elapsed_seconds"]
            log(f"{system} GPAW//SevenNet-0 {n}: {doc['elapsed_seconds']:.0f} s{' (stored)' if reused else ''}")
        ref = _formation(gpaw_e, comps)
        for n in ref:
            rows[n] = {"GPAW//SevenNet-0": ref[n], **{calc: per_calc[calc][1][n] for calc in calcs}}
    return rows, cost


def bands_for(store, lib, calc, min_image_distance, log):
    from alloyflow.ml.active import bands_from_barriers
    from alloyflow.workflows.flows.barriers import run_barriers

    bands = []
    for phase, system in BARRIER_PHASES:
        t0 = time.perf_counter()
        result = run_barriers(phase, store, calculator=calc, system=system, library=lib, n_images=3, max_hops=1,
                              min_image_distance=min_image_distance)
        found = bands_from_barriers(result, store)
        log(f"{phase} {calc}: {result.supercell.natoms} atoms, "
            f"{', '.join(f'{1000 * b.forward_barrier:.0f} meV' for b in found) or 'no band'} "
            f"({time.perf_counter() - t0:.0f} s)")
        bands += found
    return bands


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("../alloyflow-out/fidelity"))
    ap.add_argument("--potentials", default=",".join(POTENTIALS))
    ap.add_argument("--min-image-distance", type=float, default=6.0)
    ap.add_argument("--ecut", type=float, default=350.0, help="GPAW cutoff for barriers, eV")
    ap.add_argument("--kpt-density", type=float, default=3.0, help="GPAW k-point density for barriers, 1/Å")
    ap.add_argument("--hull-ecut", type=float, default=400.0)
    ap.add_argument("--hull-kpt-density", type=float, default=4.0)
    ap.add_argument("--refine-potentials", default="sevennet,chgnet",
                    help="potentials whose own bands get DFT single points (the others: ML barriers only)")
    ap.add_argument("--rattle", type=int, default=0, help="rattled copies per endpoint in the training set")
    ap.add_argument("--converge", action="store_true", help="also run the DFT settings convergence on the LiIn band")
    ap.add_argument("--no-finetune", action="store_true")
    ap.add_argument("--no-formation", action="store_true")
    ap.add_argument("--no-barriers", action="store_true", help="formation energies only (implies --no-finetune)")
    ap.add_argument("--iterations", type=int, default=1, help="fine-tuning iterations of the active-learning loop")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args(argv)

    import alloyflow  # noqa: F401  (thread settings)
    from alloyflow.calculators import calculator_info
    from alloyflow.structures.library import StructureLibrary
    from alloyflow.ml.active import active_learning, format_active_learning
    from alloyflow.engine import ResultStore
    from alloyflow.workflows.jobs.refine import format_refined, refine_band

    calcs = [c.strip() for c in args.potentials.split(",") if c.strip()]
    if "sevennet" not in calcs:
        calcs.insert(0, "sevennet")
    lib = StructureLibrary()
    args.out.mkdir(parents=True, exist_ok=True)
    dft_b = {"ecut": args.ecut, "kpt_density": args.kpt_density}
    dft_h = {"ecut": args.hull_ecut, "kpt_density": args.hull_kpt_density}
    report: dict = {"settings": {"barrier_dft": dft_b, "hull_dft": dft_h, "min_image_distance": args.min_image_distance},
                    "calculators": {c: calculator_info(c) for c in calcs}}

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    with ResultStore(args.out) as store:
        barriers, ml_only = {}, {}
        refine_calcs = {c.strip() for c in args.refine_potentials.split(",")}
        for calc in ([] if args.no_barriers else calcs):
            for band in bands_for(store, lib, calc, args.min_image_distance, log):
                if calc not in refine_calcs:
                    ml_only[(band.label.split()[0], calc)] = band
                    continue
                r = refine_band(band, store, calculator="gpaw", calculator_kwargs=dft_b)
                log(format_refined(r))
                barriers[(band.label.split()[0], calc)] = r
        report["ml_only_barriers"] = [{"phase": p, "calculator": c, "ml_forward_barrier": b.forward_barrier,
                                       "natoms": len(b.images[0])} for (p, c), b in ml_only.items()]
        report["barriers"] = [{"phase": p, "calculator": c, **r.model_dump(include={
            "ml_forward_barrier", "dft_forward_barrier", "dft_seconds", "n_single_points", "n_reused",
            "dft_saddle_shifted", "failures"})} for (p, c), r in barriers.items()]

        al = None
        if not (args.no_finetune or args.no_barriers):
            al = active_learning(lambda c: bands_for(store, lib, c, args.min_image_distance, log), store, args.out,
                                 "li-in-sn-ft", dft="gpaw", dft_kwargs=dft_b, tolerance=0.03,
                                 max_iterations=args.iterations, epochs=args.epochs, n_rattle=args.rattle, log=log)
            log(format_active_learning(al))
            report["active_learning"] = json.loads(al.model_dump_json())
            if al.final_calculator != "sevennet":
                calcs.append(al.final_calculator)
                for b in al.iterations[-1].barriers:
                    barriers[(b.label.split()[0], al.final_calculator)] = b

        if args.converge:
            from alloyflow.workflows.jobs.dft_convergence import converge_for_band

            band = next(b for b in bands_for(store, lib, "sevennet", args.min_image_distance, log)
                        if b.label.startswith("LiIn"))
            conv = converge_for_band(band, store, calculator="gpaw", tolerance=0.01)
            log(conv.summary())
            report["convergence"] = json.loads(conv.model_dump_json())

        if not args.no_formation:
            rows, cost = formation_energies(store, calcs, lib, dft_h, log)
            report["formation"], report["formation_cost"] = rows, cost

    (args.out / "fidelity.json").write_text(json.dumps(report, indent=2, default=str))
    print()
    print(format_tables(report, barriers, calcs, al, ml_only))
    return 0


def _conv_text(c) -> str:
    from alloyflow.workflows.jobs.dft_convergence import ConvergenceResult

    return ConvergenceResult.model_validate(c).summary()


def _m(x):
    return "–" if x is None else f"{1000 * x:.0f}"


def format_tables(report, barriers, calcs, al, ml_only=None) -> str:
    lines = [f"Barriers (meV), shortest vacancy hop, {report['settings']['min_image_distance']:g} Å cells; "
             f"DFT//ML = GPAW PBE (PW {report['settings']['barrier_dft']['ecut']:g} eV, k-density "
             f"{report['settings']['barrier_dft']['kpt_density']:g}/Å) on each potential's own band", "",
             "| phase | potential | ML | DFT//ML | ML − DFT//ML | DFT single points | DFT s |", "|---|---|---|---|---|---|---|"]
    for (phase, calc), r in barriers.items():
        err = None if r.dft_forward_barrier is None else r.ml_forward_barrier - r.dft_forward_barrier
        lines.append(f"| {phase} | {r.ml_calculator.get('model')} | {_m(r.ml_forward_barrier)} | "
                     f"{_m(r.dft_forward_barrier)} | {_m(err)} | {len(r.energies)} ({r.n_single_points} new) | "
                     f"{r.dft_seconds:.0f} |")
    for (phase, calc), band in (ml_only or {}).items():
        ref = barriers.get((phase, "sevennet"))
        dref = None if ref is None or ref.dft_forward_barrier is None else band.forward_barrier - ref.dft_forward_barrier
        lines.append(f"| {phase} | {band.calculator.get('model')} | {_m(band.forward_barrier)} | (not refined) | "
                     f"{_m(dref)} vs DFT//SevenNet-0 | 0 | 0 |")
    if "convergence" in report:
        lines += ["", "DFT settings check: " + _conv_text(report["convergence"])]
    if al:
        lines += ["", f"Fine-tuning (active learning): {al.stop_reason}; {al.dft_single_points} DFT single points "
                  f"({al.dft_seconds:.0f} s), training {al.train_seconds:.0f} s"]
        for it in al.iterations:
            if it.finetune:
                lines.append(f"- {it.finetune.summary()}")
    if "formation" in report:
        rows = report["formation"]
        lines += ["", "Formation energies (meV/atom); reference GPAW PBE (PW "
                  f"{report['settings']['hull_dft']['ecut']:g} eV, k-density {report['settings']['hull_dft']['kpt_density']:g}/Å)"
                  " on SevenNet-0 geometries", "",
                  "| phase | GPAW//SevenNet-0 | " + " | ".join(calcs) + " |", "|---" * (len(calcs) + 2) + "|"]
        for name, row in rows.items():
            lines.append(f"| {name} | {_m(row['GPAW//SevenNet-0'])} | " + " | ".join(_m(row.get(c)) for c in calcs) + " |")
        mae = {c: float(np.mean([abs(r[c] - r["GPAW//SevenNet-0"]) for r in rows.values()])) for c in calcs}
        lines.append("| MAE vs GPAW | | " + " | ".join(f"{1000 * mae[c]:.1f}" for c in calcs) + " |")
        c = report["formation_cost"]
        lines.append(f"\nGPAW formation energies: {c['dft_single_points']} single points, {c['dft_seconds']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
