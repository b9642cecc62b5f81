"""Attempt frequencies of Li hops by the Vineyard formula, from stored NEB bands.

    ν* = Π_{i=1..3n} ν_i(initial) / Π_{i=1..3n−1} ν_i(saddle)

(harmonic transition-state theory, Vineyard 1957), the ν_i being the normal-
mode frequencies of the mass-weighted Hessian at the initial minimum and at
the saddle point (the climbing image of a converged CI-NEB band), the
saddle's one imaginary mode left out. Hessians are central finite
differences of the forces (displacement ``delta``, 6 force calls per atom
in the Hessian and per state). ``delta`` defaults to 0.02 Å rather than the
usual 0.01 Å because the ML potentials here evaluate forces in float32.

Modes (``mode``):

- ``"atom"`` (default): the migrating atom alone (3 modes over 2), the rest
  of the crystal frozen: the one-atom Vineyard estimate. Default because it
  is the one that stays well defined on the soft, anharmonic vacancy cages
  these potentials give (see below) and it is ~11× cheaper than "local".
- ``"local"``: the migrating atom and every atom within
  ``cutoff`` of it at the initial or the saddle position move; all others
  are held fixed. A documented simplification: the modes that change
  between minimum and saddle are those of the hopping atom and its cage,
  while the far-field modes largely cancel in the ratio; it neglects the
  coupling to the rest of the crystal and so carries an error of order tens
  of % on ν*, small next to the exponential factor.
- ``"full"``: every atom (small cells only); the 3 rigid-translation modes
  (near zero in a periodic cell) are removed from both states, 3N−3 over
  3N−4.

Every document carries flags when the saddle has not exactly one imaginary
mode or the initial state has any (frequencies below ``-imag_tol_thz`` count
as imaginary), when the initial state has a soft mode below ``soft_thz``, or
when the band was not converged. Seen on SevenNet-0 bcc Li (15-atom vacancy
cell): the vacancy's neighbours have soft, strongly anharmonic modes (the
energy rises about quartically along them), so "full" finds imaginary
initial modes and "local" a sub-THz ν* that depends on ``delta`` (0.17 THz at
0.02 Å, 0.39 THz at 0.04 Å), while "atom" gives 2.2–2.3 THz: flagged, not
hidden.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from alloyflow.calculators import DEFAULT_CALCULATOR, calculator_info, check_elements, get_calculator
from alloyflow.engine import ResultStore, deterministic_uuid, input_hash, run_cached, structure_fingerprint
from alloyflow.engine.guarded import run_guarded
from alloyflow.engine.keys import keyed_by, maker_settings
from alloyflow.analysis.attempt import signed_frequencies_thz, vineyard_prefactor  # noqa: F401

MODES = ("local", "atom", "full")
FIXED_FALLBACK_HZ = 1e13


class AttemptFrequencyDocument(BaseModel):
    """Vineyard attempt frequency of one hop; frequencies in THz (negative = imaginary)."""

    label: str
    nu_hz: float
    mode: str = Field(description="'local', 'atom', 'full', or 'fixed' for a labelled fallback (no computation)")
    n_atoms_in_hessian: int
    atom_indices: list[int] = Field(default_factory=list)
    moving_index: int | None = None
    n_force_calls: int
    frequencies_initial_thz: list[float] = Field(default_factory=list)
    frequencies_saddle_thz: list[float] = Field(default_factory=list)
    n_imaginary_initial: int = 0
    n_imaginary_saddle: int = 0
    flags: list[str] = Field(default_factory=list)
    settings: dict = Field(default_factory=dict)
    calculator: dict = Field(default_factory=dict)
    input_hash: str = ""
    neb_key: str | None = None
    elapsed_seconds: float = 0.0
    metadata: dict = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.flags and self.mode != "fixed"


def finite_difference_hessian(atoms, indices, delta: float = 0.01) -> tuple[np.ndarray, int]:
    """Hessian (eV/Å²) of the atoms ``indices`` by central differences; returns it and the force calls."""
    idx = list(indices)
    n = len(idx)
    h = np.zeros((3 * n, 3 * n))
    pos0 = atoms.get_positions().copy()
    calls = 0
    for a, i in enumerate(idx):
        for x in range(3):
            forces = []
            for sign in (1, -1):
                p = pos0.copy()
                p[i, x] += sign * delta
                atoms.set_positions(p)
                forces.append(atoms.get_forces()[idx].reshape(-1))
                calls += 1
            h[3 * a + x] = -(forces[0] - forces[1]) / (2 * delta)
    atoms.set_positions(pos0)
    return 0.5 * (h + h.T), calls


def hessian_atoms(initial: Structure, saddle: Structure, moving_index: int, mode: str, cutoff: float) -> list[int]:
    """Indices of the atoms whose displacements enter the Hessian (same set for both states)."""
    if mode == "full":
        return list(range(len(initial)))
    if mode == "atom":
        return [moving_index]
    if mode != "local":
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    chosen = {moving_index}
    for s in (initial, saddle):
        d = s.lattice.get_all_distances(s.frac_coords[moving_index], s.frac_coords)[0]
        chosen |= {int(k) for k in np.nonzero(d < cutoff)[0]}
    return sorted(chosen)


@dataclass
class AttemptFrequencyMaker(Maker):
    """Vineyard ν* of one hop from its initial minimum and saddle structures (see the module docstring)."""

    name: str = "attempt frequency"
    calculator: str = DEFAULT_CALCULATOR
    mode: str = "atom"
    cutoff: float = 3.3
    delta: float = 0.02
    imag_tol_thz: float = 0.1
    soft_thz: float = 1.0
    calculator_kwargs: dict = field(default_factory=dict)

    def settings(self) -> dict:
        return maker_settings(self)

    def key(self, initial: Structure, saddle: Structure, moving_index: int) -> str:
        return input_hash("attempt", structure_fingerprint(initial), structure_fingerprint(saddle), int(moving_index),
                          calculator_info(self.calculator), self.settings())

    def _check(self, initial: Structure, saddle: Structure, moving_index: int, label: str) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if not (0 < self.delta <= 0.05):
            raise ValueError(f"finite-difference displacement delta must be in (0, 0.05] Å, got {self.delta}")
        if len(initial) != len(saddle) or [str(s.specie) for s in initial] != [str(s.specie) for s in saddle]:
            raise ValueError(f"{label}: initial and saddle structures must have the same atoms in the same order")
        if not 0 <= int(moving_index) < len(initial):
            raise ValueError(f"{label}: moving_index {moving_index} outside 0..{len(initial) - 1}")
        check_elements(self.calculator, [el.symbol for el in initial.composition.elements], where=label)

    def keyed_job(self, initial: Structure, saddle: Structure, moving_index: int, label: str,
                  metadata: dict | None = None, tolerant: bool = False):
        """A job whose uuid is the input hash, so a finished one is reused.

        ``tolerant``: the same key, but a failure is returned as an error record (``alloyflow.engine.guarded``).
        """
        self._check(initial, saddle, moving_index, label)
        if tolerant:
            j = run_guarded(self, [initial, saddle, int(moving_index)], label=label, metadata=metadata or {})
        else:
            j = self.make(initial, saddle, moving_index, label=label, metadata=metadata or {})
        j.name = f"{self.name} {label}"
        return keyed_by(j, self.key, initial, saddle, moving_index, label=f"{self.name} {label}")

    @job
    def make(self, initial: Structure, saddle: Structure, moving_index: int, label: str = "",
             metadata: dict | None = None) -> AttemptFrequencyDocument:
        return self.run(initial, saddle, moving_index, label=label, metadata=metadata)

    def run(self, initial: Structure, saddle: Structure, moving_index: int, label: str = "",
            metadata: dict | None = None) -> AttemptFrequencyDocument:
        """Two finite-difference Hessians and the Vineyard ratio (outside jobflow too)."""
        self._check(initial, saddle, moving_index, label)
        t0 = time.perf_counter()
        idx = hessian_atoms(initial, saddle, int(moving_index), self.mode, self.cutoff)
        calc = get_calculator(self.calculator, **self.calculator_kwargs)
        spectra, calls = [], 0
        for s in (initial, saddle):
            atoms = AseAtomsAdaptor.get_atoms(s)
            atoms.calc = calc
            h, n = finite_difference_hessian(atoms, idx, self.delta)
            calls += n
            spectra.append(signed_frequencies_thz(h, atoms.get_masses()[idx]))
        n_drop = 3 if self.mode == "full" else 0
        flags = []
        n_imag = [int((f < -self.imag_tol_thz).sum()) for f in spectra]
        if n_imag[0]:
            flags.append(f"the initial state has {n_imag[0]} imaginary mode(s) (lowest {spectra[0][0]:.2f} THz): not a minimum")
        if n_imag[1] != 1:
            flags.append(f"the saddle has {n_imag[1]} imaginary modes, not exactly one (lowest {spectra[1][0]:.2f} THz)")
        fi = np.sort(spectra[0][np.argsort(np.abs(spectra[0]))[n_drop:]])
        fs = np.sort(spectra[1][np.argsort(np.abs(spectra[1]))[n_drop:]])
        if not n_imag[0] and fi[0] < self.soft_thz:
            flags.append(f"soft initial-state mode ({fi[0]:.2f} THz < {self.soft_thz} THz): anharmonic, "
                         "the harmonic prefactor is uncertain (depends on delta)")
        # Vineyard needs real modes; near-zero or imaginary ones beyond the saddle's first are flagged and
        # enter by their magnitude, so that a number still comes out (never silently: the flags say so).
        if (fi <= 0).any() or (fs[1:] <= 0).any():
            flags.append("spurious imaginary or zero modes entered the product by their magnitude")
        fi_use = np.sort(np.maximum(np.abs(fi), 1e-6))
        fs_use = np.concatenate([fs[:1], np.sort(np.maximum(np.abs(fs[1:]), 1e-6))])
        nu = vineyard_prefactor(fi_use, fs_use)
        return AttemptFrequencyDocument(
            label=label,
            nu_hz=nu,
            mode=self.mode,
            n_atoms_in_hessian=len(idx),
            atom_indices=idx,
            moving_index=int(moving_index),
            n_force_calls=calls,
            frequencies_initial_thz=[float(x) for x in spectra[0]],
            frequencies_saddle_thz=[float(x) for x in spectra[1]],
            n_imaginary_initial=n_imag[0],
            n_imaginary_saddle=n_imag[1],
            flags=flags,
            settings=self.settings(),
            calculator=calculator_info(self.calculator),
            input_hash=self.key(initial, saddle, moving_index),
            elapsed_seconds=time.perf_counter() - t0,
            metadata=metadata or {},
        )


def band_states(neb_doc) -> tuple[Structure, Structure, int]:
    """(initial minimum, saddle = climbing image, index of the atom that moves most) of a NEB document."""
    images = neb_doc.images
    imax = int(neb_doc.climbing_image)
    if not 0 < imax < len(images) - 1:
        raise ValueError(f"{getattr(neb_doc, 'label', 'band')}: the highest image is an endpoint ({imax}): no saddle in the band")
    first, last = images[0], images[-1]
    moved = first.lattice.get_all_distances(first.frac_coords, last.frac_coords).diagonal()
    return first, images[imax], int(np.argmax(moved))


def _fixed(label: str, nu: float, reason: str, neb_key: str | None = None) -> AttemptFrequencyDocument:
    return AttemptFrequencyDocument(label=label, nu_hz=float(nu), mode="fixed", n_atoms_in_hessian=0, n_force_calls=0,
                                    flags=[f"fixed attempt frequency {nu:.1e} Hz, not computed ({reason})"], neb_key=neb_key)


@dataclass
class AttemptPlan:
    """The keyed attempt-frequency jobs of a barrier result, not run (``attempt_jobs``).

    ``jobs``: hop id -> keyed job; ``fixed``: hop id -> labelled fallback
    document (no job); ``notes``: hop id -> what ``attempt_document`` adds to
    the job's output (the band's key and its flags).
    """

    jobs: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)


def _stored(jobstore, uuid: str) -> bool:
    return jobstore.query_one({"uuid": uuid}, properties=["uuid"]) is not None


def attempt_jobs(
    result,
    store,
    calculator: str = DEFAULT_CALCULATOR,
    hops: str | list[int] = "percolation",
    maker: AttemptFrequencyMaker | None = None,
    fallback_hz: float | None = None,
    tolerant: bool = False,
) -> AttemptPlan:
    """The keyed Vineyard jobs of a ``BarrierResult``'s hops, built from its stored bands but not run.

    ``store`` holds the bands: a ``ResultStore`` or a jobflow ``JobStore`` (``CURRENT_JOB.store``
    inside a job). The other arguments are ``run_attempt_frequencies``'s;
    ``tolerant``: the jobs return an error record instead of raising (same keys).

    Raises
    ------
    ValueError
        Bands of another calculator, unknown hops, or a hop without a usable band (unless ``fallback_hz``).
    """
    from alloyflow.workflows.schemas.neb import NebDocument

    made_by = (result.calculator or {}).get("name")
    if made_by and made_by != calculator:
        raise ValueError(f"{result.phase}: the bands were computed with {made_by!r}, not {calculator!r}")
    maker = maker or AttemptFrequencyMaker(calculator=calculator)
    if maker.calculator != calculator:
        raise ValueError(f"maker calculator {maker.calculator!r} differs from calculator {calculator!r}")
    by_id = {h.id: h for h in result.hops}
    if hops == "percolation":
        ids = sorted({i for i in result.percolation_hops.values() if i is not None})
    elif hops == "all":
        ids = sorted(h.id for h in result.hops if h.neb_key)
    else:
        ids = sorted(set(hops))
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise ValueError(f"{result.phase}: no hop(s) {unknown}; hops are {sorted(by_id)}")
    jobstore = getattr(store, "jobstore", store)
    where = f"the store {store.out_dir}" if hasattr(store, "out_dir") else "the job store"
    plan = AttemptPlan()
    for hop_id in ids:
        hop = by_id[hop_id]
        label = f"{result.phase} hop {hop_id}"
        problem = None
        if hop.no_saddle:  # no transition state: the band's highest image is no saddle to vibrate about
            problem = f"its band has no saddle ({hop.no_saddle})"
        elif not hop.neb_key:
            problem = "no NEB band stored for this hop"
        else:
            uuid = hop.neb_key if _stored(jobstore, hop.neb_key) else deterministic_uuid(hop.neb_key)
            if not _stored(jobstore, uuid):
                problem = f"its band ({hop.neb_key[:12]}...) is not in {where}"
        if problem is None:
            raw = jobstore.get_output(uuid, load=True)
            raw = raw if isinstance(raw, dict) else raw.model_dump()
            if "endpoint_error" in raw:
                problem = f"no band: {raw['endpoint_error']}"
        if problem is not None:
            if fallback_hz is None:
                raise ValueError(f"{label}: {problem}; pass fallback_hz to use a fixed, labelled frequency")
            plan.fixed[hop_id] = _fixed(label, fallback_hz, problem, hop.neb_key)
            continue
        band = NebDocument.model_validate(raw)
        initial, saddle, moving = band_states(band)
        plan.jobs[hop_id] = maker.keyed_job(initial, saddle, moving, label=label,
                                            metadata={"phase": result.phase, "hop_id": hop_id}, tolerant=tolerant)
        flags = []
        if not band.converged:
            flags.append(f"the band was not converged (max force {band.max_force:.3f} eV/Å): the climbing image is no exact saddle")
        if hop.below_endpoint:
            flags.append(f"the band dips below an endpoint ({hop.below_endpoint}): the initial endpoint is no exact minimum")
        if hop.moving_index is not None and moving != hop.moving_index:
            flags.append(f"the atom moving most in the band ({moving}) is not the hop's moving_index ({hop.moving_index})")
        plan.notes[hop_id] = {"neb_key": hop.neb_key, "flags": flags}
    return plan


def attempt_document(output, note: dict | None = None) -> AttemptFrequencyDocument:
    """An attempt-frequency job's output with its band's key and flags (``AttemptPlan.notes``) added."""
    doc = output if isinstance(output, AttemptFrequencyDocument) else AttemptFrequencyDocument.model_validate(
        output if isinstance(output, dict) else output.model_dump())
    if note:
        doc.neb_key = note.get("neb_key")
        doc.flags.extend(note.get("flags", []))
    return doc


def run_attempt_frequencies(
    result,
    store: ResultStore,
    calculator: str = DEFAULT_CALCULATOR,
    progress=None,
    hops: str | list[int] = "percolation",
    maker: AttemptFrequencyMaker | None = None,
    fallback_hz: float | None = None,
) -> dict[int, AttemptFrequencyDocument]:
    """Hop id -> Vineyard attempt frequency for the hops of a ``BarrierResult`` (keyed jobs, reused).

    ``hops``: ``"percolation"`` (default: the hops setting the 1D/2D/3D
    thresholds), ``"all"`` (every hop with a stored band) or a list of ids.
    The bands are read from ``store`` (``HopBarrier.neb_key``); the Hessians
    use ``calculator``, which must be the one that made the bands (a saddle
    of one potential is no saddle of another). ``fallback_hz``: only if
    given, a hop without a usable band gets that fixed, labelled frequency
    (mode "fixed") instead of an error. The jobs are ``attempt_jobs``'s.
    """
    from jobflow import Flow

    plan = attempt_jobs(result, store, calculator, hops, maker, fallback_hz)
    if plan.jobs:
        run_cached(Flow(list(plan.jobs.values()), name=f"attempt frequencies {result.phase}"), store,
                   progress=progress)
    out: dict[int, AttemptFrequencyDocument] = {}
    for hop_id in sorted({*plan.jobs, *plan.fixed}):
        if hop_id in plan.fixed:
            out[hop_id] = plan.fixed[hop_id]
        else:
            out[hop_id] = attempt_document(store.output(plan.jobs[hop_id].uuid), plan.notes[hop_id])
    return out
