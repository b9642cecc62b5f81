"""Which hop plan and NEB maker a stored phase was computed with: bands in a store are never computed twice.

Three things changed how a band is keyed after stores existed, each for
reproducibility: supercells that tie are chosen without floating-point noise
(``alloyflow.structures.supercells.SUPERCELL_TIE``), NEB endpoints keep the
vacancy cell's symmetry and the climbing image its own tolerance
(``NebMaker.earlier_methods``), and fingerprints write a site on a cell face
as 0.0 (``alloyflow.engine.keys.structure_fingerprint``). ``stored_plan``
finds bands stored under any of the earlier rules, so a study stored before
stays valid on any machine.
"""

from __future__ import annotations

from pymatgen.core import Structure

from alloyflow.engine.keys import deterministic_uuid, earlier_keys, earlier_uuid
from alloyflow.engine.local import adopt
from alloyflow.workflows.flows.hop_plan import BarrierSettings, HopPlan, plan_hops
from alloyflow.workflows.jobs.neb import EndpointError


def _stored_nebs(plan: HopPlan, neb_maker, jobstore, any_machine: bool = False) -> bool:
    """Whether ``jobstore`` holds the NEB of any hop of ``plan`` (keys only, nothing runs).

    A band stored under this machine's key from before the face wrap is
    copied under today's key (``alloyflow.engine.local.adopt``).
    ``any_machine``: also under the keys another machine's rounding may have
    written (``earlier_keys``); every hop found is copied, not only the first.
    """
    found = False
    for hop, initial, final, _ in plan.entries:
        try:
            job = neb_maker.keyed_job(initial, final, label=plan.band_label(hop.id))
        except (EndpointError, ValueError):
            continue
        if jobstore.query_one({"uuid": job.uuid}, properties=["uuid"]) is not None:
            return True
        if any_machine:
            uuids = [deterministic_uuid(k) for k in earlier_keys(neb_maker.key, initial, final)]
        else:
            uuids = [u for u in [earlier_uuid(job)] if u]
        doc = jobstore.query_one({"uuid": {"$in": uuids}}, properties=["uuid"]) if uuids else None
        if doc is not None and adopt(jobstore, doc["uuid"], job):
            if not any_machine:
                return True
            found = True
    return found


def _named_band(plan: HopPlan, neb_maker, jobstore) -> bool:
    """Whether the store holds a band named as this plan's first hop's (a scan: only before ``any_machine``)."""
    name = f"{neb_maker.name} {plan.band_label(plan.entries[0][0].id)}"
    return jobstore.query_one({"name": name}, properties=["uuid"]) is not None


def stored_plan(phase: str, formula: str, structure: Structure, settings: BarrierSettings, neb_maker,
                jobstore=None) -> tuple:
    """(hop plan, earlier supercell tie rule?, NEB maker): today's, or the earlier ones whose NEBs a store holds.

    Supercells that tie (a cubic host has many) are chosen without
    floating-point noise since ``SUPERCELL_TIE``; before, the tie went to
    whichever candidate the last bits of the relaxed lattice favoured. And
    NEB endpoints keep the vacancy cell's symmetry since ``endpoint_symprec``
    (``NebMaker.earlier_methods``). Bands computed the earlier way are valid
    barriers, only less reproducible, so a store that holds them and none of
    today's keeps them: studies stored before stay valid and nothing is
    computed twice; ``barrier_hops`` says so beside the hops. Without a store
    (``CURRENT_JOB.store`` unexposed) today's rule and maker apply.

    Each candidate is looked up under its keys on this machine first; only
    where none is found and the store holds a band of this phase's name are
    the keys another machine may have written tried (up to
    2**``alloyflow.engine.keys.MAX_FACE_VARIANTS`` per hop).
    """
    plan = plan_hops(phase, formula, structure, settings)
    if jobstore is None or not plan.entries:
        return plan, False, neb_maker
    legacy = None
    for any_machine in (False, True):
        if any_machine and not _named_band(plan, neb_maker, jobstore):
            break
        for maker in [neb_maker, *getattr(neb_maker, "earlier_methods", list)()]:
            if _stored_nebs(plan, maker, jobstore, any_machine):
                return plan, False, maker
            if legacy is None:
                legacy = plan_hops(phase, formula, structure, settings, legacy_ties=True)
            if legacy.entries and legacy.entries[0][3].get("matrix") != plan.entries[0][3].get("matrix") \
                    and _stored_nebs(legacy, maker, jobstore, any_machine):
                return legacy, True, maker
    return plan, False, neb_maker
