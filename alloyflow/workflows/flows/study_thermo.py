"""The study's finite-temperature stage: after the barriers, one planning job for every system.

``study_thermo_job(study_output, ...)`` is a keyed dynamic job on the study's
``StudyDocument`` (``add_thermo_stage`` in ``alloyflow.workflows.flows.study``
puts it last in the study flow). Once the document exists it plans, with
``ThermoFlowMaker.plan``, the phonon, elastic and attempt-frequency jobs of
every system (the diffusivities from the study's own barrier results; a job
two systems share, elemental Li's phonons, is planned once, so it never runs
twice on a queue) and one ``collect_thermo`` per system, and replaces itself
with them and ``collect_study_thermo``, whose output, the study's, is the
document with ``thermo`` (system -> ``ThermoResult``).
"""

from __future__ import annotations

from jobflow import Flow, OutputReference, Response, job

from alloyflow.analysis.thermo import ThermoResult
from alloyflow.engine.keys import input_hash, keyed
from alloyflow.engine.local import DYNAMIC, exposing_store
from alloyflow.engine.store import as_dict
from alloyflow.workflows.flows.thermo import (
    STORED,
    THERMO_VERSION,
    ThermoFlowMaker,
    check_temperature,
    load_stored,
    relaxation_inputs,
    study_barriers,
    thermo_flow_maker,
)
from alloyflow.workflows.jobs.phonons import DEFAULT_MIN_LENGTH
from alloyflow.workflows.schemas.study import StudyDocument


def study_thermo_job(study_output: OutputReference, calculator: str, temperature: float,
                     min_length: float = DEFAULT_MIN_LENGTH, elastic: bool = True, diffusivity: bool = True,
                     key: str = "", references: dict | None = None):
    """The study's thermo stage: a keyed dynamic job on the ``StudyDocument`` (``study_output``).

    ``key``: the key of the job that makes the document (its settings). The job's output is the
    document with ``thermo`` (system -> ``ThermoResult``), so the study's output stays a ``StudyDocument``.
    ``references``: the study's chosen elemental references (its hulls'), for the hulls at 0 K and T.
    """
    check_temperature(temperature)
    maker = thermo_flow_maker(calculator, min_length, elastic, diffusivity, references)
    stage_key = input_hash("study thermo", THERMO_VERSION, key, float(temperature), maker.settings())
    j = study_thermo(study_output, study_output.uuid, maker, float(temperature), stage_key)
    keyed(j, stage_key, label=f"plan thermo ({temperature:g} K)")
    j.metadata.update({DYNAMIC: True, "alloyflow_kind": "assembly", "alloyflow_stage": "plan thermo"})
    exposing_store(j)
    return j


@job
def study_thermo(study_doc, study_uuid: str, maker: ThermoFlowMaker, temperature: float, key: str):
    """Plan the thermo stage of every system of the study (the study's barriers give the diffusivities).

    One planning job for all systems, so a job two systems share (elemental Li's phonons) is planned
    once and never runs twice on a queue; each system gets its ``collect_thermo``.
    """
    doc = StudyDocument.model_validate(as_dict(study_doc))
    jobs, outputs, known = [], {}, set()
    for h in doc.hulls:
        docs, hull_warnings = relaxation_inputs(h.system, h)
        missing = f"no barriers computed for {h.system} in this study: no diffusivities (choose phases with --barriers)"
        sub, collect = maker.plan(h.system, docs, hull_warnings, study_barriers(doc, h.system), temperature,
                                  input_hash("thermo plan", THERMO_VERSION, key, h.system), missing, known)
        jobs += [*sub, collect]
        outputs[h.system] = collect.output
    final = collect_study_thermo({STORED: study_uuid}, outputs)
    keyed(final, input_hash("study thermo collect", THERMO_VERSION, key, {s: o.uuid for s, o in outputs.items()}),
          label="collect study thermo")
    final.metadata.update({"alloyflow_kind": "assembly", "alloyflow_stage": "plan thermo"})
    exposing_store(final)
    return Response(replace=Flow([*jobs, final], output=final.output, name="study thermo"))


@job
def collect_study_thermo(study_doc, results: dict) -> StudyDocument:
    """The ``StudyDocument`` with its ``thermo`` results (system -> ``ThermoResult``)."""
    doc = StudyDocument.model_validate(as_dict(load_stored(study_doc)))
    doc.thermo = {system: ThermoResult.model_validate(as_dict(r)) for system, r in results.items()}
    return doc


__all__ = ["study_thermo_job", "study_thermo", "collect_study_thermo"]
