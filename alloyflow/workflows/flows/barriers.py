"""Li-migration barriers of one phase as a jobflow flow: relax, hops, endpoints, one NEB per hop, collect.

The flow has two jobs at build time:

1. the cell relaxation, the very job the hull flow runs (same maker, same
   key, so it is reused), and
2. ``barrier_hops``, which, once the relaxed cell exists, finds the
   symmetry-distinct Li hops, builds the vacancy (or dilute-Li) supercell and
   the endpoints, and answers ``Response(replace=...)`` with one keyed NEB job
   per hop and a ``collect_barriers`` job. So what depends on results is
   decided inside a job, and the same flow runs on the local engine, on
   FireWorks (the NEBs become fireworks added at run time) and on
   jobflow-remote.

NEB jobs already in the job store are left out of the replacement (their
outputs are read from the store), so a resumed run or a resubmission never
recomputes one. A number is never reported without its flag: a band that did
not converge, or endpoints that relaxed to the same minimum (or into a
different hop), give a hop with ``converged=False`` and a warning, and such
hops are left out of the percolation analysis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from jobflow import CURRENT_JOB, Flow, Maker, Response, job
from pymatgen.core import Structure

from alloyflow.analysis.migration import (
    BarrierResult,
    CoordinationSummary,
    HopBarrier,
    HostStability,
    SupercellInfo,
    assign_percolation,
    hop_cost,
    reaction_coordinate,
)
from alloyflow.calculators import calculator_info, check_elements
from alloyflow.engine.guarded import job_error
from alloyflow.engine.keys import input_hash, keyed
from alloyflow.engine.local import DYNAMIC, exposing_store, replacement
from alloyflow.engine.store import as_dict
from alloyflow.structures.library import Phase, primitive
from alloyflow.structures.migration import check_barrier_supercell
from alloyflow.workflows.flows.hop_plan import BarrierSettings, plan_hops
from alloyflow.workflows.jobs.backends import Makers, makers_for
from alloyflow.workflows.jobs.neb import ENDPOINT_TOL, EndpointError, NebDocument
from alloyflow.workflows.jobs.relax import RelaxationDocument

SAME_MINIMUM_TOL = 0.3
"""Å: relaxed endpoints whose atoms all lie closer than this are one minimum."""

FLOW_VERSION = 3
"""Bump when the planning or collecting logic changes what a stored barrier result means.

