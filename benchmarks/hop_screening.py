"""Screening hops before converging them, against converging every hop: force calls and thresholds.

    python benchmarks/hop_screening.py --out STUDY_DIR [--factor 0.5] [--threads 1]

STUDY_DIR is the output folder of a study (or of ``alloyflow barriers``) run
with screening off (``--no-screen``) or from before screening existed, so
that every distinct hop has a converged CI-NEB in its store. For each
``barriers.json`` under it, the hops are planned again from the stored
relaxed cell, each hop is screened (``ScreenMaker``: single points along the
IDPP path between the unrelaxed endpoints), and then:

- the ratio converged cost / screened estimate per hop (what
  ``alloyflow.analysis.screening.SCREEN_FACTOR`` must stay below);
- the screening rule (``hops_to_converge``) is replayed with the stored
  converged costs: which hops it converges, in how many rounds;
- force calls: every hop converged (band + endpoint relaxations, from the
  stored NEB documents) against screens of all hops + the converged subset;
- whether the 1D/2D/3D thresholds from the subset equal those from all hops.

Not a test: nothing is asserted. Writes ``benchmarks/out/hop_screening.json``
and prints a markdown table. Force calls do not depend on machine load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def settings_for(result):
    from alloyflow.workflows.flows.hop_plan import BarrierSettings

    s = result.settings
    kw = {"min_image_distance": s["min_image_distance"], "max_hops": s.get("max_hops"),
          "max_length": s.get("max_length")}
    if result.mode.startswith("dilute"):
        kw.update(dilute=True, dilute_mode=result.mode.split("-", 1)[1])
        n_host = result.supercell.natoms - (1 if kw["dilute_mode"] == "interstitial" else 0)
        kw["n_host_sites"] = n_host if result.settings.get("n_host_sites") is None else result.settings["n_host_sites"]
    elif result.mode == "interstitial":
        kw["mechanism"] = "interstitial"
    return BarrierSettings(**kw)


def replay(network, screened: dict, full: dict, factor: float):
    """Run the screening rule against the stored converged costs; (converged ids, rounds)."""
    from alloyflow.analysis.screening import hops_to_converge

    done: dict = {}
    rounds = 0
    while True:
        nxt = hops_to_converge(network, screened, done, factor)
        if not nxt:
            return sorted(done), rounds
        rounds += 1
        done.update({i: full.get(i) for i in nxt})


def thresholds(network, costs: dict):
    from alloyflow.analysis.percolation import graph_edges, percolation_analysis

    t, _ = percolation_analysis(network.n_sites, graph_edges(network, costs))
    return t


def _mev(x) -> str:
    return "–" if x is None else f"{1000 * x:.0f}"


def stored_results(store, out: Path):
    """Every barrier result of the folder: ``barriers.json`` files, else the store's collect jobs (a running study)."""
    from alloyflow.analysis.migration import BarrierResult
    from alloyflow.io.barriers import read_barrier_json

    paths = sorted(out.rglob("barriers.json"))
    if paths:
        return [read_barrier_json(p) for p in paths]
    docs = store.jobstore.query({"name": "collect_barriers"}, properties=["uuid"])
    results = [store.document(d["uuid"], BarrierResult) for d in docs]
    # the results with every hop converged (screened studies leave some without a band)
    full = {(r.phase, r.mode): r for r in results if r.screening is None}
    return sorted(full.values(), key=lambda r: (r.phase, r.mode))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="a study's output folder with every hop converged")
    ap.add_argument("--factor", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "hop_screening.json")
    args = ap.parse_args(argv)
    os.environ["ALLOYFLOW_THREADS"] = str(args.threads)
    warnings.filterwarnings("ignore")
    from pymatgen.core import Structure

    from alloyflow.engine import ResultStore
    from alloyflow.engine.keys import deterministic_uuid
    from alloyflow.workflows.flows.hop_plan import plan_hops
    from alloyflow.workflows.jobs.neb import NebDocument
    from alloyflow.workflows.jobs.screen import ScreenMaker

    store = ResultStore(args.out)  # read only: a study may be writing
    rows = []
    for result in stored_results(store, args.out):
        relaxed = Structure.from_dict(result.relaxed_structure)
        plan = plan_hops(result.phase, result.formula, relaxed, settings_for(result))
        by_id = {h.id: h for h in result.hops}
        if [e[0].id for e in plan.entries] != sorted(by_id) or len(plan.entries) < 1:
            print(f"{result.phase} ({result.mode}): the replanned hops differ from the stored ones; skipped",
                  file=sys.stderr)
            continue
        screener = ScreenMaker(calculator=result.calculator["name"])
        hops = []
        for hop, initial, final, _ in plan.entries:
            t0 = time.process_time()
            doc = screener.run(initial, final, label=f"{result.phase} hop {hop.id}")
            stored = by_id[hop.id]
            neb_calls = None
            if stored.neb_key:
                try:
                    neb = store.document(deterministic_uuid(stored.neb_key), NebDocument)
                    neb_calls = neb.force_calls + (neb.endpoint_force_calls or 0)
                except Exception:  # noqa: BLE001 (a missing document leaves the cost unknown)
                    neb_calls = None
            hops.append({"id": hop.id, "length": round(hop.length, 3), "screened": doc.estimate,
                         "converged": stored.cost, "ratio": (stored.cost / doc.estimate
                                                             if stored.cost is not None and doc.estimate > 0 else None),
                         "screen_calls": doc.force_calls, "neb_calls": neb_calls,
                         "screen_cpu_s": time.process_time() - t0})
        screened = {h["id"]: h["screened"] for h in hops}
        full = {h["id"]: h["converged"] for h in hops}
        exact = thresholds(plan.network, full)
        per_factor = {}
        for f in args.factor:
            chosen, rounds = replay(plan.network, screened, full, f)
            sub = thresholds(plan.network, {i: full[i] for i in chosen})
            calls = sum(h["screen_calls"] for h in hops) + sum(h["neb_calls"] or 0 for h in hops if h["id"] in chosen)
            per_factor[str(f)] = {"converged": chosen, "rounds": rounds, "force_calls": calls,
                                  "thresholds": sub, "exact": all(
                                      (a is None and b is None) or (a is not None and b is not None
                                                                    and math.isclose(a, b, abs_tol=1e-9))
                                      for a, b in zip(sub.values(), exact.values()))}
        rows.append({"phase": result.phase, "mode": result.mode, "natoms": result.supercell.natoms,
                     "calculator": result.calculator.get("label"), "hops": hops, "thresholds": exact,
                     "full_force_calls": sum(h["neb_calls"] or 0 for h in hops), "factors": per_factor})
        shown = [f"hop {h['id']} {1000 * h['screened']:.0f}/{_mev(h['converged'])}" for h in hops]
        print(f"{result.phase} ({result.mode}) screened/converged meV: {', '.join(shown)}", file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"out": str(args.out), "threads": args.threads, "rows": rows}, indent=1))
    print(markdown(rows, args.factor))
    return 0


