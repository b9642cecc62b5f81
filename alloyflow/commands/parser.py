"""The ``alloyflow`` command line's arguments: number types, the options each command shares, ``build_parser``.

``alloyflow.cli`` parses with it and calls one function per command; the
option checks here (positive numbers, fractions in (0, 1]) are what refuses
a meaningless setting before any job exists.
"""

from __future__ import annotations

import argparse
import math

from alloyflow.calculators import available_calculators, default_calculator
from alloyflow.structures import treated_elements

DEFAULT_OUT = "alloyflow-out"
DESCRIPTION = "alloyflow: ab initio thermodynamics and Li-migration barriers of lithium alloy anodes."


def _number(text: str, kind, ok=lambda value: True, rule: str = ""):
    """``kind(text)``, finite and ``ok``; else an argparse error that names the rule."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must {rule}, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(text, float, lambda v: v > 0, "be > 0")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, lambda v: v >= 1, "be an integer >= 1")


def unit_fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    return _number(text, float, lambda v: 0 < v <= 1, "lie in (0, 1]")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, lambda v: v >= 0, "be an integer >= 0")


def element_reference(text: str) -> tuple[str, str]:
    """argparse type: ``ELEMENT=PHASE`` (``Sn=Sn_alpha``), an elemental reference chosen by phase name."""
    el, sep, name = text.partition("=")
    if not sep or not el.strip() or not name.strip():
        raise argparse.ArgumentTypeError(f"expected ELEMENT=PHASE (e.g. Sn=Sn_alpha, or Sn=lowest), got {text!r}")
    return el.strip(), name.strip()


def reference_map(pairs) -> dict[str, str]:
    """``--reference`` pairs as ``{element: phase}``; an element named twice is refused."""
    out: dict[str, str] = {}
    for el, name in pairs or ():
        if el in out and out[el] != name:
            raise ValueError(f"--reference names {el} twice ({out[el]} and {name})")
        out[el] = name
    return out


def _reference_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", action="append", type=element_reference, default=[], metavar="EL=PHASE",
                   help="take this phase as the element's zero of formation energy instead of the element's own "
                        "phase (the library file named after it: beta-Sn, the form lithiated in practice, bcc Li, "
                        "In); repeatable; e.g. --reference Sn=Sn_alpha or Sn=lowest for the 0 K ground state. "
                        "Lower polymorphs are listed, left off the hull and the voltage curve")


WORKER_COMMANDS = ("study", "hull", "barriers", "search", "thermo")
"""Commands whose flows run independent jobs in worker processes (``alloyflow.engine.parallel``)."""


def _common(p: argparse.ArgumentParser, workflow: str | None = None) -> None:
    if workflow == "submit":  # a queue never falls back to the ML potential silently: name the backend
        p.add_argument("--calculator", default=None, choices=available_calculators(),
                       help="backend of the queued jobs, required for study/barriers/hull (vasp for DFT, or an ML "
                            "potential); for refine, the ML potential whose stored bands are refined (default "
                            f"{default_calculator('refine')})")
    else:
        default, fitted = default_calculator(workflow), default_calculator(workflow, ["Li", "In", "Sn"])
        rule = default if fitted == default else f"{fitted} for Li-In-Sn systems and phases, else {default}"
        p.add_argument("--calculator", default=None, choices=available_calculators(),
                       help=f"energy/force backend (default for this command: {rule})")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder, also the job store (default: {DEFAULT_OUT})")
    p.add_argument("--structures", action="append", default=[], metavar="DIR",
                   help="extra folder of CIF/POSCAR files added to the bundled library (repeatable)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads for every cell (default: 1 below 64 atoms, all cores from 64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if workflow in WORKER_COMMANDS:
        p.add_argument("--workers", type=positive_int, default=None,
                       help="jobs computed at once, each in its own process (default: $ALLOYFLOW_WORKERS, else one "
                            "per core, at most 4, with an ML potential; 1 with DFT)")
    if workflow != "submit":
        p.add_argument("--potential", metavar="PATH", default=None,
                       help="use this SevenNet checkpoint file (one you trust) as the ML potential instead of "
                            "--calculator; it is named after its file (its folder for checkpoint.pth) and loaded "
                            "with torch.load(weights_only=True). Potentials fine-tuned by this installation are "
                            "--calculator choices already (recorded in ~/.config/alloyflow/potentials.json); "
                            "nothing in --out is ever registered")
        p.add_argument("--inside-batch-job", action="store_true",
                       help="run a batch-queue calculator (VASP) in this process: only inside a batch job")


def _barrier_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-image-distance", type=positive_float, default=10.0,
                   help="minimum distance between periodic images of the vacancy, Å (default 10)")
    p.add_argument("--images", type=positive_int, default=5, help="intermediate NEB images (default 5)")
    p.add_argument("--fmax", type=positive_float, default=0.05, help="NEB force tolerance, eV/Å (default 0.05)")
    p.add_argument("--max-hops", type=non_negative_int, default=None,
                   help="only the N shortest distinct hops (default: all; a cap makes thresholds upper bounds)")
    p.add_argument("--max-length", type=positive_float, default=None,
                   help="longest hop considered, Å (default: the shortest cutoff percolating in 3D, at most 5 Å)")
    p.add_argument("--endpoint-trials", type=positive_int, default=3,
                   help="relaxations per NEB endpoint from seeded starts, lowest kept (default 3; 1 = as before)")
    p.add_argument("--screen", action="store_true",
                   help="screen all hops with single points on their IDPP paths first and converge only those a "
                        "percolation threshold can need (ML potentials; off by default: on the reference phases "
                        "every hop within the 3D cutoff was needed, see docs/performance.md, 'Hop screening')")
    p.add_argument("--screen-factor", type=unit_fraction, default=None, metavar="F",
                   help="trust in the screens, 0 < F <= 1: a hop gets no band when F x its estimate is at or above "
                        "the highest threshold (with --screen; default: the measured SCREEN_FACTOR, 0.15)")


def _thermo_options(p: argparse.ArgumentParser) -> None:
    from alloyflow.workflows.jobs.phonons import DEFAULT_MIN_LENGTH

    p.add_argument("--min-length", type=positive_float, default=DEFAULT_MIN_LENGTH,
                   help=f"shortest phonon-supercell lattice vector, Å (default {DEFAULT_MIN_LENGTH:g})")
    p.add_argument("--no-elastic", action="store_true", help="skip the elastic moduli")
    p.add_argument("--no-diffusivity", action="store_true", help="skip attempt frequencies and diffusivities")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alloyflow", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("hull", help="relax a system's phases; hull, voltage curve, volumes")
    p.add_argument("system", help="chemical system, e.g. Li-Sn")
    p.add_argument("--phases", nargs="+", help="only these phases (elements are always included)")
    _reference_option(p)
    _common(p, "hull")

    p = sub.add_parser("barriers", help="Li vacancy-hop barriers of one phase (CI-NEB)")
    p.add_argument("phase", nargs="?", help="phase name or formula, e.g. Li2Sn5")
    p.add_argument("--system", help="chemical system the phase belongs to, e.g. Li-Sn")
    p.add_argument("--dilute", action="store_true", help="one Li in the host phase (e.g. In): dilute-Li proxy hops")
    p.add_argument("--dilute-mode", choices=["substitution", "interstitial"], default="substitution",
                   help="dilute Li on a host site (hopping into an adjacent host vacancy) or interstitial")
    p.add_argument("--host-sites", type=positive_int, default=None,
                   help="host sites of the dilute supercell (36 gives the reference's LiIn35; default: smallest "
                        "cell meeting --min-image-distance)")
    p.add_argument("--table", nargs="+", metavar="PHASE", help="print the stored cross-phase table of these phases")
    _barrier_options(p)
    _common(p, "barriers")

    p = sub.add_parser("study", help="the whole campaign: hulls, voltages, barriers and a report")
    p.add_argument("systems", nargs="+", help="chemical systems, e.g. Li-In Li-Sn")
    p.add_argument("--barriers", nargs="+", default=["reference"],
                   help="'reference' (the reference study's phases, default), 'auto' (every stable phase), "
                        "'none', or phase names")
    p.add_argument("--phases", nargs="+", help="only these phases in the hulls (elements always included)")
    _reference_option(p)
    _barrier_options(p)
    _common(p, "study")

    p.add_argument("--no-host-check", action="store_true",
                   help="skip the host-stability check (Born criteria) beside the barriers")
    p.add_argument("--no-interstitial", action="store_true",
                   help="vacancy hops only (default: Li2Sn5, LiSn and dilute Li in In also get the interstitial mechanism)")
    p.add_argument("--no-search", action="store_true",
                   help="skip the tie-line search that adds predicted phases (e.g. Li13In3) to the hulls")
    p.add_argument("--search-max-sites", type=positive_int, default=16, metavar="N",
                   help="largest parent-lattice cell the study's tie-line search enumerates (default 16)")
    p.add_argument("--temperature", type=float, default=None,
                   help="also compute phonons, moduli and diffusivities and add a thermo section at this T (K)")
    _thermo_options(p)

    p = sub.add_parser("thermo", help="phonon free energies, hull and voltage at T, elastic moduli, diffusivities")
    p.add_argument("system", help="chemical system, e.g. Li-Sn")
    p.add_argument("--temperature", type=float, default=300.0, help="temperature in K (default 300)")
    p.add_argument("--phases", nargs="+", help="only these phases (elements are always included)")
    _reference_option(p)
    _thermo_options(p)
    _common(p, "thermo")

    p = sub.add_parser("refine", help="DFT//ML, DFT and fine-tuned barriers of a phase's ML bands (barrier fidelity)")
    p.add_argument("phase", help="phase whose stored ML bands are refined, e.g. Li2Sn5")
    p.add_argument("--system", help="chemical system the phase belongs to")
    p.add_argument("--dft", default="gpaw", choices=available_calculators(), help="DFT backend (default gpaw)")
    p.add_argument("--ecut", type=float, default=None, help="DFT plane-wave cutoff, eV (gpaw default 600)")
    p.add_argument("--kpt-density", type=float, default=None, help="DFT k-point density, 1/Å (gpaw default 6)")
    p.add_argument("--converge", action="store_true", help="choose cutoff and k-points by converging the barrier")
    p.add_argument("--refine-images", default="saddle", choices=["saddle", "saddle+neighbours", "all"],
                   help="images given DFT single points (default: endpoints + climbing image)")
    p.add_argument("--hops", default="percolating", choices=["percolating", "all"],
                   help="hops setting the percolation thresholds (default) or every computed hop")
    p.add_argument("--reconverge", action="store_true", help="also re-converge each band with DFT forces (costly)")
    p.add_argument("--finetune", action="store_true", help="fine-tune SevenNet-0 on DFT labels (active learning)")
    p.add_argument("--iterations", type=int, default=1, help="fine-tuning iterations (default 1)")
    p.add_argument("--tolerance", type=float, default=0.03, help="|ML - DFT//ML| goal of fine-tuning, eV")
    p.add_argument("--epochs", type=positive_int, default=4, help="fine-tuning epochs (default 4)")
    _common(p, "refine")

    p = sub.add_parser("phases", help="list the library's phases of a system with provenance")
    p.add_argument("system")
    p.add_argument("--structures", action="append", default=[], metavar="DIR")

    p = sub.add_parser("search", help="tie-line search: orderings, prototypes and a dilute proxy, screened and relaxed")
    p.add_argument("system")
    p.add_argument("--max-sites", type=int, default=16, help="largest parent-lattice cell enumerated (default 16)")
    p.add_argument("--compositions", nargs="+", help="target formulas, e.g. Li13In3 Li2In (default: the system's usual)")
    p.add_argument("--budget-minutes", type=positive_float, default=None,
                   help="stop starting new jobs after this wall time; the same command resumes (default: none)")
    p.add_argument("--keep", type=positive_int, default=2, help="relax the K lowest candidates per composition (default 2)")
    p.add_argument("--dilute-sites", type=int, default=36, help="host sites of the dilute Li proxy (36: LiIn35)")
    _common(p, "search")

    p = sub.add_parser("submit", help="send a flow to a FireWorks LaunchPad (HPC queue), see docs/HPC.md")
    p.add_argument("what", choices=["study", "barriers", "hull", "refine"],
                   help="study: the whole study of SYSTEM...; barriers: PHASE's barrier flow; hull: SYSTEM's "
                        "relaxations; refine: VASP DFT//ML single points on PHASE's stored ML bands")
    p.add_argument("targets", nargs="+", metavar="SYSTEM_OR_PHASE",
                   help="systems (study, hull) or one phase (barriers, refine)")
    p.add_argument("--launchpad", required=True, help="LaunchPad file (my_launchpad.yaml)")
    p.add_argument("--qadapter", default=None, help="queue adapter file (SLURM CommonAdapter); submits queue jobs")
    p.add_argument("--phases", nargs="+", help="only these phases in the hulls (elements always included)")
    p.add_argument("--barriers", nargs="+", default=["reference"],
                   help="study: 'reference' (default), 'auto', 'none' or phase names")
    p.add_argument("--system", help="barriers: chemical system the phase belongs to")
    p.add_argument("--dilute", action="store_true", help="barriers: one Li in the host phase")
    p.add_argument("--host-sites", type=positive_int, default=None, help="barriers --dilute: host sites of the cell")
    p.add_argument("--jobflow-store", action="store_true", help="results go to jobflow.yaml's JOB_STORE, not <out>/store")
    p.add_argument("--njobs", type=positive_int, default=1, help="queue jobs to submit with --qadapter")
    p.add_argument("--incar", action="append", default=[], metavar="KEY=VALUE",
                   help="VASP INCAR override for every VASP job (repeatable; e.g. --incar ENCUT=700 --incar NCORE=8); "
                        "values typed (int, float, .TRUE./.FALSE., None drops a tag), recorded in the documents; "
                        "parallelisation tags (NCORE, KPAR, NPAR, NSIM...) leave the cache keys unchanged")
    p.add_argument("--no-climb", action="store_true",
                   help="VASP's own NEB (no climbing image, no VTST tags): for a VASP built without VTST")
    p.add_argument("--no-search", action="store_true",
                   help="study: leave the tie-line search out of the flow (it screens on the default ML potential "
                        "when --calculator is DFT; its predicted phases are then relaxed with DFT)")
    p.add_argument("--search-max-sites", type=positive_int, default=16, metavar="N",
                   help="largest parent-lattice cell the study's tie-line search enumerates (default 16)")
    p.add_argument("--temperature", type=float, default=None,
                   help="study: add the finite-temperature stage at this T (K): phonons, moduli, diffusivities")
    _reference_option(p)
    _thermo_options(p)
    _barrier_options(p)
    _common(p, "submit")

    p = sub.add_parser("report", help="collect submitted flows from the job store; rebuild files and report.md")
    p.add_argument("--out", default=DEFAULT_OUT)

    p = sub.add_parser("store", help="check: read back every stored document; move unreadable ones to quarantine")
    p.add_argument("action", choices=["check"])
    p.add_argument("--out", default=DEFAULT_OUT)

    sub.add_parser("calculators", help="list registered calculators")
    return parser


def resolve_calculator(args: argparse.Namespace) -> None:
    """Fill ``--calculator`` when it was not given: the command's default for the elements it treats
    (``default_calculator``); ``submit`` keeps None (a queue names its backend)."""
    if getattr(args, "calculator", "absent") is None and args.command != "submit":
        systems = getattr(args, "systems", None) or [getattr(args, "system", None)]
        phases = [getattr(args, "phase", None), *(getattr(args, "table", None) or [])]
        args.calculator = default_calculator(args.command, treated_elements(systems, phases))
