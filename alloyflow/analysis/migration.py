"""Barriers per phase: documents, the percolation of their hops, the metastability correction, files.

The percolation thresholds are computed in ``alloyflow.analysis.percolation``.
"""

from __future__ import annotations

import csv
import io

import numpy as np
from pydantic import BaseModel, Field, field_validator

from alloyflow.analysis.percolation import (
    DIMENSIONS,
    finite,
    graph_edges,
    network_dimension,
    percolation_analysis,
)


class CoordinationSummary(BaseModel):
    cn: int
    li: int
    m: int


class SupercellInfo(BaseModel):
    natoms: int = Field(description="atoms in the NEB cell (with the vacancy)")
    min_image_distance: float = Field(description="shortest supercell lattice vector, Å")
    matrix: list[list[int]]


class HopBarrier(BaseModel):
    """One distinct hop; barriers in eV, ``None`` where no number could be obtained."""

    id: int
    length: float
    multiplicity: int = 1
    forward_barrier: float | None = None
    reverse_barrier: float | None = None
    endpoint_asymmetry: float | None = Field(None, description="E_final - E_initial, eV")
    cn_initial: CoordinationSummary | None = None
    cn_final: CoordinationSummary | None = None
    converged: bool = False
    n_images: int = 0
    force_calls: int | None = None
    n_steps: int | None = None
    max_force: float | None = None
    energies: list[float] = Field(default_factory=list, description="eV relative to the initial endpoint")
    reaction_coordinate: list[float] = Field(default_factory=list, description="Å, cumulative image distance")
    cost: float | None = Field(None, description="max(forward, reverse): the hop's cost in the percolation network")
    percolation_dim: int = Field(0, description="dimension reached by all hops costing <= this one")
    percolation_dim_alone: int = Field(0, description="dimension of the network of this hop type alone")
    moving_index: int | None = None
    relaxed_hop_distance: float | None = Field(None, description="largest single-atom displacement between the relaxed endpoints, Å")
    max_endpoint_relaxation: float | None = Field(None, description="largest atomic relaxation of an endpoint, Å")
    neb_key: str | None = None
    endpoint_energies: list[list[float]] = Field(
        default_factory=list, description="relaxed energies (eV) of the seeded endpoint trials: [initial, final]")
    endpoint_spread: list[float] = Field(default_factory=list, description="max - min trial energy, eV: [initial, final]")
    endpoint_force_calls: int | None = Field(
        None, description="force calls of the endpoint relaxations the band ran; where it carried over the shared "
                          "relaxation of an equivalent endpoint, only the single point that checks it")
    screened_estimate: float | None = Field(
        None, description="eV: max(forward, reverse) of the hop's screen (single points on the unrelaxed IDPP path)")
    screened_only: bool = Field(False, description="not converged: the screen shows it cannot set a threshold")
    no_saddle: str | None = Field(
        None, description="why the band defines no barrier (``band_shape``); its barriers are then None")
    below_endpoint: str | None = Field(
        None, description="why a barrier is measured from an image below an endpoint (``band_shape``)")
    warnings: list[str] = Field(default_factory=list)

    @property
    def status(self) -> str:
        """The hop's state in one word or two: yes (converged), NO, no saddle, or screened only."""
        if self.screened_only:
            return "screened only"
        if self.no_saddle:
            return "no saddle"
        return "yes" if self.converged else "NO"


class MetastabilityCorrection(BaseModel):
    """Correction for endpoints that lie above the hull; the raw barriers are kept unchanged."""

    e_above_hull_per_atom: float
    natoms: int
    correction: float = Field(description="e_above_hull_per_atom x natoms, eV, added to each barrier")
    corrected_barriers: dict[int, float] = Field(default_factory=dict, description="hop id -> forward + correction")
    corrected_percolation: dict[str, float | None] = Field(default_factory=dict)
    note: str = (
        "a correction, not a computed barrier: the endpoints belong to a phase above the hull, which lowers "
        "the 0 K barrier; hull distance x atoms in the supercell is a crude estimate of that lowering"
    )


class ScreeningInfo(BaseModel):
    """How the hops were screened before the ones a threshold needs were converged."""

    method: str
    calculator: str = Field(description="label of the calculator of the screens")
    factor: float = Field(description="a hop is left screened-only when factor x estimate >= the highest threshold")
    screened_only: list[int] = Field(default_factory=list, description="hop ids whose band was not converged")
    rounds: int = Field(0, description="rounds of the screening rule before the thresholds were settled")
    force_calls: int = Field(0, description="force calls of all screens")
    note: str = ""


