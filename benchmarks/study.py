"""Whole-study cost and NEB scaling with supercell size.

    python benchmarks/study.py study   [--calculator sevennet] [--out DIR] [--load N] [--workers N]  # timed
    python benchmarks/study.py scaling [--calculator sevennet] [--sizes 50 100 200 400]

``study`` runs the default study in a fresh folder (or reports on an existing
one: nothing is recomputed there) and prints wall time, peak memory and force
calls per stage. ``scaling`` runs one bcc-Li vacancy band (3 images, a fixed
number of optimizer steps, no endpoint relaxation) in cells of about 50 to 400
atoms and prints the cost per band step. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def _peak_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest child (a worker), MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1024, child / 1024


def bench_study(args) -> None:
    from alloyflow.engine import ResultStore
    from alloyflow.workflows.jobs.neb import NebDocument
    from alloyflow.workflows.jobs.relax import RelaxationDocument
    from alloyflow.workflows.flows.study import StudySettings
    from alloyflow.commands.study import run_study

    from alloyflow.engine import auto_workers

    out = Path(args.out or tempfile.mkdtemp(prefix="alloyflow-study-"))
    workers = args.workers or auto_workers()
    os.environ["ALLOYFLOW_WORKERS"] = str(workers)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        t0 = time.perf_counter()
        report = run_study(StudySettings(systems=args.systems, calculator=args.calculator), out, progress=False)
        wall = time.perf_counter() - t0
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    rows: dict[str, list[float]] = {}
    with ResultStore(out) as store:
        for doc in store.jobstore.query({}, properties=["output", "metadata"]):
            output = doc["output"]
            if not isinstance(output, dict) or "endpoint_error" in output:  # a stored failed-endpoint outcome: no band
                continue
            label = doc.get("metadata", {}).get("alloyflow_label", "?")
            stage = "relaxations" if label.startswith("relax") else "NEB bands"
            if output.get("@class") == "EndpointDocument" or "trial_energies" in output:
                stage, calls, seconds = "NEB endpoints", output["force_calls"], output["elapsed_seconds"]
            elif "forward_barrier" in output and "images" in output:
                d = NebDocument.model_validate(output)
                calls, seconds = d.force_calls + d.endpoint_force_calls, d.elapsed_seconds
            elif "n_steps" in output and "formula" in output:
                d = RelaxationDocument.model_validate(output)
                calls, seconds = d.n_steps, d.elapsed_seconds
            else:  # screens, elastic tensors, phonons, assembly jobs: in the report's stage times
                continue
            r = rows.setdefault(stage, [0, 0, 0.0])
            r[0] += 1
            r[1] += calls
            r[2] += seconds
    print(report.summary)
    print(f"\n{'stage':<14}{'jobs':>6}{'force calls':>13}{'compute s':>11}")
    for stage, (n, calls, seconds) in rows.items():
        print(f"{stage:<14}{n:>6}{calls:>13}{seconds:>11.0f}")
    own, child = _peak_mb()
    print(f"\nstudy wall time this run: {wall:.0f} s; peak RSS: {own:.0f} MB here, {child:.0f} MB in the largest "
          f"child (a worker, or a busy process); workers: {workers}; cores: {os.cpu_count()}; "
          f"busy background processes: {args.load}")
    for stage, seconds in report.data["timings_seconds"].items():
        print(f"  {stage:<32}{seconds:8.0f} s")


def bench_scaling(args) -> None:
    import numpy as np
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    from alloyflow.workflows.jobs.neb import NebMaker

    print(f"{'atoms':>6}{'steps':>7}{'force calls':>13}{'model calls':>13}{'s/step':>9}{'ms/atom/call':>14}")
    for n_target in args.sizes:
        reps = max(2, round((n_target / 2) ** (1 / 3)))
        atoms = bulk("Li", "bcc", a=3.44, cubic=True).repeat(reps)
        initial = atoms.copy()
        del initial[0]
        final = initial.copy()
        # A nearest neighbour of the removed corner atom jumps into its vacancy.
        distances = np.linalg.norm(final.positions - atoms.positions[0], axis=1)
        mover = int(np.argmin(distances))
        final.positions[mover] = atoms.positions[0]
        maker = NebMaker(calculator=args.calculator, n_images=3, max_steps=args.steps, fmax=1e-6,
                         relax_endpoints=False)
        doc = maker.run(AseAtomsAdaptor.get_structure(initial), AseAtomsAdaptor.get_structure(final))
        n = len(initial)
        per_step = doc.elapsed_seconds / max(doc.n_steps, 1)
        per_atom_call = doc.evaluation_seconds / max(doc.force_calls, 1) / n * 1000
        print(f"{n:>6}{doc.n_steps:>7}{doc.force_calls:>13}{doc.model_calls:>13}{per_step:>9.2f}{per_atom_call:>14.2f}",
              flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["study", "scaling"])
    parser.add_argument("--calculator", default="sevennet")
    parser.add_argument("--systems", nargs="+", default=["Li-In", "Li-Sn"])
    parser.add_argument("--out", default=None, help="study folder (default: a fresh temporary one)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[54, 128, 250, 432])
    parser.add_argument("--load", type=int, default=0,
                        help="busy processes started for the study's duration (study; 4 = 2x the cores of 2)")
    parser.add_argument("--workers", type=int, default=0,
                        help="jobs computed at once (study; default: one per core, at most 4, as the command line)")
    parser.add_argument("--steps", type=int, default=10, help="band optimizer steps per size (scaling)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    {"study": bench_study, "scaling": bench_scaling}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
