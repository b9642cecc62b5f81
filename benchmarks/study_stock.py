"""alloyflow's barrier study of a few phases against the same work assembled from stock parts.

    python benchmarks/study_stock.py [--calculator sevennet] [--phases Li@Li-In LiIn@Li-In]
                                     [--max-hops 2] [--threads 1] [--min-image-distance 10]
                                     [--n-images 5] [--fmax 0.05] [--stock-max-steps 1000] [--stock-first]

Smoke run (mock potential, one hop per phase, a couple of minutes):

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/study_stock.py --calculator mock --max-hops 1

Both sides run in this one process, one after the other (alloyflow first
unless ``--stock-first``), on the same registry calculator
(``alloyflow.calculators.get_calculator(name)``: one model instance, loaded
and evaluated once before either clock starts, so model loading is excluded).

alloyflow: ``study_flow(StudySettings(systems, calculator, phases, barriers,
max_hops, min_image_distance, n_images, fmax))`` run by
``alloyflow.engine.run_flow`` on a ``ResultStore`` in a fresh temporary folder,
i.e. what ``alloyflow study --phases ... --barriers ...`` computes: cell
relaxation of every phase of each system's hull (the requested phases plus the
elements, e.g. In, which no barrier needs), the hull, then per barrier phase
the distinct Li hops (the ``max_hops`` shortest), endpoint relaxation (fixed
cell, fmax 0.02) and alloyflow's CI-NEB (IDPP, improved tangent, ODE optimizer
unless configured otherwise). Force calls are read from the store as
``benchmarks/study.py`` does (RelaxationDocument.n_steps, NebDocument
.force_calls + .endpoint_force_calls); barriers from the ``StudyDocument``.

stock: the same phases (``StructureLibrary().get(name, system)``, primitive
cell) through off-the-shelf parts only, glued by this script:

1. cell relaxation with atomate2's ``ForceFieldRelaxMaker`` (FIRE +
   FrechetCellFilter, atomate2's defaults except fmax 0.02 as alloyflow), run
   by ``jobflow.run_locally`` on a ``MemoryStore`` JobStore (plus the
   ``data`` store its trajectories need); the registry calculator is handed to
   it as a custom calculator (``{"@module": ..., "@callable": ...}``) wrapped
   in a force-call counter;
2. distinct Li hops from pymatgen-analysis-diffusion's ``DistinctPathFinder``
   (its own default cut-off, the same rule alloyflow uses), the ``max_hops``
   shortest;
3. vacancy supercell and endpoints from ``MigrationHop.get_sc_structures(
   vac_mode=True, min_atoms=1, min_length=...)``, ``min_length`` raised until
   the shortest periodic image distance is at least ``--min-image-distance``;
   its final endpoint lists the atoms in another order, so it is re-ordered by
   a per-species ``scipy.optimize.linear_sum_assignment`` on periodic
   distances (without that the "hop" is a many-atom shuffle: see
   shared/STACK.md);
4. endpoints relaxed with ASE ``BFGS`` at fixed cell to fmax 0.02, then ASE's
   stock CI-NEB: ``ase.mep.NEB(images, climb=True)`` (method "aseneb"),
   linear ``interpolate(mic=True)``, ``FIRE`` to ``--fmax`` (at most
   ``--stock-max-steps`` steps); forward barrier = max(E) - E(initial).

Force calls are single-structure energy+force(+stress) evaluations, counted by
a wrapper around the calculator on the stock side. Wall times are
``time.perf_counter``; alloyflow's per-phase time is its relaxation plus its
"barriers <phase>" stage (planning, NEBs, collection), its total is the whole
flow (hull-only relaxations, hull and choice included). Not a test: nothing is
asserted. Other processes on the machine inflate wall times.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from ase.calculators.calculator import Calculator, all_changes  # noqa: E402

STOCK_CALLS = [0]
"""Force calls made through ``counting_calculator`` (the stock side)."""

SAME_MINIMUM_TOL = 0.3
"""Å: relaxed endpoints whose atoms all lie closer than this are one minimum."""


# --------------------------------------------------------------------------- counting calculator


class CountingCalculator(Calculator):
    """Forwards every evaluation to ``inner`` (the registry calculator) and counts it."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, inner: Calculator, counter: list):
        super().__init__()
        self.inner, self.counter = inner, counter

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        # all_changes: never let the shared inner calculator answer from its own cache
        self.inner.calculate(self.atoms.copy(), list(properties), all_changes)
        self.counter[0] += 1
        self.results = dict(self.inner.results)
        self.results.setdefault("free_energy", self.results["energy"])