class HostStability(BaseModel):
    """Whether the host phase is mechanically stable, checked before its barriers are trusted."""

    method: str = Field(description="how it was checked, with the calculator that produced the numbers")
    stable: bool | None = Field(None, description="None: not checked (see note)")
    min_eigenvalue_gpa: float | None = Field(None, description="smallest eigenvalue of the 6x6 Voigt C, GPa")
    note: str = ""


class BarrierResult(BaseModel):
    phase: str
    formula: str = ""
    mode: str = "vacancy"
    calculator: dict
    supercell: SupercellInfo | None = Field(None, description="the NEB cell (None only where planning failed)")
    hops: list[HopBarrier]
    percolation: dict[str, float | None] = Field(default_factory=lambda: dict.fromkeys(DIMENSIONS))
    percolation_hops: dict[str, int | None] = Field(default_factory=lambda: dict.fromkeys(DIMENSIONS))
    max_length: float | None = None
    e_above_hull: float | None = None
    metastability_correction: MetastabilityCorrection | None = None
    settings: dict = Field(default_factory=dict)
    relaxed_structure: dict | None = None
    hops_left_out: list[int] = Field(default_factory=list,
                                     description="ids of distinct hops within max_length that were not computed")
    network_dimension: int | None = Field(None, description="dimension reached by every hop within max_length")
    host_stability: HostStability | None = None
    phase_status: str = Field("", description="the library status of the phase: verified, predicted, ...")
    phase_source: str = Field("", description="where its structure came from (CIF provenance or the search)")
    screening: ScreeningInfo | None = None
    error: str | None = Field(None, description="why the phase has no hops: its planning failed (one line)")
    retry_next_run: bool = Field(False, description="a failed result the next run computes again (not reused)")

    @property
    def display_name(self) -> str:
        """The phase name, marked when the structure is predicted rather than observed."""
        return f"{self.phase} (predicted)" if self.phase_status == "predicted" else self.phase
    warnings: list[str] = Field(default_factory=list)

    @property
    def percolation_complete(self) -> bool:
        """Whether every distinct hop within ``max_length`` was computed (else thresholds are upper bounds)."""
        return not self.hops_left_out

    @field_validator("relaxed_structure", mode="before")
    @classmethod
    def _structure_as_dict(cls, value):
        # a job store decodes the stored dict back into a Structure; keep the dict form
        return value.as_dict() if hasattr(value, "as_dict") else value

    @property
    def lowest_percolating_barrier(self) -> float | None:
        return self.percolation.get("1d")


def assign_percolation(result: BarrierResult, network) -> BarrierResult:
    """Fill ``percolation`` and the per-hop dimensions of ``result`` from its hop costs."""
    costs = {h.id: h.cost for h in result.hops}
    edges = graph_edges(network, costs)
    thresholds, limiting = percolation_analysis(network.n_sites, edges)
    label_to_id = {h.graph_label: h.id for h in network.hops}
    edge_ids = [label_to_id[d["hop_label"]] for _, _, d in network.graph.m_graph.graph.edges(data=True)]
    result.percolation = thresholds
    result.percolation_hops = {dim: (edge_ids[k] if k is not None else None) for dim, k in limiting.items()}
    for hop in result.hops:
        own = [e for e, hid in zip(edges, edge_ids) if hid == hop.id]
        hop.percolation_dim_alone = network_dimension(network.n_sites, own)
        if finite(hop.cost):
            hop.percolation_dim = network_dimension(network.n_sites, [e for e in edges if e[3] <= hop.cost])
    return result


SADDLE_TOL = 0.005
"""eV: a band must rise or dip by more than this to count (the endpoint tolerance the study states)."""


class BandShape(BaseModel):
    """The barriers a band's energy profile defines (``band_shape``), in eV, and why they differ from the plain ones."""

    forward: float | None = None
    reverse: float | None = None
    no_saddle: str | None = Field(None, description="why the profile defines no barrier (then both are None)")
    below_endpoint: str | None = Field(
        None, description="why a barrier is measured from an image below its endpoint rather than from the endpoint")


