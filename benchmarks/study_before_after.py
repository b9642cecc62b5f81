"""The local study before and after the workflow redesign, side by side: wall time, jobs, force calls, numbers.

    python benchmarks/study_before_after.py [--before fc6dfa0] [--calculator sevennet] [--repeats 1]

"before" is the study of a git revision (default fc6dfa0, the Python-loop
study that preceded the jobflow flows), checked out into a temporary
worktree and run with this venv (``PYTHONPATH`` points at the worktree);
"after" is this checkout. Both run the same small study as subprocesses in
fresh output folders, one torch thread each, one after the other
(alternating order over repeats), with the same work: the redesign's
additions (tie-line search, interstitial hops, seeded endpoint trials, host
check) are switched off on the "after" side so the two compute the same
jobs. Printed: wall time of each run, jobs computed, force calls (relaxation
steps + NEB band and endpoint calls, read from each store), the
after/before wall ratio, and whether hull energies and barriers agree.
Nothing is asserted. Say what else ran on the machine when you quote it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ["study", "Li-In", "--phases", "LiIn", "--barriers", "Li", "LiIn", "--min-image-distance", "8",
         "--images", "3", "--max-hops", "2", "--threads", "1", "--no-progress"]
AFTER_ONLY = ["--no-search", "--no-interstitial", "--no-host-check", "--endpoint-trials", "1"]


def _force_calls(out: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = (
        "import json, sys\n"
        "from alloyflow.engine import ResultStore\n"
        "n = 0\n"
        f"for d in ResultStore({str(out)!r}).jobstore.query({{}}, properties=['output']):\n"
        "    o = d.get('output') or {}\n"
        "    if not isinstance(o, dict): continue\n"
        "    if 'forward_barrier' in o and 'images' in o: n += o['force_calls'] + o.get('endpoint_force_calls', 0)\n"
        "    elif 'n_steps' in o and 'energy_per_atom' in o: n += o['n_steps']\n"
        "print(n)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return int(res.stdout.strip() or 0)


def _numbers(out: Path) -> dict:
    hull = json.loads((out / "Li-In" / "hull.json").read_text())
    nums = {"hull": {p["name"]: round(p["energy_per_atom"], 6) for p in hull["phases"]}}
    for path in sorted((out / "barriers").glob("*/barriers.json")):
        nums[path.parent.name] = [round(h["forward_barrier"] or 0, 4) for h in json.loads(path.read_text())["hops"]]
    return nums


def run(label: str, pythonpath: str, extra: list[str], calculator: str, tmp: Path) -> dict:
    out = tmp / f"{label}-{time.time_ns()}"
    env = {**os.environ, "PYTHONPATH": pythonpath, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "alloyflow.cli", *STUDY, "--calculator", calculator, "--out", str(out), *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{label} failed: {res.stderr[-2000:]}")
    computed = int(res.stdout.split(" job(s) computed")[0].split()[-1])
    return {"label": label, "wall": wall, "computed": computed, "force_calls": _force_calls(out),
            "numbers": _numbers(out)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="fc6dfa0", help="git revision of the 'before' study")
    parser.add_argument("--calculator", default="sevennet")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alloyflow-before-after-") as tmpdir:
        tmp = Path(tmpdir)
        worktree = tmp / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                       check=True, capture_output=True)
        try:
            rows = []
            for k in range(args.repeats):
                order = [("before", str(worktree), []), ("after", str(ROOT), AFTER_ONLY)]
                for label, path, extra in (order if k % 2 == 0 else order[::-1]):
                    rows.append(run(label, path, extra, args.calculator, tmp))
                    print(f"  {label}: {rows[-1]['wall']:.1f} s, {rows[-1]['computed']} jobs computed, "
                          f"{rows[-1]['force_calls']} force calls", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                           capture_output=True)
    before = [r for r in rows if r["label"] == "before"]
    after = [r for r in rows if r["label"] == "after"]
    print(f"\nstudy {' '.join(STUDY[1:])} --calculator {args.calculator}; cores {os.cpu_count()}; "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"{'side':<8}{'wall s (min)':>14}{'jobs':>6}{'force calls':>13}")
    for name, rs in (("before", before), ("after", after)):
        print(f"{name:<8}{min(r['wall'] for r in rs):>14.1f}{rs[0]['computed']:>6}{rs[0]['force_calls']:>13}")
    print(f"after/before wall (min over repeats): {min(r['wall'] for r in after) / min(r['wall'] for r in before):.2f}")
    same = all(a["numbers"] == before[0]["numbers"] for a in after)
    print(f"same hull energies and barriers: {same}")
    if not same:
        print(json.dumps({"before": before[0]["numbers"], "after": after[0]["numbers"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
