"""DFT//ML on HPC: VASP single points on an ML band's images, through atomate2's ``StaticMaker``.

The HPC twin of ``refine_band``: the same images (endpoints and climbing
image, or its neighbours, or all), one atomate2 VASP static per image at the
NEB settings of ``alloyflow.workflows.jobs.vasp`` (PBE, ENCUT 520 eV, MP
smearing, k-density 4), then one small job that turns the task documents
into the same ``RefinedBarrier`` the local GPAW path returns. Every job's
uuid derives from its inputs (image, INCAR, k-points, POTCARs), so
FireWorks submission (``alloyflow.engine.fireworks.submit_flow``) and the
local engine skip statics the store already holds, e.g. shared endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from atomate2.vasp.jobs.core import StaticMaker as _A2StaticMaker
from jobflow import Flow, Maker, job

import alloyflow.calculators.dft  # noqa: F401  (registers "vasp")
from alloyflow.calculators import calculator_info, check_elements
from alloyflow.engine import input_hash, structure_fingerprint
from alloyflow.workflows.schemas.neb import NebDocument
from alloyflow.workflows.jobs.refine import (
    RefinedBarrier,
    RefinedImage,
    assemble_refined,
    equivalent_endpoints,
    images_to_refine,
    symmetry_copy,
)
from alloyflow.workflows.jobs.vasp_outputs import (
    keyed_step,
    task_elapsed,
    task_get,
    task_succeeded,
    vasp_summary,
)
from alloyflow.workflows.jobs.vasp_sets import (
    NEB_INCAR,
    NEB_KPT_DENSITY,
    VASP,
    AlloyStaticSetGenerator,
    inputs_summary,
    keep_unconverged_runs,
    static_incar,
)


def neb_static_maker(incar: dict | None = None, kpt_density: float = NEB_KPT_DENSITY) -> _A2StaticMaker:
    """atomate2 VASP static at the NEB's settings, so refined energies compare with a VASP band's.

    An unconverged static comes back as a task document (flagged image), not an error.
    """
    return keep_unconverged_runs(_A2StaticMaker(input_set_generator=AlloyStaticSetGenerator(
        user_incar_settings=static_incar(NEB_INCAR, incar), kpt_density=kpt_density)))


@job
def refined_from_vasp(tasks: list, indices: list[int], band: dict, images: str, settings: dict,
                      copies: dict | None = None) -> RefinedBarrier:
    """``RefinedBarrier`` from the VASP static task documents of the refined images.

    ``copies``: ``{image: image}`` for an image that takes another's single
    point (the final endpoint, the initial one up to a symmetry of the cell).
    """
    neb_doc = NebDocument.model_validate(band)
    refined = []
    for k, task in zip(indices, tasks):
        ml = float(neb_doc.energies[k])
        energy = task_get(task, "output", "energy")
        if task is None or energy is None or not task_succeeded(task):
            refined.append(RefinedImage(index=k, ml_energy=ml, dft_energy=None, ok=False, reused=False,
                                        message=f"VASP static of image {k} did not succeed ({task_get(task, 'dir_name')})"))
            continue
        refined.append(RefinedImage(index=k, ml_energy=ml, dft_energy=float(energy), ok=True, reused=False,
                                    dft_seconds=task_elapsed(task)))
    for k, source in (copies or {}).items():
        first = next(r for r in refined if r.index == int(source))
        refined.append(symmetry_copy(first, int(k), float(neb_doc.energies[int(k)])))
    vasp = vasp_summary(tasks[0]) if tasks else {}
    return assemble_refined(neb_doc, refined, {**calculator_info(VASP), "settings": {**settings, "vasp": vasp}}, images)


@dataclass
class VaspRefineMaker(Maker):
    """Flow of VASP statics on a band's images plus the ``RefinedBarrier`` job (its uuid is the flow's)."""

    name: str = "vasp refine"
    images: str = "saddle"
    static_maker: _A2StaticMaker = field(default_factory=neb_static_maker)
    symmetric_endpoints: bool = True
    """A final endpoint that is the initial one up to a symmetry of the cell (``equivalent_endpoints``, decided
    from the band's geometry when the flow is made) takes the initial one's static: no second, equal VASP run."""

    def make(self, neb_doc: NebDocument) -> Flow:
        check_elements(VASP, [el.symbol for el in neb_doc.images[0].composition.elements], where=neb_doc.label)
        wanted = images_to_refine(neb_doc, self.images)
        last = len(neb_doc.images) - 1
        copies = {last: 0} if self.symmetric_endpoints and last in wanted and equivalent_endpoints(neb_doc) else {}
        indices = [k for k in wanted if k not in copies]
        inputs = inputs_summary(self.static_maker)
        jobs, outputs = [], []
        for k in indices:
            key = input_hash("vasp static", structure_fingerprint(neb_doc.images[k]), calculator_info(VASP), inputs)
            j = self.static_maker.make(neb_doc.images[k])
            keyed_step(j, key, "", f"vasp static {neb_doc.label} image {k}".replace("/", "-"))
            jobs.append(j)
            outputs.append(j.output)
        band_key = input_hash("vasp refine", neb_doc.input_hash, [structure_fingerprint(neb_doc.images[k]) for k in indices],
                              calculator_info(VASP), inputs, self.images, *([copies] if copies else []))
        final = refined_from_vasp(outputs, indices, neb_doc.model_dump(), self.images, inputs, copies=copies)
        keyed_step(final, band_key, "", f"vasp refine result {neb_doc.label}")
        return Flow([*jobs, final], output=final.output, name=f"{self.name} {neb_doc.label}", uuid=final.uuid)
