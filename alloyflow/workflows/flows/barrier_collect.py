"""The barrier document of a phase from its NEB (and screen) documents: flags, percolation, coordination.

``collect_barriers`` is the last job of a phase's barrier flow
(``alloyflow.workflows.flows.barriers``). A number is never reported
without its flag: a band that did not converge, or endpoints that relaxed to
the same minimum (or into a different hop), give a hop with
``converged=False`` and a warning, and such hops are left out of the
percolation analysis. A band without a saddle (running downhill out of an
endpoint: ``band_shape``) gives no barrier at all, only its energy
profile, so it can never pass for the fastest hop; a band that dips below
an endpoint before its saddle is measured from the dip, with a warning.
Hops the screening rule left without a band are listed as screened-only,
with their estimate, never as barriers.
"""

from __future__ import annotations

import numpy as np
from jobflow import job
from pymatgen.core import Structure

from alloyflow.analysis.migration import (
    BarrierResult,
    CoordinationSummary,
    HopBarrier,
    HostStability,
    ScreeningInfo,
    SupercellInfo,
    assign_percolation,
    band_shape,
    reaction_coordinate,
)
from alloyflow.analysis.percolation import hop_cost
from alloyflow.calculators import calculator_info
from alloyflow.engine.guarded import job_error
from alloyflow.engine.store import as_dict
from alloyflow.workflows.flows.hop_plan import BarrierSettings, plan_hops
from alloyflow.workflows.jobs.neb import ENDPOINT_TOL
from alloyflow.workflows.schemas.neb import NebDocument
from alloyflow.workflows.jobs.relax import RelaxationDocument
from alloyflow.workflows.jobs.screen import ScreenDocument

SAME_MINIMUM_TOL = 0.3
"""Å: relaxed endpoints whose atoms all lie closer than this are one minimum."""

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


def unconverged_forces(doc: NebDocument) -> str:
    """Which force stayed above its tolerance: the band's (fmax) or the climbing image's (``climb_fmax``)."""
    climb_fmax = (getattr(doc, "settings", None) or {}).get("climb_fmax")
    climb = getattr(doc, "climb_max_force", None)
    if doc.max_force <= doc.fmax and climb is not None and climb_fmax is not None and climb > min(doc.fmax, climb_fmax):
        return f"climbing-image force {climb:.3f} > {min(doc.fmax, climb_fmax)} eV/Å; every image below fmax {doc.fmax}"
    return f"max force {doc.max_force:.3f} > fmax {doc.fmax} eV/Å"


