"""Percolation of a phase's Li hop network: thresholds per dimension and the cutoff that reaches 3D.

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

import math

import numpy as np

DIMENSIONS = ("1d", "2d", "3d")

MAX_HOP_LENGTH = 5.0
"""Å: the longest Li-Li hop taken as one elementary jump when the cutoff is raised towards 3D percolation.

Nearest Li-Li distances in the Li-In and Li-Sn phases are 2.7-3.4 Å and
bcc Li's second shell is 3.4 Å; a 5 Å hop passes through a neighbour's site.
"""

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


def finite(cost) -> bool:
    """A cost that is a finite number (not None, inf or nan)."""
    return cost is not None and math.isfinite(cost)


def percolation_analysis(n_sites: int, edges) -> tuple[dict[str, float | None], dict[str, int | None]]:
    """Thresholds per dimension and the index (into ``edges``) of the edge that reached each."""
    thresholds: dict[str, float | None] = dict.fromkeys(DIMENSIONS)
    limiting: dict[str, int | None] = dict.fromkeys(DIMENSIONS)
    uf = _WindingUnionFind(n_sites)
    reached = 0
    order = sorted((k for k, e in enumerate(edges) if finite(e[3])), key=lambda k: edges[k][3])
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
    values = [v for v in (forward, reverse) if finite(v)]
    return max(values) if values else None


def graph_edges(network, costs: dict[int, float | None]) -> list[tuple[int, int, tuple, float]]:
    """Costs of a ``HopNetwork``'s distinct hops put on every edge of its MigrationGraph."""
    graph = network.graph
    by_label = {h.graph_label: h.id for h in network.hops}
    for label, hop_id in by_label.items():
        cost = costs.get(hop_id)
        graph.add_data_to_similar_edges(label, {"barrier": cost if finite(cost) else math.inf})
    graph.assign_cost_to_graph(["barrier"])
    return [(u, v, tuple(int(x) for x in d["to_jimage"]), float(d["cost"])) for u, v, d in graph.m_graph.graph.edges(data=True)]
