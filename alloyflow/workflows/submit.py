"""Send alloyflow's flows to a FireWorks LaunchPad (and SLURM); read the results back.

The path (docs/HPC.md has it step by step):

1. ``submit_hull`` / ``submit_flow`` convert the keyed flow with jobflow's
   FireWorks manager (``job_to_firework``, the unit of ``flow_to_workflow``)
   and ``LaunchPad.add_wf`` it. Jobs whose uuid the job store already holds
   are left out, and so are jobs already queued on the LaunchPad, so
   submitting twice computes nothing twice.
2. With a qadapter (a SLURM ``CommonAdapter``), ``njobs`` queue jobs are
   submitted the way ``qlaunch rapidfire`` does (``launch_rocket_to_queue``);
   without one, run ``qlaunch`` or ``rlaunch`` yourself.
3. Workers write every job's output into the job store given at submission:
   by default the file-backed store of ``--out`` (``<out>/store``, the one the
   local commands use), which must then lie on a filesystem the compute
   nodes share; or, with ``store=None``, the ``JOB_STORE`` of the workers'
   ``jobflow.yaml`` (MongoDB; needed for many concurrent workers).
4. ``hull_documents`` rebuilds the same keyed flow and reads its
   ``RelaxationDocument``s from the store, so hull, voltage and report code
   run on them unchanged; ``alloyflow hull --out`` on the same folder reuses
   every finished job.
5. A worker killed mid-job leaves its firework RUNNING: ``rerun_lost``
   (= ``lpad -l my_launchpad.yaml detect_lostruns --time 7200 --rerun``)
   marks it lost and READY again; finished fireworks and their stored
   results are untouched.

FireWorks is imported inside the functions: a mongomock LaunchPad
(``MONGOMOCK_SERVERSTORE_FILE``) must be configured before the first import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from jobflow import Flow, JobStore

from alloyflow.calculators import DEFAULT_CALCULATOR
from alloyflow.workflows.engine import ResultStore

LOST_RUN_SECONDS = 7200
"""Default age of a silent RUNNING firework before it counts as lost: above FireWorks' 1 h ping interval."""

_INACTIVE = ["FIZZLED", "DEFUSED", "ARCHIVED"]


@dataclass
class SubmitResult:
    workflow: str
    fw_ids: list[int] = field(default_factory=list)
    jobs: int = 0
    done: list[str] = field(default_factory=list)  # labels already in the job store
    queued: list[str] = field(default_factory=list)  # labels already on the LaunchPad
    queue_ids: list = field(default_factory=list)
    store: str = ""

    def message(self) -> str:
        lines = [f"{self.workflow}: {len(self.fw_ids)} firework(s) added to the LaunchPad "
                 f"({len(self.done)} job(s) already in the store, {len(self.queued)} already queued)",
                 f"results go to: {self.store}"]
        if self.queue_ids:
            lines.append(f"queue jobs submitted: {len(self.queue_ids)}")
        return "\n".join(lines)


def _jobstore(store) -> tuple[JobStore | None, str]:
    """(JobStore or None for the workers' jobflow settings, description)."""
    if store is None:
        return None, "the JOB_STORE of the workers' jobflow.yaml"
    if isinstance(store, JobStore):
        return store, type(store.docs_store).__name__
    rs = store if isinstance(store, ResultStore) else ResultStore(store)
    return rs.jobstore, str(rs.store_dir)


def _reading_store(store) -> JobStore:
    js, _ = _jobstore(store)
    if js is None:
        from jobflow import SETTINGS

        js = SETTINGS.JOB_STORE
    js.connect()
    return js


_LAUNCHPADS: dict = {}


def load_launchpad(launchpad_file: str | Path):
    """One LaunchPad per file and process (a mongomock LaunchPad is only shared through its instance)."""
    from fireworks import LaunchPad

    path = str(Path(launchpad_file).resolve())
    if path not in _LAUNCHPADS:
        _LAUNCHPADS[path] = LaunchPad.from_file(path)
    return _LAUNCHPADS[path]


def load_qadapter(qadapter_file: str | Path):
    """The queue adapter of a qadapter YAML (``_fw_name: CommonAdapter``, ``_fw_q_type: SLURM``)."""
    from fireworks.utilities.fw_serializers import load_object_from_file

    return load_object_from_file(str(qadapter_file))


def render_submit_script(qadapter_file: str | Path, launch_dir: str | Path = ".") -> str:
    """The batch script the qadapter would submit (no scheduler needed)."""
    return load_qadapter(qadapter_file).get_script_str(str(launch_dir))


