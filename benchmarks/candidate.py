"""A trained candidate of the shipped potential in the study's own cells, beside what ships and SevenNet-0 (issue 16).

    python benchmarks/train_shipped.py --seeds 0 1 --jobs 2 --dest benchmarks/out/candidate  # train, not shipped
    python benchmarks/candidate.py benchmarks/out/candidate [--phases Li-Sn:Li Li-Sn:Li2Sn5 Li-Sn:LiSn Li-Sn:Li17Sn4]
                                   [--hull] [--sides candidate shipped sevennet] [--workers 2] [--dry-run]

The candidate (a folder with ``weights.pth`` and ``metadata.json`` as
``train_shipped.py --dest`` writes them) is copied into a temporary git
worktree of HEAD, where the registry finds it under ``alloyflow-LiInSn``;
the commands run from there with this venv (``PYTHONPATH`` points at the
worktree, checked before anything runs). The ``shipped`` and ``sevennet``
sides run the same commands from this checkout. Per side and phase:
``alloyflow barriers PHASE --system SYSTEM --calculator C --workers N``;
with ``--hull`` also ``alloyflow study Li-In Li-Sn --barriers none
--no-elastic --no-diffusivity``. Each side has its own output folder (its
job store) under ``benchmarks/out/candidates/`` named by the weights'
sha256, so a killed run resumes and a retrained candidate never reuses
another's jobs. Printed: the 1D / 2D / 3D percolation thresholds per phase
beside GPAW//SevenNet-0 (where ``alloyflow refine`` ran in the sevennet
side's folder) and the reference study's PBE value, the hull minima and stable sets
when ``--hull`` ran, and each side's label-set errors from its metadata.
The sides' numbers are the potentials' (ML); the GPAW//SevenNet-0 column
is DFT on SevenNet-0's geometries, never a plain DFT barrier. Nothing is asserted;
say what else ran on the machine when you quote the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "alloyflow-LiInSn"
PACKAGED = Path("alloyflow") / "data" / "potentials" / NAME
OUT = ROOT / "benchmarks" / "out" / "candidates"
PHASES = ["Li-Sn:Li", "Li-Sn:Li2Sn5", "Li-Sn:LiSn", "Li-Sn:Li17Sn4"]
"""bcc Li and the three Li-Sn phases of the issue's 50 meV target (2-3 CPU min each; Li17Sn4's 104-atom cell
about 35 CPU min: 28 jobs, 24 min wall on SevenNet-0 with 2 workers beside the label campaign);
``Li-In:LiIn`` is the other reference phase."""
HULL = ["study", "Li-In", "Li-Sn", "--barriers", "none", "--no-elastic", "--no-diffusivity"]


def phase_spec(text: str) -> tuple[str, str]:
    """``SYSTEM:PHASE`` (``Li-Sn:Li2Sn5``) as a pair; anything else is a one-line error."""
    system, sep, phase = text.partition(":")
    if not sep or not system or not phase or "-" not in system:
        raise argparse.ArgumentTypeError(f"phase {text!r}: write SYSTEM:PHASE, e.g. Li-Sn:Li2Sn5")
    return system, phase


def check_candidate(folder: Path) -> dict:
    """The candidate's metadata, after checking that its weights are the ones the metadata names."""
    missing = [n for n in ("weights.pth", "metadata.json") if not (folder / n).is_file()]
    if missing:
        raise SystemExit(f"candidate {folder}: no {' or '.join(missing)} (train it with "
                         f"`python benchmarks/train_shipped.py --dest {folder}`)")
    from alloyflow.ml.shipped import file_sha256

    meta = json.loads((folder / "metadata.json").read_text())
    if meta.get("name") != NAME or meta.get("sha256") != file_sha256(folder / "weights.pth"):
        raise SystemExit(f"candidate {folder}: metadata.json does not describe {NAME} with these weights.pth")
    return meta


def commands(phases: list[tuple[str, str]], hull: bool, calculator: str, workers: int, out: Path) -> list[list[str]]:
    common = ["--calculator", calculator, "--workers", str(workers), "--out", str(out), "--no-progress"]
    cmds = [["barriers", phase, "--system", system, *common] for system, phase in phases]
    return cmds + ([[*HULL, *common]] if hull else [])


