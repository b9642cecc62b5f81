"""Li diffusivities from barriers, hop lengths and attempt frequencies (no force calls).

    D(T) = a² · ν · exp(−Eₐ / k_B T) / (2d)            [cm²/s]

with ``a`` the hop length, ``ν`` the attempt frequency of that hop (Vineyard,
``alloyflow.workflows.jobs.attempt``, or a fixed value), ``Eₐ`` the barrier and
``d`` the dimension of the network the hops percolate in. This is the
Einstein–Smoluchowski diffusivity of a walker that makes ``Γ = ν·exp(−Eₐ/kT)``
uncorrelated jumps of length ``a`` per second on a ``d``-dimensional network.

What the number is, precisely: the Li tracer diffusivity by a vacancy
mechanism is ``D* = f · c_v · z · Γ a² / (2d)`` (``f`` correlation factor,
``c_v`` vacancy site fraction, ``z`` equivalent jump targets). Here ``f = 1``
(uncorrelated hops), ``c_v`` is left out, so the number is a tracer
diffusivity *per unit vacancy site fraction* (multiply by c_v for D*), and
``z = 1`` (one hop channel; ν is the rate of one specific jump, so a phase
whose Li have z equivalent percolating jumps diffuses z times faster). One
barrier per network, the percolation threshold, stands for all hops of the
network (the slowest hop that is still needed), harmonic transition-state
theory (no anharmonicity, no quantum corrections). It is not a chemical
diffusivity: a measured chemical D̃ = D_Li · Φ carries the thermodynamic
factor Φ = d ln a_Li / d ln c_Li, which in line compounds reaches 10–100+.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from alloyflow.analysis.migration import BarrierResult
from alloyflow.analysis.percolation import DIMENSIONS

K_B_EV = 8.617333262e-5
"""Boltzmann constant, eV/K (CODATA 2018)."""

A2_TO_CM2 = 1e-16

WEN_HUGGINS_T = 688.15
"""415 °C, the temperature of Wen & Huggins' molten-salt (LiCl–KCl) Li–Sn and Li–In measurements."""

DEFAULT_TEMPERATURES = (300.0, WEN_HUGGINS_T)

ASSUMPTIONS = (
    "D = a^2 nu exp(-Ea/kT) / (2d): uncorrelated vacancy hops (f = 1), one hop channel (z = 1), "
    "no vacancy concentration factor (a tracer D per unit vacancy site fraction), the percolation-threshold "
    "barrier for the whole network, harmonic transition-state theory; not a chemical diffusivity "
    "(no thermodynamic factor)"
)


def _check_positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def diffusivity(
    barrier_ev: float, hop_length_A: float, attempt_frequency_hz: float, dimension: int, temperature_k: float
) -> float:
    """a²·ν·exp(−Eₐ/k_BT)/(2d) in cm²/s (see the module docstring for what it means)."""
    try:
        barrier = float(barrier_ev)
    except (TypeError, ValueError):
        raise ValueError(f"barrier_ev must be a number in eV, got {barrier_ev!r}") from None
    if not math.isfinite(barrier) or barrier < 0:
        raise ValueError(f"barrier_ev must be finite and >= 0 eV, got {barrier_ev}")
    a = _check_positive("hop_length_A", hop_length_A)
    nu = _check_positive("attempt_frequency_hz", attempt_frequency_hz)
    t = _check_positive("temperature_k", temperature_k)
    if dimension not in (1, 2, 3):
        raise ValueError(f"dimension must be 1, 2 or 3, got {dimension!r}")
    return a * a * A2_TO_CM2 * nu * math.exp(-barrier / (K_B_EV * t)) / (2 * dimension)


class DiffusivityResult(BaseModel):
    """D(T) of one percolating network of one phase; D in cm²/s."""

    phase: str
    calculator: dict = Field(default_factory=dict, description="provenance of the barrier")
    network: str = Field(description="'1d', '2d' or '3d': the percolation threshold used")
    dimension: int
    barrier_ev: float = Field(description="percolation threshold of that dimension, eV")
    hop_id: int = Field(description="the hop that sets the threshold")
    hop_length_A: float
    attempt_frequency_hz: float
    attempt_frequency_source: str = Field(description="'vineyard', 'fixed' or 'given'")
    temperatures_k: list[float]
    diffusivities_cm2_s: list[float]
    assumptions: str = ASSUMPTIONS
    warnings: list[str] = Field(default_factory=list)

    def at(self, temperature_k: float) -> float:
        """D at one of the computed temperatures."""
        for t, d in zip(self.temperatures_k, self.diffusivities_cm2_s):
            if abs(t - temperature_k) < 1e-6:
                return d
        raise KeyError(f"no diffusivity at {temperature_k} K; computed at {self.temperatures_k}")