def _queued_keys(lp, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    docs = lp.fireworks.find({"spec.alloyflow_key": {"$in": keys}, "state": {"$nin": _INACTIVE}},
                             {"spec.alloyflow_key": 1})
    return {d["spec"]["alloyflow_key"] for d in docs}


def flow_to_pending_workflow(flow: Flow, store, lp=None, name: str | None = None):
    """FireWorks workflow of the jobs of ``flow`` that are neither stored nor queued.

    Why not ``flow_to_workflow`` as is: it converts every job. This is its
    loop (``iterflow`` + ``job_to_firework``) with a filter; references to
    left-out, finished jobs resolve from the job store when a job runs.
    Returns (workflow or None, n_jobs, done labels, queued labels).
    """
    from fireworks import Workflow
    from jobflow.managers.fireworks import job_to_firework

    js, _ = _jobstore(store)
    reader = _reading_store(store)
    jobs = list(flow.iterflow())
    keys = [(j.metadata or {}).get("alloyflow_key") for j, _ in jobs]
    queued_keys = _queued_keys(lp, [k for k in keys if k]) if lp is not None else set()
    mapping: dict = {}
    skipped: set[str] = set()
    fireworks, done, queued = [], [], []
    for (j, parents), key in zip(jobs, keys):
        label = (j.metadata or {}).get("alloyflow_label", j.name)
        if reader.query_one({"uuid": j.uuid}, properties=["uuid"]) is not None:
            done.append(label)
            continue
        if key in queued_keys or any(p in skipped for p in parents):
            # queued by an earlier submission (or downstream of such a job): never twice
            queued.append(label)
            skipped.add(j.uuid)
            continue
        fireworks.append(job_to_firework(j, js, parents=[p for p in parents if p in mapping], parent_mapping=mapping))
    wf = Workflow(fireworks, name=name or flow.name) if fireworks else None
    return wf, len(jobs), done, queued


def submit_flow(flow: Flow, launchpad_file: str | Path, qadapter_file: str | Path | None = None,
                store: ResultStore | str | Path | JobStore | None = None, njobs: int = 1, launch_dir: str | Path = ".",
                name: str | None = None) -> SubmitResult:
    """Add the unfinished jobs of ``flow`` to the LaunchPad; with a qadapter, submit ``njobs`` queue jobs.

    ``store``: where workers write results (a ``ResultStore``, an output
    folder, a ``JobStore``, or ``None`` for the workers' jobflow settings).
    """
    lp = load_launchpad(launchpad_file)
    wf, n_jobs, done, queued = flow_to_pending_workflow(flow, store, lp=lp, name=name)
    _, where = _jobstore(store)
    result = SubmitResult(workflow=name or flow.name, jobs=n_jobs, done=done, queued=queued, store=where)
    if wf is not None:
        old_new = lp.add_wf(wf)  # {old fw_id: new fw_id}
        result.fw_ids = sorted(old_new.values())
    if qadapter_file is not None and (wf is not None or queued):
        result.queue_ids = launch_queue_jobs(lp, qadapter_file, launch_dir, njobs)
    return result


def launch_queue_jobs(lp, qadapter_file: str | Path, launch_dir: str | Path = ".", njobs: int = 1) -> list:
    """Submit ``njobs`` queue jobs that run fireworks (one ``qlaunch`` submission each)."""
    from fireworks import FWorker
    from fireworks.queue.queue_launcher import launch_rocket_to_queue

    qadapter = load_qadapter(qadapter_file)
    launch_dir = Path(launch_dir).resolve()
    launch_dir.mkdir(parents=True, exist_ok=True)
    ids = []
    for _ in range(njobs):
        ok = launch_rocket_to_queue(lp, FWorker(), qadapter, str(launch_dir), reserve=False, create_launcher_dir=True)
        if not ok:
            raise RuntimeError(
                f"the queue refused the job (qadapter {qadapter_file}); see FireWorks' log in {launch_dir}"
            )
        ids.append(ok)
    return ids


def relax_maker_for(calculator: str, **kwargs):
    """The hull's relax maker for a registry name: ``VaspRelaxMaker`` for ``vasp``, else alloyflow's ``RelaxMaker``."""
    if calculator == "vasp":
        from alloyflow.workflows.vasp import VaspRelaxMaker  # imports atomate2's VASP code: only when needed

        return VaspRelaxMaker(**kwargs)
    from alloyflow.workflows.relax import RelaxMaker

    return RelaxMaker(calculator=calculator, **kwargs)


def neb_maker_for(calculator: str, n_images: int = 5, fmax: float = 0.05, **kwargs):
    """The barrier NEB maker for a registry name: ``VaspNebMaker`` for ``vasp``, else alloyflow's ``NebMaker``."""
    if calculator == "vasp":
        from alloyflow.workflows.vasp import VaspNebMaker

        incar = {**kwargs.pop("incar", {}), "EDIFFG": -abs(fmax)}
        return VaspNebMaker(n_images=n_images, incar=incar, **kwargs)
    from alloyflow.workflows.neb import NebMaker

    return NebMaker(calculator=calculator, n_images=n_images, fmax=fmax, **kwargs)


def hull_flow(system: str, calculator: str = DEFAULT_CALCULATOR, phases: list[str] | None = None,
              structure_dirs=(), relax_maker=None) -> Flow:
    """The keyed hull flow ``alloyflow hull`` runs (same phases, same keys), for any calculator."""
    import alloyflow.calculators_dft  # noqa: F401  (registers gpaw and vasp)
    from alloyflow.calculators import check_elements
    from alloyflow.structures import StructureLibrary, parse_system
    from alloyflow.workflows.hull import HullMaker

    library = StructureLibrary(user_dirs=structure_dirs or ())
    check_elements(calculator, parse_system(system), where=f"system {system}")
    candidates = library.phases(system)
    if phases:
        wanted = set(phases)
        candidates = [p for p in candidates if p.name in wanted or p.formula in wanted or len(p.elements) == 1]
    maker = relax_maker or relax_maker_for(calculator)
    return HullMaker(name=f"alloyflow hull {system} ({calculator})", relax_maker=maker).make(candidates)


def submit_hull(system: str, calculator: str = DEFAULT_CALCULATOR, launchpad_file: str | Path = "my_launchpad.yaml",
                qadapter_file: str | Path | None = None, out: str | Path = "alloyflow-out",
                use_jobflow_store: bool = False, phases: list[str] | None = None, structure_dirs=(),
                njobs: int = 1) -> SubmitResult:
    """``alloyflow submit hull SYSTEM --launchpad LP [--qadapter QA]``: the hull flow to FireWorks.

    Results go to ``<out>/store`` (must be on a filesystem the compute nodes
    share), or with ``use_jobflow_store`` to the workers' jobflow JOB_STORE.
    """
    flow = hull_flow(system, calculator, phases=phases, structure_dirs=structure_dirs)
    store = None if use_jobflow_store else ResultStore(out)
    return submit_flow(flow, launchpad_file, qadapter_file, store=store, njobs=njobs,
                       launch_dir=Path(out).resolve() / "launches")


def hull_documents(system: str, calculator: str = DEFAULT_CALCULATOR, out: str | Path | None = "alloyflow-out",
                   phases: list[str] | None = None, structure_dirs=(), store=None):
    """The hull's ``RelaxationDocument``s that workers have stored, and the labels still missing.

    ``store`` (a ``JobStore``) overrides ``out``; ``out=None`` and no store
    reads the jobflow settings' JOB_STORE.
    """
    from alloyflow.workflows.relax import RelaxationDocument

    flow = hull_flow(system, calculator, phases=phases, structure_dirs=structure_dirs)
    reader = _reading_store(store if store is not None else out)
    docs, missing = [], []
    for entry in flow.jobs:
        label = (entry.metadata or {}).get("alloyflow_label", entry.name) if hasattr(entry, "metadata") else entry.name
        if reader.query_one({"uuid": entry.uuid}, properties=["uuid"]) is None:
            missing.append(label)
            continue
        output = reader.get_output(entry.uuid, load=True)
        docs.append(RelaxationDocument.model_validate(output if isinstance(output, dict) else output.model_dump()))
    return docs, missing


def rerun_lost(launchpad_file: str | Path, expiration_secs: int = LOST_RUN_SECONDS) -> list[int]:
    """Mark RUNNING fireworks silent for ``expiration_secs`` as lost and READY again (their fw_ids).

    The same as ``lpad -l LP detect_lostruns --time SECONDS --rerun``. Keep
    ``expiration_secs`` above FireWorks' ping interval (1 h) or live runs
    count as lost.
    """
    _, lost_fw_ids, _ = load_launchpad(launchpad_file).detect_lostruns(expiration_secs=expiration_secs, rerun=True)
    return list(lost_fw_ids)


def workflow_states(launchpad_file: str | Path) -> dict[str, int]:
    """Number of fireworks per state on the LaunchPad."""
    lp = load_launchpad(launchpad_file)
    counts: dict[str, int] = {}
    for d in lp.fireworks.find({}, {"state": 1}):
        counts[d["state"]] = counts.get(d["state"], 0) + 1
    return counts


def mongomock_launchpad_env(db_file: str | Path) -> dict:
    """Environment for a server-less LaunchPad (``fireworks[mongomock]``): one process at a time.

    mongomock-persistence saves the database when the interpreter exits, so
    use it from subprocesses (or one CLI command after another), never from
    two processes at once.
    """
    db_file = Path(db_file).resolve()
    if not db_file.exists():
        db_file.write_text("{}")
    return {**os.environ, "MONGOMOCK_SERVERSTORE_FILE": str(db_file)}


def refine_flow(phase: str, out: str | Path = "alloyflow-out", images: str = "saddle", hops: str = "percolating",
                calculator: str = DEFAULT_CALCULATOR) -> Flow:
    """VASP DFT//ML refinement of a phase's stored ML bands: one ``VaspRefineMaker`` flow per hop."""
    from alloyflow.workflows.active import bands_from_barriers
    from alloyflow.workflows.fidelity import _hop_ids, _stored_barriers
    from alloyflow.workflows.vasp_refine import VaspRefineMaker

    result = _stored_barriers(Path(out), phase, calculator)
    if result is None:
        raise ValueError(f"no stored {calculator} barriers of {phase} in {Path(out) / 'barriers' / phase}: "
                         f"run 'alloyflow barriers {phase} --calculator {calculator} --out {out}' first")
    with ResultStore(out) as store:
        bands = bands_from_barriers(result, store, _hop_ids(result, hops))
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
