"""Which hops need a converged CI-NEB for exact percolation thresholds, given cheap estimates of all (pure).

A percolation threshold is the lowest cost at which the hops percolate in 1,
2 or 3 dimensions. Adding a hop whose barrier is at least the current
threshold cannot lower that threshold. So once the converged hops reach the
network's full dimension D at threshold T_D, an unconverged hop can matter
only if its barrier could lie below T_D; the thresholds of lower dimensions
are at most T_D, so they are then exact too.

The screen (``alloyflow.workflows.jobs.screen``) gives an estimate S of each
hop's cost but no bound. A hop is taken to lie above T_D when
``SCREEN_FACTOR * S >= T_D``, where ``SCREEN_FACTOR`` is the smallest ratio
of converged to screened cost measured over the reference phases' hops,
with a margin (``benchmarks/hop_screening.py``), and at most ``PHASE_MARGIN``
times the smallest such ratio among the phase's own converged hops. The rule converges, in
rounds, the hops of lowest estimate until the converged hops reach D, then
every hop the factor cannot exclude; each round can only lower T_D, so it
ends after at most one extra round in practice and after all hops at worst.
"""

from __future__ import annotations

import math

from alloyflow.analysis.percolation import graph_edges, network_dimension, percolation_analysis

SCREEN_FACTOR = 0.15
"""Lower bound of (converged cost) / (screened estimate) that the rule assumes.

Measured on SevenNet-0 over the study's hops (``benchmarks/hop_screening.py``,
docs/performance.md): the ratio ranged from 0.21 (B32 LiIn, whose vacancy
cage collapses on relaxation; bcc Li 0.33, the ten Li13In3 hops 0.44-1.09)
up to 4.5 (an interstitial Li whose unrelaxed void is far too high in
energy: an underestimate, which only makes the rule converge the hop).
0.15 is 0.75 x the smallest ratio measured."""


PHASE_MARGIN = 0.75
"""The factor is also at most this times the smallest converged/screened ratio among the phase's own
converged hops, so a host whose screens overestimate more than the measured set's gets a smaller factor."""


def effective_factor(screened: dict[int, float | None], converged: dict[int, float | None],
                     factor: float = SCREEN_FACTOR) -> float:
    """``factor``, lowered to ``PHASE_MARGIN`` x the smallest converged/screened ratio seen in this phase."""
    ratios = [converged[i] / screened[i] for i in converged
              if _finite(converged[i]) and _finite(screened.get(i)) and screened[i] > 0]
    return min([factor, *(PHASE_MARGIN * r for r in ratios)])


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def converged_threshold(network, converged: dict[int, float | None]) -> tuple[int, float | None]:
    """(dimension reached, its threshold) by the converged hops alone (None costs left out)."""
    edges = graph_edges(network, {k: v for k, v in converged.items() if _finite(v)})
    thresholds, _ = percolation_analysis(network.n_sites, edges)
    reached = [d for d, key in enumerate(("1d", "2d", "3d"), start=1) if thresholds[key] is not None]
    if not reached:
        return 0, None
    return reached[-1], thresholds[("1d", "2d", "3d")[reached[-1] - 1]]


def hops_to_converge(network, screened: dict[int, float | None], converged: dict[int, float | None],
                     factor: float = SCREEN_FACTOR) -> list[int]:
    """The hop ids to converge next; empty when the thresholds are exact under the factor's assumption.

    Parameters
    ----------
    network : HopNetwork
        All distinct hops within the cutoff (``plan_hops(...).network``).
    screened : dict
        Hop id -> screened cost estimate (eV; None where the screen failed: such a hop is always converged).
    converged : dict
        Hop id -> converged cost (eV) of the hops done so far; None for a hop that gave no barrier.
    factor : float
        A hop whose ``factor * estimate`` is at least the threshold is left out; the phase's own
        converged hops can lower it (``effective_factor``).
    """
    if not 0 < factor <= 1:
        raise ValueError(f"the screening factor must lie in (0, 1], got {factor}")
    ids = [h.id for h in network.hops]
    pending = [i for i in ids if i not in converged]
    if not pending:
        return []
    failed = sorted(i for i in pending if not _finite(screened.get(i)))
    if failed:
        return failed
    full = network_dimension(network.n_sites, graph_edges(network, dict.fromkeys(ids, 0.0)))
    if full == 0:  # no threshold to protect: the hops are all the result has
        return sorted(pending)
    dim, threshold = converged_threshold(network, converged)
    if dim < full:
        # the cheapest-looking pending hops until the converged ones and they reach the full dimension
        order = sorted(pending, key=lambda i: (screened[i], i))
        chosen: list[int] = []
        known = {k: v for k, v in converged.items() if _finite(v)}
        for i in order:
            chosen.append(i)
            trial = {**known, **{c: 0.0 for c in chosen}}
            edges = [e for e in graph_edges(network, trial) if math.isfinite(e[3])]
            if network_dimension(network.n_sites, edges) >= full:
                break
        return sorted(chosen)
    factor = effective_factor(screened, converged, factor)
    return sorted(i for i in pending if factor * screened[i] < threshold)