def counting_calculator(name: str) -> Calculator:
    """The registry calculator ``name`` behind a force-call counter (atomate2's custom-calculator hook)."""
    from alloyflow.calculators import get_calculator

    return CountingCalculator(get_calculator(name), STOCK_CALLS)


# --------------------------------------------------------------------------- helpers


def parse_phase(spec: str) -> tuple[str, str]:
    """``PHASE@SYSTEM`` (``Li@Li-In``), or a binary ``PHASE`` whose system is its elements (Li first)."""
    if "@" in spec:
        phase, system = spec.split("@", 1)
        return phase, system
    from pymatgen.core import Composition

    elements = sorted({el.symbol for el in Composition(spec).elements}, key=lambda e: (e != "Li", e))
    if len(elements) != 2:
        raise SystemExit(f"--phases {spec}: give the system as PHASE@SYSTEM (e.g. Li@Li-In)")
    return spec, "-".join(elements)


def image_distance(lattice) -> float:
    """Shortest non-zero lattice vector (distance between a site and its own periodic images)."""
    m = lattice.get_lll_reduced_lattice().matrix
    best = np.inf
    for n in np.ndindex(3, 3, 3):
        v = (np.array(n) - 1) @ m
        d = float(np.linalg.norm(v))
        if d > 1e-8:
            best = min(best, d)
    return best


def _disp(a, b) -> np.ndarray:
    return a.lattice.get_all_distances(a.frac_coords, b.frac_coords).diagonal()


def matched_final(start, end):
    """``end`` with its atoms re-ordered to ``start``'s (per species, minimum total periodic distance)."""
    from pymatgen.core import Structure
    from scipy.optimize import linear_sum_assignment

    species = np.array([s.species_string for s in start])
    end_species = np.array([s.species_string for s in end])
    order = np.empty(len(start), dtype=int)
    for sp in np.unique(species):
        i, j = np.flatnonzero(species == sp), np.flatnonzero(end_species == sp)
        d = start.lattice.get_all_distances(start.frac_coords[i], end.frac_coords[j])
        r, c = linear_sum_assignment(d)
        order[i[r]] = j[c]
    return Structure(end.lattice, [end[k].species for k in order], end.frac_coords[order])


def warm_up(calculator: str) -> None:
    """Load the model and evaluate it once, outside every clock."""
    from ase.build import bulk

    from alloyflow.calculators import get_calculator

    atoms = bulk("Li", "bcc", a=3.44, cubic=True)
    atoms.calc = get_calculator(calculator)
    atoms.get_potential_energy()


# --------------------------------------------------------------------------- alloyflow


