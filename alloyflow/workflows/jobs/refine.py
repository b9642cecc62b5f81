"""DFT//MLIP: single-point DFT energies on the images of a converged ML band.

Why single points and not a DFT NEB: the ML potential puts the saddle in
about the right place (a one-atom hop) but gets its height wrong (universal
potentials soften barriers, docs/STACK). DFT energies of the ML endpoints and
climbing image measure the height at a few single points' cost, against
hundreds for a DFT band. The refined barrier is a "DFT//ML" number: DFT
energies on ML geometries. It is always reported beside the ML one and never
labelled plain DFT.

Every single point is a keyed ``LabelMaker`` job (energy, forces, stress) in
the study's store, so a rerun, another band sharing an endpoint, or a
fine-tuning that wants the same image as a training label reuses it. A single point that
raises (SCF not converged, GPAW missing, ...) is recorded with its message
and leaves the DFT barrier ``None``: never a silent number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from jobflow import job
from pydantic import BaseModel, Field
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from alloyflow.calculators import calculator_info, check_elements, get_spec
from alloyflow.engine import ResultStore, input_hash, run_cached, structure_fingerprint
from alloyflow.engine.keys import keyed_by
from alloyflow.workflows.jobs.labels import LabelMaker, single_point
from alloyflow.workflows.jobs.neb import NebMaker, mic_displacements, validate_endpoints
from alloyflow.workflows.schemas.neb import NebDocument

IMAGE_MODES = ("saddle", "saddle+neighbours", "all")
METHOD_ML = "ML"
METHOD_DFT_ML = "DFT//ML"


class RefinedImage(BaseModel):
    """One band image: its ML energy (from the band) and its DFT//ML single point, eV per cell."""

    index: int = Field(description="index in NebDocument.images (0 = initial endpoint)")
    ml_energy: float
    dft_energy: float | None = Field(description="None when the single point failed")
    ok: bool
    message: str = ""
    reused: bool = Field(description="taken from the store, not computed in this call")
    dft_seconds: float = Field(0.0, description="time the single point took when it was computed")
    same_as: int | None = Field(None, description="index of the image whose single point this one takes: the "
                                "final endpoint when it is the initial one up to a symmetry of the cell "
                                "(``equivalent_endpoints``); None for a single point of its own")


class RefinedBarrier(BaseModel):
    """An ML barrier and its DFT//ML refinement side by side; energies in eV."""

    label: str
    ml_calculator: dict
    dft_calculator: dict = Field(description="calculator_info of the DFT backend plus its resolved 'settings'")
    images_mode: str
    ml_band_converged: bool
    ml_climbing_image: int
    ml_forward_barrier: float = Field(description="ML: max(E_ML) - E_ML(initial), from the band")
    ml_reverse_barrier: float
    dft_forward_barrier: float | None = Field(
        description="DFT//ML: max over the refined intermediate images of E_DFT - E_DFT(initial); "
        "None if any single point failed")
    dft_reverse_barrier: float | None
    dft_saddle_image: int | None = Field(description="refined image with the highest DFT//ML energy")
    dft_saddle_shifted: bool = Field(
        False, description="the DFT//ML maximum is not the ML climbing image: DFT puts the saddle elsewhere on "
        "the band, so the refined barrier is a lower bound; refine more images or re-converge the band with DFT")
    energies: list[RefinedImage]
    n_single_points: int = Field(description="single points computed in this call (the rest were reused)")
    n_reused: int
    n_symmetry_copies: int = Field(0, description="images that took a symmetry-equivalent image's single point")
    dft_seconds: float = Field(description="summed cost of all refined single points, reused ones included")
    converged: bool = Field(description="every single point succeeded and the ML band was converged")
    failures: list[str] = Field(default_factory=list)
    methods: dict = Field(default_factory=lambda: {"ml_*": METHOD_ML, "dft_*": METHOD_DFT_ML})


def images_to_refine(neb_doc: NebDocument, images: str = "saddle") -> list[int]:
    """Indices of the images to recompute: endpoints plus the climbing image (and its neighbours, or all)."""
    if images not in IMAGE_MODES:
        raise ValueError(f"unknown images={images!r}; choose one of {', '.join(IMAGE_MODES)}")
    last = len(neb_doc.images) - 1
    ci = neb_doc.climbing_image
    if images == "all":
        chosen = set(range(last + 1))
    elif images == "saddle+neighbours":
        chosen = {0, last, ci - 1, ci, ci + 1}
    else:
        chosen = {0, last, ci}
    return sorted(k for k in chosen if 0 <= k <= last)


def dft_settings(calculator: str, calculator_kwargs: dict) -> dict:
    """The resolved settings recorded with the result (GPAW: defaults filled in)."""
    if calculator == "gpaw":
        from alloyflow.calculators.dft import gpaw_settings

        return gpaw_settings(**calculator_kwargs)
    return dict(calculator_kwargs)