def hop_from_neb(hop, doc: NebDocument, cn_initial, cn_final, info, initial=None, final=None) -> HopBarrier:
    """One row of the barrier table from a NEB document, flagged where it cannot be trusted."""
    energies = [e - doc.energies[0] for e in doc.energies]
    warnings = []
    converged = bool(doc.converged)
    if not converged:
        warnings.append(f"hop {hop.id}: band not converged after {doc.n_steps} steps ({unconverged_forces(doc)})")
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
    warnings += [f"hop {hop.id}: {note}" for note in getattr(doc, "endpoint_notes", None) or []]
    problem, relaxation = endpoint_problem(doc, initial, final, hop.length)
    if problem:
        converged = False
        warnings.append(f"hop {hop.id}: {problem}")
    shape = band_shape(doc.energies, ENDPOINT_TOL)
    if shape.no_saddle:
        converged = False
        warnings.append(f"hop {hop.id}: no saddle: {shape.no_saddle}")
    elif shape.below_endpoint:
        warnings.append(f"hop {hop.id}: {shape.below_endpoint}")
    forward, reverse = shape.forward, shape.reverse
    return HopBarrier(
        id=hop.id, length=hop.length, multiplicity=hop.multiplicity, no_saddle=shape.no_saddle,
        below_endpoint=shape.below_endpoint,
        forward_barrier=forward, reverse_barrier=reverse,
        endpoint_asymmetry=doc.endpoint_asymmetry,
        cn_initial=CoordinationSummary(**cn_initial), cn_final=CoordinationSummary(**cn_final),
        converged=converged, n_images=doc.n_images, force_calls=doc.force_calls, n_steps=doc.n_steps,
        max_force=doc.max_force, energies=energies, reaction_coordinate=reaction_coordinate(doc.images),
        # unconverged bands stay in the table, flagged, but never set a percolation threshold
        cost=hop_cost(forward, reverse) if converged else None,
        moving_index=info.get("moving_index"), relaxed_hop_distance=getattr(doc, "hop_distance", None),
        max_endpoint_relaxation=relaxation, neb_key=doc.input_hash, warnings=warnings,
        endpoint_energies=list(getattr(doc, "endpoint_energies", None) or []), endpoint_spread=spread,
        endpoint_force_calls=getattr(doc, "endpoint_force_calls", None),
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


def hop_result(hop, cns, info, initial, final, output, why: str | None) -> HopBarrier:
    """The row of one hop from its NEB output (a document, an endpoint-error record or None) or why it has none."""
    cn_i, cn_f = cns
    output = as_dict(output) if output is not None else None
    if why is None and output is not None and "endpoint_error" in output:
        why = f"EndpointError: {output['endpoint_error']}"
    if why is not None or output is None:
        return _failed_hop(hop, cn_i, cn_f, info, why or "no NEB output")
    return hop_from_neb(hop, NebDocument.model_validate(output), cn_i, cn_f, info, initial, final)


def _screened_hop(hop, cns, info, estimate: float | None) -> HopBarrier:
    cn_i, cn_f = cns
    return HopBarrier(id=hop.id, length=hop.length, multiplicity=hop.multiplicity, converged=False,
                      cn_initial=CoordinationSummary(**cn_i), cn_final=CoordinationSummary(**cn_f),
                      moving_index=info.get("moving_index"), screened_estimate=estimate, screened_only=True)


def planning_failure(relaxed_doc: RelaxationDocument, phase: str, formula: str, settings: BarrierSettings,
                     calculator: str, exc: Exception, warnings: list[str] | None = None) -> BarrierResult:
    """The result of a phase whose hops could not be planned: no hops, the error in one line, retried next run.

    A study goes on with its other phases and reports this one as failed; the
    engine does not reuse it (``retry_next_run``), so the next run plans the
    phase again, after a fix of the code or the settings.
    """
    mode = f"dilute-{settings.dilute_mode}" if settings.dilute else settings.mechanism
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    return BarrierResult(
        phase=phase + (" (dilute Li)" if settings.dilute else ""), formula=formula, mode=mode,
        calculator=calculator_info(calculator), hops=[], relaxed_structure=relaxed_doc.structure.as_dict(),
        warnings=[f"the hops of {phase} could not be planned ({reason})", *(warnings or [])],
        phase_status=str(relaxed_doc.metadata.get("status", "")),
        phase_source=str(relaxed_doc.metadata.get("source", "")), error=reason, retry_next_run=True)


@job
def collect_barriers(relaxed_doc: dict, neb_outputs: list, failures: dict, phase: str, formula: str,
                     settings: dict, band: dict, calculator: str, warnings: list[str], host=None,
                     host_note: str = "", legacy_ties: bool = False, screens: list | None = None,
                     screening: dict | None = None) -> BarrierResult:
    """The barrier document of a phase from its NEB documents: flags, percolation, coordination.

    ``legacy_ties``: the plan was made with the earlier supercell tie rule (``stored_plan``).
    ``screens``: the screen document of every hop (None: no screening); a hop
    whose NEB output is None and that did not fail is then screened-only.
    ``screening``: the ``ScreeningInfo`` fields besides the screened-only hops.
    """
    relaxed_doc = RelaxationDocument.model_validate(as_dict(relaxed_doc))
    relaxed = relaxed_doc.structure
    s = BarrierSettings(**settings)
    plan = plan_hops(phase, formula, relaxed, s, legacy_ties=legacy_ties)
    warnings = list(warnings)
    hops: list[HopBarrier] = []
    screen_docs = ([None if x is None else ScreenDocument.model_validate(as_dict(x)) for x in screens]
                   if screens is not None else None)
    for k, ((hop, initial, final, info), cns, output) in enumerate(zip(plan.entries, plan.cns, neb_outputs)):
        why = failures.get(hop.id, failures.get(str(hop.id)))
        estimate = screen_docs[k].estimate if screen_docs is not None and screen_docs[k] is not None else None
        if screen_docs is not None and output is None and why is None:
            hops.append(_screened_hop(hop, cns, info, estimate))
            continue
        hops.append(hop_result(hop, cns, info, initial, final, output, why))
        hops[-1].screened_estimate = estimate
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
    if screen_docs is not None:
        info = dict(screening or {})
        info.setdefault("method", next((d.method for d in screen_docs if d is not None), ""))
        info.setdefault("calculator", calculator_info(calculator)["label"])
        result.screening = ScreeningInfo(
            **info, screened_only=[h.id for h in hops if h.screened_only],
            force_calls=sum(d.force_calls for d in screen_docs if d is not None),
            note=(f"no band was converged for these: {info.get('factor')} x their screened estimate lies at or above "
                  "the highest percolation threshold of the converged hops, so they cannot lower a threshold "
                  "unless the screen overestimates their barrier by more than that factor"))
    if result.host_stability.stable is False:
        result.warnings.insert(0, f"the host {phase} is mechanically unstable on {calculator_info(calculator)['label']} "
                                  f"(Born criteria: smallest eigenvalue of C "
                                  f"{result.host_stability.min_eigenvalue_gpa:.1f} GPa): its barriers describe a "
                                  "metastable host and may be artificially low")
    assign_percolation(result, plan.network)
    reached = [d for d in ("1d", "2d", "3d") if result.percolation[d] is not None]
    flagged = [h.id for h in hops if h.cost is None and not h.screened_only]
    if not reached and flagged:
        ids = ", ".join(map(str, flagged))
        result.warnings.append(
            f"no percolation threshold: hop(s) {ids} gave no trusted barrier (warnings above)"
            + (", and the others do not percolate without them" if len(flagged) < len(hops) else ""))
    elif not reached:
        result.warnings.append("the computed hops do not percolate; raise max_length or max_hops")
    elif len(reached) < 3:
        result.warnings.append(f"the computed hops percolate in {len(reached)}D only "
                               f"(within max_length {plan.network.max_length:.2f} Å)")
    return result


