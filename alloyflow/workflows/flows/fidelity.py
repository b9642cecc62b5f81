"""``alloyflow refine``: ML barriers of a phase beside their DFT//ML, DFT and fine-tuned counterparts.

For the hops that set a phase's percolation thresholds (or all computed
hops), starting from the stored ML bands of ``alloyflow barriers``:
- optionally choose the DFT settings by converging the first band's
  DFT//ML barrier (``dft_convergence``);
- DFT//ML: DFT single points on each band's endpoints and saddle (``refine``);
- optionally re-converge each band with DFT forces (``reconverge_band``);
- optionally fine-tune SevenNet-0 on DFT labels of these bands until its
  barriers agree with their DFT//ML refinement (``active``).
Every number carries the method that made it; costs (single points, DFT and
training wall time) sit beside them. Results: ``<out>/barriers/<phase>/fidelity.json``
and the study report's "Barrier fidelity" section.
"""

from __future__ import annotations

from pathlib import Path


from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info
from alloyflow.engine import ResultStore
from alloyflow.workflows.schemas.fidelity import FidelityResult, HopFidelity
from alloyflow.analysis.fidelity import format_fidelity  # noqa: F401  (re-exported)


def stored_barriers(out: Path, phase: str, calculator: str):
    from alloyflow.io.barriers import read_barrier_json

    path = out / "barriers" / phase / "barriers.json"
    if not path.is_file():
        return None
    result = read_barrier_json(path)
    return result if result.calculator.get("name") == calculator else None


def hop_ids_for(result, hops: str) -> set[int]:
    if hops == "all":
        return {h.id for h in result.hops if h.neb_key}
    ids = {i for i in result.percolation_hops.values() if i is not None}
    if not ids:
        raise ValueError(f"{result.phase}: no percolating hop among the computed ones; use --hops all")
    return ids


def run_fidelity(phase: str, out: Path, system: str | None = None, calculator: str = DEFAULT_CALCULATOR,
                 dft: str = "gpaw", dft_kwargs: dict | None = None, images: str = "saddle", hops: str = "percolating",
                 converge: bool = False, reconverge: bool = False, finetune: bool = False, iterations: int = 1,
                 tolerance: float = 0.03, epochs: int = 4, barrier_options: dict | None = None,
                 log=print) -> FidelityResult:
    from alloyflow.ml.active import active_learning, bands_from_barriers
    from alloyflow.workflows.flows.barriers import run_barriers
    from alloyflow.workflows.jobs.dft_convergence import converge_for_band
    from alloyflow.workflows.jobs.refine import dft_settings, reconverge_band, refine_band

    out = Path(out)
    options = dict(barrier_options or {})
    kwargs = dict(dft_kwargs or {})
    with ResultStore(out) as store:
        result = stored_barriers(out, phase, calculator) if not options else None
        if result is None:
            log(f"{phase}: computing the {calculator} bands first")
            result = run_barriers(phase, store, calculator=calculator, system=system, **options)
        ids = hop_ids_for(result, hops)
        bands = bands_from_barriers(result, store, ids)
        if not bands:
            raise ValueError(f"{phase}: none of hops {sorted(ids)} has a converged ML band to refine")
        conv = None
        if converge:
            conv = converge_for_band(bands[0], store, calculator=dft, fixed=None)
            log(conv.summary())
            kwargs = {**conv.settings, **kwargs}
        refined = [refine_band(b, store, calculator=dft, calculator_kwargs=kwargs, images=images) for b in bands]
        rows = []
        ordered = [h.id for h in result.hops if h.neb_key and h.id in ids]  # bands_from_barriers' order
        for hop_id, band, r in zip(ordered, bands, refined):
            length = next(h.length for h in result.hops if h.id == hop_id)
            row = HopFidelity(hop=hop_id, length=length, ml=r.ml_forward_barrier, dft_ml=r.dft_forward_barrier,
                              dft_ml_single_points=len(r.energies) - r.n_symmetry_copies, dft_ml_seconds=r.dft_seconds,
                              dft_saddle_shifted=r.dft_saddle_shifted, failures=list(r.failures))
            if reconverge and r.converged:
                d = reconverge_band(band, store, calculator=dft, calculator_kwargs=kwargs)
                row.dft, row.dft_converged = d.forward_barrier, d.converged
                row.dft_force_calls, row.dft_seconds = d.force_calls, d.elapsed_seconds
            rows.append(row)
        ft_summary, train_seconds = None, 0.0
        if finetune:
            def make_bands(calc):
                res = run_barriers(phase, store, calculator=calc, system=system, **options)
                return bands_from_barriers(res, store, ids)

            al = active_learning(make_bands, store, out, f"{phase}-ft", base_calculator=calculator, dft=dft,
                                 dft_kwargs=kwargs, tolerance=tolerance, max_iterations=iterations, epochs=epochs,
                                 images=images, log=log)
            last = al.iterations[-1]
            if al.final_calculator != calculator:
                for row, b in zip(rows, last.barriers):
                    row.finetuned_ml, row.finetuned_dft_ml = b.ml_forward_barrier, b.dft_forward_barrier
            trained = [it.finetune for it in al.iterations if it.finetune]
            train_seconds = al.train_seconds
            ft_summary = {"potential": al.final_calculator, "model": calculator_info(al.final_calculator)["model"],
                          "converged": al.converged, "stop_reason": al.stop_reason,
                          "errors": trained[-1].errors if trained else None,
                          "n_train": trained[-1].n_train if trained else 0, "n_val": trained[-1].n_val if trained else 0,
                          "dft_single_points": al.dft_single_points, "dft_seconds": al.dft_seconds}
    fid = FidelityResult(
        phase=result.phase, ml_calculator=result.calculator,
        dft_calculator={**calculator_info(dft), "settings": dft_settings(dft, kwargs)}, hops=rows,
        convergence=conv.model_dump() if conv else None, finetuned=ft_summary,
        dft_single_points=sum(r.n_single_points for r in refined) + (ft_summary or {}).get("dft_single_points", 0),
        dft_seconds=sum(r.dft_ml_seconds + (r.dft_seconds or 0) for r in rows) + (ft_summary or {}).get("dft_seconds", 0),
        train_seconds=train_seconds)
    path = out / "barriers" / phase / "fidelity.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(fid.model_dump_json(indent=2))
    return fid


