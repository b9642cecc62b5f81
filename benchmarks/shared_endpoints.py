"""One endpoint relaxation per symmetry-distinct endpoint against one per band endpoint, side by side.

    python benchmarks/shared_endpoints.py [--phase LiSn] [--min-image-distance 10] [--repeats 1]
                                          [--screen] [--json benchmarks/out/shared_endpoints.json]

Each run computes the barrier flow of ``--phase`` on SevenNet-0 in a fresh
store and a fresh process (imports and model load included; 1 torch thread
unless ``ALLOYFLOW_THREADS`` says otherwise), alternating

- per band: ``NebMaker(share_endpoints=False)``, each band relaxes both its
  endpoints (3 seeded trials each), as alloyflow did before;
- shared: the default, one ``EndpointMaker`` job per symmetry-distinct
  endpoint, carried over to the bands (``alloyflow.workflows.jobs.neb_endpoints``).

Reported per mode: wall time of the whole flow (the cell relaxation, the
same on both sides, included), force calls of endpoint relaxations and of
the bands, and each hop's barrier; then the ratio and the largest barrier
difference. Nothing is asserted; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DRIVER = r"""
import json, sys, time
from alloyflow.engine.store import ResultStore, as_dict
from alloyflow.workflows.flows.barriers import run_barriers
from alloyflow.workflows.jobs.neb import NebMaker
phase, mode, folder, distance, screen = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5] == "1"
neb = NebMaker(calculator="sevennet", share_endpoints=(mode == "shared"))
labels = []
t0 = time.perf_counter()
with ResultStore(folder) as store:
    result = run_barriers(phase, store, calculator="sevennet", min_image_distance=distance, neb_maker=neb,
                          screen=screen, host_check=False, progress=lambda label, reused: labels.append(label))
    wall = time.perf_counter() - t0
    endpoint_jobs = [as_dict(d["output"]) for d in store.jobstore.query({"output.@class": "EndpointDocument"})]
hops = [{"id": h.id, "forward": h.forward_barrier, "reverse": h.reverse_barrier, "band_calls": h.force_calls,
         "endpoint_calls": h.endpoint_force_calls, "converged": h.converged} for h in result.hops
        if h.forward_barrier is not None]
print("RESULT " + json.dumps({"wall": wall, "hops": hops, "jobs": len(labels), "natoms": result.supercell.natoms,
                              "endpoint_jobs": len(endpoint_jobs),
                              "endpoint_job_calls": sum(d["force_calls"] for d in endpoint_jobs)}))
"""


def one_run(phase: str, mode: str, distance: float, screen: bool) -> dict:
    env = {**os.environ, "ALLOYFLOW_THREADS": os.environ.get("ALLOYFLOW_THREADS", "1"), "OPENBLAS_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory(prefix="shared-endpoints-") as tmp:
        load = os.getloadavg()[0]
        res = subprocess.run([sys.executable, "-c", DRIVER, phase, mode, tmp, str(distance), str(int(screen))],
                             env=env, capture_output=True, text=True, timeout=7200)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(res.stderr[-3000:])
    out = json.loads(line[7:])
    out.update(mode=mode, loadavg_before=round(load, 2),
               endpoint_calls=out["endpoint_job_calls"] + sum(h["endpoint_calls"] or 0 for h in out["hops"]),
               band_calls=sum(h["band_calls"] or 0 for h in out["hops"]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", default="LiSn")
    ap.add_argument("--min-image-distance", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--screen", action="store_true", help="screen the hops first, as the study does")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/shared_endpoints.json"))
    args = ap.parse_args(argv)
    runs = []
    for _ in range(args.repeats):
        for mode in ("per band", "shared"):
            runs.append(one_run(args.phase, mode, args.min_image_distance, args.screen))
            r = runs[-1]
            print(f"{mode}: {r['wall']:.0f} s, {r['jobs']} jobs, endpoint force calls {r['endpoint_calls']}, band "
                  f"force calls {r['band_calls']}, load {r['loadavg_before']}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(runs, indent=1))

    def med(mode, key):
        return statistics.median(r[key] for r in runs if r["mode"] == mode)

    a, b = (next(r for r in runs if r["mode"] == m) for m in ("per band", "shared"))
    diff = max((abs(x["forward"] - y["forward"]) for x, y in zip(a["hops"], b["hops"]) if x["id"] == y["id"]),
               default=float("nan"))
    print(f"\n{args.phase}, {a['natoms']}-atom cell, {len(a['hops'])} bands, SevenNet-0, "
          f"{os.environ.get('ALLOYFLOW_THREADS', '1')} torch thread(s), median of {args.repeats}")
    print("| mode | wall (s) | endpoint relaxation jobs | endpoint force calls | band force calls |")
    print("|---|---|---|---|---|")
    for m in ("per band", "shared"):
        print(f"| {m} | {med(m, 'wall'):.0f} | {med(m, 'endpoint_jobs'):.0f} | {med(m, 'endpoint_calls'):.0f} "
              f"| {med(m, 'band_calls'):.0f} |")
    print(f"ratio shared / per band: wall {med('shared', 'wall') / med('per band', 'wall'):.2f}, endpoint force calls "
          f"{med('shared', 'endpoint_calls') / max(med('per band', 'endpoint_calls'), 1):.2f}; largest forward "
          f"barrier difference {1000 * diff:.2f} meV")
    return 0


if __name__ == "__main__":
    sys.exit(main())