def _frequency_for(hop_id: int, attempt_frequency_hz) -> tuple[float, str, list[str]]:
    """(ν, source, warnings) for one hop from a number or a hop id -> number/document mapping."""
    if isinstance(attempt_frequency_hz, Mapping):
        if hop_id not in attempt_frequency_hz and str(hop_id) in attempt_frequency_hz:  # keys read back from JSON
            hop_id_key = str(hop_id)
        else:
            hop_id_key = hop_id
        if hop_id_key not in attempt_frequency_hz:
            raise ValueError(
                f"no attempt frequency for hop {hop_id}, which sets a percolation threshold; "
                f"given for hops {sorted(attempt_frequency_hz)}"
            )
        value = attempt_frequency_hz[hop_id_key]
        if hasattr(value, "nu_hz"):  # an AttemptFrequencyDocument
            mode = getattr(value, "mode", "vineyard")
            source = "fixed" if mode == "fixed" else "vineyard"
            flags = [f"hop {hop_id} attempt frequency: {f}" for f in getattr(value, "flags", [])]
            return _check_positive(f"attempt frequency of hop {hop_id}", value.nu_hz), source, flags
        return _check_positive(f"attempt frequency of hop {hop_id}", value), "given", []
    return _check_positive("attempt_frequency_hz", attempt_frequency_hz), "given", []


def diffusivities_for(
    result: BarrierResult,
    attempt_frequency_hz: float | Mapping,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
) -> list[DiffusivityResult]:
    """One ``DiffusivityResult`` per dimension the phase's computed hops percolate in.

    ``attempt_frequency_hz``: one number for every hop, or a mapping hop id ->
    Hz or -> ``AttemptFrequencyDocument`` (``run_attempt_frequencies``); the
    mapping must hold the hops in ``result.percolation_hops``. A phase whose
    hops do not percolate gives an empty list.
    """
    temps = [_check_positive("temperature", t) for t in temperatures]
    if not temps:
        raise ValueError("no temperatures given")
    hops = {h.id: h for h in result.hops}
    out = []
    for k, network in enumerate(DIMENSIONS, start=1):
        barrier = result.percolation.get(network)
        if barrier is None:
            continue
        hop_id = result.percolation_hops.get(network)
        if hop_id is None or hop_id not in hops:
            raise ValueError(f"{result.phase}: the {network} threshold names no computed hop (percolation_hops={result.percolation_hops})")
        hop = hops[hop_id]
        nu, source, warns = _frequency_for(hop_id, attempt_frequency_hz)
        if result.calculator.get("kind") == "test":
            warns.append("barrier from a test potential; not for science")
        warns += [w for w in hop.warnings]
        out.append(
            DiffusivityResult(
                phase=result.phase,
                calculator=result.calculator,
                network=network,
                dimension=k,
                barrier_ev=barrier,
                hop_id=hop_id,
                hop_length_A=hop.length,
                attempt_frequency_hz=nu,
                attempt_frequency_source=source,
                temperatures_k=temps,
                diffusivities_cm2_s=[diffusivity(barrier, hop.length, nu, k, t) for t in temps],
                warnings=warns,
            )
        )
    return out


def format_diffusivity_table(results: Sequence[DiffusivityResult]) -> str:
    """Plain-text table: phase, network, barrier, hop, ν, D at each temperature."""
    temps = sorted({t for r in results for t in r.temperatures_k})
    head = ["phase", "net", "Ea (meV)", "a (Å)", "nu (THz)", "nu from"] + [f"D({t:g} K) cm²/s" for t in temps]
    rows = []
    for r in results:
        d = {t: v for t, v in zip(r.temperatures_k, r.diffusivities_cm2_s)}
        rows.append([r.phase, r.network.upper(), f"{1000 * r.barrier_ev:.0f}", f"{r.hop_length_A:.2f}",
                     f"{r.attempt_frequency_hz / 1e12:.2f}", r.attempt_frequency_source]
                    + [f"{d[t]:.2e}" if t in d else "–" for t in temps])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    labels = sorted({r.calculator.get("label", r.calculator.get("name", "?")) for r in results})
    return "\n".join([f"Li diffusivity per unit vacancy fraction [{', '.join(labels)}]", line(head),
                      line(["-" * w for w in widths]), *[line(r) for r in rows], f"({ASSUMPTIONS})"])
