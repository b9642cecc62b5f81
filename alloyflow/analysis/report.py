"""The study's ``report.md``: tables and plots from stored results, plus a comparison.

The comparison section puts the reference study's published values (from
``reference_data``) beside this run's, each column labelled with the method
that produced it; an ML barrier is never presented as a DFT one.
"""

from __future__ import annotations


from pymatgen.core import Composition

from alloyflow.analysis.thermo import format_thermo_table
from alloyflow.analysis.reference_data import (
    REFERENCE_BARRIERS,
    REFERENCE_CITATION,
    REFERENCE_CRYSTAL_SYSTEMS,
    REFERENCE_HULL_MINIMUM,
    REFERENCE_STABLE,
    REFERENCE_VOLTAGE,
)


def _fmt(value, scale=1.0, digits=1, none="–"):
    if value is None:
        return none
    return f"{value * scale:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def hull_section(system: str, hull, voltage) -> str:
    rows = [
        [p.name, p.formula, p.status, _fmt(p.x_li, digits=3), _fmt(p.formation_energy_per_atom, 1000),
         _fmt(p.e_above_hull, 1000), "yes" if p.stable else ("below reference" if p.below_reference else ""),
         _fmt(p.volume_per_atom, digits=2),
         _fmt(p.volume_per_li, digits=2), _fmt(p.volume_expansion, 100, 0), "" if p.converged else "NO",
         _symmetry_cell(p)]
        for p in hull.phases
    ]
    if voltage is None:
        voltage_text = ["No stable Li compound on this hull: no voltage curve."]
    else:
        voltage_text = _voltage_text(voltage)
    parts = [
        f"## {system}",
        f"![hull]({system}/hull.png)" + (f" ![voltage]({system}/voltage.png)" if voltage else ""),
        "",
        table(["phase", "formula", "status", "x(Li)", "E_f (meV/at)", "E_hull (meV/at)", "stable",
                "V/atom (Å³)", "V/Li (Å³)", "ΔV/V(M) (%)", "unconverged", "space group"], rows),
        "",
        *([hull.reference_note[:1].upper() + hull.reference_note[1:] + ".", ""] if getattr(hull, "reference_note", "") else []),
        *predicted_structure_notes(hull),
        *voltage_text,
    ]
    if getattr(hull, "warnings", None):
        parts += ["", *[f"> warning: {w}" for w in hull.warnings]]
    return "\n".join(parts)


def _symmetry_cell(p) -> str:
    sg, cs = getattr(p, "space_group", ""), getattr(p, "crystal_system", "")
    return f"{sg} ({cs})" if sg else "–"


def predicted_structure_notes(hull) -> list[str]:
    """One line per predicted phase whose formula the reference study reports: same crystal system or not."""
    lines, seen = [], set()
    for p in sorted(hull.phases, key=lambda p: p.e_above_hull):
        want = REFERENCE_CRYSTAL_SYSTEMS.get(p.formula)
        if p.status != "predicted" or want is None or p.formula in seen or not getattr(p, "crystal_system", ""):
            continue
        seen.add(p.formula)
        same = p.crystal_system == want or {p.crystal_system, want} == {"trigonal", "rhombohedral"}
        verdict = ("the same crystal system" if same else
                   f"**not the reference's structure**: a {p.crystal_system} ordering found by the tie-line search")
        lines.append(f"- predicted {p.formula} ({p.name}, {1000 * p.e_above_hull:.1f} meV/atom above the hull): "
                     f"{p.space_group}, {p.crystal_system}; the reference's {p.formula} is {want} "
                     f"({REFERENCE_CITATION}): {verdict}.")
    return [*lines, ""] if lines else []


def _voltage_text(voltage) -> list[str]:
    steps = [[_fmt(s.x_start, digits=2), _fmt(s.x_end, digits=2), _fmt(s.voltage, digits=3), " + ".join(s.phases)]
             for s in voltage.steps]
    return [
        f"Nontopotactic voltage curve of Li in {voltage.host}: average {voltage.average_voltage:.3f} V over "
        f"{voltage.max_li_per_host:.2f} Li per {voltage.host}, {voltage.capacity_mAh_per_g:.0f} mAh/g of {voltage.host}.",
        "",
        table(["x start", "x end", "V vs Li/Li⁺", "two-phase region"], steps),
    ]


