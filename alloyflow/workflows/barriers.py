"""Li-migration barriers of one phase: relax, find hops, CI-NEB each, assemble.

Every step is a keyed job in the ``ResultStore``: the cell relaxation is the
very job the hull flow runs (same maker settings, so it is reused), and each
NEB is keyed by its endpoints, calculator and band settings, so a rerun or a
killed run only computes what is missing.

A number is never reported without its flag: a band that did not converge, or
endpoints that relaxed to the same minimum (or into a different hop), give a
hop with ``converged=False`` and a warning, and such hops are left out of the
percolation analysis.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Composition, Structure

from alloyflow.analysis.coordination import coordination, hop_coordination
from alloyflow.analysis.migration import (
    BarrierResult,
    CoordinationSummary,
    HopBarrier,
    SupercellInfo,
    apply_metastability_correction,
    assign_percolation,
    hop_cost,
    reaction_coordinate,
)
from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, check_elements
from alloyflow.structures.library import StructureLibrary
from alloyflow.structures.migration import (
    dilute_li_hops,
    hop_network,
    vacancy_hop_endpoints,
    vacancy_supercell_matrix,
)
from alloyflow.workflows.engine import JobFailed, ResultStore, run_cached
from alloyflow.workflows.hull import primitive
from alloyflow.workflows.relax import RelaxationDocument


def _as_dict(output):
    return output if isinstance(output, dict) else output.model_dump()


def _relaxed(phase, store, calculator, progress, warnings) -> Structure:
    structure = primitive(phase.structure)
    meta = {"phase": phase.name, "status": phase.status, "source": phase.source}
    from alloyflow.workflows.submit import relax_maker_for

    job = relax_maker_for(calculator).keyed_job(structure, label=phase.name, metadata=meta)
    run_cached(job, store, progress=progress)
    doc = RelaxationDocument.model_validate(_as_dict(store.output(job.uuid)))
    if not doc.converged:
        warnings.append(f"the cell relaxation of {phase.name} did not converge (max force {doc.max_force:.3f} eV/Å)")
    return doc.structure


class EndpointProblem(ValueError):
    """A stored NEB outcome: the endpoints relaxed into one minimum."""


def _neb_document(store: ResultStore, uuid: str):
    from alloyflow.workflows.neb import NebDocument

    return NebDocument.model_validate(_as_dict(store.output(uuid)))


SAME_MINIMUM_TOL = 0.3
"""Å: relaxed endpoints whose atoms all lie closer than this are one minimum."""


def _periodic_disp(a: Structure, b: Structure) -> np.ndarray:
    return a.lattice.get_all_distances(a.frac_coords, b.frac_coords).diagonal()


def _endpoint_problem(doc, initial: Structure | None, final: Structure | None, hop_length: float) -> tuple[str | None, float | None]:
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
        return f"relaxing the {state} endpoint moved atom {k} by {largest:.2f} Å, more than half the hop: it left its state", largest
    return None, largest


def _hop_from_neb(hop, doc, cn_initial, cn_final, info, initial=None, final=None) -> HopBarrier:
    energies = [e - doc.energies[0] for e in doc.energies]
    warnings = []
    converged = bool(doc.converged)
    if not converged:
        warnings.append(f"hop {hop.id}: band not converged (max force {doc.max_force:.3f} > fmax {doc.fmax} eV/Å after {doc.n_steps} steps)")
    if not getattr(doc, "endpoints_converged", True):
        converged = False
        warnings.append(f"hop {hop.id}: an endpoint relaxation did not converge")
    problem, relaxation = _endpoint_problem(doc, initial, final, hop.length)
    if problem:
        converged = False
        warnings.append(f"hop {hop.id}: {problem}")
    return HopBarrier(
        id=hop.id,
        length=hop.length,
        multiplicity=hop.multiplicity,
        forward_barrier=doc.forward_barrier,
        reverse_barrier=doc.reverse_barrier,
        endpoint_asymmetry=doc.endpoint_asymmetry,
        cn_initial=CoordinationSummary(**cn_initial),
        cn_final=CoordinationSummary(**cn_final),
        converged=converged,
        n_images=doc.n_images,
        force_calls=doc.force_calls,
        n_steps=doc.n_steps,
        max_force=doc.max_force,
        energies=energies,
        reaction_coordinate=reaction_coordinate(doc.images),
        # unconverged bands stay in the table, flagged, but never set a percolation threshold
        cost=hop_cost(doc.forward_barrier, doc.reverse_barrier) if converged else None,
        moving_index=info.get("moving_index"),
        relaxed_hop_distance=getattr(doc, "hop_distance", None),
        max_endpoint_relaxation=relaxation,
        neb_key=doc.input_hash,
        warnings=warnings,
    )


def _dilute_cn(host: Structure, hop, info, mode: str) -> tuple[dict, dict]:
    if mode == "substitution":
        return hop_coordination(host, hop.isite_index, hop.esite_index)
    sc = host.copy()
    sc.make_supercell(info["matrix"])
    inv_m = np.linalg.inv(info["matrix"])
    out = []
    for frac in (hop.isite_frac, hop.esite_frac):
        s = sc.copy()
        s.append("Li", np.asarray(frac) @ inv_m)
        c = coordination(s, len(s) - 1)
        out.append({"cn": c["cn"], "li": c["cn_li"], "m": c["cn_m"]})
    return out[0], out[1]


def run_barriers(
    phase: str,
    store: ResultStore,
    calculator: str = DEFAULT_CALCULATOR,
    system: str | None = None,
    library: StructureLibrary | None = None,
    min_image_distance: float = 10.0,
    n_images: int = 5,
    fmax: float = 0.05,
    max_hops: int | None = None,
    max_length: float | None = None,
    dilute: bool = False,
    progress=None,
    relaxed_structure: Structure | None = None,
    e_above_hull: float | None = None,
    dilute_mode: str = "substitution",
    n_host_sites: int | None = None,
    neb_maker=None,
) -> BarrierResult:
    """CI-NEB barriers of every distinct Li hop of ``phase`` (shortest ``max_hops`` if given).

    ``dilute``: ``phase`` is a Li-free host (e.g. In) and the hops are those of
    one Li in it (``dilute_mode`` substitution or interstitial), in a cell of
    ``n_host_sites`` host sites, or the smallest with ``min_image_distance``.
    Their percolation is that of the Li moves on the host's hop graph (for
    substitution: the Li-vacancy exchange hops on the host sublattice).
    ``e_above_hull`` (eV/atom) adds a labelled metastability correction.
    """
    library = library or StructureLibrary()
    ph = library.get(phase, system)
    elements = [el.symbol for el in ph.composition.elements]
    if not dilute and "Li" not in elements:
        raise ValueError(
            f"phase {phase} has no Li: there is no Li vacancy hop to compute "
            f"(use dilute=True for one Li in {ph.formula} as a host)"
        )
    if dilute and "Li" in elements:
        raise ValueError(f"dilute=True needs a Li-free host phase; {phase} ({ph.formula}) contains Li")
    check_elements(calculator, sorted({*elements, "Li"}), where=f"phase {phase}")
    warnings: list[str] = []
    relaxed = relaxed_structure if relaxed_structure is not None else _relaxed(ph, store, calculator, progress, warnings)

    if dilute:
        host_sc = vacancy_supercell_matrix(relaxed, min_image_distance).matrix if n_host_sites is None else None
        network, entries = dilute_li_hops(relaxed, n_host_sites, dilute_mode, matrix=host_sc, max_length=max_length)
        n_host = int(round(abs(np.linalg.det(entries[0][3]["matrix"])))) * len(relaxed)
        n_m = n_host - 1 if dilute_mode == "substitution" else n_host
        name = Composition({"Li": 1, ph.formula: n_m}).reduced_formula if len(elements) == 1 else f"Li in {ph.formula}"
        mode = f"dilute-{dilute_mode}"
    else:
        network = hop_network(relaxed, "Li", max_length)
        choice = vacancy_supercell_matrix(relaxed, min_image_distance)
        entries = [(hop, *vacancy_hop_endpoints(relaxed, hop, supercell=choice)) for hop in network.hops]
        name, mode = ph.name, "vacancy"
    if max_hops is not None and len(entries) > max_hops:
        warnings.append(
            f"only the {max_hops} shortest of {len(entries)} distinct hops were computed; "
            "percolation uses the computed hops only"
        )
        entries = entries[:max_hops]

    maker = neb_maker
    if maker is None:
        from alloyflow.workflows.submit import neb_maker_for

        maker = neb_maker_for(calculator, n_images=n_images, fmax=fmax)
    hops: list[HopBarrier] = []
    for hop, initial, final, info in entries:
        if dilute:
            cn_i, cn_f = _dilute_cn(relaxed, hop, info, dilute_mode)
        else:
            cn_i, cn_f = hop_coordination(relaxed, hop.isite_index, hop.esite_index)
        label = f"{name} hop {hop.id}"
        try:
            job = maker.keyed_job(initial, final, label=label, metadata={"phase": name, **info})
            run_cached(job, store, progress=progress)
            output = _as_dict(store.output(job.uuid))
            if "endpoint_error" in output:
                raise EndpointProblem(output["endpoint_error"])
        except (JobFailed, ValueError) as exc:
            cause = exc.__cause__ if isinstance(exc, JobFailed) and exc.__cause__ else exc
            if isinstance(exc, JobFailed) and not isinstance(cause, ValueError):
                raise  # a crash, not an endpoint problem: stop rather than hide it
            if isinstance(cause, EndpointProblem):
                cause = f"EndpointError: {cause}"
            else:
                cause = f"{type(cause).__name__}: {cause}"
            hops.append(HopBarrier(
                id=hop.id, length=hop.length, multiplicity=hop.multiplicity, converged=False,
                cn_initial=CoordinationSummary(**cn_i), cn_final=CoordinationSummary(**cn_f),
                moving_index=info.get("moving_index"),
                warnings=[f"hop {hop.id}: no barrier ({cause})"],
            ))
            warnings.append(hops[-1].warnings[0])
            continue
        doc = _neb_document(store, job.uuid)
        hops.append(_hop_from_neb(hop, doc, cn_i, cn_f, info, initial, final))
        warnings += hops[-1].warnings

    first = entries[0][3]
    result = BarrierResult(
        phase=name,
        formula=ph.formula,
        mode=mode,
        calculator=calculator_info(calculator),
        supercell=SupercellInfo(natoms=first["natoms"], min_image_distance=first["min_image_distance"], matrix=first["matrix"]),
        hops=hops,
        max_length=network.max_length,
        settings={
            "min_image_distance": min_image_distance, "n_images": maker.n_images, "fmax": maker.fmax,
            "max_hops": max_hops, "max_length": max_length, "n_distinct_hops": len(network.hops),
        },
        relaxed_structure=relaxed.as_dict(),
        warnings=warnings,
    )
    assign_percolation(result, network)
    reached = [d for d in ("1d", "2d", "3d") if result.percolation[d] is not None]
    if not reached:
        result.warnings.append("the computed hops do not percolate; raise max_length or max_hops")
    elif len(reached) < 3:
        result.warnings.append(f"the computed hops percolate in {len(reached)}D only (within max_length {network.max_length:.2f} Å)")
    if e_above_hull is not None:
        apply_metastability_correction(result, e_above_hull)
    return result