2: the hop cutoff is raised until the hops percolate in 3D; left-out hops are recorded.
3: the host's mechanical stability (Born criteria) is checked and recorded.
"""

HOST_CHECK_MAX_ATOMS = 40
"""Hosts up to this many atoms per cell get the elastic-tensor stability check (24 strained cells, ions relaxed)."""


def _periodic_disp(a: Structure, b: Structure) -> np.ndarray:
    return a.lattice.get_all_distances(a.frac_coords, b.frac_coords).diagonal()


def endpoint_problem(doc, initial: Structure | None, final: Structure | None,
                     hop_length: float) -> tuple[str | None, float | None]:
    """Why the relaxed endpoints of a band do not describe the hop (None if they do), and the largest relaxation.

    The unrelaxed endpoints were checked to differ by one atom. After
    relaxation that test is too strict: in soft Li alloys the Li around a
    vacancy can relax most of an Å towards it (a split vacancy), so several
    atoms differ by > 0.5 Å between the relaxed endpoints although the hop is
    the intended one. What must not happen is an endpoint leaving its state:
    an atom relaxing by more than half the hop length (into the vacancy, say).
    """
    first, last = doc.images[0], doc.images[-1]
    if _periodic_disp(first, last).max() <= SAME_MINIMUM_TOL:
        return "endpoints relaxed to the same minimum", None
    if initial is None or final is None:
        return None, None
    relax = [_periodic_disp(initial, first), _periodic_disp(final, last)]
    which = int(np.argmax([r.max() for r in relax]))
    k = int(np.argmax(relax[which]))
    largest = float(relax[which][k])
    if largest > hop_length / 2:
        state = ("initial", "final")[which]
        return (f"relaxing the {state} endpoint moved atom {k} by {largest:.2f} Å, more than half the hop: "
                "it left its state"), largest
    return None, largest


def hop_from_neb(hop, doc: NebDocument, cn_initial, cn_final, info, initial=None, final=None) -> HopBarrier:
    """One row of the barrier table from a NEB document, flagged where it cannot be trusted."""
    energies = [e - doc.energies[0] for e in doc.energies]
    warnings = []
    converged = bool(doc.converged)
    if not converged:
        warnings.append(f"hop {hop.id}: band not converged (max force {doc.max_force:.3f} > fmax {doc.fmax} eV/Å "
                        f"after {doc.n_steps} steps)")
    if not getattr(doc, "endpoints_converged", True):
        converged = False
        warnings.append(f"hop {hop.id}: an endpoint relaxation did not converge")
    spread = list(getattr(doc, "endpoint_spread", None) or [])
    if spread and max(spread) > ENDPOINT_TOL:
        which = " and ".join(f"{k} {1000 * v:.0f} meV" for k, v in zip(("initial", "final"), spread) if v > ENDPOINT_TOL)
        kept = ("the symmetric one (the lowest, if another lay more than 5 meV below it)"
                if (doc.settings or {}).get("endpoint_symprec") is not None else "the lowest")
        warnings.append(f"hop {hop.id}: endpoint relaxations from {len(doc.endpoint_energies[0])} seeded starts reach "
                        f"different minima ({which} apart; energies in barriers.json); {kept} was used and the "
                        "barrier may depend on which minimum the host prefers")
    problem, relaxation = endpoint_problem(doc, initial, final, hop.length)
    if problem:
        converged = False
        warnings.append(f"hop {hop.id}: {problem}")
    return HopBarrier(
        id=hop.id, length=hop.length, multiplicity=hop.multiplicity,
        forward_barrier=doc.forward_barrier, reverse_barrier=doc.reverse_barrier,
        endpoint_asymmetry=doc.endpoint_asymmetry,
        cn_initial=CoordinationSummary(**cn_initial), cn_final=CoordinationSummary(**cn_final),
        converged=converged, n_images=doc.n_images, force_calls=doc.force_calls, n_steps=doc.n_steps,
        max_force=doc.max_force, energies=energies, reaction_coordinate=reaction_coordinate(doc.images),
        # unconverged bands stay in the table, flagged, but never set a percolation threshold
        cost=hop_cost(doc.forward_barrier, doc.reverse_barrier) if converged else None,
        moving_index=info.get("moving_index"), relaxed_hop_distance=getattr(doc, "hop_distance", None),
        max_endpoint_relaxation=relaxation, neb_key=doc.input_hash, warnings=warnings,
        endpoint_energies=list(getattr(doc, "endpoint_energies", None) or []), endpoint_spread=spread,
    )


def host_stability(elastic_output, calculator: str, note: str = "") -> HostStability:
    """The host-stability record of a barrier result from the host's elastic document (or why there is none)."""
    method = f"Born criteria from the relaxed-ion elastic tensor ({calculator_info(calculator)['label']})"
    if elastic_output is None:
        return HostStability(method=method, note=note or "not checked")
    doc = as_dict(elastic_output)
    if job_error(doc):  # the same key's fit, failed in a thermo flow (its tolerant job stores the failure)
        return HostStability(method=method, note=f"not checked: the elastic fit failed ({job_error(doc)})")
    return HostStability(method=method, stable=bool(doc["mechanically_stable"]),
                         min_eigenvalue_gpa=float(min(doc["eigenvalues"])), note=note)


def _failed_hop(hop, cn_i, cn_f, info, why: str) -> HopBarrier:
    return HopBarrier(
        id=hop.id, length=hop.length, multiplicity=hop.multiplicity, converged=False,
        cn_initial=CoordinationSummary(**cn_i), cn_final=CoordinationSummary(**cn_f),
        moving_index=info.get("moving_index"), warnings=[f"hop {hop.id}: no barrier ({why})"],
    )