ENDPOINT_MATCH = {"ltol": 1e-3, "stol": 5e-3, "angle_tol": 0.05}
"""pymatgen StructureMatcher tolerances under which the final endpoint is the initial one up to a symmetry
of the cell: ``stol`` is a fraction of (V/n)^(1/3), about 0.015 Å in these alloys, where the relaxed
endpoints of a symmetric hop agree to float noise and their forces are small (a second-order change)."""


def equivalent_endpoints(neb_doc: NebDocument) -> bool:
    """Whether the band's final endpoint is its initial one mapped by a symmetry of the cell (``ENDPOINT_MATCH``).

    Then both have the same DFT energy (GPAW gave them within 0.01 meV on
    the three symmetric LiSn hops of docs/validation.md), so one single point
    serves both.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    a, b = neb_doc.images[0], neb_doc.images[-1]
    if len(a) != len(b) or a.composition != b.composition:
        return False
    matcher = StructureMatcher(**ENDPOINT_MATCH, primitive_cell=False, scale=False, attempt_supercell=False)
    return bool(matcher.fit(a, b))


def symmetry_copy(source: RefinedImage, index: int, ml_energy: float) -> RefinedImage:
    """Image ``index`` taking ``source``'s single point (it is ``source``'s geometry up to a symmetry of the cell)."""
    return source.model_copy(update={
        "index": index, "ml_energy": ml_energy, "reused": False, "dft_seconds": 0.0, "same_as": source.index,
        "message": source.message or f"image {source.index} up to a symmetry of the cell"})


def _label(neb_doc: NebDocument, k: int) -> str:
    return f"{neb_doc.label or 'band'} image {k}"


def _single_point(maker: LabelMaker, neb_doc: NebDocument, k: int, store: ResultStore) -> RefinedImage:
    ml = float(neb_doc.energies[k])
    doc, reused, error = single_point(maker, neb_doc.images[k], _label(neb_doc, k), store)
    if doc is None:
        # A DFT failure (e.g. SCF not converged) is a result to report, not a number.
        return RefinedImage(index=k, ml_energy=ml, dft_energy=None, ok=False, message=error, reused=False)
    return RefinedImage(index=k, ml_energy=ml, dft_energy=doc["energy"], ok=True, reused=reused,
                        dft_seconds=doc["elapsed_seconds"])


def refine_band(
    neb_doc: NebDocument,
    store: ResultStore,
    calculator: str = "gpaw",
    calculator_kwargs: dict | None = None,
    images: str = "saddle",
    symmetric_endpoints: bool = True,
) -> RefinedBarrier:
    """DFT//ML single points on ``neb_doc``'s endpoints and saddle images, stored in ``store``.

    ``symmetric_endpoints``: where the final endpoint is the initial one up
    to a symmetry of the cell (``equivalent_endpoints``) and has no stored
    single point of its own, it takes the initial one's (``same_as`` = 0)
    instead of a second, equal DFT calculation: a third of the cost of a
    symmetric hop at ``images="saddle"``.
    """
    from alloyflow.engine import is_finished

    kwargs = dict(calculator_kwargs or {})
    get_spec(calculator)  # unknown name: a clear CalculatorError before any work
    indices = images_to_refine(neb_doc, images)
    maker = LabelMaker(calculator=calculator, calculator_kwargs=kwargs)
    last = len(neb_doc.images) - 1
    copy_final = (symmetric_endpoints and last in indices and equivalent_endpoints(neb_doc)
                  and not is_finished(store.jobstore, maker.keyed_job(neb_doc.images[last], _label(neb_doc, last))))
    refined = [_single_point(maker, neb_doc, k, store) for k in indices if not (copy_final and k == last)]
    if copy_final:
        refined.append(symmetry_copy(refined[0], last, float(neb_doc.energies[last])))

    return assemble_refined(neb_doc, refined, {**calculator_info(calculator), "settings": dft_settings(calculator, kwargs)},
                            images)


def assemble_refined(neb_doc: NebDocument, refined: list[RefinedImage], dft_calculator: dict,
                     images: str) -> RefinedBarrier:
    """The refined barrier from the single points of ``refined`` (any backend: GPAW here, VASP on HPC)."""
    by_index = {r.index: r for r in refined}
    first, last = by_index[0], by_index[len(neb_doc.images) - 1]
    inner = [r for r in refined if r.index not in (first.index, last.index)]
    failures = [f"image {r.index}: {r.message}" for r in refined if not r.ok and r.same_as is None]
    fwd = rev = saddle = None
    if not failures and inner:
        top = max(inner, key=lambda r: r.dft_energy)
        saddle = top.index
        fwd = top.dft_energy - first.dft_energy
        rev = top.dft_energy - last.dft_energy

    return RefinedBarrier(
        label=neb_doc.label,
        ml_calculator=neb_doc.calculator,
        dft_calculator=dft_calculator,
        images_mode=images,
        ml_band_converged=neb_doc.converged,
        ml_climbing_image=neb_doc.climbing_image,
        ml_forward_barrier=neb_doc.forward_barrier,
        ml_reverse_barrier=neb_doc.reverse_barrier,
        dft_forward_barrier=fwd,
        dft_reverse_barrier=rev,
        dft_saddle_image=saddle,
        dft_saddle_shifted=saddle is not None and saddle != neb_doc.climbing_image,
        energies=refined,
        n_single_points=sum(1 for r in refined if r.ok and not r.reused and r.same_as is None),
        n_reused=sum(1 for r in refined if r.reused),
        n_symmetry_copies=sum(1 for r in refined if r.same_as is not None),
        dft_seconds=sum(r.dft_seconds for r in refined),
        converged=not failures and neb_doc.converged,
        failures=failures,
    )


def format_refined(r: RefinedBarrier) -> str:
    """One line per barrier, each number labelled with its method."""
    dft = "failed" if r.dft_forward_barrier is None else f"{r.dft_forward_barrier:.3f} eV"
    if r.dft_saddle_shifted:
        dft += f" (lower bound: DFT maximum at image {r.dft_saddle_image}, ML saddle at {r.ml_climbing_image})"
    return (f"{r.label}: {METHOD_ML} ({r.ml_calculator.get('model')}) {r.ml_forward_barrier:.3f} eV; "
            f"{METHOD_DFT_ML} ({r.dft_calculator.get('model')}) {dft}; "
            f"{len(r.energies) - r.n_symmetry_copies} single points ({r.n_single_points} computed, "
            f"{r.n_reused} reused"
            + ("; the final endpoint is the initial one by symmetry" if r.n_symmetry_copies else "")
            + f"), {r.dft_seconds:.0f} s")


@dataclass
class ReconvergeBandMaker(NebMaker):
    """Re-converge a converged band (e.g. an ML one) with another calculator, starting from its images.

    Why start from the ML band: it already has the right topology (one atom
    hopping) and nearly the right path, so DFT needs a few band steps instead
    of an IDPP start's dozens. Endpoints are kept at their ML geometries by
    default (``relax_endpoints=False``): their DFT relaxation would change
    the barrier by the endpoint relaxation energy, which the refined single
    points already show. Each step costs ``n_images`` DFT force calls.
    """

    name: str = "reconverge"
    calculator: str = "gpaw"
    relax_endpoints: bool = False
    endpoint_trials: int = 1
    endpoint_symprec: float | None = None
    max_steps: int = 60
    batched: bool = False
    climb_fmax: float | None = None
    """The NEB default's tighter climbing image (0.01 eV/Å) is left off here: DFT bands stored before it
    keep their keys, and each extra band step is ``n_images`` DFT single points; the bias it leaves
    (≤ 10 meV at fmax 0.05 on SevenNet-0, ``alloyflow.workflows.jobs.neb``) is small beside the
    ML-vs-DFT differences these bands measure."""

    def band_key(self, band: list[Structure]) -> str:
        settings = {k: v for k, v in self.settings().items() if k not in ("batched", "n_images")}
        return input_hash("reconverge", [structure_fingerprint(s) for s in band], calculator_info(self.calculator),
                          settings)

    def keyed_band_job(self, band: list[Structure], label: str):
        check_elements(self.calculator, [el.symbol for el in band[0].composition.elements], where=label)
        validate_endpoints(band[0], band[-1])
        j = self.make_from_band(band, label=label)
        j.name = f"{self.name} {label}"
        return keyed_by(j, self.band_key, band, label=f"{self.name} {label}")

    @job
    def make_from_band(self, band: list[Structure], label: str = "") -> NebDocument:
        return self.run_from_band(band, label)

    def run_from_band(self, band: list[Structure], label: str = "") -> NebDocument:
        t0 = time.perf_counter()
        ends = self._relaxed_endpoints(band[0], band[-1])
        ini_s, fin_s, endpoint_steps, endpoints_ok = ends.initial, ends.final, ends.force_calls, ends.converged
        images = [AseAtomsAdaptor.get_atoms(s) for s in [ini_s, *band[1:-1], fin_s]]
        cell = images[0].cell
        for a in images[1:]:
            a.set_cell(cell, scale_atoms=True)  # one cell for the band, as in NebMaker
        hop = float(mic_displacements(images[0], images[-1]).max())
        return self._optimise(images, False, self.band_key(band), label, {"started_from": "band"}, endpoint_steps,
                              endpoints_ok, hop, t0)


def reconverge_band(neb_doc: NebDocument, store: ResultStore, calculator: str = "gpaw",
                    calculator_kwargs: dict | None = None, fmax: float = 0.05, max_steps: int = 60) -> NebDocument:
    """A band re-converged with ``calculator`` from ``neb_doc``'s images: a full DFT barrier, stored and reused.

    An unconverged result (``max_steps`` reached) comes back with ``converged=False``;
    a failed force call raises ``JobFailed`` naming the band, with the earlier work stored.
    """
    maker = ReconvergeBandMaker(calculator=calculator, calculator_kwargs=dict(calculator_kwargs or {}), fmax=fmax,
                                max_steps=max_steps, n_images=neb_doc.n_images)
    j = maker.keyed_band_job(list(neb_doc.images), label=f"{neb_doc.label or 'band'}")
    run_cached(j, store)
    out = store.output(j.uuid)
    return NebDocument.model_validate(out if isinstance(out, dict) else out.model_dump())
