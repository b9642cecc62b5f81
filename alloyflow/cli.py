"""Thin command line: parse (``alloyflow.commands.parser``), call one function, print."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from alloyflow.calculators import available_calculators, default_calculator
from alloyflow.commands.parser import DEFAULT_OUT, WORKER_COMMANDS, build_parser, reference_map, resolve_calculator


def _quiet() -> None:
    """Libraries underneath warn a lot about things a user cannot act on."""
    warnings.filterwarnings("ignore")
    logging.getLogger("jobflow").setLevel(logging.ERROR)
    logging.getLogger("maggma").setLevel(logging.ERROR)
    os.environ.setdefault("TQDM_MININTERVAL", "1")


def set_workers(args) -> None:
    """``$ALLOYFLOW_WORKERS`` for this run: ``--workers``, else the environment's, else one per core (at most
    4, fewer when ``--threads`` gives each several) for an ML potential and 1 for DFT, whose jobs are
    parallel inside."""
    if args.command not in WORKER_COMMANDS:
        return
    if getattr(args, "workers", None):
        os.environ["ALLOYFLOW_WORKERS"] = str(args.workers)
        return
    if os.environ.get("ALLOYFLOW_WORKERS"):
        return
    from alloyflow.calculators import get_spec
    from alloyflow.engine import auto_workers

    n = 1
    if get_spec(args.calculator).kind == "mlip":
        n = max(1, auto_workers() // max(1, getattr(args, "threads", None) or 1))
    os.environ["ALLOYFLOW_WORKERS"] = str(n)


def cmd_hull(args) -> int:
    from alloyflow.commands.hull import run_hull_command

    result = run_hull_command(
        args.system, calculator=args.calculator, out=Path(args.out), structure_dirs=args.structures,
        phases=args.phases, progress=not args.no_progress, references=reference_map(args.reference),
    )
    print(result.text)
    return 0


def cmd_barriers(args) -> int:
    from alloyflow.commands.barriers import barrier_table_text, run_barriers_command

    if args.table:
        print(barrier_table_text(Path(args.out), args.table, calculator=args.calculator))
        return 0
    if not args.phase:
        print("alloyflow barriers: give a PHASE or --table PHASE...", file=sys.stderr)
        return 2
    result = run_barriers_command(
        args.phase, system=args.system, calculator=args.calculator, out=Path(args.out),
        structure_dirs=args.structures, min_image_distance=args.min_image_distance, n_images=args.images,
        fmax=args.fmax, max_hops=args.max_hops or None, max_length=args.max_length, dilute=args.dilute,
        dilute_mode=args.dilute_mode, n_host_sites=args.host_sites, progress=not args.no_progress,
        endpoint_trials=args.endpoint_trials, screen=args.screen, screen_factor=args.screen_factor,
    )
    print(result.text)
    return 0


def _study_settings(args, systems):
    from alloyflow.workflows.flows.study import StudySettings

    max_hops = StudySettings.max_hops if args.max_hops is None else (args.max_hops or None)
    return StudySettings(
        systems=systems, calculator=args.calculator, barriers=args.barriers,
        min_image_distance=args.min_image_distance, n_images=args.images, fmax=args.fmax,
        max_hops=max_hops, max_length=args.max_length, structure_dirs=args.structures, phases=args.phases,
        temperature=getattr(args, "temperature", None), min_length=getattr(args, "min_length", StudySettings.min_length),
        elastic=not getattr(args, "no_elastic", False), diffusivity=not getattr(args, "no_diffusivity", False),
        endpoint_trials=args.endpoint_trials, search=not getattr(args, "no_search", True),
        search_max_sites=getattr(args, "search_max_sites", 16),
        interstitial=not getattr(args, "no_interstitial", False),
        host_check=not getattr(args, "no_host_check", False), screen=getattr(args, "screen", False),
        screen_factor=getattr(args, "screen_factor", None), references=reference_map(getattr(args, "reference", [])),
    )


def cmd_study(args) -> int:
    from alloyflow.commands.study import run_study

    report = run_study(_study_settings(args, args.systems), Path(args.out), progress=not args.no_progress)
    print(report.summary)
    return 0


def cmd_thermo(args) -> int:
    from alloyflow.commands.thermo import run_thermo

    result = run_thermo(
        args.system, temperature=args.temperature, calculator=args.calculator, out=Path(args.out),
        phases=args.phases, min_length=args.min_length, elastic=not args.no_elastic,
        diffusivity=not args.no_diffusivity, structure_dirs=args.structures, progress=not args.no_progress,
        references=reference_map(args.reference),
    )
    print(result.text)
    return 0


def cmd_refine(args) -> int:
    from alloyflow.workflows.flows.fidelity import format_fidelity, run_fidelity

    dft_kwargs = {k: v for k, v in (("ecut", args.ecut), ("kpt_density", args.kpt_density)) if v is not None}
    result = run_fidelity(args.phase, Path(args.out), system=args.system, calculator=args.calculator, dft=args.dft,
                          dft_kwargs=dft_kwargs, images=args.refine_images, hops=args.hops, converge=args.converge,
                          reconverge=args.reconverge, finetune=args.finetune, iterations=args.iterations,
                          tolerance=args.tolerance, epochs=args.epochs)
    print(format_fidelity([result]))
    print(f"file: {Path(args.out) / 'barriers' / args.phase / 'fidelity.json'}")
    return 0


def cmd_phases(args) -> int:
    from alloyflow.structures import StructureLibrary

    lib = StructureLibrary(user_dirs=args.structures)
    print(f"{'name':<14}{'formula':<10}{'atoms':>6}  {'status':<13}source")
    for p in lib.phases(args.system):
        print(f"{p.name:<14}{p.formula:<10}{len(p.structure):>6}  {p.status:<13}{p.source[:70]}")
    return 0


def cmd_search(args) -> int:
    from alloyflow.structures import StructureLibrary
    from alloyflow.engine import ResultStore
    from alloyflow.workflows.flows.search import format_search_summary, run_search, write_search_outputs

    library = StructureLibrary(user_dirs=args.structures)
    with ResultStore(args.out) as store:
        result = run_search(args.system, store, calculator=args.calculator, max_sites=args.max_sites,
                            compositions=args.compositions, budget_minutes=args.budget_minutes,
                            keep_per_composition=args.keep, library=library, progress=not args.no_progress,
                            dilute_sites=args.dilute_sites)
    files = write_search_outputs(args.out, result)
    print(format_search_summary(result))
    if files:
        print(f"files: {', '.join(str(p) for p in files.values())}")
    return 0


def cmd_submit(args) -> int:
    from alloyflow.commands import submit

    if args.calculator is None:
        if args.what != "refine":
            print(f"alloyflow submit {args.what}: give --calculator (vasp for DFT, or an ML potential such as "
                  f"{default_calculator()}): a queue never falls back to the ML potential silently", file=sys.stderr)
            return 2
        from alloyflow.structures import treated_elements

        args.calculator = default_calculator("refine", treated_elements([args.system], args.targets[:1]))

    from alloyflow.calculators import get_spec
    from alloyflow.workflows.jobs.backends import parse_incar

    common = dict(launchpad_file=args.launchpad, qadapter_file=args.qadapter, out=args.out)
    incar, climb = parse_incar(args.incar), (False if args.no_climb else None)
    if (incar or args.no_climb) and (args.what == "refine" or get_spec(args.calculator).runner != "vasp"):
        raise ValueError("--incar and --no-climb are for VASP hull, barriers and study submissions")
    if args.temperature is not None and args.what != "study":
        raise ValueError("--temperature is for study submissions (the thermo stage of the study flow)")
    vasp = {**({"incar": incar} if incar else {}), **({"climb": climb} if climb is not None else {})}
    single = args.what in ("barriers", "refine")
    if single and len(args.targets) != 1:
        print(f"alloyflow submit {args.what}: give one phase, not {' '.join(args.targets)}", file=sys.stderr)
        return 2
    if args.what == "refine":
        result = submit.submit_refine(args.targets[0], calculator=args.calculator, njobs=args.njobs, **common)
    elif args.what == "barriers":
        result = submit.submit_barriers(
            args.targets[0], calculator=args.calculator, system=args.system, structure_dirs=args.structures,
            use_jobflow_store=args.jobflow_store, n_images=args.images, fmax=args.fmax, njobs=args.njobs,
            endpoint_trials=args.endpoint_trials, screen=args.screen, screen_factor=args.screen_factor,
            min_image_distance=args.min_image_distance, max_hops=args.max_hops or None,
            max_length=args.max_length, dilute=args.dilute, n_host_sites=args.host_sites, **vasp, **common)
    elif args.what == "study":
        result = submit.submit_study(_study_settings(args, args.targets), use_jobflow_store=args.jobflow_store,
                                     njobs=args.njobs, **vasp, **common)
    else:
        results = [submit.submit_hull(system, args.calculator, use_jobflow_store=args.jobflow_store,
                                      phases=args.phases, structure_dirs=args.structures, njobs=args.njobs,
                                      references=reference_map(args.reference),
                                      **{k: v for k, v in vasp.items() if k == "incar"}, **common)
                   for system in args.targets]
        print("\n".join(r.message() for r in results))
        return 0
    print(result.message())
    print(f"when the queue is done: alloyflow report --out {args.out}")
    return 0


def cmd_report(args) -> int:
    from alloyflow.commands.report import collect

    print(collect(Path(args.out)).message())
    return 0


def cmd_store(args) -> int:
    from alloyflow.commands.store import check_store

    print(check_store(Path(args.out)))
    return 0


def cmd_calculators(args) -> int:
    from alloyflow.calculators import DEFAULT_CALCULATOR, SYSTEM_DEFAULTS, get_spec
    from alloyflow.structures import parse_system

    names = available_calculators()
    width = max(len(n) for n in names) + 2
    marks = {DEFAULT_CALCULATOR: " (default)"}
    marks.update({name: f" (default for {'-'.join(parse_system(span))} systems)" for span, name in SYSTEM_DEFAULTS})
    for name in names:
        spec = get_spec(name)
        mark = marks.get(name, "")
        print(f"{name:<{width}}{spec.model:<26} {spec.kind:<5} {spec.description}{mark}\n{'':<{width}}"
              f"version: {spec.version}")
    return 0


def _register_trusted_potentials(argv) -> None:
    """Potentials this installation fine-tuned (its per-user record) become --calculator choices.

    Nothing in --out is registered: a folder's files could name any checkpoint
    (a pickle) and any name. --out only picks, among recorded potentials of one
    name, the one fine-tuned in that folder.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--out", default=DEFAULT_OUT)
    known, _ = pre.parse_known_args(argv)
    from alloyflow.calculators.user import register_trusted_potentials

    register_trusted_potentials(prefer_dir=known.out)


