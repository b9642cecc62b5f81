"""Climbing-image NEB between two endpoints on any registered calculator.

Why not atomate2's NEB makers: ``ForceFieldNebFromEndpointsMaker`` is broken
in atomate2 0.1.5 (its ``make`` takes images), and
``ForceFieldNebFromImagesMaker`` evaluates images one by one, knows only its
own force-field names, relaxes no endpoints and reports barriers from a
spline. Here the band is ASE's ``ase.mep.NEB`` (climbing image, improved
tangent, IDPP interpolation with the minimum-image convention), the forces
of all intermediate images come from one batched model call
(``alloyflow.workflows.jobs.batched``), and the document carries the endpoint
checks, cost counters and provenance the barrier tables need. The endpoint
checks and the IDPP start band live in ``neb_path``, the band optimizers
and the stopping rule in ``neb_optimize``; their public names are
importable from here.

Optimizer and stopping rule, by measurement (``benchmarks/neb_bias.py``;
5 images, same IDPP start and endpoints for every band, bias = barrier
minus that of a band converged to 0.005 eV/Å on every image; SevenNet-0
vacancy hops in bcc Li, LiSn and Li2Sn5 of 14, 23 and 41 atoms, ASE's EMT
fcc Cu and Al vacancy hops of 31 atoms). Stopped at ``fmax`` 0.05 eV/Å on
every image, the climbing image included, every optimizer left the barrier
high: ODE by +2.2 to +9.7 meV, BFGS +1.0 to +7.6, FIRE +1.4 to +8.3 (the
ODE climbing image stopped at 0.037-0.048 eV/Å). Converging the climbing
image alone to ``climb_fmax`` = 0.01 eV/Å (``CLIMB_FMAX``) brings every
bias to +0.02 to +0.57 meV (0.02 eV/Å left up to 2.6 meV). At that
tolerance the ODE optimizer (ASE's adaptive ``NEBOptimizer``, Makri et al.
2019, with a residual that includes the climbing image) needed 42-62 force
calls per band (255 over the five hops), BFGS 97-147 (555), LBFGS the same
(within its 100-step memory L-BFGS takes BFGS's steps) and FIRE 132-187
(820), so ODE stays the default; its bands cost 1.6-2.1× those stopped at
0.05 eV/Å (140 calls). Tables: docs/performance.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.mep import NEB
from jobflow import Maker, job
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, check_elements
from alloyflow.structures.cells import right_handed
from alloyflow.workflows.jobs.batched import BatchEvaluator
from alloyflow.workflows.jobs.neb_path import (  # noqa: F401 (re-exported: the NEB module's public names)
    IDPP_FMAX,
    IDPP_STALL_GAIN,
    IDPP_STALL_STEPS,
    IDPP_STEPS,
    LATTICE_TOL,
    SAME_MINIMUM_TOL,
    EndpointError,
    endpoint_displacements,
    idpp_relax,
    interpolate_band,
    matched_final,
    mic_displacements,
    validate_endpoints,
)
from alloyflow.workflows.jobs.neb_optimize import (
    OPTIMIZERS,
    band_converged,
    band_optimizer,
    climbing_index,
    image_forces,
    optimise_band,
)
from alloyflow.engine.keys import input_hash, keyed_by, maker_settings, structure_fingerprint
from alloyflow.workflows.schemas.neb import NebDocument
from alloyflow.workflows.jobs.neb_endpoints import (  # noqa: F401 (re-exported)
    ENDPOINT_RATTLE,
    ENDPOINT_SYMPREC,
    ENDPOINT_TOL,
    EndpointMaker,
    carried_endpoint,
    endpoint_trials,
    lowest_minimum,
    symmetric_minimum,
)

LEGACY = {"endpoint_trials": 1, "endpoint_symprec": None, "climb_fmax": None}
"""Fields at the value that reproduces NEB results stored before they existed (left out of the key)."""

CLIMB_FMAX = 0.01
"""eV/Å: force tolerance of the climbing image (``NebMaker.climb_fmax``); the other images stop at ``fmax``.

