"""Figures and files of a finite-temperature result: hull and voltage curve at 0 K beside T.

Same conventions as ``alloyflow.analysis.plots``: ``Figure`` with an Agg
canvas (no pyplot state), the calculator label and the method in the title.
"""

from __future__ import annotations


from matplotlib.figure import Figure

from alloyflow.analysis.plots import HOST_COLOURS, DEFAULT_COLOUR, figure_plot, save_plot, mathtext_formula
from alloyflow.analysis.thermo import ThermoResult

T_COLOUR = "tab:red"


def plot_thermo_hull(result: ThermoResult, path=None, ax=None) -> Figure:
    """Formation energy (0 K, static lattice) and formation free energy at T vs x(Li), meV/atom."""
    fig, ax = figure_plot(ax, (6.0, 4.5))
    colour = HOST_COLOURS.get(result.system.split("-")[-1], DEFAULT_COLOUR)
    t = f"{result.temperature:g} K"
    for key, stable_key, c, style, label in (
        ("formation_energy_0K", "stable_0K", colour, "-", "0 K (static lattice)"),
        ("formation_free_energy", "stable_T", T_COLOUR, "--", f"{t} (harmonic F_vib)"),
    ):
        pts = [(p.x_li, getattr(p, key) * 1000, p) for p in result.phases if getattr(p, key) is not None]
        on = sorted((x, y) for x, y, p in pts if getattr(p, stable_key))
        off = [(x, y) for x, y, p in pts if not getattr(p, stable_key)]
        ax.plot([x for x, _ in on], [y for _, y in on], style, color=c, lw=1.5, marker="o", ms=6,
                markeredgecolor="black", markeredgewidth=0.6, label=f"hull {label}")
        if off:
            ax.scatter([x for x, _ in off], [y for _, y in off], marker="x", s=35, color=c, linewidth=1.2)
    for p in result.phases:
        if 0 < p.x_li < 1 and p.stable_0K:
            ax.text(p.x_li, p.formation_energy_0K * 1000 - 12, mathtext_formula(p.formula), ha="center", va="top",
                    fontsize=8)
        if p.imaginary_modes and p.formation_free_energy is not None:
            ax.scatter([p.x_li], [p.formation_free_energy * 1000], marker="s", s=70, facecolor="none",
                       edgecolor="black", linewidth=0.8, zorder=4)
    if any(p.imaginary_modes for p in result.phases):
        ax.scatter([], [], marker="s", facecolor="none", edgecolor="black", label="imaginary modes (flagged)")
    ax.axhline(0.0, color="grey", lw=0.6)
    lowest = min([0.0] + [1000 * v for p in result.phases
                          for v in (p.formation_energy_0K, p.formation_free_energy) if v is not None])
    ax.set_ylim(bottom=1.15 * lowest - 10)  # room for the labels under the hull
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("Li atomic fraction")
    ax.set_ylabel("Formation (free) energy (meV/atom)")
    ax.set_title(f"{result.system} hull, 0 K and {t} — {result.calculator.get('label', '')}", fontsize=10)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    save_plot(fig, path)
    return fig


def plot_thermo_voltage(result: ThermoResult, path=None, ax=None) -> Figure:
    """Voltage step curves at 0 K and at T on one axis."""
    fig, ax = figure_plot(ax, (6.0, 4.5))
    colour = HOST_COLOURS.get(result.system.split("-")[-1], DEFAULT_COLOUR)
    t = f"{result.temperature:g} K"
    host = result.system.split("-")[-1]
    for v, c, style, label in ((result.voltage_0K, colour, "-", "0 K"), (result.voltage_T, T_COLOUR, "--", t)):
        if v is None:
            continue
        xs, vs = [], []
        for s in v.steps:
            xs += [s.x_start, s.x_end]
            vs += [s.voltage, s.voltage]
        ax.plot(xs, vs, style, color=c, lw=2.0, label=f"{label}: average {v.average_voltage:.3f} V")
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel(f"x in Li$_x${host} (Li per {host})")
    ax.set_ylabel("Voltage vs Li/Li$^+$ (V)")
    ax.set_title(f"Li in {host}, 0 K vs {t} — {result.calculator.get('label', '')}, harmonic", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    save_plot(fig, path)
    return fig


def plot_phonon_bands(doc, path=None, ax=None) -> Figure:
    """Dispersion along the stored high-symmetry path of a ``PhononDocument`` (THz; imaginary < 0)."""
    if doc.bands is None:
        raise ValueError(f"{doc.label}: no band path stored")
    fig, ax = figure_plot(ax, (6.0, 4.0))
    colour = T_COLOUR if doc.imaginary_modes else DEFAULT_COLOUR
    ticks, labels = [], []
    for (start, end), dist, freqs in zip(doc.bands.segments, doc.bands.distances, doc.bands.frequencies):
        ax.plot(dist, freqs, color=colour, lw=1.0)
        for x, name in ((dist[0], start), (dist[-1], end)):
            name = "Γ" if name.strip("\\") == "Gamma" else name
            if ticks and abs(ticks[-1] - x) < 1e-9:
                if labels[-1] != name:
                    labels[-1] = f"{labels[-1]}|{name}"
                continue
            ticks.append(x)
            labels.append(name)
    for x in ticks:
        ax.axvline(x, color="grey", lw=0.5)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_xticks(ticks, labels)
    ax.set_xlim(ticks[0], ticks[-1])
    ax.set_ylabel("Frequency (THz)")
    flag = " — imaginary modes" if doc.imaginary_modes else ""
    ax.set_title(f"{doc.label} phonons — {doc.calculator.get('label', '')}{flag}", fontsize=10)
    save_plot(fig, path)
    return fig


__all__ = ["plot_thermo_hull", "plot_thermo_voltage", "plot_phonon_bands"]
