"""VASP through atomate2: the hull and NEB flows of alloyflow with VASP jobs.

The VASP work is done by atomate2's own makers (``RelaxMaker``,
``StaticMaker``, ``NebFromImagesMaker``, ``get_images_from_endpoints``);
this module only chooses their settings and adds one small job per result
that turns atomate2's task documents into alloyflow's ``RelaxationDocument``
/ ``NebDocument``, so hull, voltage and barrier analyses read VASP results
exactly as they read ML-potential ones.

``VaspRelaxMaker.keyed_job`` and ``VaspNebMaker.keyed_job`` return a *Flow*
(relax [+ static] + convert; endpoints + images + NEB + convert) whose
``uuid`` is the uuid of its converting job, itself derived from the input
hash. Every job inside gets a uuid derived from the same hash, so the local
engine (``run_cached``) and FireWorks submission skip what the store already
holds, and ``store.output(flow.uuid)`` is the alloyflow document, as for a
single ML job.

Settings (PBE, metallic; table in docs/HPC.md section 8):
- POTCARs Li_sv, In_d, Sn_d (pymatgen's defaults); ``GGA = PE`` because
  atomate2's base set is PBEsol; Methfessel-Paxton ISMEAR 1, SIGMA 0.1 eV,
  energies extrapolated to sigma -> 0 (pymatgen's ``final_energy``).
- Hull: ENCUT 650 eV = 1.3 x ENMAX(Li_sv, 499 eV) against the Pulay stress of
  the ISIF 3 relaxation, then a static at the relaxed cell whose energy is
  used. k-points: Gamma-centred, ceil(6·|b_i|) along reciprocal vector b_i
  (2π included; = KSPACING 0.167 Å⁻¹; GPAW's k-point density convention; with
  GPAW here LiIn's formation energy moved 7 meV/atom from (400 eV, 4) to (600
  eV, 6)).
- NEB: fixed (hull-relaxed) cell, ENCUT 520 eV, k-density 4 (cells >= 10 Å),
  EDIFFG -0.05 eV/Å like the ASE NEB's fmax. ``climb=True``: VTST climbing
  image (LCLIMB, IOPT 1, IBRION 3, POTIM 0), needs a VTST-patched VASP;
  ``climb=False``: plain VASP NEB (IBRION 1), whose barrier is the highest
  image. Endpoints are relaxed at fixed cell with the NEB's settings, so their
  energies compare with the images'.

Results (checked on real VASP outputs, ``tests/test_vasp_real.py``):
- ``NebDocument.max_force`` is the NEB force VTST converges: the stored DFT
  forces of the intermediate images with the improved tangent (Henkelman and
  Jónsson 2000) projected out, plus the spring force along it, and for the
  climbing image the parallel component inverted (``neb_forces``).
- ``elapsed_seconds`` is VASP's own "Elapsed time" of each run, counted once
  (emmet's "overall" entry is their sum); a NEB's images run side by side in
  one VASP run, so its wall time is the longest image's.
- A relaxation or NEB that reaches NSW is a document with ``converged=False``
  (last structure and energies), never an error: custodian does not restart
  an ionic-only unconvergence (``IonicLimitHandler``; electronic
  unconvergence is still corrected) and atomate2 neither raises nor stops
  the children (``handle_unsuccessful=False``), so the converting job runs on
  the local engine and on FireWorks alike.
- Result-neutral INCAR tags (parallelisation, which files are written:
  ``RESULT_NEUTRAL_INCAR``) stay out of the cache keys.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from atomate2.common.jobs.neb import NebInterpolation, get_images_from_endpoints
from atomate2.vasp.jobs.core import RelaxMaker as _A2RelaxMaker
from atomate2.vasp.jobs.core import StaticMaker as _A2StaticMaker
from jobflow import Flow, Maker, job
from pymatgen.core import Structure

import alloyflow.calculators.dft  # noqa: F401  (registers "vasp", for calculator_info and element checks)
from alloyflow.calculators import calculator_info, check_elements
from alloyflow.engine import input_hash, structure_fingerprint
from alloyflow.engine.keys import earlier_key
from alloyflow.workflows.jobs.relax import RelaxationDocument
from alloyflow.workflows.jobs.vasp_sets import (
    HULL_INCAR,
    HULL_KPT_DENSITY,
    NEB_INCAR,
    NEB_KPT_DENSITY,
    RESULT_NEUTRAL_INCAR,
    VASP,
    AlloyNebSetGenerator,
    AlloyRelaxConstVolSetGenerator,
    AlloyRelaxSetGenerator,
    AlloyStaticSetGenerator,
    IonicLimitHandler,
    density_kpoints,
    hull_relax_maker,
    hull_static_maker,
    inputs_summary,
    keep_unconverged_runs,
    neb_endpoint_maker,
    neb_images_maker,
    static_incar,
    vasp_handlers,
)
from alloyflow.workflows.jobs.vasp_outputs import (
    VTST_TAGS,
    free_energy,
    incar_of,
    last_step,
    aligned,
    as_structure,
    incar_overrides,
    ionic_steps,
    keyed_step,
    max_force,
    neb_elapsed,
    neb_forces,
    neb_outcar_headers,
    outcar_header,
    run_problem,
    software_versions,
    task_elapsed,
    task_get,
    task_succeeded,
    vasp_summary,
    vtst_problem,
)

__all__ = [  # the VASP API in one place: settings (vasp_sets), readers (vasp_outputs), makers (here)
    "AlloyNebSetGenerator", "AlloyRelaxConstVolSetGenerator", "AlloyRelaxSetGenerator", "AlloyStaticSetGenerator",
    "HULL_INCAR", "HULL_KPT_DENSITY", "IonicLimitHandler", "NEB_INCAR", "NEB_KPT_DENSITY", "RESULT_NEUTRAL_INCAR",
    "VASP", "VTST_TAGS", "VaspNebMaker", "VaspRelaxMaker", "VaspStaticMaker", "aligned", "as_structure",
    "density_kpoints", "free_energy", "hull_relax_maker", "hull_static_maker", "incar_of", "incar_overrides",
    "inputs_summary", "ionic_steps", "keep_unconverged_runs", "keyed_step", "last_step", "max_force",
    "neb_document", "neb_elapsed", "neb_endpoint_maker", "neb_forces", "neb_images_maker", "neb_outcar_headers",
    "outcar_header", "relaxation_document", "run_problem", "software_versions", "static_incar", "task_elapsed",
    "task_get", "task_succeeded", "vasp_handlers", "vasp_summary", "vtst_problem",
]

logger = logging.getLogger(__name__)


@job
def relaxation_document(relax, static, label: str, input_structure: Structure, key: str, metadata: dict,
                        fmax: float, relax_cell: bool, vasp_meta: dict | None = None) -> RelaxationDocument:
    """alloyflow's document from atomate2's VASP task documents (relaxation, then static or None).

    A run that did not converge (NSW reached, or atomate2's state "failed")
    still gives a document, with ``converged=False``, its last structure and
    energies, and the reason in ``metadata["vasp"]["problems"]``.
    """
    final = static if static is not None else relax
    structure = as_structure(task_get(final, "output", "structure"))
    energy = float(task_get(final, "output", "energy"))
    steps = ionic_steps(relax)
    relax_forces = task_get(steps[-1], "forces") if steps else task_get(relax, "output", "forces")
    runs = (("relax" if relax_cell else "static", relax), ("static", static))
    problems = {name: why for name, task in runs if task is not None and (why := run_problem(task))}
    if problems:
        logger.warning("VASP %s: %s", label, "; ".join(f"{k}: {v}" for k, v in problems.items()))
    return RelaxationDocument(
        label=label,
        formula=structure.composition.reduced_formula,
        structure=structure,
        input_structure=input_structure,
        energy=energy,
        energy_per_atom=energy / len(structure),
        volume_per_atom=structure.volume / len(structure),
        natoms=len(structure),
        # VASP reached EDIFFG within NSW and every SCF converged (pymatgen's judgement) for every run
        converged=not problems,
        max_force=max_force(relax_forces),
        n_steps=len(steps),
        fmax=fmax,
        relax_cell=relax_cell,
        calculator=calculator_info(VASP),
        input_hash=key,
        elapsed_seconds=task_elapsed(relax) + (task_elapsed(static) if static is not None else 0.0),
        metadata={**(metadata or {}), "vasp": {**vasp_summary(final), **(vasp_meta or {}),
                                               **({"problems": problems} if problems else {})}},
    )


@dataclass
class VaspRelaxMaker(Maker):
    """The hull's per-phase VASP work: relaxation, then (``static``) a static; a drop-in ``relax_maker``.

    ``HullMaker(relax_maker=VaspRelaxMaker())`` builds the same hull flow
    as with an ML potential, one keyed sub-flow per phase.
    """

    name: str = "vasp"
    calculator: str = VASP
    static: bool = True
    relax_maker: _A2RelaxMaker = field(default_factory=hull_relax_maker)
    static_maker: _A2StaticMaker = field(default_factory=hull_static_maker)

    @property
    def fmax(self) -> float:
        return abs(float(self.relax_maker.input_set_generator.user_incar_settings.get("EDIFFG", -0.02)))

    def settings(self) -> dict:
        return {"static": self.static, "relax": inputs_summary(self.relax_maker),
                "static_inputs": inputs_summary(self.static_maker) if self.static else None}

    def key(self, structure: Structure) -> str:
        return input_hash("vasp relax", structure_fingerprint(structure), calculator_info(VASP), self.settings())

    def keyed_job(self, structure: Structure, label: str, metadata: dict | None = None) -> Flow:
        check_elements(VASP, [el.symbol for el in structure.composition.elements], where=label)
        key, earlier = self.key(structure), earlier_key(self.key, structure)
        relax = keyed_step(self.relax_maker.make(structure), key, "relax", f"vasp relax {label}", earlier=earlier)
        jobs = [relax]
        static = None
        if self.static:
            static = keyed_step(self.static_maker.make(relax.output.structure), key, "static", f"vasp static {label}",
                                earlier=earlier)
            jobs.append(static)
        overrides = {"relax": incar_overrides(self.relax_maker, HULL_INCAR)}
        if self.static:
            overrides["static"] = incar_overrides(self.static_maker, static_incar(HULL_INCAR))
        doc = relaxation_document(relax.output, static.output if static else None, label, structure, key,
                                  metadata or {}, self.fmax, True, {"incar_overrides": overrides})
        keyed_step(doc, key, "", f"vasp result {label}", earlier=earlier)
        return Flow([*jobs, doc], output=doc.output, name=f"vasp {label}", uuid=doc.uuid)


@dataclass
class VaspStaticMaker(Maker):
    """A VASP single point (atomate2 static at the hull settings) as a ``RelaxationDocument``; one keyed sub-flow."""

    name: str = "vasp static"
    calculator: str = VASP
    static_maker: _A2StaticMaker = field(default_factory=hull_static_maker)

    def settings(self) -> dict:
        return {"static": inputs_summary(self.static_maker)}

    def key(self, structure: Structure) -> str:
        return input_hash("vasp static", structure_fingerprint(structure), calculator_info(VASP), self.settings())

    def keyed_job(self, structure: Structure, label: str, metadata: dict | None = None) -> Flow:
        check_elements(VASP, [el.symbol for el in structure.composition.elements], where=label)
        key, earlier = self.key(structure), earlier_key(self.key, structure)
        static = keyed_step(self.static_maker.make(structure), key, "static", f"vasp static {label}", earlier=earlier)
        overrides = {"static": incar_overrides(self.static_maker, static_incar(HULL_INCAR))}
        doc = relaxation_document(static.output, None, label, structure, key, metadata or {}, 0.0, False,
                                  {"incar_overrides": overrides})
        keyed_step(doc, key, "", f"vasp static result {label}", earlier=earlier)
        return Flow([static, doc], output=doc.output, name=f"vasp static {label}", uuid=doc.uuid)


def _sort_order(structure: Structure) -> list[int]:
    """The site order atomate2's input sets write (``get_sorted_structure``: by electronegativity, stable)."""
    return sorted(range(len(structure)), key=lambda i: structure[i])


def _unsorted(structure: Structure, order: list[int]) -> Structure:
    """Back to the input's site order (``order[new] = old``)."""
    return Structure.from_sites([structure[order.index(old)] for old in range(len(order))])


@job
def neb_document(initial, final, neb, label: str, key: str, order: list[int], n_images: int, fmax: float,
                 settings: dict, metadata: dict, vasp_meta: dict | None = None):
    """alloyflow's ``NebDocument`` from the VASP endpoint and NEB task documents (input site order).

    ``max_force`` is the NEB force of the band (``neb_forces``: tangent
    projected out of the stored DFT forces, spring and climbing terms), the
    quantity VTST converges to ``EDIFFG``; the raw DFT forces (which keep the
    component along the path) are in ``metadata["vasp"]["image_dft_max_forces"]``.
    An unconverged band (NSW reached, a failed image, VTST tags on a VASP
    without VTST) is a document with ``converged=False`` and the reasons in
    ``metadata["vasp"]["problems"]``.
    """
    from alloyflow.workflows.schemas.neb import NebDocument

    t0 = time.perf_counter()
    calcs = task_get(neb, "calculations", default=[]) or []
    ends = [as_structure(task_get(t, "output", "structure")) for t in (initial, final)]
    band_images = []
    for c, s in zip(calcs, task_get(neb, "images", default=[]) or []):
        step = last_step(c)
        band_images.append(as_structure(task_get(step, "structure") if task_get(step, "structure") else s))
    if not band_images:
        band_images = [as_structure(s) for s in task_get(neb, "images", default=[])]
    renumbered = []
    if band_images:
        for k, near in ((0, band_images[0]), (1, band_images[-1])):
            ends[k], changed = aligned(ends[k], near)
            if changed:
                renumbered.append(("initial", "final")[k])
    images = [ends[0], *band_images, ends[1]]
    energies = [float(task_get(initial, "output", "energy")), *map(float, task_get(neb, "energies", default=[])),
                float(task_get(final, "output", "energy"))]
    neb_steps = [list(task_get(c, "output", "ionic_steps", default=[])) for c in calcs]
    dft_forces = [task_get(s[-1], "forces") for s in neb_steps if s]
    endpoint_steps = len(ionic_steps(initial)) + len(ionic_steps(final))
    imax = int(np.argmax(energies))
    hop = float(ends[0].lattice.get_all_distances(ends[0].frac_coords, ends[1].frac_coords).diagonal().max())
    n_steps = max((len(s) for s in neb_steps), default=0)

    # the NEB's INCAR (VTST tags are not in the images' vasprun.xml)
    incar = {**(incar_of(calcs[0]) if calcs else {}), **dict(task_get(neb, "orig_inputs", "incar", default={}) or {}),
             **dict(task_get(neb, "inputs", "incar", default={}) or {})}
    headers = neb_outcar_headers(neb, n_images)
    vtst = next((h["vtst"] for h in headers if h.get("vtst")), None)
    if headers:  # what the VASP that ran did: only VTST climbs (LCLIMB defaults to true there)
        climb = bool(vtst) and next((h["lclimb"] for h in headers if h.get("lclimb") is not None), True)
        spring = next((h["spring"] for h in headers if h.get("spring") is not None), incar.get("SPRING", -5.0))
    else:
        climb, spring = bool(incar.get("LCLIMB", False)), incar.get("SPRING", -5.0)
    image_forces = []
    if len(dft_forces) == len(band_images) == n_images and n_images:
        band_energies = [free_energy(initial), *[free_energy(c) for c in calcs], free_energy(final)]
        projected = neb_forces([s.cart_coords for s in images], band_energies, dft_forces, ends[0].lattice.matrix,
                               abs(float(spring)), climb)
        image_forces = [max_force(f) for f in projected]

    problems = {}
    for name, task in (("initial endpoint", initial), ("final endpoint", final), ("band", neb)):
        if why := run_problem(task):
            problems[name] = why
    if why := vtst_problem(incar, headers):
        problems["vtst"] = why
    if problems:
        logger.warning("VASP NEB %s: %s", label, "; ".join(f"{k}: {v}" for k, v in problems.items()))
    wall, per_image = neb_elapsed(neb)
    vasp = {
        "neb_dir": task_get(neb, "dir_name"),
        "neb_method": str(task_get(neb, "neb_method", default="")),
        "vtst": vtst,
        "climbing": climb,
        "spring": float(spring),
        "image_max_forces": image_forces,
        "image_dft_max_forces": [max_force(f) for f in dft_forces],
        "image_elapsed_seconds": per_image,
        **({"endpoints_renumbered": renumbered} if renumbered else {}),
        "neb_elapsed_seconds": wall,
        "versions": software_versions(),
        **(vasp_meta or {}),
        **({"problems": problems} if problems else {}),
    }
    return NebDocument(
        label=label,
        calculator=calculator_info(VASP),
        input_hash=key,
        n_images=n_images,
        energies=energies,
        images=[_unsorted(s, order) for s in images],
        forward_barrier=energies[imax] - energies[0],
        reverse_barrier=energies[imax] - energies[-1],
        endpoint_asymmetry=energies[-1] - energies[0],
        climbing_image=imax,
        converged=not problems,
        n_steps=n_steps,
        force_calls=n_steps * n_images + endpoint_steps,
        model_calls=n_steps * n_images + endpoint_steps,  # one SCF per image and step: no batching
        endpoint_force_calls=endpoint_steps,
        # the NEB force (tangent projected out, spring and climbing terms): what VTST converges to EDIFFG
        max_force=max(image_forces) if image_forces else max((max_force(f) for f in dft_forces), default=0.0),
        fmax=fmax,
        hop_distance=hop,
        endpoints_converged=not ({"initial endpoint", "final endpoint"} & set(problems)),
        settings=settings,
        # VASP's own times: endpoints one after the other, then the images side by side in one run
        elapsed_seconds=task_elapsed(initial) + task_elapsed(final) + wall + time.perf_counter() - t0,
        evaluation_seconds=0.0,
        metadata={**(metadata or {}), "vasp": vasp},
    )


@dataclass
class VaspNebMaker(Maker):
    """A vacancy hop with VASP: endpoint relaxations, IDPP images, NEB (atomate2), one keyed sub-flow.

    A drop-in ``neb_maker`` for ``run_barriers``: same ``keyed_job``
    signature and output document as ``alloyflow.workflows.jobs.neb.NebMaker``.
    ``climb=True`` needs a VTST-patched VASP (see the module docstring);
    ``climb=False`` is VASP's own NEB (no VTST tags). ``incar``: overrides
    for the endpoints and the band (result-neutral tags stay out of the key).
    """

    name: str = "vasp neb"
    calculator: str = VASP
    n_images: int = 5
    climb: bool = True
    relax_endpoints: bool = True
    kpt_density: float = NEB_KPT_DENSITY
    incar: dict = field(default_factory=dict)

    @property
    def fmax(self) -> float:
        return abs(float({**NEB_INCAR, **self.incar}["EDIFFG"]))

    def makers(self):
        endpoint = (neb_endpoint_maker(self.incar, self.kpt_density) if self.relax_endpoints
                    else hull_static_maker({**NEB_INCAR, "NSW": 0, "EDIFFG": None, **self.incar}, self.kpt_density))
        return endpoint, neb_images_maker(self.climb, self.incar, self.kpt_density)

    def settings(self) -> dict:
        endpoint, images = self.makers()
        return {"n_images": self.n_images, "climb": self.climb, "relax_endpoints": self.relax_endpoints,
                "interpolation": "idpp", "endpoint": inputs_summary(endpoint), "neb": inputs_summary(images)}

    def key(self, initial: Structure, final: Structure) -> str:
        return input_hash("vasp neb", structure_fingerprint(initial), structure_fingerprint(final),
                          calculator_info(VASP), self.settings())

    def keyed_job(self, initial: Structure, final: Structure, label: str, metadata: dict | None = None) -> Flow:
        from alloyflow.workflows.jobs.neb import validate_endpoints

        check_elements(VASP, [el.symbol for el in initial.composition.elements], where=label)
        validate_endpoints(initial, final)
        key, earlier = self.key(initial, final), earlier_key(self.key, initial, final)
        # Sort once here, as atomate2's input sets would, so that every image keeps one site order.
        order = _sort_order(initial)
        ends = [Structure.from_sites([s[i] for i in order]) for s in (initial, final)]
        endpoint_maker, images_maker = self.makers()
        e_i = keyed_step(endpoint_maker.make(ends[0]), key, "initial", f"vasp endpoint {label} initial",
                         earlier=earlier)
        e_f = keyed_step(endpoint_maker.make(ends[1]), key, "final", f"vasp endpoint {label} final", earlier=earlier)
        # sort_tol=0: IDPP must not renumber atoms (it can, for a vacancy hop)
        ends_out = [e_i.output.output.structure, e_f.output.output.structure]
        images = get_images_from_endpoints(ends_out, self.n_images, interpolation_method=NebInterpolation.IDPP,
                                           sort_tol=0)
        keyed_step(images, key, "images", f"vasp images {label}", earlier=earlier)
        neb = keyed_step(images_maker.make(images.output), key, "neb", f"vasp neb {label}", earlier=earlier)
        doc = neb_document(e_i.output, e_f.output, neb.output, label, key, order, self.n_images, self.fmax,
                           self.settings(), metadata or {},
                           {"incar_overrides": {k: v for k, v in sorted(self.incar.items()) if NEB_INCAR.get(k) != v}})
        keyed_step(doc, key, "", f"vasp neb result {label}", earlier=earlier)
        return Flow([e_i, e_f, images, neb, doc], output=doc.output, name=f"vasp neb {label}", uuid=doc.uuid)
