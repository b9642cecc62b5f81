"""The stored document of one CI-NEB band (``alloyflow.workflows.jobs.neb.NebMaker``), for every calculator.

``NebMaker`` (ASE calculators) and the VASP NEB conversion
(``alloyflow.workflows.jobs.vasp``) both store it; the barrier collection,
refinement and fine-tuning read it. ``alloyflow.workflows.jobs.neb`` re-exports
it, so documents stored under that name decode unchanged.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from pymatgen.core import Structure


class NebDocument(BaseModel):
    """Output of one CI-NEB run; energies in eV, forces in eV/Å.

    ``energies`` and ``images`` include both endpoints (n_images + 2 entries).
    Barriers are the highest image energy minus an endpoint energy, never a
    spline maximum: with a converged climbing image the top image is the
    saddle point.
    """

    label: str
    calculator: dict
    input_hash: str
    n_images: int = Field(description="intermediate images, endpoints excluded")
    energies: list[float]
    images: list[Structure]
    forward_barrier: float = Field(description="max(E) - E(initial)")
    reverse_barrier: float = Field(description="max(E) - E(final)")
    endpoint_asymmetry: float = Field(description="E(final) - E(initial)")
    climbing_image: int = Field(description="index of the highest image in ``images``")
    converged: bool
    n_steps: int = Field(description="optimizer steps (accepted steps for ODE, whose rejected trials still cost force calls)")
    force_calls: int = Field(description="single-structure energy+force evaluations of the band and endpoints")
    model_calls: int = Field(description="calls actually made to the model (fewer than force_calls when batched)")
    endpoint_force_calls: int = Field(
        0, description="force calls of the endpoint relaxations this band ran, or of the checks of carried ones "
                       "(not in force_calls)")
    max_force: float = Field(description="largest NEB force (with spring and climbing terms) on the final band")
    climb_max_force: float | None = Field(None, description="largest NEB force on the climbing image (None: no climb)")
    idpp_steps: int | None = Field(None, description="IDPP steps of the start band (0: linear or a given band)")
    idpp_residual: float | None = Field(None, description="largest IDPP force left on the start band (``idpp_relax``)")
    fmax: float
    hop_distance: float = Field(description="largest displacement of one atom between the endpoints, Å")
    endpoints_converged: bool = True
    endpoint_energies: list[list[float]] = Field(
        default_factory=list, description="relaxed energies (eV) of every endpoint trial: [initial trials, final trials]")
    endpoint_spread: list[float] = Field(
        default_factory=list, description="max - min relaxed energy over the trials, eV: [initial, final]")
    endpoint_sources: list[str] = Field(
        default_factory=list, description="per endpoint, the key of the shared relaxation carried over, or an "
                                          "empty string where it was relaxed in the band; [] without shared ones")
    endpoint_notes: list[str] = Field(default_factory=list, description="carried endpoints that failed their check")
    settings: dict = Field(default_factory=dict)
    elapsed_seconds: float
    evaluation_seconds: float = Field(description="time spent inside the potential")
    metadata: dict = Field(default_factory=dict)

    model_config = {"arbitrary_types_allowed": True}