def band_shape(energies, tol: float = SADDLE_TOL) -> BandShape:
    """The forward and reverse barriers of a band's energy profile, or why it has none.

    A barrier is the rise from a minimum to the saddle between two minima.
    The plain reading, highest energy minus each endpoint, holds when no
    endpoint lies more than ``tol`` above every image and no image lies more
    than ``tol`` below the endpoint on its side of the highest image.
    Otherwise:

    - the highest point is an endpoint, more than ``tol`` above every image:
      the band runs downhill out of that endpoint, which is no minimum, and
      no barrier is defined (``no_saddle``). Seen: B32 LiIn on the 97-label
      potential (every image 6-12 meV below both relaxed vacancy endpoints),
      the interstitial in LiSn (the band falls 92 meV out of its initial site);
    - an image between an endpoint and the saddle lies more than ``tol``
      below that endpoint: the endpoint's relaxation stopped on a soft mode.
      The barrier on that side is measured from the lowest such image
      (``below_endpoint``), a lower bound on the rise from the true minimum,
      which the endpoint-based number underestimates further. Seen:
      Li13In3 hop 1 on the 55-label potential, 40 meV from the endpoint,
      48 from the image 8 meV below it.

    Reporting a band of the first kind as a barrier of about 0 meV would rank
    the hop as the fastest of all.

    Parameters
    ----------
    energies : sequence of float
        Image energies (eV) from the initial to the final endpoint, both included.
    tol : float
        Energy (eV) below which a dip or an excess counts as noise.
    """
    e = np.asarray(energies, dtype=float)
    if e.size == 0:
        return BandShape()
    plain = BandShape(forward=float(e.max() - e[0]), reverse=float(e.max() - e[-1]))
    if e.size < 3:
        return plain
    top = int(np.argmax(e[1:-1])) + 1
    excess = float(max(e[0], e[-1]) - e[top])
    if excess > tol:
        dip = float(min(e[0], e[-1]) - e[1:-1].min())
        if dip > tol:
            return BandShape(no_saddle=(
                f"every image lies below both endpoints (up to {1000 * dip:.0f} meV below the lower one): the band "
                "runs downhill out of each, so neither is a minimum of this path and the band gives no barrier"))
        which = "initial" if e[0] >= e[-1] else "final"
        return BandShape(no_saddle=(
            f"its highest point is the {which} endpoint, {1000 * excess:.0f} meV above every image: the band runs "
            "downhill out of it, so that endpoint is no minimum of this path and the band gives no barrier"))
    dips = [float(e[0] - e[:top].min()), float(e[-1] - e[top:].min())]
    if max(dips) <= tol:
        return plain
    low = [e[:top].min() if dips[0] > tol else e[0], e[top:].min() if dips[1] > tol else e[-1]]
    sides = " and ".join(f"{1000 * d:.0f} meV below the {k} endpoint" for k, d in zip(("initial", "final"), dips)
                         if d > tol)
    return BandShape(  # from the highest point (an endpoint within tol of the highest image, possibly)
        forward=float(e.max() - low[0]), reverse=float(e.max() - low[1]),
        below_endpoint=(f"an image lies {sides}, between it and the saddle: that endpoint's relaxation stopped on a "
                        "soft mode, so the barrier is measured from the lowest image (a lower bound)"))


# --------------------------------------------------------------------------- correction


def metastability_correction(e_above_hull_per_atom: float, natoms: int) -> float:
    """Estimated lowering (eV) of a barrier by metastable endpoints: E_hull/atom × atoms in the NEB cell.

    ``natoms`` counts the cell the NEB ran in, vacancy included (one atom
    fewer than the perfect supercell).
    """
    if e_above_hull_per_atom < 0:
        raise ValueError(f"energy above hull must be >= 0, got {e_above_hull_per_atom}")
    return float(e_above_hull_per_atom) * int(natoms)


def apply_metastability_correction(result: BarrierResult, e_above_hull_per_atom: float) -> BarrierResult:
    if result.supercell is None:  # a failed phase: no barrier to correct
        result.e_above_hull = e_above_hull_per_atom
        return result
    corr = metastability_correction(e_above_hull_per_atom, result.supercell.natoms)
    result.e_above_hull = e_above_hull_per_atom
    result.metastability_correction = MetastabilityCorrection(
        e_above_hull_per_atom=e_above_hull_per_atom,
        natoms=result.supercell.natoms,
        correction=corr,
        corrected_barriers={h.id: h.forward_barrier + corr for h in result.hops if finite(h.forward_barrier)},
        corrected_percolation={d: (v + corr if v is not None else None) for d, v in result.percolation.items()},
    )
    return result


# --------------------------------------------------------------------------- outputs


def reaction_coordinate(images) -> list[float]:
    """Cumulative minimum-image distance (Å) between successive images."""
    out = [0.0]
    for a, b in zip(images, images[1:]):
        d = b.lattice.get_all_distances(a.frac_coords, b.frac_coords).diagonal()
        out.append(out[-1] + float(np.sqrt((d**2).sum())))
    return out


