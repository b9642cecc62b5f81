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

from alloyflow.engine.keys import EARLIER_KEY
from alloyflow.engine.pending import pending_jobs
from alloyflow.engine.store import ResultStore

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


def jobstore_for(store) -> tuple[JobStore | None, str]:
    """(JobStore or None for the workers' jobflow settings, description)."""
    if store is None:
        return None, "the JOB_STORE of the workers' jobflow.yaml"
    if isinstance(store, JobStore):
        return store, type(store.docs_store).__name__
    rs = store if isinstance(store, ResultStore) else ResultStore(store)
    return rs.jobstore, str(rs.store_dir)


def reading_store(store) -> JobStore:
    js, _ = jobstore_for(store)
    if js is None:
        from jobflow import SETTINGS

        js = SETTINGS.JOB_STORE
    js.connect()
    return js


_LAUNCHPADS: dict = {}


class LaunchPadError(ValueError):
    """A LaunchPad file that cannot be read or a LaunchPad that cannot be reached; the message names the file.

    Never the file's text: a LaunchPad file holds the database password.
    """


def _yaml_line(exc) -> str:
    """`` at line N`` of a YAML (or JSON) parse error, from its marks only (never the offending text)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None and getattr(mark, "line", None) is not None:
        return f" at line {mark.line + 1}"
    lineno = getattr(exc, "lineno", None)  # json.JSONDecodeError
    return f" at line {lineno}" if lineno else ""


def load_launchpad(launchpad_file: str | Path):
    """One LaunchPad per file and process (a mongomock LaunchPad is only shared through its instance).

    A missing, unreadable or malformed file, and a database that cannot be reached (or refuses the
    credentials), are a ``LaunchPadError`` naming the file, the error type and a line number only.
    """
    from fireworks import LaunchPad

    path = str(Path(launchpad_file).resolve())
    if path in _LAUNCHPADS:
        return _LAUNCHPADS[path]
    if not Path(path).is_file():
        raise LaunchPadError(f"LaunchPad file {launchpad_file} does not exist (or is not a file)")
    try:
        lp = LaunchPad.from_file(path)
    except OSError as exc:
        raise LaunchPadError(f"cannot read LaunchPad file {launchpad_file}: {exc.strerror or type(exc).__name__}") from None
    except Exception as exc:  # ruamel/PyYAML/JSON parse errors, or a document without the keys a LaunchPad needs
        line = _yaml_line(exc)
        if line or "yaml" in type(exc).__module__.lower():
            raise LaunchPadError(f"LaunchPad file {launchpad_file} is not valid YAML{line} ({type(exc).__name__})") from None
        raise LaunchPadError(
            f"LaunchPad file {launchpad_file} does not describe a LaunchPad ({type(exc).__name__}); it needs a "
            "mapping with host, port, name (and username, password), see docs/HPC.md"
        ) from None
    try:
        lp.fireworks.find_one({}, {"_id": 1})  # the first contact with the database
    except Exception as exc:  # pymongo: ServerSelectionTimeoutError, OperationFailure (credentials), ...
        raise LaunchPadError(
            f"the LaunchPad database of {launchpad_file} is unreachable or refused the connection "
            f"({type(exc).__name__}); check its host, port, name and credentials, and that the server runs"
        ) from None
    _LAUNCHPADS[path] = lp
    return lp


def load_qadapter(qadapter_file: str | Path):
    """The queue adapter of a qadapter YAML (``_fw_name: CommonAdapter``, ``_fw_q_type: SLURM``).

    Only FireWorks' ``CommonAdapter`` is accepted: FireWorks would otherwise
    import whatever class the file names. A missing, unreadable or malformed
    file, another adapter or an unknown queue type is a ``ValueError`` of one
    line naming the file, raised before anything is submitted.
    """
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter
    from ruamel.yaml import YAML

    path = Path(qadapter_file)
    if not path.is_file():
        raise ValueError(f"qadapter file {qadapter_file} does not exist (or is not a file)")
    try:
        data = YAML(typ="safe").load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read qadapter file {qadapter_file}: {exc.strerror or type(exc).__name__}") from None
    except Exception as exc:  # ruamel's parser and scanner errors
        raise ValueError(f"qadapter file {qadapter_file} is not valid YAML{_yaml_line(exc)} "
                         f"({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"qadapter file {qadapter_file} must be a mapping with _fw_name: CommonAdapter and "
                         "_fw_q_type (see docs/HPC.md)")
    if data.get("_fw_name") != CommonAdapter._fw_name:
        raise ValueError(f"qadapter file {qadapter_file}: _fw_name must be CommonAdapter, got "
                         f"{data.get('_fw_name')!r}")
    q_types = sorted(CommonAdapter.default_q_commands)
    if data.get("_fw_q_type") not in q_types:
        raise ValueError(f"qadapter file {qadapter_file}: _fw_q_type must be one of {', '.join(q_types)}, got "
                         f"{data.get('_fw_q_type')!r}")
    try:
        return CommonAdapter.from_dict(data)
    except Exception as exc:  # noqa: BLE001 (FireWorks' own checks of the remaining keys)
        raise ValueError(f"qadapter file {qadapter_file} is not a usable CommonAdapter ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def render_submit_script(qadapter_file: str | Path, launch_dir: str | Path = ".") -> str:
    """The batch script the qadapter would submit (no scheduler needed)."""
    return load_qadapter(qadapter_file).get_script_str(str(launch_dir))


def _queued_uuids(lp, jobs) -> set[str]:
    """uuids of ``jobs`` whose fireworks an earlier submission left on the LaunchPad (not fizzled or defused).

    A firework queued under a job's key from before the face wrap (``EARLIER_KEY``) counts: its result,
    stored under that key, is copied under today's once it exists (``alloyflow.engine.local.is_finished``).
    """
    by_key = {(j.metadata or {}).get(EARLIER_KEY): j.uuid for j in jobs}
    by_key.update({(j.metadata or {}).get("alloyflow_key"): j.uuid for j in jobs})
    by_key.pop(None, None)
    if not by_key:
        return set()
    docs = lp.fireworks.find({"spec.alloyflow_key": {"$in": list(by_key)}, "state": {"$nin": _INACTIVE}},
                             {"spec.alloyflow_key": 1})
    return {by_key[d["spec"]["alloyflow_key"]] for d in docs}


def flow_to_pending_workflow(flow: Flow, store, lp=None, name: str | None = None):
    """FireWorks workflow of the jobs of ``flow`` that are neither stored nor queued.

    Why not ``flow_to_workflow`` as is: it converts every job. This is its
    loop (``job_to_firework`` per job) over ``alloyflow.engine.pending``'s
    filter; references to left-out, finished jobs resolve from the job store
    when a job runs. Returns (workflow or None, n_jobs, done labels, queued labels).
    """
    from fireworks import Workflow
    from jobflow.managers.fireworks import job_to_firework

    js, _ = jobstore_for(store)
    pending = pending_jobs(flow, reading_store(store), (lambda jobs: _queued_uuids(lp, jobs)) if lp is not None else None)
    mapping: dict = {}
    fireworks = [job_to_firework(j, js, parents=parents, parent_mapping=mapping) for j, parents in pending.jobs]
    wf = Workflow(fireworks, name=name or flow.name) if fireworks else None
    return wf, pending.total, pending.done, pending.queued


def submit_flow(flow: Flow, launchpad_file: str | Path, qadapter_file: str | Path | None = None,
                store: ResultStore | str | Path | JobStore | None = None, njobs: int = 1, launch_dir: str | Path = ".",
                name: str | None = None) -> SubmitResult:
    """Add the unfinished jobs of ``flow`` to the LaunchPad; with a qadapter, submit ``njobs`` queue jobs.

    ``store``: where workers write results (a ``ResultStore``, an output
    folder, a ``JobStore``, or ``None`` for the workers' jobflow settings).
    """
    lp = load_launchpad(launchpad_file)
    if qadapter_file is not None:
        load_qadapter(qadapter_file)  # a bad qadapter is refused before any firework exists
    wf, n_jobs, done, queued = flow_to_pending_workflow(flow, store, lp=lp, name=name)
    _, where = jobstore_for(store)
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
