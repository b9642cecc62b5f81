"""Finite-temperature thermodynamics from harmonic phonons: F_vib, G_f(T), hull and voltage at T.

Model (stated in every result): harmonic phonons at the fixed 0 K volume, so
G(T) ≈ F(T) = E0 + F_vib(T) per atom (no thermal expansion, no
anharmonicity, no configurational or electronic entropy; pV is negligible for
solids at ambient pressure). The hull at T is pymatgen's ``PhaseDiagram`` on
entries whose energies are E0 + F_vib(T) (``build_hull``), the voltage curve
at T is ``voltage_profile`` on the same entries.

Phases with imaginary modes are kept and flagged: their F_vib uses the real
modes only (modes at or below ``cutoff_thz`` are left out, as phonopy does),
which is an estimate, not a free energy of a stable crystal; the tables mark
them with "imag.".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from alloyflow.analysis.hull import HullResult, build_hull, entries_from_documents, phase_name
from alloyflow.analysis.voltage import VoltageResult, voltage_profile

KB_EV = 8.617333262e-5  # Boltzmann constant, eV/K
H_EV_THZ = 4.135667696e-3  # Planck constant, eV per THz
DEFAULT_CUTOFF_THZ = 1e-3
TEMPERATURES_FOR_D = (300.0, 688.15)  # K: room temperature and 415 °C


def mode_free_energy(nu_thz, temperature: float):
    """Helmholtz free energy (eV) of harmonic modes of frequency ``nu_thz`` at ``temperature`` K.

    F = hν/2 + kT ln(1 − exp(−hν/kT)) = kT ln(2 sinh(hν/2kT)); at 0 K, hν/2.
    """
    e = H_EV_THZ * np.asarray(nu_thz, dtype=float)
    if temperature <= 0:
        return 0.5 * e
    x = e / (KB_EV * temperature)
    return 0.5 * e + KB_EV * temperature * np.log1p(-np.exp(-x))


def harmonic_properties(frequencies, weights, natoms: int, temperatures,
                        cutoff_thz: float = DEFAULT_CUTOFF_THZ) -> dict:
    """Harmonic F_vib (eV/atom), S and C_v (k_B/atom) and the ZPE (eV/atom) from mesh frequencies.

    ``frequencies`` is [q-point][mode] in THz (imaginary as negative),
    ``weights`` the q-point multiplicities, ``natoms`` the atoms of the cell the
    modes belong to. Modes at or below ``cutoff_thz`` (Γ acoustic, imaginary)
    are left out.
    """
    freqs = np.atleast_2d(np.asarray(frequencies, dtype=float))
    w = np.asarray(weights, dtype=float)
    if freqs.shape[0] != w.shape[0]:
        raise ValueError(f"{freqs.shape[0]} q-points but {w.shape[0]} weights")
    norm = w.sum() * natoms
    real = freqs > cutoff_thz
    wm = np.broadcast_to(w[:, None], freqs.shape)[real]
    e = H_EV_THZ * freqs[real]
    temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
    f, s, cv = np.zeros(len(temps)), np.zeros(len(temps)), np.zeros(len(temps))
    zpe = float((wm * 0.5 * e).sum() / norm)
    for i, t in enumerate(temps):
        if t <= 0:
            f[i] = zpe
            continue
        x = e / (KB_EV * t)
        with np.errstate(over="ignore"):
            em1 = np.expm1(x)
            f[i] = (wm * (0.5 * e + KB_EV * t * np.log1p(-np.exp(-x)))).sum() / norm
            s[i] = (wm * (x / em1 - np.log1p(-np.exp(-x)))).sum() / norm
            cv_terms = np.where(x < 500, x**2 * np.exp(np.minimum(x, 500)) / em1**2, 0.0)
        cv[i] = (wm * cv_terms).sum() / norm
    return {"temperatures": temps, "free_energy": f, "entropy": s, "heat_capacity": cv,
            "zero_point_energy": zpe, "n_modes_excluded": int((~real).sum())}


# --------------------------------------------------------------------------- entries at T


def free_energy_entries(entries: Sequence, phonon_docs: dict, temperature: float):
    """Entries with energy (E0 + F_vib(T)) per atom × atoms; returns (entries, missing names).

    ``entries`` are hull entries (``ComputedStructureEntry`` from
    ``entries_from_documents``, or relaxation documents); ``phonon_docs`` maps
    phase name to ``PhononDocument``. Phases without phonons are returned in
    ``missing`` and left out of the T entries (the caller reports them).
    """
    from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

    out, missing = [], []
    for e in entries:
        if not hasattr(e, "energy_per_atom") or not hasattr(e, "composition"):
            e = entries_from_documents([e])[0]
        name = phase_name(e)
        doc = phonon_docs.get(name)
        if doc is None:
            missing.append(name)
            continue
        if doc.formula != e.composition.reduced_formula:
            raise ValueError(f"phonons of {name} are for {doc.formula}, not {e.composition.reduced_formula}")
        f_vib = doc.free_energy_at(temperature)
        n = e.composition.num_atoms
        data = {**(e.data or {}), "f_vib": f_vib, "temperature": temperature, "imaginary_modes": doc.imaginary_modes}
        energy = (e.energy_per_atom + f_vib) * n
        if getattr(e, "structure", None) is not None:
            out.append(ComputedStructureEntry(e.structure, energy, entry_id=e.entry_id, data=data))
        else:
            out.append(ComputedEntry(e.composition, energy, entry_id=e.entry_id, data=data))
    return out, missing


class ThermoPhase(BaseModel):
    name: str
    formula: str
    x_li: float
    formation_energy_0K: float = Field(description="E_f at 0 K (static lattice), eV/atom")
    formation_free_energy: float | None = Field(default=None, description="G_f(T), eV/atom")
    f_vib: float | None = Field(default=None, description="F_vib(T), eV/atom")
    zero_point_energy: float | None = Field(default=None, description="eV/atom")
    e_above_hull_0K: float
    e_above_hull_T: float | None = None
    stable_0K: bool
    stable_T: bool | None = None
    imaginary_modes: bool | None = None
    min_frequency: float | None = Field(default=None, description="THz, lowest mesh/band mode")
    volume_expansion: float | None = Field(default=None, description="V per host atom / V(host) - 1")
    volume_change_per_li: float | None = Field(default=None, description="ΔV per inserted Li, Å³")
    bulk_modulus: float | None = Field(default=None, description="B (VRH), GPa")
    shear_modulus: float | None = Field(default=None, description="G (VRH), GPa")
    mechanically_stable: bool | None = None
    diffusivity: dict[str, float | None] = Field(default_factory=dict, description="D in cm²/s by temperature (K)")


class ThermoResult(BaseModel):
    """Per phase 0 K and finite-T numbers plus the two voltage curves; energies eV/atom."""

    system: str
    temperature: float
    calculator: dict
    method: str
    phases: list[ThermoPhase]
    stable_0K: list[str]
    stable_T: list[str]
    voltage_0K: VoltageResult | None = None
    voltage_T: VoltageResult | None = None
    phonon_cost: list[dict] = Field(default_factory=list)
    diffusion: list[dict] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def _voltage(entries, host: str, warnings: list[str], tag: str, references=None) -> VoltageResult | None:
    try:
        return voltage_profile(entries, host=host, references=references)
    except ValueError as exc:
        warnings.append(f"no voltage curve at {tag}: {exc}")
        return None


def volume_change_per_li(hull: HullResult) -> dict[str, float | None]:
    """ΔV per inserted Li (Å³) by phase name, from part B's ``volume_expansion_per_li`` on the hull's volumes."""
    from alloyflow.analysis.elastic import volume_expansion_per_li

    return {row.name: row.volume_per_li_added for row in volume_expansion_per_li(hull)}


def thermo_result(entries: Sequence, phonon_docs: dict, system: str, temperature: float = 300.0,
                  elastic: dict | None = None, diffusion: list | None = None,
                  references: dict | None = None) -> ThermoResult:
    """0 K and T hulls and voltage curves of ``entries`` with ``phonon_docs`` (by phase name).

    Both hulls use the phases that have phonons, so the two curves compare
    like with like; phases without phonons are listed in ``warnings``.
    ``elastic`` maps phase name to an elastic document (``bulk_modulus_vrh``,
    ``shear_modulus_vrh``, ``mechanically_stable``); ``diffusion`` is a list of
    dicts with ``phase`` and ``diffusivity`` ({T: D}). ``references``: elemental
    references chosen instead of each element's own phase, at 0 K and at T
    alike (``alloyflow.analysis.hull.reference_entries``).
    """
    t_entries, missing = free_energy_entries(entries, phonon_docs, temperature)
    warnings: list[str] = []
    if missing:
        warnings.append(f"no phonons for {', '.join(missing)}: left out of both hulls here")
    have = {phase_name(e) for e in t_entries}
    base = [e for e in entries if phase_name(e) in have]
    hull0 = build_hull(base, system, references)
    hull_t = build_hull(t_entries, system, references)
    warnings += [w for w in hull0.warnings if w not in warnings]
    if hull0.reference_note != hull_t.reference_note or references:
        warnings += [f"0 K: {hull0.reference_note}", f"{temperature:g} K: {hull_t.reference_note}"]
    imaginary = sorted(n for n, d in phonon_docs.items() if d.imaginary_modes and n in have)
    if imaginary:
        warnings.append(f"imaginary modes in {', '.join(imaginary)}: F_vib from their real modes only (flagged)")
    dv = volume_change_per_li(hull0)
    d_by_phase = {}  # the lowest-barrier percolating network of each phase; on a tie, the highest dimension
    for d in sorted(diffusion or [], key=lambda d: (-d.get("barrier_ev", 0.0), d.get("dimension", 0))):
        if d.get("mode", "vacancy") == "vacancy":
            d_by_phase[d["phase"]] = d.get("diffusivity", {})
    elastic = elastic or {}
    phases = []
    for p0 in hull0.phases:
        pt = next(p for p in hull_t.phases if p.name == p0.name)
        doc = phonon_docs[p0.name]
        el = elastic.get(p0.name)
        band_min = doc.min_frequency_band if doc.min_frequency_band is not None else doc.min_frequency_mesh
        phases.append(ThermoPhase(
            name=p0.name, formula=p0.formula, x_li=p0.x_li,
            formation_energy_0K=p0.formation_energy_per_atom, formation_free_energy=pt.formation_energy_per_atom,
            f_vib=doc.free_energy_at(temperature), zero_point_energy=doc.zero_point_energy,
            e_above_hull_0K=p0.e_above_hull, e_above_hull_T=pt.e_above_hull, stable_0K=p0.stable, stable_T=pt.stable,
            imaginary_modes=doc.imaginary_modes, min_frequency=min(doc.min_frequency_mesh, band_min),
            volume_expansion=p0.volume_expansion, volume_change_per_li=dv.get(p0.name),
            bulk_modulus=_get(el, "bulk_modulus_vrh"), shear_modulus=_get(el, "shear_modulus_vrh"),
            mechanically_stable=_get(el, "mechanically_stable"),
            diffusivity={str(k): v for k, v in d_by_phase.get(p0.name, {}).items()},
        ))
    calc = hull0.calculator
    return ThermoResult(
        system=hull0.system, temperature=temperature, calculator=calc,
        method=f"{calc.get('label', calc.get('name'))}, harmonic phonons at the 0 K volume (phonopy)",
        phases=phases, stable_0K=[p.name for p in hull0.phases if p.stable],
        stable_T=[p.name for p in hull_t.phases if p.stable],
        voltage_0K=_voltage(base, hull0.host, warnings, "0 K", references),
        voltage_T=_voltage(t_entries, hull0.host, warnings, f"{temperature:g} K", references),
        phonon_cost=[{"phase": n, "natoms": d.natoms, "supercell_natoms": d.supercell_natoms,
                      "force_calls": d.n_force_calls, "seconds": d.elapsed_seconds} for n, d in phonon_docs.items()],
        diffusion=list(diffusion or []),
        warnings=warnings,
    )


def _get(doc, key):
    if doc is None:
        return None
    return doc.get(key) if isinstance(doc, dict) else getattr(doc, key, None)


# --------------------------------------------------------------------------- tables


def _f(value, scale=1.0, digits=1, none="–"):
    return none if value is None else f"{value * scale:.{digits}f}"


def _d(value):
    return "–" if value is None else f"{value:.1e}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _t_label(kelvin) -> str:
    k = float(kelvin)
    return f"{k:g} K" if abs(k - 273.15 - round(k - 273.15)) > 1e-6 else f"{k - 273.15:.0f} °C"


def phase_rows(result: ThermoResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-phase table (meV/atom, GPa, Å³, cm²/s)."""
    t = f"{result.temperature:g} K"
    temps = sorted({k for p in result.phases for k in p.diffusivity}, key=float)
    header = ["phase", "x(Li)", "E_f 0 K", f"G_f {t}", f"F_vib {t}", "ZPE", "E_hull 0 K", f"E_hull {t}",
              "imag.", "min ν (THz)", "B (GPa)", "G (GPa)", "ΔV/Li (Å³)"] + [f"D {_t_label(k)}" for k in temps]
    rows = []
    for p in result.phases:
        rows.append([p.name, _f(p.x_li, digits=3), _f(p.formation_energy_0K, 1000), _f(p.formation_free_energy, 1000),
                     _f(p.f_vib, 1000), _f(p.zero_point_energy, 1000), _f(p.e_above_hull_0K, 1000),
                     _f(p.e_above_hull_T, 1000), "imag." if p.imaginary_modes else "",
                     _f(p.min_frequency, digits=2), _f(p.bulk_modulus),
                     _f(p.shear_modulus) + ("*" if p.mechanically_stable is False else ""),
                     _f(p.volume_change_per_li, digits=1)] + [_d(p.diffusivity.get(k)) for k in temps])
    return header, rows