def _cn(cn) -> str:
    if not cn:
        return "–"
    get = cn.get if isinstance(cn, dict) else lambda k, d=None: getattr(cn, k, d)
    return f"{get('cn')} ({get('li', get('cn_li'))} Li, {get('m', get('cn_m'))} M)"


def _hop_get(hop, key, default=None):
    return hop.get(key, default) if isinstance(hop, dict) else getattr(hop, key, default)


def _host(hs) -> str:
    """The host-stability cell of the barrier table: yes, NO (with the smallest C eigenvalue), or why unchecked."""
    if hs is None:
        return "–"
    hs = hs if isinstance(hs, dict) else hs.model_dump()
    if hs.get("stable") is None:
        return "not checked"
    return "yes" if hs["stable"] else f"NO (min eig C {hs['min_eigenvalue_gpa']:.1f} GPa): metastable host"


SCREEN_NOTE = ("Screened only: every hop was first screened by single points on its unrelaxed IDPP path; a hop "
               "whose estimate, times the screening factor, lies at or above the highest percolation threshold of "
               "the converged hops cannot lower a threshold and got no band (`--screen`; off by default).")


def _converged_cell(hop) -> str:
    """yes, NO, "no saddle" (``band_shape``), or "screened only (~N meV estimate)" for a hop the
    screening rule left without a band."""
    if _hop_get(hop, "screened_only"):
        return f"screened only (estimate {_fmt(_hop_get(hop, 'screened_estimate'), 1000, 0)})"
    if _hop_get(hop, "no_saddle"):
        return "no saddle (no barrier)"
    return "yes" if _hop_get(hop, "converged") else "NO"


def barrier_section(barriers) -> str:
    rows, perc_rows, failed = [], [], []
    for res in barriers:
        if getattr(res, "error", None):
            failed.append(f"- **{res.phase}** ({res.mode}): no barriers, its hop planning failed: {res.error}. "
                          "The next run of the study computes it again.")
            continue
        perc = res.percolation if isinstance(res.percolation, dict) else res.percolation.model_dump()
        for hop in res.hops:
            rows.append([res.phase + (f" ({res.mode})" if res.mode != "vacancy" else ""), _hop_get(hop, "id"), _fmt(_hop_get(hop, "length"), digits=2),
                         _cn(_hop_get(hop, "cn_initial")), _cn(_hop_get(hop, "cn_final")),
                         _fmt(_hop_get(hop, "forward_barrier"), 1000, 0), _fmt(_hop_get(hop, "reverse_barrier"), 1000, 0),
                         _converged_cell(hop)])
        sc = res.supercell if isinstance(res.supercell, dict) else res.supercell.model_dump()
        left_out = list(getattr(res, "hops_left_out", None) or [])
        bound = "≤ " if left_out else ""
        name = (res.display_name if hasattr(res, "display_name") else res.phase) + (
            f" ({res.mode})" if res.mode != "vacancy" else "")
        perc_rows.append([name, sc.get("natoms"), _fmt(sc.get("min_image_distance"), digits=1),
                          *((bound + _fmt(perc.get(d), 1000, 0)) if perc.get(d) is not None else "–"
                            for d in ("1d", "2d", "3d")),
                          ", ".join(map(str, left_out)) or "none", _host(getattr(res, "host_stability", None))])
    return "\n".join([
        "## Li migration barriers (CI-NEB: vacancy, interstitial and dilute-Li mechanisms)",
        "",
        "Coordination of the departing Li versus barrier (meV):",
        "",
        table(["phase", "hop", "length (Å)", "CN initial", "CN final", "forward", "reverse", "converged"], rows),
        "",
        *([SCREEN_NOTE, ""] if any(getattr(res, "screening", None) for res in barriers) else []),
        "Lowest barrier at which the hop network percolates (meV; ≤: an upper bound, some distinct hops "
        "were not computed):",
        "",
        table(["phase", "supercell atoms", "min image distance (Å)", "1D", "2D", "3D", "hops left out",
               "host stable (Born)"], perc_rows),
        "",
        "Lowest 1D percolating barrier per mechanism (meV) and the lower one, with its mechanism:",
        "",
        table(["phase", "mechanisms computed", "lowest"], lowest_by_mechanism(barriers)),
        *(["", "Phases that failed (the rest of the study went on without them):", "", *failed] if failed else []),
    ])


