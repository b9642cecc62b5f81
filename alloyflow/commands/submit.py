"""``alloyflow submit``: the study, barrier, hull and refinement flows to a FireWorks LaunchPad.

Each submission sends the very flow object the local command runs (same
makers, same keys): ``submit study`` the ``StudyFlowMaker`` flow, whose
``choose_barriers`` job adds the barrier flows at run time, ``submit
barriers`` one phase's ``BarrierFlowMaker`` flow, whose ``barrier_hops`` job
adds one NEB firework per hop. Jobs already stored or queued are left out.
Each submission is recorded in ``<out>/submitted.json`` so that ``alloyflow
report --out`` collects the results once the queue is done.
"""

from __future__ import annotations

from pathlib import Path

from jobflow import Flow

from alloyflow.calculators import DEFAULT_CALCULATOR
from alloyflow.engine import ResultStore
from alloyflow.engine.fireworks import SubmitResult, reading_store, submit_flow
from alloyflow.io.submissions import record_submission
from alloyflow.workflows.jobs.backends import makers_for


def hull_flow(system: str, calculator: str = DEFAULT_CALCULATOR, phases: list[str] | None = None,
              structure_dirs=(), relax_maker=None, references: dict | None = None) -> Flow:
    """The hull flow ``alloyflow hull`` runs (same phases, same keys: relaxations, then the hull document)."""
    from alloyflow.commands.common import library_for
    from alloyflow.workflows.flows.hull import hull_flow_for

    return hull_flow_for(system, calculator, library_for(structure_dirs), phases, relax_maker=relax_maker,
                         references=references)


def incar_relax_maker(calculator: str, incar: dict | None):
    """The hull's relax maker with ``--incar`` overrides (None: the flow's default maker)."""
    return makers_for(calculator, incar=incar).relax if incar else None


def submit_hull(system: str, calculator: str = DEFAULT_CALCULATOR, launchpad_file: str | Path = "my_launchpad.yaml",
                qadapter_file: str | Path | None = None, out: str | Path = "alloyflow-out",
                use_jobflow_store: bool = False, phases: list[str] | None = None, structure_dirs=(),
                njobs: int = 1, incar: dict | None = None, references: dict | None = None) -> SubmitResult:
    """``alloyflow submit hull SYSTEM --launchpad LP [--qadapter QA]``: the hull flow to FireWorks.

    Results go to ``<out>/store`` (must be on a filesystem the compute nodes
    share), or with ``use_jobflow_store`` to the workers' jobflow JOB_STORE.
    ``incar``: VASP INCAR overrides (``--incar KEY=VALUE``), recorded in the documents' ``metadata["vasp"]``;
    ``references``: elemental references chosen by phase name (``--reference Sn=Sn_alpha``).
    """
    flow = hull_flow(system, calculator, phases=phases, structure_dirs=structure_dirs,
                     relax_maker=incar_relax_maker(calculator, incar), references=references)
    record = {"system": system, "calculator": calculator, "phases": phases, "structure_dirs": list(structure_dirs),
              **({"incar": incar} if incar else {}), **({"references": references} if references else {})}
    return _submit_and_record(flow, "hull", system, record, launchpad_file, qadapter_file, out, use_jobflow_store,
                              njobs, dynamic=False)


def hull_documents(system: str, calculator: str = DEFAULT_CALCULATOR, out: str | Path | None = "alloyflow-out",
                   phases: list[str] | None = None, structure_dirs=(), store=None, incar: dict | None = None):
    """The hull's ``RelaxationDocument``s that workers have stored, and the labels still missing.

    ``store`` (a ``JobStore``) overrides ``out``; ``out=None`` and no store
    reads the jobflow settings' JOB_STORE; ``incar``: the submission's ``--incar`` (part of the keys).
    """
    from alloyflow.workflows.jobs.relax import RelaxationDocument

    flow = hull_flow(system, calculator, phases=phases, structure_dirs=structure_dirs,
                     relax_maker=incar_relax_maker(calculator, incar))
    reader = reading_store(store if store is not None else out)
    docs, missing = [], []
    for entry in flow.jobs:
        if (getattr(entry, "metadata", None) or {}).get("alloyflow_kind") == "assembly":
            continue  # the hull document itself
        label = (entry.metadata or {}).get("alloyflow_label", entry.name) if hasattr(entry, "metadata") else entry.name
        if reader.query_one({"uuid": entry.uuid}, properties=["uuid"]) is None:
            missing.append(label)
            continue
        output = reader.get_output(entry.uuid, load=True)
        docs.append(RelaxationDocument.model_validate(output if isinstance(output, dict) else output.model_dump()))
    return docs, missing