def run_alloyflow(phases: list[tuple[str, str]], args) -> dict:
    from alloyflow.engine import ResultStore, run_flow
    from alloyflow.workflows.flows.study import StudySettings, study_flow
    from alloyflow.workflows.jobs.neb import NebDocument
    from alloyflow.workflows.jobs.relax import RelaxationDocument
    from alloyflow.workflows.schemas.study import StudyDocument

    systems = list(dict.fromkeys(system for _, system in phases))
    names = list(dict.fromkeys(phase for phase, _ in phases))
    settings = StudySettings(systems=systems, calculator=args.calculator, phases=names, barriers=names,
                             max_hops=args.max_hops or None, min_image_distance=args.min_image_distance,
                             n_images=args.n_images, fmax=args.fmax, endpoint_trials=args.endpoint_trials,
                             host_check=not args.no_host_check, interstitial=False, search=False)
    out = tempfile.mkdtemp(prefix="alloyflow-study-stock-")
    try:
        t0 = time.perf_counter()
        flow = study_flow(settings)
        with ResultStore(out) as store:
            summary = run_flow(flow, store)
            wall = time.perf_counter() - t0
            doc = store.document(flow.output.uuid, StudyDocument)
            relax, nebs = {}, {}
            for d in store.jobstore.query({}, properties=["output", "metadata"]):
                output = d["output"]
                if not isinstance(output, dict) or "endpoint_error" in output:
                    continue
                label = d.get("metadata", {}).get("alloyflow_label", "?")
                if "forward_barrier" in output and "images" in output:
                    nebs[label] = NebDocument.model_validate(output)
                elif label.startswith("relax"):
                    r = RelaxationDocument.model_validate(output)
                    relax[r.label] = r
    finally:
        shutil.rmtree(out, ignore_errors=True)
    per_phase = {}
    for result in doc.barriers:
        r = relax.get(result.phase)
        hops = []
        for h in result.hops:
            n = nebs.get(f"neb {result.phase} hop {h.id}")
            hops.append({
                "length": h.length, "barrier": h.forward_barrier, "converged": h.converged,
                "endpoint_calls": n.endpoint_force_calls if n else 0, "neb_calls": n.force_calls if n else 0,
                "wall": n.elapsed_seconds if n else float("nan"),
            })
        stage = summary.stage_seconds.get(f"barriers {result.phase}", 0.0)
        per_phase[result.phase] = {
            "n_distinct": result.settings.get("n_distinct_hops", len(result.hops)),
            "cutoff": result.max_length,
            "natoms": result.supercell.natoms, "image_distance": result.supercell.min_image_distance,
            "hops": hops,
            "relax_calls": r.n_steps if r else 0, "relax_wall": r.elapsed_seconds if r else 0.0,
            "wall": stage + (r.elapsed_seconds if r else 0.0),
        }
        per_phase[result.phase]["calls"] = per_phase[result.phase]["relax_calls"] + sum(
            h["endpoint_calls"] + h["neb_calls"] for h in hops)
    total_calls = sum(r.n_steps for r in relax.values()) + sum(
        n.force_calls + n.endpoint_force_calls for n in nebs.values())
    others = sorted(set(relax) - set(per_phase))
    return {"phases": per_phase, "wall": wall, "calls": total_calls, "hull_only": others,
            "stage_seconds": summary.stage_seconds}


# --------------------------------------------------------------------------- stock


def stock_relax(structure, args, workdir: str):
    """atomate2's ForceFieldRelaxMaker on the counted registry calculator, run by jobflow.run_locally."""
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker
    from jobflow import JobStore, run_locally
    from maggma.stores import MemoryStore

    maker = ForceFieldRelaxMaker(
        force_field_name={"@module": __name__, "@callable": "counting_calculator"},
        calculator_kwargs={"name": args.calculator},
        relax_kwargs={"fmax": 0.02},
    )
    job = maker.make(structure)
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    responses = run_locally(job, store=store, create_folders=True, root_dir=workdir, ensure_success=True,
                            log=False)
    doc = responses[job.uuid][1].output
    return doc.output.structure, bool(doc.is_force_converged)


def stock_endpoints(hop, min_image_distance: float):
    """pymatgen-analysis-diffusion's vacancy supercell endpoints, the final one re-ordered to the initial."""
    min_length = min_image_distance
    for _ in range(20):
        start, end, _base = hop.get_sc_structures(vac_mode=True, min_atoms=1, max_atoms=240, min_length=min_length)
        if image_distance(start.lattice) >= min_image_distance - 1e-6:
            break
        min_length *= 1.05
    moved_raw = int((_disp(start, end) > 0.5).sum()) if [s.species_string for s in start] == [
        s.species_string for s in end] else -1
    final = matched_final(start, end)
    moved = int((_disp(start, final) > 0.5).sum())
    return start, final, {"natoms": len(start), "image_distance": image_distance(start.lattice),
                          "moved_raw": moved_raw, "moved": moved}