def run_side(label: str, pythonpath: Path, cmds: list[list[str]], cwd: Path) -> float:
    """Run one side's commands in order; the wall time in seconds. A failure stops the benchmark with its tail."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    probe = subprocess.run([sys.executable, "-c", "import alloyflow; print(alloyflow.__file__)"],
                           capture_output=True, text=True, env=env, cwd=cwd)
    if not probe.stdout.strip().startswith(str(pythonpath)):
        raise SystemExit(f"{label}: alloyflow imports from {probe.stdout.strip() or probe.stderr[-300:]}, "
                         f"not {pythonpath}")
    t0 = time.perf_counter()
    for cmd in cmds:
        print(f"  {label}: alloyflow {' '.join(cmd)}", flush=True)
        res = subprocess.run([sys.executable, "-m", "alloyflow.cli", *cmd], capture_output=True, text=True,
                             env=env, cwd=cwd)
        if res.returncode != 0:
            raise SystemExit(f"{label} failed ({res.returncode}): {(res.stderr or res.stdout)[-1500:]}")
    return time.perf_counter() - t0


DIMS = ("1d", "2d", "3d")


def vacancy_thresholds(out: Path, phase: str) -> dict[str, float | None] | None:
    """The 1D / 2D / 3D percolation thresholds (eV) of a side's stored vacancy barriers; None where there are none."""
    from alloyflow.io.barriers import read_barrier_json

    path = out / "barriers" / phase / "barriers.json"
    if not path.exists():
        return None
    res = read_barrier_json(path)
    if res.mode != "vacancy":
        return None
    return {d: res.percolation.get(d) for d in DIMS}


def dft_ml_thresholds(out: Path, phase: str) -> tuple[dict[str, float | None], str] | None:
    """DFT//ML of the hops that set a side's thresholds, where ``alloyflow refine`` ran in its folder.

    Per dimension: the DFT single-point barrier on the ML band of the hop that
    sets the ML threshold (``fidelity.json`` beside ``barriers.json``), and
    the DFT settings as text. None where either file is missing.
    """
    from alloyflow.io.barriers import read_barrier_json
    from alloyflow.workflows.schemas.fidelity import FidelityResult

    folder = out / "barriers" / phase
    if not (folder / "barriers.json").exists() or not (folder / "fidelity.json").exists():
        return None
    hops = read_barrier_json(folder / "barriers.json").percolation_hops
    fid = FidelityResult.model_validate_json((folder / "fidelity.json").read_text())
    by_hop = {h.hop: h.dft_ml for h in fid.hops if h.dft_ml is not None}
    settings = fid.dft_calculator.get("settings", {})
    how = (f"{fid.dft_calculator.get('model', 'DFT')}, {settings.get('ecut', float('nan')):g} eV, "
           f"k-density {settings.get('kpt_density', float('nan')):g}")
    return {d: by_hop.get(hops.get(d)) for d in DIMS}, how


def _dims(values: dict | None) -> str:
    if not values:
        return "–"
    return " / ".join("–" if values.get(d) is None else f"{values[d] * 1000:.0f}" for d in DIMS)


def lowest_against(values: dict | None, reference: dict | None) -> float | None:
    """``values``' lowest threshold minus ``reference``'s (meV): each one's first dimension with a number."""
    low = [next((v[d] for d in DIMS if v and v.get(d) is not None), None) for v in (values, reference)]
    return None if None in low else (low[0] - low[1]) * 1000


def label_errors(meta: dict | None) -> str:
    """Validation energy / force MAE and formation MAE of a potential's metadata (its own entry)."""
    if not meta:
        return ""
    own = meta["errors"][NAME]
    val = own.get("validation") or {}
    forms = list(own.get("formation_meV_atom", {}).values())
    mae = sum(abs(r["ml"] - r["dft"]) for r in forms) / len(forms) if forms else float("nan")
    return (f"validation {val.get('energy_mae_meV_atom', float('nan')):.1f} meV/atom, "
            f"{val.get('force_mae_meV_A', float('nan')):.1f} meV/Å; formation MAE {mae:.1f} meV/atom "
            f"({len(forms)} phases); {meta.get('n_fit', 0) + meta.get('n_stop', 0)} training labels")