def lowest_by_mechanism(barriers) -> list[list[str]]:
    """Per phase: the lowest 1D percolating barrier of each mechanism computed, and the lowest overall with its mechanism."""
    by_phase: dict[str, dict[str, float | None]] = {}
    for res in barriers:
        perc = res.percolation if isinstance(res.percolation, dict) else res.percolation.model_dump()
        by_phase.setdefault(res.phase, {})[res.mode] = perc.get("1d")
    rows = []
    for phase, modes in by_phase.items():
        finite = {m: v for m, v in modes.items() if v is not None}
        best = min(finite, key=finite.get) if finite else None
        cells = "; ".join(f"{m} {_fmt(v, 1000, 0)}" for m, v in modes.items())
        rows.append([phase, cells, f"{_fmt(finite[best], 1000, 0)} ({best})" if best else "–"])
    return rows


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def comparison_section(hulls, voltages, barriers, label: str) -> str:
    rows = []
    for system, hull in hulls.items():
        ref_stable = REFERENCE_STABLE.get(system)
        if ref_stable is None:
            continue
        ours = sorted(f for f in hull.stable_set if len(Composition(f).elements) > 1)
        ref_min = REFERENCE_HULL_MINIMUM[system]
        rows.append([f"{system} stable set", ", ".join(ours), ", ".join(ref_stable)])
        refs = getattr(hull, "references", None) or {}
        host_ref = refs.get(hull.host)
        rows.append([f"{system} hull minimum (meV/at)",
                     f"{hull.hull_minimum.formula} {hull.hull_minimum.formation_energy_per_atom * 1000:.1f}"
                     + (f" ({hull.host} reference: {host_ref})" if host_ref and host_ref != hull.host else ""),
                     f"{ref_min[0]} {ref_min[1] * 1000:.1f}"])
        v = voltages[system]
        ref_v = REFERENCE_VOLTAGE[system]
        if v is not None:
            rows.append([f"{system} average voltage / max Li per M",
                         f"{v.average_voltage:.2f} V / {v.max_li_per_host:.2f}", f"{ref_v[1]:.2f} V / {ref_v[0]:.2f}"])
    ours_b, ref_b = [], []
    for res in barriers:
        if res.mode not in ("vacancy", "dilute-substitution"):
            continue  # the reference study's barriers are vacancy (and substitutional dilute-Li) hops: like with like
        perc = res.percolation if isinstance(res.percolation, dict) else res.percolation.model_dump()
        lowest = next((perc.get(d) for d in ("1d", "2d", "3d") if perc.get(d) is not None), None)
        # a predicted structure of a reference formula (the search's Li13In3) is compared by its formula
        predicted = getattr(res, "phase_status", "") == "predicted"
        ref = REFERENCE_BARRIERS.get(res.phase, REFERENCE_BARRIERS.get(res.formula) if predicted else None)
        name = f"{res.formula} (predicted: {res.phase})" if predicted and res.formula != res.phase else res.phase
        rows.append([f"{name} lowest percolating barrier, {res.mode} (meV)", _fmt(lowest, 1000, 0),
                     _fmt(ref, 1000, 0)])
        if lowest is not None and ref is not None:
            ours_b.append(lowest)
            ref_b.append(ref)
    rho = _spearman(ours_b, ref_b)
    text = [
        "## Comparison with the reference study",
        "",
        f"This run: **{label}**. Reference: {REFERENCE_CITATION}. A reference phase absent from this run's "
        "candidate set (the bundled library lacks Li13In3, Li2In, Li5In4 and tetragonal LiIn3; `alloyflow search` "
        "adds candidates) cannot be on its hull. Compounds only; elements are always stable.",
        "",
        table(["quantity", f"this run ({label})", "reference study (PBE)"], rows),
    ]
    if rho is not None:
        text += ["", f"Spearman rank correlation of the lowest percolating barriers over {len(ours_b)} phases: {rho:.2f}."]
    return "\n".join(text)


def thermo_section(thermo: dict) -> str:
    """Finite-temperature tables (``ThermoResult`` per system) with their plots."""

    parts = ["## Finite temperature (harmonic phonons, fixed 0 K volume)", ""]
    for system, result in thermo.items():
        parts += [f"![hull at T]({system}/thermo/hull_T.png) ![voltage at T]({system}/thermo/voltage_T.png)", "",
                  format_thermo_table(result), ""]
    return "\n".join(parts)