def stock_neb(start, final, args) -> dict:
    """ASE: endpoints BFGS at fixed cell (fmax 0.02), then NEB(climb=True), interpolate(mic=True), FIRE."""
    from ase.mep import NEB
    from ase.optimize import BFGS, FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    from alloyflow.calculators import get_calculator

    inner = get_calculator(args.calculator)
    t0, c0 = time.perf_counter(), STOCK_CALLS[0]
    ends = [AseAtomsAdaptor.get_atoms(s) for s in (start, final)]
    ends_ok = True
    for atoms in ends:
        atoms.calc = CountingCalculator(inner, STOCK_CALLS)
        ends_ok &= bool(BFGS(atoms, logfile=None).run(fmax=0.02, steps=args.stock_max_steps))
    endpoint_calls = STOCK_CALLS[0] - c0
    ini, fin = ends
    images = [ini] + [ini.copy() for _ in range(args.n_images)] + [fin]
    for image in images[1:-1]:
        image.calc = CountingCalculator(inner, STOCK_CALLS)
    neb = NEB(images, climb=True)
    neb.interpolate(mic=True)
    converged = bool(FIRE(neb, logfile=None).run(fmax=args.fmax, steps=args.stock_max_steps))
    energies = [image.get_potential_energy() for image in images]
    from ase.geometry import find_mic

    same = float(find_mic(fin.positions - ini.positions, ini.cell)[1].max()) <= SAME_MINIMUM_TOL
    return {"barrier": max(energies) - energies[0], "converged": converged and ends_ok and not same,
            "endpoint_calls": endpoint_calls, "neb_calls": STOCK_CALLS[0] - c0 - endpoint_calls,
            "wall": time.perf_counter() - t0}


def run_stock(phases: list[tuple[str, str]], args) -> dict:
    from pymatgen.analysis.diffusion.neb.pathfinder import DistinctPathFinder

    from alloyflow.structures import StructureLibrary
    from alloyflow.structures.library import primitive

    library = StructureLibrary()
    workdir = tempfile.mkdtemp(prefix="stock-study-")
    per_phase = {}
    t_all, c_all = time.perf_counter(), STOCK_CALLS[0]
    try:
        for phase, system in phases:
            if phase in per_phase:
                continue
            t0, c0 = time.perf_counter(), STOCK_CALLS[0]
            structure = primitive(library.get(phase, system).structure)
            relaxed, relax_ok = stock_relax(structure, args, workdir)
            relax_calls, relax_wall = STOCK_CALLS[0] - c0, time.perf_counter() - t0
            finder = DistinctPathFinder(relaxed, "Li")
            paths = sorted(finder.get_paths(), key=lambda p: p.length)
            chosen = paths[: args.max_hops] if args.max_hops else paths
            hops, cell = [], None
            for path in chosen:
                start, final, info = stock_endpoints(path, args.min_image_distance)
                cell = cell or info
                row = stock_neb(start, final, args)
                row.update(length=float(path.length), moved_raw=info["moved_raw"], moved=info["moved"])
                hops.append(row)
            per_phase[phase] = {
                "n_distinct": len(paths), "cutoff": float(finder.max_path_length),
                "natoms": cell["natoms"] if cell else 0, "image_distance": cell["image_distance"] if cell else 0.0,
                "hops": hops, "relax_calls": relax_calls, "relax_wall": relax_wall, "relax_converged": relax_ok,
                "calls": STOCK_CALLS[0] - c0, "wall": time.perf_counter() - t0,
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"phases": per_phase, "wall": time.perf_counter() - t_all, "calls": STOCK_CALLS[0] - c_all}


# --------------------------------------------------------------------------- report


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def _lengths(hops: list[dict]) -> str:
    return ", ".join(f"{h['length']:.2f}" for h in hops) or "-"


