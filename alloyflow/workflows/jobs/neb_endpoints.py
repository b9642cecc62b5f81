"""NEB endpoint relaxations: seeded trials, the symmetric-minimum rule, and one relaxation per distinct endpoint.

A CI-NEB starts from relaxed endpoints. ``EndpointMaker`` relaxes one
endpoint cell as ``NebMaker`` always has (the symmetric trial and seeded
rattles, ``symmetric_minimum``) as a job of its own, keyed by the cell, so
the barrier flow relaxes each symmetry-distinct endpoint of a phase once
and every band whose endpoint is an image of it receives that relaxation
carried over by the map between the two cells
(``alloyflow.structures.equivalence``; ``carried_endpoint``). Endpoint
relaxations were about 65 % of the wall time of a Li13In3 band, and its 20
endpoints are 7 distinct cells (Li17Sn4: 26 and 12).

The carried structure is checked before the band uses it: each atom must lie
as far from the band's own unrelaxed endpoint as the relaxation moved atoms
(within ``CARRY_DISPLACEMENT_TOL``), and one single point must give the
relaxed energy within ``CARRY_ENERGY_TOL`` and no force above the
relaxation's tolerance plus ``CARRY_FORCE_TOL``; otherwise the band's
endpoint is relaxed on the spot and the document says so. A relaxation that kept the cell's symmetry (the
symmetric trial chosen, ``symmetric_minimum``) is carried to every image;
one that broke it (a rattled trial more than ``ENDPOINT_TOL`` lower: B32
LiIn, the interstitials in In and LiSn) is one of several equivalent
minima, and which one each endpoint of a band takes changes the barrier
(LiIn36: 97 meV between a minimum and its image, 50 meV with the final
endpoint's own trials), so it serves its own endpoint only and the other
endpoints relax in their bands, as before. Either way a band is the one it
would be with its own endpoint relaxations, up to floating-point noise, so
the band's key does not change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, check_elements
from alloyflow.engine.keys import input_hash, keyed_by, maker_settings, structure_fingerprint
from alloyflow.engine.store import as_dict
from alloyflow.structures.equivalence import SiteMap, equivalence_classes
from alloyflow.workflows.jobs.batched import BatchEvaluator
from alloyflow.workflows.jobs.relax import RelaxMaker

ENDPOINT_RATTLE = 0.05
"""Å: standard deviation of the seeded Gaussian displacements of the extra endpoint relaxations."""

ENDPOINT_TOL = 0.005
"""eV: endpoint minima closer in energy than this are one (the barrier tolerance the study states)."""

ENDPOINT_SYMPREC = 1e-3
"""Å: symmetry tolerance of the endpoint relaxation that keeps the vacancy cell's own symmetry (``NebMaker``).

Why the symmetric endpoint: in the SevenNet-0 vacancy cells of bcc Li and
B32 LiIn the relaxation from a rattled start breaks that symmetry and lands
in one of several minima 1-2 meV below the symmetric one, and which one
depends on how the rattle meets the cell (its orientation, the atom order):
the bcc-Li hop (38 atoms, 10 Å) gave 56.9, 58.2, 65.1 and 65.8 meV in four
supercells that are images of one another under the host's symmetry, the
LiIn hop (23 atoms, 8 Å) 42.5 and 44.9 meV in two. From the symmetric
endpoints each is one number in every such cell tried (57.0 meV in three
for Li, 42.5 meV in two for LiIn) and the same on 1 and 2 torch threads
(``tests/test_reproducible_barriers.py``). The rattled trials still run: a
minimum more than ``ENDPOINT_TOL`` below the symmetric one is taken instead
(``symmetric_minimum``), and their spread is recorded. A mechanically
unstable host (B32 LiIn) is flagged by the barrier flow's host check; its
barrier is that of the metastable host, as a study that relaxes the
symmetric cell computes it.
"""

CARRY_ENERGY_TOL = 1e-3
"""eV: a carried endpoint must have the energy of the relaxation it comes from within this."""

CARRY_FORCE_TOL = 0.01
"""eV/Å: ... and no force above the relaxation's ``fmax`` plus this."""

CARRY_DISPLACEMENT_TOL = 0.05
"""Å: ... and no atom farther from the band's own unrelaxed endpoint than the relaxation moved any, plus this."""


