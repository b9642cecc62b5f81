"""Barriers per phase: documents, percolation, the metastability correction, files.

Percolation. Every hop of the periodic hop graph costs the larger of its
forward and reverse barriers: a Li crossing the crystal traverses each hop
type in both directions, so the larger one is what limits long-range motion
(for a symmetric hop both are equal). The *percolation threshold in d
dimensions* is the lowest cost ``t`` such that the hops costing ≤ ``t``
connect a site to its periodic images along ``d`` independent lattice
directions. The lowest percolating barrier of a phase is the 1D threshold.

pymatgen-analysis-diffusion's ``MigrationGraph`` holds the graph and its
edge costs (``add_data_to_similar_edges``, ``assign_cost_to_graph``), but
its ``get_path`` only returns one minimum-sum path to some image and says
nothing about dimensionality. ``percolation_thresholds`` therefore adds the
edges in increasing cost to a union–find that tracks each site's lattice
offset from its component root; a cycle closing with a non-zero offset is a
winding vector, and the rank of a component's winding vectors is the number
of independent directions in which it percolates. That is exact, O(E log E),
and testable on hand-built graphs without a structure.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
from pydantic import BaseModel, Field, field_validator

DIMENSIONS = ("1d", "2d", "3d")

MAX_HOP_LENGTH = 5.0
"""Å: the longest Li-Li hop taken as one elementary jump when the cutoff is raised towards 3D percolation.

