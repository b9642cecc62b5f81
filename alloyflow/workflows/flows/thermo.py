"""The finite-temperature stage as a jobflow flow: phonons, moduli and diffusivities of a system's phases.

``ThermoFlowMaker(phonon_maker, elastic_maker, attempt_maker).make(system,
relaxations, barriers, temperature)`` returns a flow of one keyed job,
``plan_thermo``. Once the relaxations exist it leaves out the unconverged
ones (with a warning: their forces are not harmonic about a minimum) and
answers ``Response(replace=...)`` with

1. one keyed phonon job per converged phase (``phonon_jobs``),
2. one keyed elastic job per phase (``elastic_job``),
3. the keyed Vineyard jobs of the percolating hops of every barrier result of
   the system (``attempt_jobs``; the bands are read from the job store), and
4. ``collect_thermo``, whose output is the ``ThermoResult``.

The force jobs carry the keys of ``run_phonons``, ``run_elastic(relax=False)``
and ``run_attempt_frequencies``, so results stored before this flow existed
are reused, and jobs the store holds are left out of the replacement. The
elastic and attempt-frequency jobs are tolerant (``alloyflow.engine.guarded``):
a phase whose fit fails, or a barrier result whose Hessians fail, becomes a
warning of the result and the others are kept, on the local engine as on a
queue. A phonon job that fails stops the stage (no free energy, no hull at T).

``alloyflow.workflows.flows.study_thermo`` adds the stage to the study flow
after its barriers (one planning job for every system, ``ThermoFlowMaker.plan``).
Every decision is taken inside a job, so the same flow runs locally
(``alloyflow thermo``, ``alloyflow study --temperature``), on FireWorks and on
jobflow-remote.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from jobflow import CURRENT_JOB, Flow, Maker, OutputReference, Response, job
from pymatgen.core import Composition

from alloyflow.analysis.diffusion import DEFAULT_TEMPERATURES, diffusivities_for
from alloyflow.analysis.hull import entries_from_documents, references_for
from alloyflow.analysis.migration import BarrierResult
from alloyflow.analysis.thermo import ThermoResult, thermo_result
from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info
from alloyflow.engine.guarded import job_error
from alloyflow.engine.keys import deterministic_uuid, input_hash, keyed
from alloyflow.engine.local import DYNAMIC, exposing_store, unfinished
from alloyflow.engine.store import as_dict
from alloyflow.io.layout import OutputLayout
from alloyflow.structures.library import parse_system
from alloyflow.workflows.flows.hull import hull_from_documents
from alloyflow.workflows.jobs.attempt import AttemptFrequencyMaker, attempt_document, attempt_jobs
from alloyflow.workflows.jobs.elastic import ElasticDocument, ElasticMaker, elastic_job
from alloyflow.workflows.jobs.phonons import DEFAULT_MIN_LENGTH, PhononDocument, PhononMaker, phonon_jobs
from alloyflow.workflows.jobs.relax import RelaxationDocument
from alloyflow.workflows.schemas.study import HullDocument, StudyDocument

THERMO_VERSION = 2
"""Bump when the planning or collecting changes what a stored thermo result means."""


def check_temperature(temperature) -> None:
    """Refuse a temperature below 0 K (or none) before any job exists."""
    if temperature is None or not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 K, not {temperature}")


def barriers_of_system(results, system: str) -> list[BarrierResult]:
    """The barrier results whose phase lies in ``system`` (its elements a subset of the system's), in order."""
    elements = set(parse_system(system))
    out = []
    for res in results:
        res = res if isinstance(res, BarrierResult) else BarrierResult.model_validate(as_dict(res))
        try:
            if {str(e) for e in Composition(res.formula or res.phase).elements} <= elements:
                out.append(res)
        except ValueError:
            continue
    return out


def study_barriers(doc: StudyDocument, system: str) -> list[BarrierResult]:
    """A study's barrier results of ``system``, in the order of their folders (``<out>/barriers/<name>``)."""
    names = [OutputLayout(".").barriers(c.phase, c.dilute, c.mechanism).name for c in doc.choices]
    ordered = [b for _, b in sorted(zip(names, doc.barriers), key=lambda pair: pair[0])]
    return barriers_of_system([b for b in ordered if not b.error], system)  # a failed phase has no hops


def relaxation_inputs(system: str, relaxations, jobstore=None) -> tuple[list[RelaxationDocument], list[str]]:
    """(relaxation documents, hull warnings) from documents or from a ``HullDocument``.

    A ``HullDocument``'s relaxations are read from ``jobstore`` (default: the
    running job's store) by their keys; the hull warnings are the hull's, which
    for a list of documents are computed from them (the hull flow's very hull).
    """
    data = as_dict(relaxations)
    if isinstance(data, dict) and "relaxation_keys" in data:
        hull = HullDocument.model_validate(data)
        store = jobstore if jobstore is not None else CURRENT_JOB.store
        docs = [RelaxationDocument.model_validate(as_dict(store.get_output(deterministic_uuid(k), load=True)))
                for k in hull.relaxation_keys]
        return docs, list(hull.hull.warnings)
    docs = [RelaxationDocument.model_validate(as_dict(d)) for d in data]
    return docs, list(hull_from_documents(system, docs).hull.warnings)


def _barrier_inputs(barriers, system: str) -> list[BarrierResult] | None:
    if barriers is None:
        return None
    data = as_dict(barriers)
    if isinstance(data, dict) and "barriers" in data:  # a StudyDocument
        return study_barriers(StudyDocument.model_validate(data), system)
    return barriers_of_system(data, system)


def _identity(value):
    """What identifies a flow input for a key: references by uuid, documents by their key, data by hash."""
    if isinstance(value, OutputReference):
        return {"ref": value.uuid, "attributes": [list(a) for a in value.attributes]}
    if isinstance(value, dict) and STORED in value:
        return {"ref": value[STORED], "attributes": []}
    if isinstance(value, (list, tuple)):
        return [_identity(v) for v in value]
    data = as_dict(value)
    if isinstance(data, dict) and data.get("input_hash"):  # a job's document: its key (and its verdict)
        return {"input_hash": data["input_hash"], "converged": data.get("converged")}
    if isinstance(data, dict) and "relaxation_keys" in data:
        return {"system": data.get("system"), "relaxation_keys": data["relaxation_keys"]}
    if isinstance(data, dict):
        return {k: _identity(v) for k, v in sorted(data.items())}
    return input_hash(data)


STORED = "alloyflow_stored_output"
"""``{STORED: uuid}`` stands for the output of a job the store holds, left out of a replacement flow.

A queue refuses a replacement whose jobs reference jobs outside it (jobflow's
FireWorks manager: "not found in the jobs array"), so a collecting job gets
references only to the jobs that run with it and reads the others from the
store (``load_stored``; it must expose the store)."""


def load_stored(value):
    """``value``, or for ``{STORED: uuid}`` the stored output of that job (inside a job that exposes the store)."""
    if isinstance(value, dict) and STORED in value:
        return CURRENT_JOB.store.get_output(value[STORED], load=True)
    return value


@dataclass
class ThermoFlowMaker(Maker):
    """The finite-temperature flow of one system; it receives its makers.

    Parameters
    ----------
    name : str
        Flow name prefix.
    phonon_maker : PhononMaker
        Harmonic phonons (its ``t_max`` is raised to the temperature asked for, as ``alloyflow thermo`` does).
    elastic_maker : ElasticMaker or None
        Relaxed-ion elastic moduli of every phase; None: no moduli.
    attempt_maker : AttemptFrequencyMaker or None
        Vineyard attempt frequencies of the barrier results' percolating hops; None: no diffusivities.
    references : dict
        ``{element: phase name or "lowest"}``: elemental references of both hulls chosen instead of
        each element's own phase (``{"Sn": "Sn_alpha"}``); empty: the own phases (β-Sn, bcc Li, In).
    """

    name: str = "thermo"
    phonon_maker: PhononMaker = field(default_factory=PhononMaker)
    elastic_maker: ElasticMaker | None = field(default_factory=ElasticMaker)
    attempt_maker: AttemptFrequencyMaker | None = field(default_factory=AttemptFrequencyMaker)
    references: dict = field(default_factory=dict)

    def check(self) -> None:
        """One calculator for every stage (a saddle or a minimum of one potential is none of another)."""
        for maker in (self.elastic_maker, self.attempt_maker):
            if maker is not None and maker.calculator != self.phonon_maker.calculator:
                raise ValueError(f"{maker.name} maker calculator {maker.calculator!r} differs from the phonon "
                                 f"maker's {self.phonon_maker.calculator!r}")

    def settings(self) -> list:
        """Calculator and settings of each maker (None for a stage left out): what the stage's keys hold."""
        makers = [None if m is None else {"calculator": calculator_info(m.calculator), "settings": m.settings()}
                  for m in (self.phonon_maker, self.elastic_maker, self.attempt_maker)]
        return makers + ([{"references": dict(sorted(self.references.items()))}] if self.references else [])

    def key(self, system: str, relaxations, barriers, temperature: float, missing_barriers: str | None) -> str:
        """The planning job's key: system, inputs (references by uuid), temperature and every maker's settings."""
        return input_hash("thermo plan", THERMO_VERSION, system, _identity(relaxations),
                          None if barriers is None else _identity(barriers), float(temperature), self.settings(),
                          missing_barriers)

    def make(self, system: str, relaxations, barriers=None, temperature: float = 300.0,
             missing_barriers: str | None = None) -> Flow:
        """The thermo flow of ``system``: one planning job that adds the force jobs once the relaxations exist.

        Parameters
        ----------
        system : str
            Chemical system, e.g. ``"Li-In"``.
        relaxations : list or HullDocument or OutputReference
            The system's ``RelaxationDocument``s (or references to them, e.g. a hull flow's relaxation
            jobs' outputs), or a ``HullDocument`` (or a reference to one; its relaxations are read from
            the job store by their keys).
        barriers : list or StudyDocument or OutputReference, optional
            ``BarrierResult``s (data or a reference, e.g. to a ``StudyDocument`` or its ``barriers``);
            those of ``system`` get attempt frequencies and diffusivities.
        temperature : float
            K, the temperature of the hull and voltage at T.
        missing_barriers : str, optional
            The warning when diffusivities are asked for and no barrier result of ``system`` is given.

        Returns
        -------
        Flow
            Its output is the ``ThermoResult``.
        """
        check_temperature(temperature)
        self.check()
        key = self.key(system, relaxations, barriers, temperature, missing_barriers)
        plan = plan_thermo(self, system, relaxations, barriers, float(temperature), key, missing_barriers)
        keyed(plan, key, label=f"plan thermo {system}")
        plan.metadata.update({DYNAMIC: True, "alloyflow_kind": "assembly", "alloyflow_stage": f"{system} thermo"})
        exposing_store(plan)
        return Flow([plan], output=plan.output, name=f"{self.name} {system}")

    def plan(self, system: str, docs: list, hull_warnings: list[str], barriers: list | None, temperature: float,
             key: str, missing_barriers: str | None = None, known: set | None = None):
        """Inside a running job: the unfinished force jobs of ``system`` and its ``collect_thermo`` job.

        The calling job must expose the store (``exposing_store``): the barrier results' bands are read
        from it, and the jobs it holds are left out (the collecting job reads their outputs from it).
        ``known``: uuids already planned by the caller (shared across systems), left out here.
        Returns (jobs, collect).
        """
        known = set() if known is None else known
        jobs: list = []

        def add(j, stage: str):
            """Plan ``j`` unless stored; what the collecting job gets: its reference, or ``{STORED: uuid}``."""
            j.metadata["alloyflow_stage"] = stage
            if j.uuid in known:  # already in this replacement (another system's)
                return j.output
            if not unfinished(j):
                return {STORED: j.uuid}
            known.add(j.uuid)
            jobs.append(j)
            return j.output

        head = list(hull_warnings)
        unconverged = [d.label for d in docs if not d.converged]
        if unconverged:
            head.append(f"unconverged relaxation(s), no phonons: {', '.join(unconverged)}")
        relaxed = {d.label: d.structure for d in docs if d.converged}
        phonon = replace(self.phonon_maker, t_max=max(self.phonon_maker.t_max, temperature))
        phonons = [[name, add(j, f"{system} phonons")] for name, j in phonon_jobs(relaxed, phonon).items()]
        elastic = []
        for name, structure in (relaxed.items() if self.elastic_maker is not None else ()):
            try:
                j = elastic_job(structure, name, self.elastic_maker, tolerant=True)
            except Exception as exc:  # noqa: BLE001 - one phase's failure must not lose the others
                elastic.append([name, None, f"{type(exc).__name__}: {exc}"])
                continue
            elastic.append([name, add(j, f"{system} elastic moduli"), None])
        diffusion, barrier_warning = [], None
        if self.attempt_maker is not None:
            results = barriers_of_system(barriers or [], system)
            if not results:
                barrier_warning = missing_barriers or f"no barrier results for {system}: no diffusivities"
            diffusion = [self._diffusion_entry(res, add) for res in results]
        collect = collect_thermo(system, temperature, [d.model_dump() for d in docs if d.converged], phonons,
                                 elastic, diffusion, head, barrier_warning,
                                 references_for(self.references, system) or None)
        ident = _identity(phonons), _identity(elastic), \
            [_identity({k: v for k, v in e.items() if k != "result"}) for e in diffusion]
        keyed(collect, input_hash("thermo collect", THERMO_VERSION, key, ident, head, barrier_warning),
              label=f"collect thermo {system}")
        collect.metadata.update({"alloyflow_kind": "assembly", "alloyflow_stage": f"{system} thermo"})
        exposing_store(collect)
        return jobs, collect

    def _diffusion_entry(self, res: BarrierResult, add) -> dict:
        name = res.phase if res.mode == "vacancy" else f"{res.phase} ({res.mode})"
        entry = {"name": name, "result": res.model_dump(), "problem": None, "hops": []}
        if not any(v is not None for v in res.percolation.values()):
            entry["problem"] = f"{name}: the computed hops do not percolate; no diffusivity"
            return entry
        try:
            plan = attempt_jobs(res, CURRENT_JOB.store, self.attempt_maker.calculator, maker=self.attempt_maker,
                                tolerant=True)
        except Exception as exc:  # noqa: BLE001 - one phase's failure must not lose the others
            entry["problem"] = f"{name}: no diffusivity ({type(exc).__name__}: {exc})"
            return entry
        for hop_id, j in plan.jobs.items():
            entry["hops"].append([hop_id, add(j, f"attempt frequencies {name}"), plan.notes[hop_id]])
        return entry


def thermo_flow_maker(calculator: str = DEFAULT_CALCULATOR, min_length: float = DEFAULT_MIN_LENGTH,
                      elastic: bool = True, diffusivity: bool = True,
                      references: dict | None = None) -> ThermoFlowMaker:
    """The thermo flow maker ``alloyflow thermo`` and ``alloyflow study --temperature`` use (same keys)."""
    return ThermoFlowMaker(phonon_maker=PhononMaker(calculator=calculator, min_length=min_length),
                           elastic_maker=ElasticMaker(calculator=calculator) if elastic else None,
                           attempt_maker=AttemptFrequencyMaker(calculator=calculator) if diffusivity else None,
                           references=dict(references or {}))


@job
def plan_thermo(maker: ThermoFlowMaker, system: str, relaxations, barriers, temperature: float, key: str,
                missing_barriers: str | None = None):
    """Plan the thermo stage of ``system``; replace this job by its force jobs and ``collect_thermo``."""
    docs, hull_warnings = relaxation_inputs(system, relaxations)
    jobs, collect = maker.plan(system, docs, hull_warnings, _barrier_inputs(barriers, system), temperature, key,
                               missing_barriers)
    return Response(replace=Flow([*jobs, collect], output=collect.output, name=f"thermo {system}"))


def diffusion_rows(entry: dict, warnings: list[str]) -> list[dict]:
    """The diffusivity rows of one barrier result from its attempt frequencies; a failure is a warning."""
    name = entry["name"]
    if entry["problem"]:
        warnings.append(entry["problem"])
        return []
    res = BarrierResult.model_validate(as_dict(entry["result"]))
    freqs = {}
    for hop_id, output, note in entry["hops"]:
        output = load_stored(output)
        if job_error(output):
            warnings.append(f"{name}: no diffusivity ({job_error(output)})")
            return []
        freqs[int(hop_id)] = attempt_document(as_dict(output), note)
    try:
        nets = diffusivities_for(res, freqs, temperatures=DEFAULT_TEMPERATURES)
    except Exception as exc:  # noqa: BLE001 - one phase's failure must not lose the others
        warnings.append(f"{name}: no diffusivity ({type(exc).__name__}: {exc})")
        return []
    return [{"phase": res.phase, "mode": res.mode, "network": net.network, "dimension": net.dimension,
             "barrier_ev": net.barrier_ev, "hop_id": net.hop_id, "hop_length_A": net.hop_length_A,
             "attempt_frequency_hz": net.attempt_frequency_hz,
             "attempt_frequency_source": net.attempt_frequency_source,
             "diffusivity": {f"{t:g}": d for t, d in zip(net.temperatures_k, net.diffusivities_cm2_s)},
             "assumptions": net.assumptions, "warnings": net.warnings} for net in nets]


@job
def collect_thermo(system: str, temperature: float, relaxations: list, phonons: list, elastic: list,
                   diffusion: list, warnings: list[str], barrier_warning: str | None = None,
                   references: dict | None = None) -> ThermoResult:
    """The ``ThermoResult``: hulls and voltages at 0 K and T, moduli, diffusivities, every warning."""
    docs = [RelaxationDocument.model_validate(as_dict(r)) for r in relaxations]
    phonon_docs = {name: PhononDocument.model_validate(as_dict(load_stored(o))) for name, o in phonons}
    notes = list(warnings)
    elastic_docs = {}
    for name, output, error in elastic:
        output = load_stored(output)
        error = error or job_error(output)
        if error:
            notes.append(f"{name}: no elastic moduli ({error})")
            continue
        elastic_docs[name] = ElasticDocument.model_validate(as_dict(output))
    if barrier_warning:
        notes.append(barrier_warning)
    rows = []
    for entry in diffusion:
        rows += diffusion_rows(entry, notes)
    result = thermo_result(entries_from_documents(docs), phonon_docs, system, temperature, elastic=elastic_docs,
                           diffusion=rows, references=references)
    result.warnings = list(dict.fromkeys([*notes, *result.warnings]))
    return result


__all__ = ["ThermoFlowMaker", "thermo_flow_maker", "plan_thermo", "collect_thermo", "barriers_of_system",
           "study_barriers", "relaxation_inputs", "check_temperature", "diffusion_rows", "load_stored",
           "STORED", "THERMO_VERSION"]