def refuse_login_node_dft(args) -> None:
    """A local command on a batch-queue calculator (VASP) would run DFT right here, on a login node."""
    if args.command == "submit" or getattr(args, "inside_batch_job", False):
        return
    from alloyflow.calculators import get_spec

    for calculator in filter(None, (getattr(args, "calculator", None), getattr(args, "dft", None))):
        if get_spec(calculator).runner != "vasp":
            continue
        raise ValueError(
            f"--calculator {calculator} would start VASP in this process (on a cluster: the login node); "
            f"send the flow to the queue with 'alloyflow submit {args.command} ...' (docs/HPC.md), "
            "or add --inside-batch-job when this command runs inside a batch job"
        )


def main(argv: list[str] | None = None) -> int:
    _register_trusted_potentials(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _quiet()
    if getattr(args, "threads", None):
        os.environ["ALLOYFLOW_THREADS"] = str(args.threads)
    from alloyflow.calculators import CalculatorError
    from alloyflow.structures import StructureError
    from alloyflow.engine import JobFailed, StoreError

    handlers = {"hull": cmd_hull, "barriers": cmd_barriers, "study": cmd_study, "phases": cmd_phases,
                "report": cmd_report, "submit": cmd_submit, "search": cmd_search, "calculators": cmd_calculators,
                "thermo": cmd_thermo, "refine": cmd_refine, "store": cmd_store}
    try:
        if getattr(args, "potential", None):
            from alloyflow.calculators.user import register_potential_file

            args.calculator = register_potential_file(args.potential)
        resolve_calculator(args)
        refuse_login_node_dft(args)
        set_workers(args)
        return handlers[args.command](args)
    except (StructureError, CalculatorError, StoreError, JobFailed, ValueError) as exc:
        print(f"alloyflow {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file or folder the command cannot create, read or write
        where = f": {exc.filename}" if exc.filename else ""
        print(f"alloyflow {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nalloyflow {args.command}: interrupted; finished jobs are stored in {getattr(args, 'out', '.')} "
              "and the same command resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