def report(sides: dict, phases: list[tuple[str, str]], hull: bool, dft_ml_out: Path | None = None) -> str:
    """The comparison as markdown: thresholds per side, DFT//SevenNet-0 where refined, hulls, label errors."""
    from alloyflow.analysis.reference_data import REFERENCE_BARRIERS

    names = list(sides)
    dft = {phase: dft_ml_thresholds(dft_ml_out, phase) if dft_ml_out else None for _, phase in phases}
    found = {(name, phase): vacancy_thresholds(s["out"], phase) for name, s in sides.items() for _, phase in phases}
    lines = ["Percolation thresholds of Li-vacancy hops in the study's cells, 1D / 2D / 3D (meV). The sides' "
             "columns are ML numbers, each side's own relaxation and bands; GPAW//SevenNet-0 is DFT single points "
             "on SevenNet-0's band of the hop that sets its threshold (`alloyflow refine` in the sevennet folder), "
             "never a plain DFT barrier.",
             "", f"| phase | {' | '.join(names)} | GPAW//SevenNet-0 | PBE (reference study, lowest) |",
             "|---|" + "---|" * (len(names) + 2)]
    for _system, phase in phases:
        vals = [found[name, phase] for name in names]
        ref = REFERENCE_BARRIERS.get(phase)
        d = dft[phase]
        lines.append(f"| {phase} | " + " | ".join(_dims(v) for v in vals)
                     + f" | {_dims(d[0]) + f' ({d[1]})' if d else '–'} | {'' if ref is None else f'{ref * 1000:.0f}'} |")
    refined = [phase for _, phase in phases if dft[phase]]
    if refined:
        lines += ["", "Lowest threshold minus GPAW//SevenNet-0's (meV):", ""]
        for name in names:
            diff = {p: lowest_against(found[name, p], dft[p][0]) for p in refined}
            known = [abs(v) for v in diff.values() if v is not None]
            lines.append(f"- {name}: " + ", ".join(f"{p} {'–' if v is None else f'{v:+.0f}'}" for p, v in diff.items())
                         + (f"; largest |difference| {max(known):.0f}" if known else ""))
    if hull:
        from pymatgen.core import Composition

        from alloyflow.io.report import load_stored_results

        lines += ["", "Hulls:", ""]
        for name, s in sides.items():
            hulls = load_stored_results(s["out"])[0]
            for system, h in hulls.items():
                stable = ", ".join(sorted(f for f in h.stable_set if len(Composition(f).elements) > 1))
                lines.append(f"- {name}, {system}: minimum {h.hull_minimum.formula} "
                             f"{h.hull_minimum.formation_energy_per_atom * 1000:.1f} meV/atom; stable {stable}")
    lines += ["", "Label-set errors (each potential's metadata.json: its own labels, at training time):", ""]
    lines += [f"- {name}: {label_errors(s['meta']) or 'no metadata (the base model)'}; wall {s['wall']:.0f} s"
              for name, s in sides.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidate", type=Path, help="folder with the candidate's weights.pth and metadata.json")
    ap.add_argument("--phases", nargs="+", type=phase_spec, default=[phase_spec(p) for p in PHASES],
                    metavar="SYSTEM:PHASE")
    ap.add_argument("--hull", action="store_true", help="also the hull study of Li-In and Li-Sn (about 6 min)")
    ap.add_argument("--sides", nargs="+", default=["candidate", "shipped", "sevennet"],
                    choices=["candidate", "shipped", "sevennet"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT, help="parent of the sides' output folders")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    meta = check_candidate(args.candidate.resolve())
    shipped = ROOT / PACKAGED
    shipped_meta = json.loads((shipped / "metadata.json").read_text())
    outs = {"candidate": args.out / f"candidate-{meta['sha256'][:12]}",
            "shipped": args.out / f"shipped-{shipped_meta['sha256'][:12]}",
            "sevennet": args.out / "sevennet"}
    calcs = {"candidate": NAME, "shipped": NAME, "sevennet": "sevennet"}
    metas = {"candidate": meta, "shipped": shipped_meta, "sevennet": None}
    plan = {side: commands(args.phases, args.hull, calcs[side], args.workers, outs[side].resolve())
            for side in args.sides}
    if args.dry_run:
        for side, cmds in plan.items():
            print("\n".join(f"{side}: alloyflow {' '.join(c)}" for c in cmds))
        return 0
    sides = {}
    with tempfile.TemporaryDirectory(prefix="alloyflow-candidate-") as tmpdir:
        tmp = Path(tmpdir)
        worktree = tmp / "wt"
        if "candidate" in plan:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), "HEAD"],
                           check=True, capture_output=True)
        try:
            if "candidate" in plan:
                for name in ("weights.pth", "metadata.json"):
                    shutil.copyfile(args.candidate / name, worktree / PACKAGED / name)
                shared = ROOT.parent / "shared"
                if shared.exists() and not (tmp / "shared").exists():
                    (tmp / "shared").symlink_to(shared)  # the study reads ../shared beside the checkout
            for side, cmds in plan.items():
                path = worktree if side == "candidate" else ROOT
                outs[side].mkdir(parents=True, exist_ok=True)
                wall = run_side(side, path, cmds, cwd=path)
                sides[side] = {"out": outs[side], "meta": metas[side], "wall": wall}
        finally:
            if "candidate" in plan:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                               capture_output=True)
    print()
    print(report(sides, args.phases, args.hull, dft_ml_out=outs["sevennet"]))
    print(f"\ncores {os.cpu_count()}; load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