def _voltage_rows(v0: VoltageResult | None, vt: VoltageResult | None) -> list[list[str]]:
    rows = []
    for tag, v in (("0 K", v0), ("T", vt)):
        if v is None:
            continue
        for s in v.steps:
            rows.append([tag, f"{s.x_start:.2f}", f"{s.x_end:.2f}", f"{s.voltage:.3f}", " + ".join(s.phases)])
        rows.append([tag, "average", f"{v.max_li_per_host:.2f}", f"{v.average_voltage:.3f}", ""])
    return rows


def format_thermo_table(result: ThermoResult) -> str:
    """Markdown: the per-phase table, the voltage steps at 0 K and T, diffusivities, warnings."""
    t = f"{result.temperature:g} K"
    header, rows = phase_rows(result)
    parts = [
        f"### {result.system} at {t} — {result.method}",
        "",
        f"Energies in meV/atom. E_f: static-lattice formation energy; G_f: formation free energy with harmonic "
        f"F_vib at the 0 K volume (no thermal expansion); 'imag.': imaginary modes below "
        f"{IMAG_NOTE}, F_vib from the real modes only. B, G: Voigt-Reuss-Hill moduli (* fails the Born "
        f"stability criteria); ΔV/Li: volume added per "
        f"Li relative to the host metal; D: Li diffusivity (cm²/s) per unit vacancy fraction of the "
        f"lowest-barrier percolating network (the highest dimension on a tie).",
        "",
        _md_table(header, rows),
        "",
        f"Stable at 0 K: {', '.join(result.stable_0K)}. Stable at {t}: {', '.join(result.stable_T)}.",
    ]
    vrows = _voltage_rows(result.voltage_0K, result.voltage_T)
    if vrows:
        vrows = [[t if r[0] == "T" else r[0], *r[1:]] for r in vrows]
        parts += ["", _md_table(["curve", "x start", "x end", "V vs Li/Li⁺", "two-phase region"], vrows)]
    if result.diffusion:
        drows = [[d["phase"] + ("" if d["mode"] == "vacancy" else f" ({d['mode']})"), d["network"].upper(),
                  f"{1000 * d['barrier_ev']:.0f}", f"{d['hop_length_A']:.2f}", f"{d['attempt_frequency_hz'] / 1e12:.2f}",
                  d["attempt_frequency_source"], *[_d(v) for v in d["diffusivity"].values()]]
                 for d in result.diffusion]
        temps = list(result.diffusion[0]["diffusivity"])
        parts += ["", _md_table(["phase", "network", "Ea (meV)", "a (Å)", "ν (THz)", "ν from",
                                 *[f"D {_t_label(k)} (cm²/s)" for k in temps]], drows),
                  "", f"Diffusivity assumptions: {result.diffusion[0]['assumptions']}."]
    if result.warnings:
        parts += ["", *[f"> warning: {w}" for w in result.warnings]]
    return "\n".join(parts)


IMAG_NOTE = "−0.1 THz (Γ acoustic modes excluded)"