Nearest Li-Li distances in the Li-In and Li-Sn phases are 2.7-3.4 Å and
bcc Li's second shell is 3.4 Å; a 5 Å hop passes through a neighbour's site.
"""


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
    warnings: list[str] = Field(default_factory=list)


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


# --------------------------------------------------------------------------- percolation


class _WindingUnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))
        self.offset = [np.zeros(3, dtype=int) for _ in range(n)]  # (x, 0) ~ (parent, offset)
        self.windings: list[list[np.ndarray]] = [[] for _ in range(n)]

    def find(self, x: int) -> tuple[int, np.ndarray]:
        path = []
        while self.parent[x] != x:
            path.append(x)
            x = self.parent[x]
        root, acc = x, np.zeros(3, dtype=int)
        for node in reversed(path):  # compress, accumulating offsets from the root down
            acc = acc + self.offset[node]
            self.parent[node], self.offset[node] = root, acc.copy()
        return root, (self.offset[path[0]] if path else np.zeros(3, dtype=int))

    @staticmethod
    def _add(basis: list[np.ndarray], vec: np.ndarray) -> list[np.ndarray]:
        if not vec.any() or len(basis) == 3:
            return basis
        if np.linalg.matrix_rank(np.array([*basis, vec], dtype=float)) > len(basis):
            return [*basis, vec]
        return basis

    def union(self, i: int, j: int, image) -> int:
        """Join (i, cell 0) with (j, cell ``image``); return the rank of the joined component."""
        ri, oi = self.find(i)
        rj, oj = self.find(j)
        image = np.asarray(image, dtype=int)
        if ri == rj:
            self.windings[ri] = self._add(self.windings[ri], image + oj - oi)
            return len(self.windings[ri])
        self.parent[rj], self.offset[rj] = ri, oi - image - oj
        for w in self.windings[rj]:
            self.windings[ri] = self._add(self.windings[ri], w)
        self.windings[rj] = []
        return len(self.windings[ri])


def _finite(cost) -> bool:
    return cost is not None and math.isfinite(cost)


def percolation_analysis(n_sites: int, edges) -> tuple[dict[str, float | None], dict[str, int | None]]:
    """Thresholds per dimension and the index (into ``edges``) of the edge that reached each."""
    thresholds: dict[str, float | None] = dict.fromkeys(DIMENSIONS)
    limiting: dict[str, int | None] = dict.fromkeys(DIMENSIONS)
    uf = _WindingUnionFind(n_sites)
    reached = 0
    order = sorted((k for k, e in enumerate(edges) if _finite(e[3])), key=lambda k: edges[k][3])
    for k in order:
        i, j, image, cost = edges[k]
        rank = uf.union(i, j, image)
        while reached < rank:
            thresholds[DIMENSIONS[reached]], limiting[DIMENSIONS[reached]] = float(cost), k
            reached += 1
        if reached == 3:
            break
    return thresholds, limiting


def percolation_thresholds(n_sites: int, edges) -> dict[str, float | None]:
    """Lowest cost at which edges ``(i, j, image_of_j, cost)`` percolate in 1, 2 and 3 dimensions.

    ``None`` where the whole network does not reach that dimension; edges of
    cost ``None``/inf/nan are left out.
    """
    return percolation_analysis(n_sites, edges)[0]


def network_dimension(n_sites: int, edges) -> int:
    """Number of independent directions in which ``(i, j, image)`` edges percolate."""
    uf = _WindingUnionFind(n_sites)
    return max([uf.union(e[0], e[1], e[2]) for e in edges], default=0)


def geometric_dimension(network) -> int:
    """Dimension in which all the hops of a ``HopNetwork`` percolate, whatever their barriers."""
    return network_dimension(network.n_sites, graph_edges(network, {h.id: 0.0 for h in network.hops}))


def percolating_cutoff(structure, species: str = "Li", limit: float = MAX_HOP_LENGTH, symprec: float = 0.1):
    """The shortest hop cutoff (Å) whose hops percolate in 3D, and the hop network at it.

    Candidates are the distinct ``species``-``species`` distances from
    DistinctPathFinder's choice up to ``limit``; the dimension grows with the
    cutoff, so a bisection finds the shortest one reaching 3D. Where even
    ``limit`` does not reach 3D, the network at the longest candidate is
    returned; its dimension says so.

    Returns
    -------
    (float, HopNetwork, int)
        Cutoff, network and the dimension its hops reach.
    """
    from alloyflow.structures.migration import hop_network

    first = hop_network(structure, species, None, symprec=symprec)
    dim = geometric_dimension(first)
    if dim == 3 or first.max_length >= limit:
        return first.max_length, first, dim
    sites = [i for i, site in enumerate(structure) if site.species_string == species]
    sub = structure.copy()
    sub.remove_sites([i for i in range(len(structure)) if i not in set(sites)])
    dists = sorted({round(float(d), 3) for d in sub.distance_matrix.ravel() if first.max_length + 1e-3 < d <= limit}
                   | {round(float(n.nn_distance), 3) for nbrs in sub.get_all_neighbors(limit) for n in nbrs
                      if first.max_length + 1e-3 < n.nn_distance <= limit})
    if not dists:
        return first.max_length, first, dim
    best = (first.max_length, first, dim)
    lo, hi = 0, len(dists) - 1
    top = hop_network(structure, species, dists[hi], symprec=symprec)
    top_dim = geometric_dimension(top)
    if top_dim < 3:
        return dists[hi], top, top_dim
    best = (dists[hi], top, top_dim)
    while lo < hi:  # the shortest cutoff reaching 3D lies in dists[lo..hi]
        mid = (lo + hi) // 2
        net = hop_network(structure, species, dists[mid], symprec=symprec)
        d = geometric_dimension(net)
        if d == 3:
            best, hi = (dists[mid], net, d), mid
        else:
            lo = mid + 1
    return best


def hop_cost(forward: float | None, reverse: float | None) -> float | None:
    values = [v for v in (forward, reverse) if _finite(v)]
    return max(values) if values else None


def graph_edges(network, costs: dict[int, float | None]) -> list[tuple[int, int, tuple, float]]:
    """Costs of a ``HopNetwork``'s distinct hops put on every edge of its MigrationGraph."""
    graph = network.graph
    by_label = {h.graph_label: h.id for h in network.hops}
    for label, hop_id in by_label.items():
        cost = costs.get(hop_id)
        graph.add_data_to_similar_edges(label, {"barrier": cost if _finite(cost) else math.inf})
    graph.assign_cost_to_graph(["barrier"])
    return [(u, v, tuple(int(x) for x in d["to_jimage"]), float(d["cost"])) for u, v, d in graph.m_graph.graph.edges(data=True)]


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
        if _finite(hop.cost):
            hop.percolation_dim = network_dimension(network.n_sites, [e for e in edges if e[3] <= hop.cost])
    return result


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
        corrected_barriers={h.id: h.forward_barrier + corr for h in result.hops if _finite(h.forward_barrier)},
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
    flag = "" if hop.converged else " NOT CONVERGED"
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
                         f"screened ~{_mev(h.screened_estimate)}" if h.screened_only
                         else "yes" if h.converged else "NO"])
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