def plot_profile(hop: HopBarrier, calculator: dict | None = None, phase: str = ""):
    """Energy (meV) along the band, one marker per image; the title names the calculator."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = hop.reaction_coordinate if len(hop.reaction_coordinate) == len(hop.energies) else list(range(len(hop.energies)))
    ax.plot(x, [1000 * e for e in hop.energies], "o-", color="tab:blue" if hop.converged else "tab:red")
    ax.set_xlabel("reaction coordinate (Å)" if x is hop.reaction_coordinate else "image")
    ax.set_ylabel("E − E(initial) (meV)")
    calc = calculator or {}
    label = calc.get("label", calc.get("name", "unknown calculator"))
    if calc.get("kind") == "mlip" and "ML potential" not in label:
        label += " (ML potential)"
    fwd = f"{1000 * hop.forward_barrier:.0f} meV" if hop.forward_barrier is not None else "n/a"
    flag = "" if hop.converged else " NO SADDLE" if hop.no_saddle else " NOT CONVERGED"
    ax.set_title(f"{phase} hop {hop.id} ({hop.length:.2f} Å): {fwd}{flag}\n{label}", fontsize=9)
    return fig


CSV_COLUMNS = [
    "phase", "hop_id", "length_A", "multiplicity", "cn_initial", "cn_initial_li", "cn_initial_m", "cn_final",
    "cn_final_li", "cn_final_m", "forward_barrier_eV", "reverse_barrier_eV", "percolating_dimension",
    "converged", "supercell_atoms", "calculator", "screened_estimate_eV", "screened_only",
]


def barrier_csv_text(result: BarrierResult) -> str:
    """The hops of ``result`` as CSV (one row per hop)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    ci = lambda c, k: getattr(c, k) if c else ""  # noqa: E731
    for h in result.hops:
        writer.writerow([
            result.phase, h.id, f"{h.length:.4f}", h.multiplicity,
            ci(h.cn_initial, "cn"), ci(h.cn_initial, "li"), ci(h.cn_initial, "m"),
            ci(h.cn_final, "cn"), ci(h.cn_final, "li"), ci(h.cn_final, "m"),
            "" if h.forward_barrier is None else f"{h.forward_barrier:.5f}",
            "" if h.reverse_barrier is None else f"{h.reverse_barrier:.5f}",
            h.percolation_dim, h.converged, result.supercell.natoms, result.calculator.get("label", ""),
            "" if h.screened_estimate is None else f"{h.screened_estimate:.5f}", h.screened_only,
        ])
    return buf.getvalue()


def _mev(x: float | None) -> str:
    return "–" if x is None else f"{1000 * x:.0f}"


def _cn_text(c: CoordinationSummary | None) -> str:
    return "–" if c is None else f"{c.cn} ({c.li} Li/{c.m} M)"


def format_barrier_table(results: list[BarrierResult]) -> str:
    """Cross-phase text table: every hop, then each phase's percolation thresholds (meV)."""
    head = ["phase", "hop", "len (Å)", "CN initial", "CN final", "fwd", "rev", "dim", "conv"]
    rows = []
    for r in results:
        for h in r.hops:
            rows.append([r.phase, str(h.id), f"{h.length:.2f}", _cn_text(h.cn_initial), _cn_text(h.cn_final),
                         _mev(h.forward_barrier), _mev(h.reverse_barrier), str(h.percolation_dim),
                         f"screened ~{_mev(h.screened_estimate)}" if h.screened_only else h.status])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    lines = ["Li hop barriers (meV; fwd = Li from initial to final site)", line(head), line(["-" * w for w in widths])]
    lines += [line(r) for r in rows]
    lines += ["", "Lowest percolating barrier (meV)"]
    for r in results:
        if r.error:
            lines.append(f"{r.display_name} [{r.calculator.get('label', r.calculator.get('name', '?'))}, {r.mode}]: "
                         f"FAILED ({r.error}); the next run retries it")
            continue
        bound = "" if r.percolation_complete else "<="
        perc = " ".join(f"{d.upper()} {bound}{_mev(r.percolation.get(d))}" for d in DIMENSIONS)
        text = f"{r.display_name} [{r.calculator.get('label', r.calculator.get('name', '?'))}, {r.supercell.natoms} atoms, {r.mode}]: {perc}"
        mc = r.metastability_correction
        if mc is not None and mc.correction > 0:
            text += (f"; with metastability correction +{_mev(mc.correction)} "
                     f"({1000 * mc.e_above_hull_per_atom:.1f} meV/atom x {mc.natoms}): 1D {_mev(mc.corrected_percolation.get('1d'))}")
        lines.append(text)
        if r.screening is not None and r.screening.screened_only:
            lines.append(f"  screened only (no band): hops {', '.join(map(str, r.screening.screened_only))}; "
                         f"{r.screening.note}")
        lines += [f"  warning: {w}" for w in r.warnings]
    return "\n".join(lines)