def refine_flow(phase: str, out: str | Path = "alloyflow-out", images: str = "saddle", hops: str = "percolating",
                calculator: str = DEFAULT_CALCULATOR) -> Flow:
    """VASP DFT//ML refinement of a phase's stored ML bands: one ``VaspRefineMaker`` flow per hop."""
    from alloyflow.ml.active import bands_from_barriers
    from alloyflow.workflows.flows.fidelity import hop_ids_for, stored_barriers
    from alloyflow.workflows.jobs.vasp_refine import VaspRefineMaker

    result = stored_barriers(Path(out), phase, calculator)
    if result is None:
        raise ValueError(f"no stored {calculator} barriers of {phase} in {Path(out) / 'barriers' / phase}: "
                         f"run 'alloyflow barriers {phase} --calculator {calculator} --out {out}' first")
    with ResultStore(out) as store:
        bands = bands_from_barriers(result, store, hop_ids_for(result, hops))
    if not bands:
        raise ValueError(f"{phase}: no converged ML band to refine")
    maker = VaspRefineMaker(images=images)
    return Flow([maker.make(b) for b in bands], name=f"alloyflow refine {phase} (VASP//{calculator})")


def submit_refine(phase: str, launchpad_file: str | Path, qadapter_file: str | Path | None = None,
                  out: str | Path = "alloyflow-out", calculator: str = DEFAULT_CALCULATOR, images: str = "saddle",
                  hops: str = "percolating", njobs: int = 1) -> SubmitResult:
    """``alloyflow submit refine PHASE``: VASP single points on the stored ML bands, to FireWorks."""
    flow = refine_flow(phase, out, images=images, hops=hops, calculator=calculator)
    return submit_flow(flow, launchpad_file, qadapter_file, store=ResultStore(out), njobs=njobs,
                       launch_dir=Path(out).resolve() / "launches")


def _submit_and_record(flow: Flow, kind: str, name: str, settings: dict, launchpad_file, qadapter_file, out,
                       use_jobflow_store: bool, njobs: int, dynamic: bool) -> SubmitResult:
    store = None if use_jobflow_store else ResultStore(out)
    result = submit_flow(flow, launchpad_file, qadapter_file, store=store, njobs=njobs,
                         launch_dir=Path(out).resolve() / "launches")
    record_submission(out, kind, name, flow.output.uuid, 2 if dynamic else 1,
                      "jobflow" if use_jobflow_store else "out", settings)
    return result


def submit_study(settings, launchpad_file: str | Path, qadapter_file: str | Path | None = None,
                 out: str | Path = "alloyflow-out", use_jobflow_store: bool = False, njobs: int = 1,
                 incar: dict | None = None, climb: bool | None = None) -> SubmitResult:
    """``alloyflow submit study SYSTEM... --launchpad LP``: the whole study flow to FireWorks.

    Parameters
    ----------
    settings : StudySettings
        The same settings ``alloyflow study`` takes (its ``calculator`` is usually ``vasp`` here).
    launchpad_file, qadapter_file : path
        FireWorks LaunchPad YAML; with a queue adapter, ``njobs`` queue jobs are submitted too.
    out : path
        Output folder: its store receives results (unless ``use_jobflow_store``) and it keeps the record.
    incar, climb : dict, bool, optional
        VASP INCAR overrides (``--incar``) and ``climb=False`` for a VASP without VTST (``--no-climb``).
    """
    from dataclasses import asdict, replace

    from alloyflow.commands.common import add_predicted, library_for
    from alloyflow.workflows.flows.study import study_flow

    library = library_for(settings.structure_dirs)
    if not settings.search:  # without the search in the flow, an earlier local search's structures join
        for system in settings.systems:
            add_predicted(library, Path(out), system)
    if incar or climb is not None:
        settings = replace(settings, incar=dict(incar or {}), climb=climb)
    flow = study_flow(settings, library)
    return _submit_and_record(flow, "study", " ".join(settings.systems), asdict(settings), launchpad_file,
                              qadapter_file, out, use_jobflow_store, njobs, dynamic=True)


def submit_barriers(phase: str, launchpad_file: str | Path, qadapter_file: str | Path | None = None,
                    out: str | Path = "alloyflow-out", calculator: str = DEFAULT_CALCULATOR,
                    system: str | None = None, structure_dirs=(), use_jobflow_store: bool = False,
                    n_images: int = 5, fmax: float = 0.05, njobs: int = 1, incar: dict | None = None,
                    climb: bool | None = None, **settings) -> SubmitResult:
    """``alloyflow submit barriers PHASE --launchpad LP``: one phase's barrier flow to FireWorks.

    ``settings`` are ``BarrierSettings`` fields (``min_image_distance``, ``max_hops``, ``dilute``, ...);
    ``incar``, ``climb``: VASP INCAR overrides (``--incar``), ``climb=False`` (``--no-climb``).
    """
    from alloyflow.commands.common import library_for
    from alloyflow.workflows.flows.barriers import barrier_flow

    flow = barrier_flow(phase, calculator, system, library_for(structure_dirs), n_images, fmax, incar=incar,
                        climb=climb, **settings)
    record = {"phase": phase, "system": system, "calculator": calculator, "structure_dirs": list(structure_dirs),
              "n_images": n_images, "fmax": fmax, "incar": incar, "climb": climb, **settings}
    return _submit_and_record(flow, "barriers", phase, record, launchpad_file, qadapter_file, out,
                              use_jobflow_store, njobs, dynamic=True)