Its force sets the barrier's error: the module docstring gives the bias
against a tightly converged band (under 0.6 meV at 0.01 eV/Å, up to 9.7 meV
at 0.05 eV/Å) and the force calls it costs.
"""

METHOD_CHANGES = ({"climb_fmax": None}, {"endpoint_symprec": None})
"""Changes of the NEB method, newest first, as the fields that undo them (``NebMaker.earlier_methods``)."""

METHOD_CHANGE_NOTES = {
    "endpoint_symprec": "relaxed their endpoints freely, before endpoints kept the vacancy cell's symmetry: such "
                        "barriers can differ by several meV between runs",
    "climb_fmax": "stopped the climbing image at the band's fmax, before its tighter tolerance (a bias of up to "
                  "~10 meV)",
}
"""What bands computed before each change of ``METHOD_CHANGES`` differ by, per field (``earlier_method_note``)."""


def earlier_method_note(stored, today) -> str:
    """One warning line: the NEB defaults ``stored`` bands were computed with, against ``today``'s maker."""
    what = "; ".join(note for f, note in METHOD_CHANGE_NOTES.items()
                     if getattr(stored, f, None) != getattr(today, f, None)) or "used an earlier NEB default"
    return f"the stored bands {what}; remove them from the store to recompute"


class BatchedNEB(NEB):
    """ASE's NEB with the intermediate images evaluated in one batched call.

    ASE asks each image's calculator in turn; here, whenever the band has
    moved, all intermediate images go to the ``evaluator`` at once and the
    results are attached as single-point calculators, which ASE's NEB then
    reads. ASE's optimizers ask for the forces several times per step, so the
    band is re-evaluated only when its positions change.
    """

    def __init__(self, images, evaluator: BatchEvaluator, **kwargs):
        super().__init__(images, allow_shared_calculator=True, **kwargs)
        self.evaluator = evaluator
        self._evaluated_at: np.ndarray | None = None
        self.last_forces: np.ndarray | None = None

    def evaluate(self, images) -> None:
        for atoms, (energy, forces) in zip(images, self.evaluator(images)):
            atoms.calc = SinglePointCalculator(atoms, energy=energy, free_energy=energy, forces=forces)

    def get_forces(self):
        positions = self.get_positions()
        if self._evaluated_at is None or not np.array_equal(positions, self._evaluated_at):
            self.evaluate(self.images[1:-1])
            self._evaluated_at = positions.copy()
        self.last_forces = super().get_forces()
        return self.last_forces


class RelaxedEndpoints(NamedTuple):
    """What ``NebMaker._relaxed_endpoints`` gives the band: structures, cost and provenance of both endpoints."""

    initial: Structure
    final: Structure
    force_calls: int
    converged: bool
    trial_energies: list
    notes: list
    sources: list


