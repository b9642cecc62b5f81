"""The cost of rerunning a finished study: alloyflow's store index and unchanged-file skipping against stock.

    python benchmarks/rerun.py STUDY_FOLDER [--repeats 3] [--json benchmarks/out/rerun.json]

STUDY_FOLDER is the output folder of a finished ``alloyflow study`` (its
``study.json`` gives the systems and settings). Each run copies the folder
to a temporary one and reruns ``alloyflow study`` there in a fresh process
(imports included, 1 torch thread), alternating

- stock: the job store is maggma's ``MontyStore`` (every look-up reads and
  decodes the whole collection) and every output file and figure is
  written again;
- alloyflow: ``IndexedMontyStore`` and ``save_figure_once`` / unchanged text
  files left alone (the defaults).

Wall time and peak RSS per run, the median of each, and their ratio.
Nothing is asserted; other processes on the machine inflate both sides alike
(the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DRIVER = r"""
import sys, json
from pathlib import Path
stock = sys.argv[1] == "stock"
if stock:
    import maggma.stores
    import alloyflow.engine.store as store_module
    import alloyflow.io.files as files
    store_module.IndexedMontyStore = type("StockMonty", (maggma.stores.MontyStore,), {"refresh": lambda self: self.count()})
    files._holds = lambda path, data: False
    def always(path, key, draw):
        return files.atomic_write(path, draw)
    files.save_figure_once = always
    import alloyflow.io.hull, alloyflow.io.barriers
    alloyflow.io.hull.save_figure_once = always
    alloyflow.io.barriers.save_figure_once = always
from alloyflow.commands.study import run_study
from alloyflow.workflows.flows.study import StudySettings
out = Path(sys.argv[2])
settings = json.loads((out / "study.json").read_text())["settings"]
report = run_study(StudySettings(**settings), out, progress=False)
print(json.dumps(report.data["jobs"]))
"""


def one_run(mode: str, source: Path, in_place: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="rerun-") as tmp:
        out = source if in_place else Path(tmp) / "study"
        if not in_place:
            shutil.copytree(source, out, ignore=shutil.ignore_patterns(".alloyflow.lock"))
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "ALLOYFLOW_THREADS": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", DRIVER, mode, str(out)],
                              capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{mode} rerun failed:\n{proc.stderr[-2000:]}")
        jobs = json.loads(proc.stdout.strip().splitlines()[-1])
        rss_kb = int(proc.stderr.strip().splitlines()[-1])
    return {"mode": mode, "wall_s": wall, "peak_rss_gb": rss_kb / 1e6, "jobs": jobs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/rerun.json"))
    args = ap.parse_args(argv)
    if not (args.study / "study.json").is_file():
        ap.error(f"{args.study} holds no study.json: give the output folder of a finished 'alloyflow study'")
    with tempfile.TemporaryDirectory(prefix="rerun-source-") as tmp:
        # One untimed alloyflow rerun first: a folder written before the figure index existed draws its figures once.
        source = Path(tmp) / "study"
        shutil.copytree(args.study, source, ignore=shutil.ignore_patterns(".alloyflow.lock"))
        prepared = one_run("alloyflow", source, in_place=True)
        print(f"preparing rerun (figures indexed once): {prepared['wall_s']:.1f} s", flush=True)
        return _timed(args, source)


def _timed(args, source: Path) -> int:
    runs = []
    for i in range(args.repeats):
        for mode in ("stock", "alloyflow"):
            load = os.getloadavg()[0]
            r = one_run(mode, source)
            r["load_before"] = load
            runs.append(r)
            print(f"run {i + 1} {mode:<9} {r['wall_s']:6.1f} s  {r['peak_rss_gb']:.2f} GB  "
                  f"jobs {r['jobs']}  load {load:.1f}", flush=True)
    med = {m: statistics.median(r["wall_s"] for r in runs if r["mode"] == m) for m in ("stock", "alloyflow")}
    rss = {m: max(r["peak_rss_gb"] for r in runs if r["mode"] == m) for m in ("stock", "alloyflow")}
    print("\n| rerun of a finished study | median wall (s) | peak RSS (GB) |\n|---|---|---|")
    for m in ("stock", "alloyflow"):
        print(f"| {m} | {med[m]:.1f} | {rss[m]:.2f} |")
    print(f"| alloyflow / stock | {med['alloyflow'] / med['stock']:.2f} | |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"study": str(args.study), "runs": runs, "median_wall_s": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
