"""Active learning of barriers: fine-tune until the ML barriers agree with their DFT//ML refinement.

One iteration: bands with the current potential → DFT single points on each
band's endpoints and saddle (``refine_band``) → if every |ML − DFT//ML|
barrier is within ``tolerance``, stop; otherwise add the bands' images and
rattled endpoints to the training set, label them with DFT (the refined
images are already labels: same ``LabelMaker`` keys), fine-tune SevenNet-0
and register the result as the next potential.

Each fine-tuning starts again from the shipped 7net-0 weights on all labels
gathered so far, not from the previous fine-tuned model: the result then
depends on the data, not on the order of the iterations, and a bad iteration
cannot compound. A fine-tuning whose held-out force error is worse than
7net-0's is reported and *not* adopted: the loop stops on the last good
potential.

Costs are recorded per iteration: DFT single points computed (reused ones
are free) and their wall time, and the training time.
"""

from __future__ import annotations

from typing import Callable

from pydantic import BaseModel, Field

from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info
from alloyflow.engine import ResultStore, deterministic_uuid
from alloyflow.ml.finetune import FineTuneResult, finetune_sevennet, register_finetuned, training_structures
from alloyflow.workflows.jobs.labels import label_structures
from alloyflow.workflows.schemas.neb import NebDocument
from alloyflow.workflows.jobs.refine import RefinedBarrier, dft_settings, refine_band


class IterationRecord(BaseModel):
    iteration: int
    calculator: dict = Field(description="the ML potential that made this iteration's bands")
    barriers: list[RefinedBarrier]
    max_abs_error: float | None = Field(description="max |ML - DFT//ML| forward barrier over the bands, eV")
    n_labels: int = 0
    label_failures: list[str] = Field(default_factory=list)
    dft_single_points: int = Field(0, description="DFT single points computed in this iteration (refinement + labels)")
    dft_seconds: float = Field(0.0, description="wall time of those single points")
    finetune: FineTuneResult | None = Field(None, description="the potential trained after this iteration")


class ActiveLearningResult(BaseModel):
    name: str
    tolerance: float
    converged: bool
    stop_reason: str
    final_calculator: str = Field(description="registry name of the last adopted potential")
    dft_calculator: dict
    iterations: list[IterationRecord]

    @property
    def dft_single_points(self) -> int:
        return sum(it.dft_single_points for it in self.iterations)

    @property
    def dft_seconds(self) -> float:
        return sum(it.dft_seconds for it in self.iterations)

    @property
    def train_seconds(self) -> float:
        return sum(it.finetune.train_seconds for it in self.iterations if it.finetune)


def bands_from_barriers(result, store: ResultStore, hop_ids=None) -> list[NebDocument]:
    """The stored NEB bands of ``result``'s hops (all with a band, or those in ``hop_ids``)."""
    bands = []
    for hop in result.hops:
        if hop.neb_key and (hop_ids is None or hop.id in hop_ids):
            bands.append(store.document(deterministic_uuid(hop.neb_key), NebDocument))
    return bands


def active_learning(
    make_bands: Callable[[str], list[NebDocument]],
    store: ResultStore,
    out_dir,
    name: str,
    base_calculator: str = DEFAULT_CALCULATOR,
    dft: str = "gpaw",
    dft_kwargs: dict | None = None,
    tolerance: float = 0.03,
    max_iterations: int = 2,
    epochs: int = 4,
    lr: float = 1e-4,
    n_rattle: int = 2,
    images: str = "saddle",
    seed: int = 0,
    log: Callable[[str], None] = lambda msg: None,
) -> ActiveLearningResult:
    """Fine-tune up to ``max_iterations`` times until every band's |ML − DFT//ML| ≤ ``tolerance`` (eV).

    ``make_bands(calculator_name)`` returns the converged ML bands of the
    hops of interest for that potential (e.g. ``run_barriers`` followed by
    ``bands_from_barriers``); it is called once per iteration.
    """
    kwargs = dict(dft_kwargs or {})
    dft_info = {**calculator_info(dft), "settings": dft_settings(dft, kwargs)}
    calc, structures, records = base_calculator, [], []
    converged, stop = False, ""
    for it in range(max_iterations + 1):
        bands = make_bands(calc)
        if not bands:
            stop = f"iteration {it}: {calc} gave no converged band to refine"
            break
        refined = [refine_band(b, store, calculator=dft, calculator_kwargs=kwargs, images=images) for b in bands]
        record = IterationRecord(
            iteration=it, calculator=calculator_info(calc), barriers=refined, max_abs_error=None,
            dft_single_points=sum(r.n_single_points for r in refined),
            dft_seconds=sum(img.dft_seconds for r in refined for img in r.energies if not img.reused))
        records.append(record)
        failed = [f for r in refined for f in r.failures]
        if failed:
            stop = f"iteration {it}: DFT single point(s) failed ({'; '.join(failed)}); kept {calc}"
            break
        record.max_abs_error = max(abs(r.ml_forward_barrier - r.dft_forward_barrier) for r in refined)
        log(f"iteration {it} ({calc}): max |ML - DFT//ML| = {1000 * record.max_abs_error:.0f} meV")
        if record.max_abs_error <= tolerance:
            converged, stop = True, f"iteration {it}: all barriers within {1000 * tolerance:.0f} meV of DFT//ML"
            break
        if it == max_iterations:
            stop = f"not within {1000 * tolerance:.0f} meV after {max_iterations} fine-tuning iteration(s)"
            break
        structures += training_structures(bands, n_rattle=n_rattle, seed=seed + it)
        frames, failures = label_structures(structures, store, calculator=dft, calculator_kwargs=kwargs)
        record.n_labels, record.label_failures = len(frames), failures
        record.dft_single_points += sum(1 for f in frames if not f.info["reused"])
        record.dft_seconds += sum(f.info["dft_seconds"] for f in frames)
        ft = finetune_sevennet(frames, out_dir, f"{name}-{it + 1}", label_calculator=dft_info, epochs=epochs,
                               lr=lr, seed=seed)
        record.finetune = ft
        log(ft.summary())
        if ft.validation_rose:
            stop = (f"iteration {it}: fine-tuning {ft.name} raised the validation force error "
                    f"({ft.errors['base']['val']['force_mae_meV_A']:.1f} -> "
                    f"{ft.errors['finetuned']['val']['force_mae_meV_A']:.1f} meV/Å); not adopted, kept {calc}")
            break
        register_finetuned(ft.name, ft.checkpoint, ft.sha256)
        calc = ft.name
    return ActiveLearningResult(name=name, tolerance=tolerance, converged=converged, stop_reason=stop,
                                final_calculator=calc, dft_calculator=dft_info, iterations=records)


def format_active_learning(r: ActiveLearningResult) -> str:
    lines = [f"Active learning {r.name}: {r.stop_reason}"]
    for it in r.iterations:
        bars = ", ".join(
            f"{b.label}: ML {1000 * b.ml_forward_barrier:.0f} / DFT//ML "
            f"{'failed' if b.dft_forward_barrier is None else f'{1000 * b.dft_forward_barrier:.0f}'} meV"
            for b in it.barriers)
        lines.append(f"  iteration {it.iteration} [{it.calculator.get('model')}]: {bars}; "
                     f"{it.dft_single_points} DFT single points, {it.dft_seconds:.0f} s")
        if it.finetune:
            lines.append(f"    trained {it.finetune.summary()}; {it.finetune.train_seconds:.0f} s")
    return "\n".join(lines)
