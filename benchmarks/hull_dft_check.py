"""DFT//ML check of a stored study's hull: GPAW single points on the ML-relaxed phases on or near its hull.

    python benchmarks/hull_dft_check.py STUDY_DIR --system Li-In [--window 0.01] [--max-atoms 9] [--threads 1]

Reads the study's ``<system>/hull.json`` and the relaxations in its store, takes
every compound with at most ``--max-atoms`` atoms (the lowest-energy
relaxation of each name) that is within ``--window`` eV/atom of the ML hull
or is a library phase, and the elements, and gives each a GPAW PBE
single point at the shipped labels' settings (``LabelMaker``: keyed and
stored in ``benchmarks/out/hull_check``, so a killed run resumes and a
repeated one computes nothing). Prints the ML and the DFT//ML formation
energies and distances to their own hulls, each element's own phase (β-Sn)
the zero as in the study's hulls. The ML hull decides which
phases are checked, so a phase the ML potential puts far above its hull
is not looked at: this asks whether what the potential calls stable is
stable in PBE on the same geometry, not the converse. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "alloyflow" / "data" / "labels"


def label_settings() -> dict:
    """The shipped labels' GPAW settings (their ``manifest.json``), so these single points share their keys."""
    settings = json.loads((LABELS / "manifest.json").read_text())["settings"]
    return {"ecut": settings["ecut"], "kpt_density": settings["kpt_density"]}


def relaxed_structures(study: Path, names: set[str]) -> dict:
    """The lowest-energy stored relaxation of each phase name in ``names`` (label -> RelaxationDocument dict)."""
    from alloyflow.engine import ResultStore

    best: dict[str, dict] = {}
    store = ResultStore(study)  # read only: no lock, so a run still using the folder (its barriers) can go on
    try:
        for doc in store.jobstore.query({}, properties=["output"]):
            out = doc.get("output")
            if not isinstance(out, dict) or "energy_per_atom" not in out or "relax_cell" not in out:
                continue
            name = out.get("label")
            if name in names and (name not in best or out["energy_per_atom"] < best[name]["energy_per_atom"]):
                best[name] = out
    finally:
        store.close_readers()
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--system", required=True)
    ap.add_argument("--window", type=float, default=0.01, help="eV/atom above the ML hull (default 0.01)")
    ap.add_argument("--max-atoms", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--store", type=Path, default=ROOT / "benchmarks" / "out" / "hull_check")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    warnings.filterwarnings("ignore")
    from pymatgen.analysis.phase_diagram import PDEntry
    from pymatgen.core import Composition, Structure

    from alloyflow.analysis.hull import build_hull
    from alloyflow.engine import ResultStore
    from alloyflow.structures.library import STATUSES
    from alloyflow.workflows.jobs.labels import LabelMaker, single_point

    hull = json.loads((args.study / args.system / "hull.json").read_text())
    library = set(STATUSES) - {"element", "predicted", "user"}  # the library's phases, at any distance
    phases = [p for p in hull["phases"] if p["status"] == "element" or (
        p["natoms"] <= args.max_atoms and (p["e_above_hull"] <= args.window or p["status"] in library))]
    docs = relaxed_structures(args.study, {p["name"] for p in phases})
    missing = [p["name"] for p in phases if p["name"] not in docs]
    if missing:
        print(f"no stored relaxation of {', '.join(missing)}: left out", file=sys.stderr)
    phases = [p for p in phases if p["name"] in docs]
    settings = label_settings()
    maker = LabelMaker(calculator="gpaw", calculator_kwargs=settings)
    dft, cpu = {}, 0.0
    with ResultStore(args.store) as store:
        for k, p in enumerate(sorted(phases, key=lambda p: p["natoms"]), 1):
            d, reused, error = single_point(maker, Structure.from_dict(docs[p["name"]]["structure"]), p["name"], store)
            if d is None:
                print(f"{p['name']}: {error}", file=sys.stderr)
                continue
            dft[p["name"]] = d["energy"] / d["natoms"]
            cpu += 0.0 if reused else d["cpu_seconds"]
            cost = "stored" if reused else f"{d['cpu_seconds']:.0f} CPU s"
            print(f"[{k}/{len(phases)}] {p['name']} ({p['natoms']} atoms): {cost}", file=sys.stderr, flush=True)
    phases = [p for p in phases if p["name"] in dft]
    ml_hull = build_hull([PDEntry(Composition(p["formula"]), p["energy_per_atom"] * Composition(p["formula"]).num_atoms,
                                  name=p["name"]) for p in phases], args.system)
    dft_hull = build_hull([PDEntry(Composition(p["formula"]), dft[p["name"]] * Composition(p["formula"]).num_atoms,
                                   name=p["name"]) for p in phases], args.system)
    print(f"\n{args.system}: {hull['calculator']['label']} relaxed geometries; DFT//ML = GPAW PBE "
          f"(PW {settings['ecut']:.0f} eV, k-density {settings['kpt_density']:.0f}/Å) on them; "
          f"{cpu:.0f} CPU s computed here; {ml_hull.reference_note}\n")
    print("| phase | status | atoms | ML formation | DFT//ML formation | ML above hull | DFT//ML above hull |")
    print("|---|---|---|---|---|---|---|")
    for p in sorted(phases, key=lambda p: (p["x_li"], p["name"])):
        if p["status"] == "element":
            continue
        e_ml, e_dft = ml_hull.phase(p["name"]), dft_hull.phase(p["name"])
        print(f"| {p['name']} | {p['status']} | {p['natoms']} | {1e3 * e_ml.formation_energy_per_atom:.1f} | "
              f"{1e3 * e_dft.formation_energy_per_atom:.1f} | {1e3 * e_ml.e_above_hull:.1f} | "
              f"{1e3 * e_dft.e_above_hull:.1f} |")
    print("\n(meV/atom; the hulls are over the phases listed, elements included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