def markdown(rows, factors) -> str:
    ratios = [h["ratio"] for r in rows for h in r["hops"] if h["ratio"] is not None]
    lines = [f"converged / screened cost over {len(ratios)} hops: min {min(ratios):.2f}, "
             f"median {sorted(ratios)[len(ratios) // 2]:.2f}, max {max(ratios):.2f}" if ratios else "no ratios", ""]
    head = "| phase | mechanism | atoms | hops | all hops: force calls | " + " | ".join(
        f"factor {f}: hops converged, force calls, exact" for f in factors) + " |"
    lines += [head, "|" + "---|" * (4 + len(factors)) + "---|"]
    totals = {str(f): 0 for f in factors}
    total_full = 0
    for r in rows:
        total_full += r["full_force_calls"]
        cells = [r["phase"], r["mode"], str(r["natoms"]), str(len(r["hops"])), str(r["full_force_calls"])]
        for f in factors:
            pf = r["factors"][str(f)]
            totals[str(f)] += pf["force_calls"]
            cells.append(f"{len(pf['converged'])}, {pf['force_calls']}, {'yes' if pf['exact'] else 'NO'}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| all | | | | " + str(total_full) + " | " + " | ".join(
        f"{totals[str(f)]} ({totals[str(f)] / max(total_full, 1):.2f}x)" for f in factors) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