def endpoint_trials(structure: Structure, n: int, rattle: float = ENDPOINT_RATTLE) -> list[Structure]:
    """``structure`` and ``n - 1`` copies with seeded Gaussian displacements (seeds 1..n-1: reproducible).

    The rattled copies break the cell's symmetry: they look for minima below the given structure's.
    """
    if n < 1:
        raise ValueError(f"endpoint_trials must be >= 1, got {n}")
    out = [structure]
    for seed in range(1, n):
        rng = np.random.default_rng(seed)
        cart = structure.cart_coords + rng.normal(0.0, rattle, size=(len(structure), 3))
        out.append(Structure(structure.lattice, structure.species, cart, coords_are_cartesian=True))
    return out


def lowest_minimum(docs):
    """The trial relaxation with the lowest energy; near-ties (within 1 meV) go to the earliest trial.

    The tie rule makes the choice independent of floating-point noise: two
    runs on different thread counts pick the same trial unless its minimum
    is more than 1 meV above another.
    """
    converged = [d for d in docs if d.converged] or list(docs)
    e_min = min(d.energy for d in converged)
    return next(d for d in converged if d.energy <= e_min + 1e-3)


def symmetric_minimum(docs, tol: float = ENDPOINT_TOL):
    """The first trial (relaxed with the cell's symmetry) unless another lies more than ``tol`` below it.

    Then the symmetric endpoint is no minimum of the vacancy worth the name
    and the lowest one is taken (``lowest_minimum``), which the endpoint
    spread above ``ENDPOINT_TOL`` flags beside the hop.
    """
    first = docs[0]
    if first.converged and not any(d.converged and d.energy < first.energy - tol for d in docs[1:]):
        return first
    return lowest_minimum(docs)


class EndpointDocument(BaseModel):
    """One relaxed NEB endpoint: the chosen minimum of its trials; energies in eV."""

    label: str = ""
    calculator: dict
    input_hash: str
    structure: Structure = Field(description="the chosen relaxed endpoint, atoms in the input's order")
    energy: float
    converged: bool
    trial_energies: list[float]
    force_calls: int = Field(description="calculations of all trials")
    displacement: float = Field(0.0, description="largest atomic displacement of the chosen minimum from the input, Å")
    symmetric: bool = Field(False, description="the chosen minimum is the trial that kept the cell's symmetry")
    fmax: float
    settings: dict = Field(default_factory=dict)
    elapsed_seconds: float = 0.0
    metadata: dict = Field(default_factory=dict)

    model_config = {"arbitrary_types_allowed": True}


@dataclass
class EndpointMaker(Maker):
    """Relax one NEB endpoint at fixed cell: a symmetric trial and seeded rattles (``NebMaker``'s rule).

    Parameters
    ----------
    calculator : str
        Registry name.
    fmax : float
        Force tolerance of every trial, eV/Å.
    trials : int
        Relaxations: the structure itself, then ``trials - 1`` seeded rattles.
    symprec : float or None
        Symmetry tolerance (Å) of the first trial, which keeps the cell's symmetry; None relaxes all
        trials freely and keeps the lowest.
    """

    name: str = "endpoint"
    calculator: str = DEFAULT_CALCULATOR
    fmax: float = 0.02
    trials: int = 3
    symprec: float | None = ENDPOINT_SYMPREC
    calculator_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.fmax > 0:
            raise ValueError(f"the endpoint force tolerance must be > 0 eV/Å, got {self.fmax}")
        if self.trials < 1:
            raise ValueError(f"endpoint trials must be >= 1, got {self.trials}")

    def settings(self) -> dict:
        return maker_settings(self)

    def key(self, structure: Structure) -> str:
        return input_hash("neb endpoint", structure_fingerprint(structure), calculator_info(self.calculator),
                          self.settings())

    def keyed_job(self, structure: Structure, label: str, metadata: dict | None = None):
        """A job whose uuid is the input hash, so a finished relaxation is reused."""
        check_elements(self.calculator, [el.symbol for el in structure.composition.elements], where=label)
        j = self.make(structure, label=label, metadata=metadata or {})
        j.name = f"{self.name} {label}"
        return keyed_by(j, self.key, structure, label=j.name)

    @job
    def make(self, structure: Structure, label: str = "", metadata: dict | None = None) -> EndpointDocument:
        return self.run(structure, label, metadata)

    def run(self, structure: Structure, label: str = "", metadata: dict | None = None) -> EndpointDocument:
        """The trials and the chosen minimum (outside jobflow too); the structure keeps its cell and atom order."""
        t0 = time.perf_counter()
        free = RelaxMaker(calculator=self.calculator, relax_cell=False, fix_symmetry=False, fmax=self.fmax,
                          calculator_kwargs=self.calculator_kwargs)
        symmetric = self.symprec is not None
        first = RelaxMaker(calculator=self.calculator, relax_cell=False, fix_symmetry=True, symprec=self.symprec,
                           fmax=self.fmax, calculator_kwargs=self.calculator_kwargs) if symmetric else free
        docs = [(first if i == 0 else free).run(t, label=f"{label} trial {i}".strip())
                for i, t in enumerate(endpoint_trials(structure, self.trials))]
        best = symmetric_minimum(docs) if symmetric else lowest_minimum(docs)
        return EndpointDocument(
            label=label, calculator=calculator_info(self.calculator), input_hash=self.key(structure),
            structure=best.structure, energy=best.energy, converged=best.converged,
            displacement=float(_displacements(best.structure, structure).max(initial=0.0)),
            symmetric=symmetric and best is docs[0],
            trial_energies=[d.energy for d in docs],
            force_calls=sum(d.n_steps if d.force_calls is None else d.force_calls for d in docs),
            fmax=self.fmax, settings=self.settings(), elapsed_seconds=time.perf_counter() - t0,
            metadata=metadata or {},
        )


