"""The hops of a relaxed phase and their NEB endpoints: the barrier flow's plan (pure, deterministic).

``plan_hops`` is called by the job that plans a phase's NEBs and again by
the job that collects them (recomputing is cheaper than storing endpoints),
so it must give the same plan for the same relaxed structure and settings.
Three mechanisms: a Li vacancy hop (Li-containing phases), one extra Li
between the largest voids (``interstitial``), and one Li in a Li-free host
(``dilute``: substitutional or interstitial). The hop cutoff, unless given,
is the shortest one at which the hops percolate in 3D (at most
``MAX_HOP_LENGTH``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Composition, Structure

from alloyflow.analysis.coordination import coordination, hop_coordination
from alloyflow.analysis.percolation import MAX_HOP_LENGTH, geometric_dimension, percolating_cutoff
from alloyflow.structures.interstitial import PLACEHOLDER, decorate_voids, interstitial_endpoints
from alloyflow.structures.migration import dilute_li_hops, hop_network, vacancy_hop_endpoints
from alloyflow.structures.supercells import vacancy_supercell_matrix


@dataclass
class BarrierSettings:
    """What decides which hops are computed and in which cell (all of it enters the cache keys).

    Parameters
    ----------
    min_image_distance : float
        Smallest distance (Å) between periodic images of the vacancy (or dilute Li).
    max_hops : int or None
        Only the ``max_hops`` shortest distinct hops; None computes all.
    max_length : float or None
        Longest hop considered (Å); None takes the shortest cutoff whose hops percolate in 3D
        (at most ``MAX_HOP_LENGTH``), so every hop a percolation threshold can need is computed.
    dilute : bool
        The phase is a Li-free host and the hops are those of one Li in it.
    dilute_mode : str
        ``"substitution"`` (Li on a host site) or ``"interstitial"``.
    mechanism : str
        For a Li-containing phase: ``"vacancy"`` (a Li hops into a vacancy) or ``"interstitial"``
        (one extra Li hops between the largest voids).
    n_host_sites : int or None
        Host sites of the dilute cell (36 gives the reference's LiIn35).
    host_check : bool
        Check the host's mechanical stability (Born criteria) beside the barriers.
    """

    min_image_distance: float = 10.0
    max_hops: int | None = None
    max_length: float | None = None
    dilute: bool = False
    dilute_mode: str = "substitution"
    n_host_sites: int | None = None
    host_check: bool = True
    mechanism: str = "vacancy"

    def check(self) -> None:
        """Refuse settings that would give a meaningless number, before any job exists."""
        if not self.min_image_distance > 0:
            raise ValueError(f"min_image_distance must be > 0 Å, got {self.min_image_distance}")
        if self.max_hops is not None and self.max_hops < 1:
            raise ValueError(f"max_hops must be >= 1 (or None for all), got {self.max_hops}")
        if self.max_length is not None and not self.max_length > 0:
            raise ValueError(f"max_length must be > 0 Å, got {self.max_length}")
        if self.dilute_mode not in ("substitution", "interstitial"):
            raise ValueError(f"dilute_mode must be 'substitution' or 'interstitial', got {self.dilute_mode!r}")
        if self.mechanism not in ("vacancy", "interstitial"):
            raise ValueError(f"mechanism must be 'vacancy' or 'interstitial', got {self.mechanism!r}")
        if self.dilute and self.mechanism != "vacancy":
            raise ValueError("a dilute-Li host takes dilute_mode='interstitial', not mechanism='interstitial'")
        if self.n_host_sites is not None and self.n_host_sites < 2:
            raise ValueError(f"n_host_sites must be >= 2, got {self.n_host_sites}")


@dataclass
class HopPlan:
    """The hops of a relaxed phase and their endpoints (recomputed identically wherever needed)."""

    name: str
    mode: str
    network: object
    entries: list  # (hop, initial, final, info)
    cns: list  # (cn_initial, cn_final) per entry
    n_distinct: int
    warnings: list[str] = field(default_factory=list)
    left_out: list[int] = field(default_factory=list)
    dimension: int | None = None

    def band_label(self, hop_id: int) -> str:
        """The label of a hop's band: the NEB job is named ``"<maker name> <label>"``."""
        return f"{self.name}{' interstitial' if self.mode == 'interstitial' else ''} hop {hop_id}"


def _dilute_cn(host: Structure, hop, info, mode: str) -> tuple[dict, dict]:
    if mode == "substitution":
        return hop_coordination(host, hop.isite_index, hop.esite_index)
    sc = host.copy()
    sc.make_supercell(info["matrix"])
    inv_m = np.linalg.inv(info["matrix"])
    out = []
    for frac in (hop.isite_frac, hop.esite_frac):
        s = sc.copy()
        s.append("Li", np.asarray(frac) @ inv_m)
        c = coordination(s, len(s) - 1)
        out.append({"cn": c["cn"], "li": c["cn_li"], "m": c["cn_m"]})
    return out[0], out[1]


def _interstitial_cn(initial: Structure, final: Structure) -> tuple[dict, dict]:
    out = []
    for s in (initial, final):
        c = coordination(s, len(s) - 1)
        out.append({"cn": c["cn"], "li": c["cn_li"], "m": c["cn_m"]})
    return out[0], out[1]


def plan_hops(phase: str, formula: str, relaxed: Structure, settings: BarrierSettings,
              legacy_ties: bool = False) -> HopPlan:
    """Distinct hops, supercell and endpoints of ``relaxed`` (a pure, deterministic function).

    ``legacy_ties``: the supercell tie rule of plans stored before ties were
    decided without floating-point noise (``alloyflow.structures.supercells.SUPERCELL_TIE``).
    """
    elements = sorted(el.symbol for el in relaxed.composition.elements)
    if settings.dilute:
        host_sc = (vacancy_supercell_matrix(relaxed, settings.min_image_distance, legacy_ties=legacy_ties).matrix
                   if settings.n_host_sites is None else None)
        network, entries = dilute_li_hops(relaxed, settings.n_host_sites, settings.dilute_mode, matrix=host_sc,
                                          max_length=settings.max_length, legacy_ties=legacy_ties)
        n_host = int(round(abs(np.linalg.det(entries[0][3]["matrix"])))) * len(relaxed)
        n_m = n_host - 1 if settings.dilute_mode == "substitution" else n_host
        name = Composition({"Li": 1, formula: n_m}).reduced_formula if len(elements) == 1 else f"Li in {formula}"
        mode = f"dilute-{settings.dilute_mode}"
        dim = None
        cns = [_dilute_cn(relaxed, hop, info, settings.dilute_mode) for hop, _, _, info in entries]
    elif settings.mechanism == "interstitial":
        decorated = decorate_voids(relaxed)
        if settings.max_length is None:
            _, network, dim = percolating_cutoff(decorated, PLACEHOLDER)
        else:
            network = hop_network(decorated, PLACEHOLDER, settings.max_length)
            dim = geometric_dimension(network)
        choice = vacancy_supercell_matrix(relaxed, settings.min_image_distance,
                                          hop_length=max(h.length for h in network.hops), legacy_ties=legacy_ties)
        entries = []
        for hop in network.hops:
            initial, final, info = interstitial_endpoints(relaxed, hop, choice.matrix)
            entries.append((hop, initial, final, {**info, "min_image_distance": round(choice.min_image_distance, 4)}))
        name, mode = phase, "interstitial"
        cns = [_interstitial_cn(initial, final) for _, initial, final, _ in entries]
    else:
        if settings.max_length is None:
            _, network, dim = percolating_cutoff(relaxed, "Li")
        else:
            network = hop_network(relaxed, "Li", settings.max_length)
            dim = geometric_dimension(network)
        choice = vacancy_supercell_matrix(relaxed, settings.min_image_distance, legacy_ties=legacy_ties)
        entries = [(hop, *vacancy_hop_endpoints(relaxed, hop, supercell=choice)) for hop in network.hops]
        name, mode = phase, "vacancy"
        cns = [hop_coordination(relaxed, hop.isite_index, hop.esite_index) for hop, *_ in entries]
    warnings = []
    if dim is not None and dim < 3:
        warnings.append(f"the Li hops up to {network.max_length:.2f} Å percolate in {dim}D only"
                        + ("" if settings.max_length is not None else f" (searched up to {MAX_HOP_LENGTH:g} Å)"))
    n_distinct = len(entries)
    left_out = []
    if settings.max_hops is not None and len(entries) > settings.max_hops:
        left_out = [e[0].id for e in entries[settings.max_hops:]]
        warnings.append(
            f"only the {settings.max_hops} shortest of {len(entries)} distinct hops were computed (left out: "
            f"{', '.join(map(str, left_out))}); the percolation thresholds are upper bounds"
        )
        entries, cns = entries[: settings.max_hops], cns[: settings.max_hops]
    return HopPlan(name, mode, network, entries, cns, n_distinct, warnings, left_out, dim)
