"""One worker against several, idle and under a background load that the benchmark starts and stops itself.

    python benchmarks/workers.py [--command "barriers LiSn"] [--workers 1 2] [--load 0 4] [--repeat 1]

Each run is the alloyflow command line in a fresh output folder (nothing
reused), with ``--workers N``; ``--load B`` starts B CPU-bound processes
for the run's duration (4 = twice the cores of a 2-core machine). Prints
wall time per run and the ratio to one worker at the same load; checks that
the barriers or hull energies written are the same whatever the workers.
Nothing is asserted. Pause other work first (the GPAW campaign:
``pkill -STOP -f "label_campaign.py run"``, then ``-CONT``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _numbers(out: Path) -> list[float]:
    """The barriers (meV) or formation energies (meV/atom) the run wrote, rounded to 0.1."""
    values = []
    for path in sorted(out.glob("barriers/*/barriers.json")):
        values += [round(h["forward_barrier"] * 1000, 1) for h in json.loads(path.read_text())["hops"]]
    for path in sorted(out.glob("*/hull.json")):
        values += [round(p["formation_energy_per_atom"] * 1000, 1) for p in json.loads(path.read_text())["phases"]]
    return values


def run_once(command: list[str], workers: int, load: int) -> tuple[float, list[float], float]:
    out = Path(tempfile.mkdtemp(prefix="alloyflow-workers-"))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    try:
        before = os.getloadavg()[0]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "alloyflow.cli", *command, "--out", str(out), "--no-progress",
                        "--workers", str(workers)], check=True, stdout=subprocess.DEVNULL,
                       env={k: v for k, v in os.environ.items() if k != "ALLOYFLOW_WORKERS"})
        wall = time.perf_counter() - t0
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    return wall, _numbers(out), before


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--command", default="barriers LiSn", help="alloyflow command and arguments")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--load", nargs="+", type=int, default=[0, 4])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    command = shlex.split(args.command)
    print(f"alloyflow {args.command}; {os.cpu_count()} cores; workers {args.workers}; busy processes {args.load}")
    print(f"{'busy':>5}{'workers':>8}{'run':>5}{'wall s':>9}{'vs 1 worker':>13}{'load avg before':>17}  same numbers")
    for load in args.load:
        base, reference = None, None
        for workers in args.workers:
            for i in range(args.repeat):
                wall, numbers, before = run_once(command, workers, load)
                base = base if base is not None else wall
                reference = reference if reference is not None else numbers
                same = numbers == reference
                print(f"{load:>5}{workers:>8}{i + 1:>5}{wall:>9.1f}{wall / base:>13.2f}{before:>17.2f}  "
                      f"{'yes' if same else 'NO'} ({len(numbers)} values)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
