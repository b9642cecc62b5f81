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

from pydantic import BaseModel, Field

from alloyflow.calculators import calculator_info, get_spec
from alloyflow.workflows.engine import ResultStore
from alloyflow.workflows.labels import LabelMaker, single_point
from alloyflow.workflows.neb import NebDocument

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
        from alloyflow.calculators_dft import gpaw_settings

        return gpaw_settings(**calculator_kwargs)
    return dict(calculator_kwargs)


def _single_point(maker: LabelMaker, neb_doc: NebDocument, k: int, store: ResultStore) -> RefinedImage:
    ml = float(neb_doc.energies[k])
    doc, reused, error = single_point(maker, neb_doc.images[k], f"{neb_doc.label or 'band'} image {k}", store)
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
) -> RefinedBarrier:
    """DFT//ML single points on ``neb_doc``'s endpoints and saddle images, stored in ``store``."""
    kwargs = dict(calculator_kwargs or {})
    get_spec(calculator)  # unknown name: a clear CalculatorError before any work
    indices = images_to_refine(neb_doc, images)
    maker = LabelMaker(calculator=calculator, calculator_kwargs=kwargs)
    refined = [_single_point(maker, neb_doc, k, store) for k in indices]

    by_index = {r.index: r for r in refined}
    first, last = by_index[0], by_index[len(neb_doc.images) - 1]
    inner = [r for r in refined if r.index not in (first.index, last.index)]
    failures = [f"image {r.index}: {r.message}" for r in refined if not r.ok]
    fwd = rev = saddle = None
    if not failures and inner:
        top = max(inner, key=lambda r: r.dft_energy)
        saddle = top.index
        fwd = top.dft_energy - first.dft_energy
        rev = top.dft_energy - last.dft_energy

    return RefinedBarrier(
        label=neb_doc.label,
        ml_calculator=neb_doc.calculator,
        dft_calculator={**calculator_info(calculator), "settings": dft_settings(calculator, kwargs)},
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
        n_single_points=sum(1 for r in refined if r.ok and not r.reused),
        n_reused=sum(1 for r in refined if r.reused),
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
            f"{len(r.energies)} single points ({r.n_single_points} computed, {r.n_reused} reused), "
            f"{r.dft_seconds:.0f} s")