def _stored_nebs(plan, neb_maker, jobstore) -> bool:
    """Whether ``jobstore`` holds the NEB of any hop of ``plan`` (keys only, nothing runs)."""
    for hop, initial, final, _ in plan.entries:
        try:
            output = neb_maker.keyed_job(initial, final, label=f"hop {hop.id}").output
        except (EndpointError, ValueError):
            continue
        if jobstore.query_one({"uuid": output.uuid}, properties=["uuid"]) is not None:
            return True
    return False


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
    """
    plan = plan_hops(phase, formula, structure, settings)
    if jobstore is None or not plan.entries:
        return plan, False, neb_maker
    legacy = None
    for maker in [neb_maker, *getattr(neb_maker, "earlier_methods", list)()]:
        if _stored_nebs(plan, maker, jobstore):
            return plan, False, maker
        if legacy is None:
            legacy = plan_hops(phase, formula, structure, settings, legacy_ties=True)
        if legacy.entries and legacy.entries[0][3].get("matrix") != plan.entries[0][3].get("matrix") \
                and _stored_nebs(legacy, maker, jobstore):
            return legacy, True, maker
    return plan, False, neb_maker


@job
def barrier_hops(relaxed_doc, phase: str, formula: str, settings: dict, neb_maker, key: str,
                 relaxation_warning: str | None = None, host_maker=None):
    """Plan the hops of the relaxed phase and replace this job by one NEB per hop and a collect job.

    The replacement holds only NEB jobs the store does not have yet; the
    collect job references all of them (stored ones resolve from the store).
    A phase whose NEBs a store holds from before the supercell tie rule or
    the symmetric endpoints keeps that plan and maker, its missing hops
    included, and says so (``stored_plan``).
    """
    doc = RelaxationDocument.model_validate(as_dict(relaxed_doc))
    s = BarrierSettings(**settings)
    plan, legacy_ties, maker = stored_plan(phase, formula, doc.structure, s, neb_maker, CURRENT_JOB.store)
    warnings = list(plan.warnings)
    if legacy_ties:
        warnings.append(f"the hops are those stored in supercell {plan.entries[0][3]['matrix']}, chosen among equally "
                        "good cells before that choice was made reproducible; a new run may use an equivalent cell "
                        "in which the hop lies differently (a finite-size effect)")
    if maker is not neb_maker:
        warnings.append("the stored bands relaxed their endpoints freely, before endpoints kept the vacancy cell's "
                        "symmetry: such barriers can differ by several meV between runs; remove them from the "
                        "store to recompute")
    if not doc.converged:
        warnings.insert(0, f"the cell relaxation of {phase} did not converge (max force {doc.max_force:.3f} eV/Å)")
    neb_jobs, outputs, failures = [], [], {}
    me = CURRENT_JOB.job
    stage = ((me.metadata or {}) if me is not None else {}).get("alloyflow_stage") or f"barriers {plan.name}"
    for (hop, initial, final, info) in plan.entries:
        label = f"{plan.name}{' interstitial' if plan.mode == 'interstitial' else ''} hop {hop.id}"
        try:
            j = maker.keyed_job(initial, final, label=label, metadata={"phase": plan.name, **info})
        except (EndpointError, ValueError) as exc:
            failures[hop.id] = f"{type(exc).__name__}: {exc}"
            outputs.append(None)
            continue
        j.metadata["alloyflow_stage"] = stage
        outputs.append(j.output)
        neb_jobs.append(j)
    host, host_note = None, ""
    if host_maker is None:
        host_note = "not checked: the backend has no elastic maker"
    elif len(doc.structure) > HOST_CHECK_MAX_ATOMS:
        host_note = f"not checked: {len(doc.structure)} atoms in the cell > {HOST_CHECK_MAX_ATOMS} (cost)"
    else:
        hj = host_maker.keyed_job(doc.structure, label=f"{phase} host", metadata={"phase": phase})
        hj.metadata["alloyflow_stage"] = stage
        host = hj.output
        neb_jobs.append(hj)
    collect = collect_barriers(doc.model_dump(), outputs, failures, phase, formula, settings,
                               {"n_images": neb_maker.n_images, "fmax": neb_maker.fmax}, neb_maker.calculator,
                               warnings, host, host_note, legacy_ties)
    keyed(collect, input_hash("barrier collect", FLOW_VERSION, key, [getattr(o, "uuid", None) for o in outputs],
                              failures, getattr(host, "uuid", None)), label=f"collect barriers {plan.name}")
    collect.metadata.update({"alloyflow_kind": "assembly", "alloyflow_stage": stage})
    return Response(replace=replacement([*neb_jobs, collect], collect.output, f"barriers {plan.name}"))


@job
def collect_barriers(relaxed_doc: dict, neb_outputs: list, failures: dict, phase: str, formula: str,
                     settings: dict, band: dict, calculator: str, warnings: list[str], host=None,
                     host_note: str = "", legacy_ties: bool = False) -> BarrierResult:
    """The barrier document of a phase from its NEB documents: flags, percolation, coordination.

    ``legacy_ties``: the plan was made with the earlier supercell tie rule (``stored_plan``).
    """
    relaxed_doc = RelaxationDocument.model_validate(as_dict(relaxed_doc))
    relaxed = relaxed_doc.structure
    s = BarrierSettings(**settings)
    plan = plan_hops(phase, formula, relaxed, s, legacy_ties=legacy_ties)
    warnings = list(warnings)
    hops: list[HopBarrier] = []
    for (hop, initial, final, info), (cn_i, cn_f), output in zip(plan.entries, plan.cns, neb_outputs):
        why = failures.get(hop.id, failures.get(str(hop.id)))
        output = as_dict(output) if output is not None else None
        if why is None and output is not None and "endpoint_error" in output:
            why = f"EndpointError: {output['endpoint_error']}"
        if why is not None or output is None:
            hops.append(_failed_hop(hop, cn_i, cn_f, info, why or "no NEB output"))
            warnings.append(hops[-1].warnings[0])
            continue
        hops.append(hop_from_neb(hop, NebDocument.model_validate(output), cn_i, cn_f, info, initial, final))
        warnings += hops[-1].warnings
    first = plan.entries[0][3]
    result = BarrierResult(
        phase=plan.name, formula=formula, mode=plan.mode, calculator=calculator_info(calculator),
        supercell=SupercellInfo(natoms=first["natoms"], min_image_distance=first["min_image_distance"],
                                matrix=first["matrix"]),
        hops=hops, max_length=plan.network.max_length,
        settings={"min_image_distance": s.min_image_distance, "n_images": band["n_images"], "fmax": band["fmax"],
                  "max_hops": s.max_hops, "max_length": s.max_length, "n_distinct_hops": len(plan.network.hops)},
        relaxed_structure=relaxed.as_dict(), warnings=warnings, hops_left_out=plan.left_out,
        network_dimension=plan.dimension, host_stability=host_stability(host, calculator, host_note),
        phase_status=str(relaxed_doc.metadata.get("status", "")), phase_source=str(relaxed_doc.metadata.get("source", "")),
    )
    if result.host_stability.stable is False:
        result.warnings.insert(0, f"the host {phase} is mechanically unstable on {calculator_info(calculator)['label']} "
                                  f"(Born criteria: smallest eigenvalue of C "
                                  f"{result.host_stability.min_eigenvalue_gpa:.1f} GPa): its barriers describe a "
                                  "metastable host and may be artificially low")
    assign_percolation(result, plan.network)
    reached = [d for d in ("1d", "2d", "3d") if result.percolation[d] is not None]
    if not reached:
        result.warnings.append("the computed hops do not percolate; raise max_length or max_hops")
    elif len(reached) < 3:
        result.warnings.append(f"the computed hops percolate in {len(reached)}D only "
                               f"(within max_length {plan.network.max_length:.2f} Å)")
    return result


@dataclass
class BarrierFlowMaker(Maker):
    """The barrier flow of one phase; it receives its makers (``makers_for(calculator)``).

    Parameters
    ----------
    name : str
        Flow name prefix.
    makers : Makers
        Relax and NEB makers of one backend (ASE potentials, GPAW, VASP).
    settings : BarrierSettings
        Hop and supercell choices.
    """

    name: str = "barriers"
    makers: Makers = field(default_factory=lambda: makers_for("sevennet"))
    settings: BarrierSettings = field(default_factory=BarrierSettings)

    def make(self, phase: Phase) -> Flow:
        """Relax ``phase`` (the hull's job) and plan its hops once it is relaxed."""
        self.settings.check()
        elements = [el.symbol for el in phase.composition.elements]
        if not self.settings.dilute and "Li" not in elements:
            raise ValueError(f"phase {phase.name} has no Li: there is no Li vacancy hop to compute "
                             f"(use dilute=True for one Li in {phase.formula} as a host)")
        if self.settings.dilute and "Li" in elements:
            raise ValueError(f"dilute=True needs a Li-free host phase; {phase.name} ({phase.formula}) contains Li")
        check_elements(self.makers.calculator, sorted({*elements, "Li"}), where=f"phase {phase.name}")
        # a cell too small for the hops (or too large for the machine) is refused before any job exists
        check_barrier_supercell(primitive(phase.structure), self.settings.min_image_distance,
                                dilute=self.settings.dilute, n_host_sites=self.settings.n_host_sites,
                                mode=self.settings.dilute_mode)
        meta = {"phase": phase.name, "status": phase.status, "source": phase.source}
        relax = self.makers.relax.keyed_job(primitive(phase.structure), label=phase.name, metadata=meta)
        neb = self.makers.neb
        settings = asdict(self.settings)
        key = input_hash("barrier hops", FLOW_VERSION, relax.uuid, settings, calculator_info(neb.calculator),
                         getattr(neb, "key_settings", neb.settings)())
        hops = barrier_hops(relax.output, phase.name, phase.formula, settings, neb, key,
                            host_maker=self.makers.elastic if self.settings.host_check else None)
        keyed(hops, key, label=f"plan hops {phase.name}{' (dilute Li)' if self.settings.dilute else ''}")
        hops.metadata[DYNAMIC] = True
        exposing_store(hops)
        hops.metadata["alloyflow_kind"] = "assembly"
        return Flow([relax, hops], output=hops.output, name=f"{self.name} {phase.name}")


def barrier_flow(phase: str, calculator: str = "sevennet", system: str | None = None, library=None,
                 n_images: int = 5, fmax: float = 0.05, neb_maker=None, endpoint_trials: int | None = None,
                 incar: dict | None = None, climb: bool | None = None, **settings) -> Flow:
    """The barrier flow of a library phase (``BarrierSettings`` fields as keywords).

    ``incar`` and ``climb`` reach the VASP makers (``makers_for``): INCAR overrides, plain NEB.
    """
    from alloyflow.structures.library import StructureLibrary

    library = library or StructureLibrary()
    makers = makers_for(calculator, n_images=n_images, fmax=fmax, endpoint_trials=endpoint_trials, incar=incar,
                        climb=climb)
    if neb_maker is not None:
        makers = Makers(calculator, makers.relax, makers.static, neb_maker)
    return BarrierFlowMaker(makers=makers, settings=BarrierSettings(**settings)).make(library.get(phase, system))


def run_barriers(phase: str, store, calculator: str = "sevennet", system: str | None = None, library=None,
                 n_images: int = 5, fmax: float = 0.05, progress=None, e_above_hull: float | None = None,
                 neb_maker=None, **settings) -> BarrierResult:
    """Build the barrier flow of ``phase``, run it on the local engine (``store``) and return its result.

    ``e_above_hull`` (eV/atom) adds a labelled metastability correction.
    """
    from alloyflow.analysis.migration import apply_metastability_correction
    from alloyflow.engine.local import run_flow

    flow = barrier_flow(phase, calculator, system, library, n_images, fmax, neb_maker, **settings)
    run_flow(flow, store, progress=progress)
    result = store.document(flow.output.uuid, BarrierResult)
    if e_above_hull is not None:
        apply_metastability_correction(result, e_above_hull)
    return result
