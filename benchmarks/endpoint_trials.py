"""Replay the endpoint-trial rule on a study's stored endpoint relaxations: would fewer trials choose the same?

    python benchmarks/endpoint_trials.py --out STUDY_DIR [--tol-meV 1]

Each stored ``EndpointDocument`` holds the energies of its trials: the
symmetric one (relaxed keeping the vacancy cell's symmetry), then the
seeded rattles, in order. The rule (``symmetric_minimum``) keeps the
symmetric trial unless a rattle lies more than ``ENDPOINT_TOL`` below it.
This replays the rule on the first ``k`` trials for k = 1 .. all and
reports, per phase, whether the choice (its energy) would be the same, and
the candidate *early stop*: after the first rattle, stop when that rattle
came back to the symmetric minimum (within ``--tol-meV``), or with
``--not-lower`` whenever it found nothing lower than the rule's tolerance,
else run the rest. Force calls saved are estimated as the stopped trials' share of the
endpoint's calls (the trials' own counts are not stored). Nothing is
computed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def chosen(energies: list[float], tol: float) -> float:
    """The energy ``symmetric_minimum`` (the flow's own rule) chooses among converged trials of these energies."""
    from types import SimpleNamespace

    from alloyflow.workflows.jobs.neb_endpoints import symmetric_minimum

    return symmetric_minimum([SimpleNamespace(energy=e, converged=True) for e in energies], tol).energy


def replay(docs: list[dict], tol: float, stop_tol: float) -> dict:
    """Per phase: endpoints, trials, how many choices change with k trials and with the early stop."""
    rows = defaultdict(lambda: {"endpoints": 0, "trials": 0, "force_calls": 0, "changed_by_k": defaultdict(int),
                                "early_stopped": 0, "early_changed": [], "calls_saved": 0.0})
    for d in docs:
        e = d["trial_energies"]
        r = rows[d["phase"]]
        r["endpoints"] += 1
        r["trials"] += len(e)
        r["force_calls"] += d["force_calls"]
        full = chosen(e, tol)
        for k in range(1, len(e)):
            if abs(chosen(e[:k], tol) - full) > 1e-6:
                r["changed_by_k"][k] += 1
        # stop_tol None: stop whenever the first rattle does not beat the symmetric trial (by more than tol)
        if len(e) > 2 and (e[1] >= e[0] - tol if stop_tol is None else abs(e[1] - e[0]) <= stop_tol):
            r["early_stopped"] += 1
            r["calls_saved"] += d["force_calls"] * (len(e) - 2) / len(e)
            if abs(chosen(e[:2], tol) - full) > 1e-6:
                r["early_changed"].append({"label": d["label"], "trials_meV": [round(1e3 * (x - e[0]), 1) for x in e]})
    return {k: {**v, "changed_by_k": dict(v["changed_by_k"])} for k, v in rows.items()}


def endpoint_documents(out: Path) -> list[dict]:
    from alloyflow.engine import ResultStore

    docs = []
    with ResultStore(out) as store:
        for doc in store.jobstore.query({"output.@class": "EndpointDocument"}, properties=["output"]):
            o = doc["output"]
            label = o.get("label", "")
            docs.append({"label": label, "phase": label.split(" ")[0] if label else "?",
                         "trial_energies": o["trial_energies"], "force_calls": o["force_calls"],
                         "symmetric": o.get("symmetric", False)})
    return docs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="a study's (or barriers run's) output folder")
    ap.add_argument("--tol-meV", type=float, default=1.0, help="early stop: the first rattle within this of the symmetric")
    ap.add_argument("--not-lower", action="store_true",
                    help="early stop whenever the first rattle is not lower than the symmetric trial by more than "
                         "the rule's tolerance (instead of --tol-meV)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    from alloyflow.workflows.jobs.neb_endpoints import ENDPOINT_TOL

    docs = endpoint_documents(args.out)
    if not docs:
        raise SystemExit(f"no endpoint relaxations stored in {args.out}")
    rows = replay(docs, ENDPOINT_TOL, None if args.not_lower else args.tol_meV / 1e3)
    when = (f"is not more than {1e3 * ENDPOINT_TOL:g} meV below" if args.not_lower
            else f"is within {args.tol_meV:g} meV of")
    print(f"{len(docs)} endpoint relaxations in {args.out} (symmetric-minimum tolerance {1e3 * ENDPOINT_TOL:g} meV; "
          f"early stop when the first rattle {when} the symmetric trial)\n")
    print("| phase | endpoints | force calls | choice changed with 1 / 2 trials | early stop: endpoints stopped, "
          "choices changed, calls saved (est.) |")
    print("|---|---|---|---|---|")
    total = defaultdict(float)
    for phase, r in sorted(rows.items()):
        ch = " / ".join(str(r["changed_by_k"].get(k, 0)) for k in (1, 2))
        print(f"| {phase} | {r['endpoints']} | {r['force_calls']} | {ch} | {r['early_stopped']}, "
              f"{len(r['early_changed'])}, {r['calls_saved']:.0f} |")
        for k in ("endpoints", "force_calls", "early_stopped", "calls_saved"):
            total[k] += r[k]
        total["early_changed"] += len(r["early_changed"])
    print(f"| all | {total['endpoints']:.0f} | {total['force_calls']:.0f} | | {total['early_stopped']:.0f}, "
          f"{total['early_changed']:.0f}, {total['calls_saved']:.0f} "
          f"({total['calls_saved'] / max(total['force_calls'], 1):.0%}) |")
    changed = [c for r in rows.values() for c in r["early_changed"]]
    for c in changed:
        print(f"- early stop changes {c['label']}: trials {c['trials_meV']} meV from the symmetric one")
    print("\nTrial energies (meV from the symmetric trial) and force calls per endpoint:")
    for d in docs:
        print(f"- {d['label']}: {[round(1e3 * (x - d['trial_energies'][0]), 1) for x in d['trial_energies']]}, "
              f"{d['force_calls']}")
    dest = ROOT / "benchmarks" / "out" / "endpoint_trials.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"study": str(args.out), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
