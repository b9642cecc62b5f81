"""The one backend switch: a registry name in, the makers every flow uses out.

Flows never test calculator names; they receive a ``Makers`` (relax, static,
NEB, single point) from ``makers_for`` and call their ``keyed_job``. The
switch reads the registry spec's ``runner``: ``"ase"`` gives alloyflow's ASE
makers on that calculator (ML potentials, GPAW, the mock), ``"vasp"`` the
atomate2 VASP makers. This mirrors atomate2's ``forcefields/utils.py`` (one
place that maps a name to code) and ``common/flows/elastic.py`` (flows that
receive their makers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alloyflow.calculators import get_spec


@dataclass(frozen=True)
class Makers:
    """The makers of one backend. Each has ``keyed_job(...)`` returning a Job or Flow keyed by its inputs.

    Attributes
    ----------
    calculator : str
        Registry name the makers compute with.
    relax : Maker
        Cell (and ionic) relaxation; ``keyed_job(structure, label, metadata)``.
    static : Maker
        Single point of a structure; same call.
    neb : Maker
        CI-NEB between two endpoints; ``keyed_job(initial, final, label, metadata)``.
    """

    calculator: str
    relax: Any
    static: Any
    neb: Any
    elastic: Any = None
    """Elastic-tensor maker for the host-stability check (None where the backend has none: VASP)."""
    screen: Any = None
    """Hop screen maker (``ScreenMaker``: single points on the unrelaxed IDPP path) for the barrier flow's
    choice of which hops to converge; None converges every hop (VASP, or ``screen=False``)."""

    @property
    def runner(self) -> str:
        return get_spec(self.calculator).runner


def parse_incar(items) -> dict:
    """``["ENCUT=700", "NCORE=4", "LREAL=.FALSE.", "ALGO=Fast"]`` (``--incar KEY=VALUE``) as typed INCAR settings.

    Values become bool (``.TRUE.``, ``T``, ``true``; ``.FALSE.``, ``F``,
    ``false``), int, float (``1e-6``, ``1.0D-6``), None (``None``: drop the
    tag from alloyflow's set) or stay strings (``Fast``, ``Auto``).
    """
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        key, value = key.strip().upper(), value.strip()
        if not sep or not key or not key.replace("_", "").isalnum() or not value:
            raise ValueError(f"--incar expects KEY=VALUE (e.g. ENCUT=700), got {item!r}")
        low = value.lower().strip(".")
        if low in ("true", "t"):
            out[key] = True
        elif low in ("false", "f"):
            out[key] = False
        elif low == "none":
            out[key] = None
        else:
            try:
                out[key] = int(value)
            except ValueError:
                try:
                    out[key] = float(value.replace("D", "E").replace("d", "e"))
                except ValueError:
                    out[key] = value
    return out


def makers_for(calculator: str, n_images: int = 5, fmax: float = 0.05, incar: dict | None = None,
               relax: dict | None = None, neb: dict | None = None, endpoint_trials: int | None = None,
               climb: bool | None = None, screen: bool = False) -> Makers:
    """The relax, static and NEB makers for a registry name.

    Parameters
    ----------
    calculator : str
        A registry name (``alloyflow calculators``).
    n_images, fmax : int, float
        NEB intermediate images and force tolerance (eV/Å; for VASP, ``EDIFFG = -fmax``).
    incar : dict, optional
        VASP INCAR overrides for every maker (ignored by ASE backends).
    relax, neb : dict, optional
        Extra keyword arguments for the relax and NEB makers.
    endpoint_trials : int, optional
        Relaxations per NEB endpoint from seeded starts, the lowest kept (ASE backends; default
        ``NebMaker``'s). VASP endpoints are relaxed once.
    climb : bool, optional
        Climbing-image NEB (default: the NEB maker's, True). For VASP ``climb=False`` is VASP's
        own NEB, for a VASP built without VTST (``True`` writes VTST's LCLIMB, IOPT).
    screen : bool
        Screen every hop before converging bands (ASE backends): only the hops a percolation
        threshold can need get a CI-NEB. Off by default (on the reference phases every hop within
        the 3D cutoff was needed). VASP converges every hop (screens would be DFT single points).

    Returns
    -------
    Makers
    """
    spec = get_spec(calculator)
    relax, neb = dict(relax or {}), dict(neb or {})
    if climb is not None:
        neb.setdefault("climb", bool(climb))
    if spec.runner == "vasp":
        from alloyflow.workflows.jobs.vasp import (
            VaspNebMaker,
            VaspRelaxMaker,
            VaspStaticMaker,
            hull_relax_maker,
            hull_static_maker,
        )

        incar = dict(incar or {})
        if incar:
            relax.setdefault("relax_maker", hull_relax_maker(incar))
            relax.setdefault("static_maker", hull_static_maker(incar))
        relax_maker = VaspRelaxMaker(**relax)
        static_maker = VaspStaticMaker(static_maker=hull_static_maker(incar) if incar else hull_static_maker())
        neb_maker = VaspNebMaker(n_images=n_images, incar={**incar, **neb.pop("incar", {}), "EDIFFG": -abs(fmax)},
                                 **neb)
        return Makers(calculator, relax_maker, static_maker, neb_maker)
    if spec.runner != "ase":
        raise ValueError(f"calculator {calculator!r} has runner {spec.runner!r}; alloyflow knows 'ase' and 'vasp'")
    from alloyflow.workflows.jobs.elastic import ElasticMaker
    from alloyflow.workflows.jobs.neb import NebMaker
    from alloyflow.workflows.jobs.relax import RelaxMaker, StaticMaker
    from alloyflow.workflows.jobs.screen import ScreenMaker

    return Makers(calculator, RelaxMaker(calculator=calculator, **relax), StaticMaker(calculator=calculator),
                  NebMaker(calculator=calculator, n_images=n_images, fmax=fmax,
                           **({"endpoint_trials": endpoint_trials} if endpoint_trials is not None else {}), **neb),
                  ElasticMaker(calculator=calculator), ScreenMaker(calculator=calculator) if screen else None)


def relax_maker_for(calculator: str, **kwargs):
    """The hull's relax maker for a registry name (``makers_for(calculator).relax``)."""
    return makers_for(calculator, relax=kwargs).relax


def neb_maker_for(calculator: str, n_images: int = 5, fmax: float = 0.05, **kwargs):
    """The barrier NEB maker for a registry name (``makers_for(calculator).neb``)."""
    incar = kwargs.pop("incar", None)
    return makers_for(calculator, n_images=n_images, fmax=fmax, incar=incar, neb=kwargs).neb