def print_phase(phase: str, system: str, af: dict | None, st: dict) -> None:
    print(f"\n== {phase} ({system})")
    if af is None:
        print("  alloyflow computed no barriers for this phase (not in its StudyDocument)")
        af = {"n_distinct": 0, "cutoff": float("nan"), "natoms": 0, "image_distance": float("nan"), "hops": [],
              "relax_calls": 0, "relax_wall": 0.0, "calls": 0, "wall": 0.0}
    print(f"  hops   alloyflow: {af['n_distinct']} distinct (cut-off {af['cutoff']:.2f} Å), computed "
          f"{len(af['hops'])}: {_lengths(af['hops'])} Å")
    print(f"         stock    : {st['n_distinct']} distinct (cut-off {st['cutoff']:.2f} Å), computed "
          f"{len(st['hops'])}: {_lengths(st['hops'])} Å")
    print(f"  vacancy cell: alloyflow {af['natoms']} atoms (image distance {af['image_distance']:.2f} Å), "
          f"stock {st['natoms']} atoms ({st['image_distance']:.2f} Å)")
    print(f"  {'hop':>3}{'len af':>8}{'len st':>8}{'barrier af':>12}{'barrier st':>12}{'diff':>8}"
          f"{'conv af/st':>12}{'calls af':>10}{'calls st':>10}{'wall af':>9}{'wall st':>9}{'moved':>7}")
    nan = {"length": float("nan"), "barrier": float("nan"), "converged": None, "endpoint_calls": 0,
           "neb_calls": 0, "wall": float("nan"), "moved_raw": "", "moved": ""}
    for k in range(max(len(af["hops"]), len(st["hops"]))):
        a = af["hops"][k] if k < len(af["hops"]) else nan
        s = st["hops"][k] if k < len(st["hops"]) else nan
        ba, bs = a["barrier"] if a["barrier"] is not None else float("nan"), s["barrier"]
        conv = f"{'-' if a['converged'] is None else 'yes' if a['converged'] else 'NO'}/" \
               f"{'-' if s['converged'] is None else 'yes' if s['converged'] else 'NO'}"
        print(f"  {k:>3}{a['length']:>8.2f}{s['length']:>8.2f}{ba:>12.4f}{bs:>12.4f}{bs - ba:>8.3f}{conv:>12}"
              f"{a['endpoint_calls'] + a['neb_calls']:>10}{s['endpoint_calls'] + s['neb_calls']:>10}"
              f"{a['wall']:>9.1f}{s['wall']:>9.1f}{str(s['moved_raw']) + '→' + str(s['moved']):>7}")
    for k, h in enumerate(st["hops"]):
        if h["barrier"] < 1e-4:
            print(f"  note: stock hop {k}: the band's highest energy is its initial endpoint's (no barrier found; "
                  "the fixed-cell BFGS endpoint is no minimum along the path)")
        if h["moved"] != 1:
            print(f"  note: stock hop {k}: {h['moved']} atoms move between the re-ordered endpoints, not one")
    print(f"  {'side':<10}{'relax calls':>12}{'relax s':>9}{'force calls':>13}{'wall s':>9}")
    for name, d in (("alloyflow", af), ("stock", st)):
        print(f"  {name:<10}{d['relax_calls']:>12}{d['relax_wall']:>9.1f}{d['calls']:>13}{d['wall']:>9.1f}")
    print(f"  alloyflow/stock: force calls {_ratio(af['calls'], st['calls'])}, wall {_ratio(af['wall'], st['wall'])}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calculator", default="sevennet", help="registry name: sevennet, chgnet, mock, ...")
    parser.add_argument("--phases", nargs="+", default=["Li@Li-In", "LiIn@Li-In"],
                        help="PHASE@SYSTEM (a binary PHASE alone takes its own elements as the system)")
    parser.add_argument("--max-hops", type=int, default=2, help="shortest distinct hops per phase (0: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (sets ALLOYFLOW_THREADS)")
    parser.add_argument("--min-image-distance", type=float, default=10.0)
    parser.add_argument("--n-images", type=int, default=5)
    parser.add_argument("--fmax", type=float, default=0.05, help="NEB force tolerance, eV/Å (both sides)")
    parser.add_argument("--stock-max-steps", type=int, default=1000, help="stock FIRE/BFGS step limit")
    parser.add_argument("--stock-first", action="store_true", help="run the stock side first")
    parser.add_argument("--endpoint-trials", type=int, default=3,
                        help="alloyflow's seeded endpoint relaxations (stock relaxes each endpoint once: 1 = same work)")
    parser.add_argument("--no-host-check", action="store_true",
                        help="skip alloyflow's host-stability check (stock has none: same work)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("jobflow").setLevel(logging.WARNING)
    os.environ["ALLOYFLOW_THREADS"] = str(args.threads)
    phases = [parse_phase(p) for p in args.phases]

    from alloyflow.calculators import calculator_info, set_torch_threads

    set_torch_threads(args.threads)  # atomate2 imports torch even for a non-torch calculator
    info = calculator_info(args.calculator)
    t0 = time.perf_counter()
    warm_up(args.calculator)
    print(f"study vs stock: {info['label']} {info['version']}, torch threads={args.threads}, cores={os.cpu_count()}, "
          f"phases {' '.join(f'{p}@{s}' for p, s in phases)}, max hops {args.max_hops or 'all'}, "
          f"{args.n_images} images, fmax {args.fmax} eV/Å, min image distance {args.min_image_distance} Å "
          f"(model load + first call {time.perf_counter() - t0:.1f} s, excluded)")
    print("stock = atomate2 ForceFieldRelaxMaker (jobflow.run_locally, MemoryStore) + DistinctPathFinder + "
          "MigrationHop.get_sc_structures + ASE BFGS endpoints + ASE NEB(climb=True) linear mic, FIRE")

    sides = [("alloyflow", run_alloyflow), ("stock", run_stock)]
    if args.stock_first:
        sides.reverse()
    results = {}
    for name, fn in sides:
        t = time.perf_counter()
        print(f"running {name} ...", flush=True)
        results[name] = fn(phases, args)
        print(f"  {name} done in {time.perf_counter() - t:.1f} s", flush=True)
    af, st = results["alloyflow"], results["stock"]

    seen = set()
    for phase, system in phases:
        if phase in seen:
            continue
        seen.add(phase)
        print_phase(phase, system, af["phases"].get(phase), st["phases"][phase])

    names = list(seen)
    af_calls = sum(af["phases"][p]["calls"] for p in names if p in af["phases"])
    af_wall = sum(af["phases"][p]["wall"] for p in names if p in af["phases"])
    print("\n== totals")
    print(f"  {'':<44}{'force calls':>13}{'wall s':>9}")
    print(f"  {'alloyflow, barrier phases (relax + barriers)':<44}{af_calls:>13}{af_wall:>9.1f}")
    print(f"  {'alloyflow, whole study flow':<44}{af['calls']:>13}{af['wall']:>9.1f}")
    print(f"  {'stock':<44}{st['calls']:>13}{st['wall']:>9.1f}")
    if af["hull_only"]:
        print(f"  (the whole flow also relaxes {', '.join(af['hull_only'])} for the hull, builds the hull and "
              f"chooses the phases; stock does none of that)")
    print(f"  alloyflow/stock, barrier phases: force calls {_ratio(af_calls, st['calls'])}, "
          f"wall {_ratio(af_wall, st['wall'])}")
    print(f"  alloyflow/stock, whole flow    : force calls {_ratio(af['calls'], st['calls'])}, "
          f"wall {_ratio(af['wall'], st['wall'])}")
    print("  'moved' = atoms displaced > 0.5 Å between the stock endpoints as get_sc_structures returns them → "
          "after re-ordering (1 = one hopping Li)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