@dataclass
class NebMaker(Maker):
    """CI-NEB of one migration hop between two endpoints of the same cell.

    ``n_images`` intermediate images; ``spring`` the NEB spring constant in
    eV/Å², ASE's default 0.1: with the improved tangent the springs only keep
    the images evenly spaced, and 0.1, 0.5 and 2.0 gave the same steps and
    barriers on the SevenNet Li-Sn hops (stiffer springs slowed FIRE on the
    mock potential). ``optimizer`` one of ``OPTIMIZERS``, default "ODE";
    the band stops when every image feels at most ``fmax`` and the climbing
    image at most ``min(fmax, climb_fmax)`` eV/Å (``climb_fmax=None``:
    ``fmax`` for all, as bands stored before it existed); the module
    docstring has the measurements behind both defaults. ``batched``
    changes speed, not numbers, so it is not part of the cache key. Endpoints are relaxed at fixed cell unless
    ``relax_endpoints=False``; ``endpoint_trials`` relaxations per endpoint:
    the given structure relaxed keeping the vacancy cell's own symmetry
    (ASE ``FixSymmetry``, tolerance ``endpoint_symprec`` Å), then seeded
    rattles of ``ENDPOINT_RATTLE`` Å relaxed freely. The symmetric endpoint is
    kept unless a rattled one lies more than ``ENDPOINT_TOL`` below it
    (``symmetric_minimum``; see ``ENDPOINT_SYMPREC`` for why), so soft
    vacancy cages (B32 LiIn, also bcc Li) do not fall into a minimum chosen by
    floating-point noise (thread count) or by the cell's orientation; the
    spread of the trial energies is recorded and flagged above
    ``ENDPOINT_TOL``. ``endpoint_symprec=None`` relaxes every trial freely
    and keeps the lowest (``lowest_minimum``), as bands stored before did. A
    band not converged within ``max_steps`` is returned with ``converged=False``.
    ``share_endpoints``: in the barrier flow, each symmetry-distinct endpoint
    of a phase is relaxed once (``EndpointMaker`` jobs) and carried over to
    the bands whose endpoints are its images (``neb_endpoints``); a speed
    setting like ``batched``, not part of the key.
    """

    name: str = "neb"
    calculator: str = DEFAULT_CALCULATOR
    n_images: int = 5
    fmax: float = 0.05
    max_steps: int = 300
    climb: bool = True
    method: str = "improvedtangent"
    interpolation: str = "idpp"
    spring: float = 0.1
    relax_endpoints: bool = True
    endpoint_fmax: float = 0.02
    endpoint_trials: int = 3
    endpoint_symprec: float | None = ENDPOINT_SYMPREC
    batched: bool = True
    share_endpoints: bool = True
    optimizer: str = "ODE"
    climb_fmax: float | None = CLIMB_FMAX
    calculator_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        """Refuse settings that give no meaningful band, before any job exists."""
        for name in ("fmax", "endpoint_fmax", "spring"):
            if not getattr(self, name) > 0:
                raise ValueError(f"NebMaker {name} must be > 0, got {getattr(self, name)}")
        if self.climb_fmax is not None and not self.climb_fmax > 0:
            raise ValueError(f"NebMaker climb_fmax must be > 0 eV/Å (or None), got {self.climb_fmax}")
        if self.n_images < 1 or self.max_steps < 1 or self.endpoint_trials < 1:
            raise ValueError(f"NebMaker needs n_images, max_steps and endpoint_trials >= 1, got {self.n_images}, "
                             f"{self.max_steps} and {self.endpoint_trials}")

    def settings(self) -> dict:
        """Every field but name and calculator (``batched`` included), and the IDPP tolerance."""
        return maker_settings(self, extra={"idpp_fmax": IDPP_FMAX}, legacy=LEGACY)

    def key_settings(self) -> dict:
        """The settings that change results (``batched`` and ``share_endpoints`` change speed only)."""
        return maker_settings(self, exclude=("batched", "share_endpoints"), extra={"idpp_fmax": IDPP_FMAX},
                              legacy=LEGACY)

    def earlier_methods(self) -> list[NebMaker]:
        """This maker with the defaults that bands stored before a change of method had (newest first).

        ``alloyflow.workflows.flows.barriers.stored_plan`` reuses such bands
        where a store holds them (with a warning) instead of computing them again.
        """
        out, changes = [], {}
        for change in METHOD_CHANGES:  # each change undone on top of the later ones: the oldest bands are found too
            changes.update(change)
            earlier = replace(self, **changes)
            if earlier != self and earlier not in out:
                out.append(earlier)
        return out

    def key(self, initial: Structure, final: Structure) -> str:
        return input_hash(
            "neb", structure_fingerprint(initial), structure_fingerprint(final), calculator_info(self.calculator),
            self.key_settings(),
        )

    def keyed_job(self, initial: Structure, final: Structure, label: str, metadata: dict | None = None,
                  endpoints: list | None = None):
        """A job whose uuid is the input hash, so a finished one is reused.

        ``endpoints``: relaxations of equivalent endpoints to carry over (references to
        ``EndpointMaker`` jobs and maps; the barrier flow's ``shared_endpoints``). They change
        the cost, not the band, so not the key.
        """
        check_elements(self.calculator, [el.symbol for el in initial.composition.elements], where=label)
        matched_final(initial, final)  # refuse endpoints that are no single hop before a job exists
        extra = {"endpoints": endpoints} if endpoints else {}
        j = self.make(initial, final, label=label, metadata=metadata or {}, **extra)
        j.name = f"{self.name} {label}"
        return keyed_by(j, self.key, initial, final, label=f"{self.name} {label}")

    @job
    def make(self, initial: Structure, final: Structure, label: str = "", metadata: dict | None = None,
             endpoints: list | None = None) -> NebDocument:
        """The band; endpoints that relax into one minimum give ``{"endpoint_error": ...}``.

        That outcome is stored like a result, so a rerun does not relax the
        endpoints again only to fail the same way.
        """
        try:
            return self.run(initial, final, label=label, metadata=metadata, endpoints=endpoints)
        except EndpointError as exc:
            return {"endpoint_error": str(exc), "label": label}

    def endpoint_maker(self) -> EndpointMaker:
        """The maker of this band's endpoint relaxations (also a job of its own: ``shared_endpoints``)."""
        return EndpointMaker(calculator=self.calculator, fmax=self.endpoint_fmax, trials=self.endpoint_trials,
                             symprec=self.endpoint_symprec, calculator_kwargs=self.calculator_kwargs)

    @staticmethod
    def band_endpoints(initial: Structure, final: Structure) -> tuple[Structure, Structure]:
        """The endpoints as the band uses them: the initial's atom order, a right-handed cell."""
        return right_handed(initial), right_handed(matched_final(initial, final))

    def _relaxed_endpoints(self, initial: Structure, final: Structure, endpoints: list | None = None,
                           label: str = ""):
        """Both endpoints relaxed (``RelaxedEndpoints``).

        ``endpoints``: per endpoint ``{"doc": EndpointDocument, "map": SiteMap dict}``, a relaxation of an
        equivalent endpoint to carry over (``carried_endpoint``) instead of relaxing here. Force calls are
        those this band ran (relaxations here, the single points that check carried endpoints); sources
        the keys of the relaxations carried over ("" for an endpoint relaxed here).
        """
        if not self.relax_endpoints:
            return RelaxedEndpoints(initial, final, 0, True, [], [], [])
        relax = self.endpoint_maker()
        evaluator = BatchEvaluator(self.calculator, batched=False, calculator_kwargs=self.calculator_kwargs)
        docs, notes, steps, sources = [], [], 0, []
        for i, (k, s) in enumerate((("initial", initial), ("final", final))):
            if endpoints:
                doc, note, here = carried_endpoint(endpoints[i]["doc"], endpoints[i]["map"], s, evaluator, relax,
                                                   label=f"{label} endpoint {k}".strip())
                notes += [note] if note else []
                steps += doc.force_calls if here else 0
                sources.append("" if here else doc.input_hash)
            else:
                doc = relax.run(s, label=f"endpoint {k}")
                steps += doc.force_calls
            docs.append(doc)
        steps += evaluator.force_calls
        return RelaxedEndpoints(docs[0].structure, docs[1].structure, steps, all(d.converged for d in docs),
                                [d.trial_energies for d in docs], notes, sources)

    def run(self, initial: Structure, final: Structure, label: str = "", metadata: dict | None = None,
            endpoints: list | None = None) -> NebDocument:
        """Relax the endpoints, interpolate, and optimise the band (outside jobflow too).

        ``endpoints`` (the barrier flow's shared relaxations, ``_relaxed_endpoints``) replaces the
        endpoint relaxations of this band.

        ``final`` is reordered onto ``initial``'s atoms if needed and refused
        unless one atom hops (``matched_final``); a left-handed cell is put on
        a right-handed basis (``right_handed``) before any calculator sees it,
        so the images come back in that cell. The key is that of the
        endpoints as given.
        """
        t0 = time.perf_counter()
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown NEB optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        check_elements(self.calculator, [el.symbol for el in initial.composition.elements], where=label)
        # One atom order (the initial's), and a right-handed cell for the calculator; the key is the input's.
        ini_in, fin_in = self.band_endpoints(initial, final)
        ends = self._relaxed_endpoints(ini_in, fin_in, endpoints, label)
        ini_s, fin_s = ends.initial, ends.final

        ini = AseAtomsAdaptor.get_atoms(ini_s)
        fin = ini.copy()
        # One cell for the whole band (NEB requires it); the final state keeps its fractional coordinates.
        fin.set_scaled_positions(fin_s.frac_coords)
        moved = mic_displacements(ini, fin)
        if moved.max() < SAME_MINIMUM_TOL:
            raise EndpointError(
                f"the endpoints {'relax to' if self.relax_endpoints else 'are'} the same minimum "
                f"(largest atomic displacement {moved.max():.3f} Å < {SAME_MINIMUM_TOL} Å)"
            )

        images = [ini] + [ini.copy() for _ in range(self.n_images)] + [fin]
        doc = self._optimise(images, True, self.key(initial, final), label, metadata, ends.force_calls, ends.converged,
                             float(moved.max()), t0)
        doc.endpoint_energies = ends.trial_energies
        doc.endpoint_spread = [max(e) - min(e) for e in ends.trial_energies]
        doc.endpoint_notes = ends.notes
        doc.endpoint_sources = ends.sources
        return doc

    def _optimise(self, images: list[Atoms], interpolate: bool, key: str, label: str, metadata: dict | None,
                  endpoint_steps: int, endpoints_ok: bool, hop_distance: float, t0: float) -> NebDocument:
        """Evaluate the endpoints, interpolate (or keep the given images), optimise and document the band."""
        evaluator = BatchEvaluator(self.calculator, batched=self.batched, calculator_kwargs=self.calculator_kwargs)
        neb = BatchedNEB(images, evaluator, k=self.spring, climb=self.climb, method=self.method)
        neb.evaluate([images[0], images[-1]])
        idpp_steps, idpp_residual = (interpolate_band(images, self.interpolation, self.method) if interpolate
                                     else (0, None))

        opt = band_optimizer(self.optimizer, neb)
        finished = optimise_band(opt, neb, self.fmax, self.climb_fmax, self.max_steps)
        neb.get_forces()  # a no-op unless the optimizer stopped right after moving the band
        energies = [float(e) for e in neb.energies]
        imax = int(np.argmax(energies))
        per_image = image_forces(neb, neb.last_forces)
        max_force = float(per_image.max()) if per_image.size else 0.0
        ci = climbing_index(neb)
        # Judged on every image, the climbing one included, whatever the optimizer's own test.
        converged = finished and band_converged(neb, self.fmax, self.climb_fmax, neb.last_forces)
        return NebDocument(
            label=label,
            calculator=calculator_info(self.calculator),
            input_hash=key,
            n_images=len(images) - 2,
            energies=energies,
            images=[AseAtomsAdaptor.get_structure(a.copy()) for a in images],
            forward_barrier=energies[imax] - energies[0],
            reverse_barrier=energies[imax] - energies[-1],
            endpoint_asymmetry=energies[-1] - energies[0],
            climbing_image=imax,
            converged=converged,
            n_steps=int(opt.nsteps),
            force_calls=evaluator.force_calls,
            model_calls=evaluator.model_calls,
            endpoint_force_calls=endpoint_steps,
            idpp_steps=idpp_steps,
            idpp_residual=None if idpp_residual is None or np.isnan(idpp_residual) else idpp_residual,
            max_force=max_force,
            climb_max_force=None if ci is None else float(per_image[ci]),
            fmax=self.fmax,
            hop_distance=hop_distance,
            endpoints_converged=endpoints_ok,
            settings=self.settings(),
            elapsed_seconds=time.perf_counter() - t0,
            evaluation_seconds=evaluator.seconds,
            metadata=metadata or {},
        )