def _displacements(a: Structure, b: Structure) -> np.ndarray:
    """Atom-by-atom minimum-image distances between two orderings of one cell, Å."""
    d = a.frac_coords - b.frac_coords
    return np.linalg.norm((d - np.round(d)) @ b.lattice.matrix, axis=1)


def shared_endpoints(pairs: list[tuple[Structure, Structure]]) -> list[list[tuple[int, SiteMap]]]:
    """Per hop, for its initial and final endpoint: (flat index of the class's first endpoint, map onto it).

    ``pairs`` are the endpoints as the band uses them (``NebMaker.band_endpoints``);
    flat index ``2 * hop + 0`` is a hop's initial endpoint, ``2 * hop + 1`` its final one.
    """
    flat = [s for pair in pairs for s in pair]
    classes = equivalence_classes(flat)
    return [[classes[2 * h], classes[2 * h + 1]] for h in range(len(pairs))]


def carried_endpoint(source, site_map: dict, own: Structure, evaluator: BatchEvaluator,
                     relax: EndpointMaker, label: str) -> tuple[EndpointDocument, str, bool]:
    """``own`` relaxed: the stored relaxation ``source`` carried over by ``site_map``, checked by a single point.

    Returns the endpoint document (that of ``source``, its structure the
    carried one), a note (empty unless the check failed) and whether
    ``own`` was relaxed here (``relax``) instead. A relaxation that broke
    the cell's symmetry (a rattled trial kept: ``EndpointDocument.symmetric``
    False) is used only by its own endpoint: its images are one of several
    equivalent minima, and which one the other endpoint of a band falls
    into changes the barrier (LiIn36's interstitial hop: 97 meV from the
    image, 46-50 meV from the endpoint's own trials), so such an endpoint is
    relaxed here, as before endpoints were shared, without a note.
    """
    doc = EndpointDocument.model_validate(as_dict(source))
    m = SiteMap.from_dict(site_map)
    if not doc.symmetric and not m.is_identity:
        return relax.run(own, label=label), "", True
    carried = m.apply(doc.structure, own)
    moved = float(_displacements(carried, own).max(initial=0.0))
    if moved > doc.displacement + CARRY_DISPLACEMENT_TOL:
        note = (f"{label}: the relaxation of the endpoint {doc.label!r} carried over lies {moved:.2f} Å from this "
                f"endpoint (its relaxation moved atoms {doc.displacement:.2f} Å): not its image; relaxed here instead")
        return relax.run(own, label=label), note, True
    (energy, forces), = evaluator([AseAtomsAdaptor.get_atoms(carried)])
    f_max = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
    if abs(energy - doc.energy) <= CARRY_ENERGY_TOL and f_max <= doc.fmax + CARRY_FORCE_TOL:
        return doc.model_copy(update={"structure": carried}), "", False
    note = (f"{label}: the relaxation of the endpoint {doc.label!r} carried over gave "
            f"{(energy - doc.energy) * 1e3:+.1f} meV and {f_max:.3f} eV/Å; relaxed here instead")
    return relax.run(own, label=label), note, True
