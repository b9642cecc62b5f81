"""Hull and voltage figures in the style of the reference's Figure 4a–d.

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, never
through pyplot, so that calling these from a library, a CLI or a notebook
leaves no global figure state behind (and no GUI backend is ever needed).
Every title names the calculator label, so an ML-potential hull printed on
its own still says where its numbers came from.
"""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alloyflow.analysis.hull import HullResult
from alloyflow.analysis.voltage import VoltageResult

HOST_COLOURS = {"In": "tab:orange", "Sn": "tab:green"}
UNSTABLE_COLOUR = "tab:purple"
DEFAULT_COLOUR = "tab:blue"


def mathtext_formula(formula: str) -> str:
    """``Li13Sn5`` -> ``Li$_{13}$Sn$_{5}$`` for subscripted labels."""
    return re.sub(r"(\d+(?:\.\d+)?)", r"$_{\1}$", formula)


def figure_plot(ax, size):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_plot(fig, path):
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, format=path.suffix.lstrip(".") or "png")


def _calc_label(calculator: dict) -> str:
    return calculator.get("label") or calculator.get("name") or "unknown calculator"


def plot_hull(hull_result: HullResult, path=None, ax=None, unit: str = "meV", colour: str | None = None) -> Figure:
    """Formation energy vs Li atomic fraction: stable phases as filled circles on
    the hull line (labelled), metastable/unstable phases as crosses.

    ``unit`` is ``"meV"`` or ``"eV"`` per atom. Returns the Figure (saved to
    ``path`` if given).
    """
    if unit not in ("meV", "eV"):
        raise ValueError(f"unit must be 'meV' or 'eV', not {unit!r}")
    scale = 1000.0 if unit == "meV" else 1.0
    colour = colour or HOST_COLOURS.get(hull_result.host, DEFAULT_COLOUR)
    fig, ax = figure_plot(ax, (6.0, 4.5))

    stable = sorted((p for p in hull_result.phases if p.stable), key=lambda p: p.x_li)
    # A polymorph below a chosen elemental reference is off this hull by choice (its table row says so).
    unstable = [p for p in hull_result.phases if not p.stable and not p.below_reference]
    xs = [p.x_li for p in stable]
    ys = [p.formation_energy_per_atom * scale for p in stable]
    depth = -min(ys + [0.0]) or 1.0
    # A badly wrong polymorph (e.g. a test potential's alpha-Sn) would squash
    # the hull into a line, so the y range follows the hull and far-off
    # phases are drawn as arrows at the top edge, with their value.
    top = max([0.0] + [p.formation_energy_per_atom * scale for p in unstable if p.formation_energy_per_atom * scale < 0.6 * depth])
    top = top + 0.25 * depth
    bottom = -depth - 0.15 * depth

    ax.plot(xs, ys, "-", color=colour, lw=1.5, zorder=2)
    ax.scatter(xs, ys, s=55, color=colour, edgecolor="black", linewidth=0.7, zorder=3, label="stable")
    shown = [p for p in unstable if p.formation_energy_per_atom * scale <= top]
    far = [p for p in unstable if p.formation_energy_per_atom * scale > top]
    if shown:
        ax.scatter(
            [p.x_li for p in shown], [p.formation_energy_per_atom * scale for p in shown],
            marker="x", s=45, color=UNSTABLE_COLOUR, linewidth=1.5, zorder=3, label="metastable / unstable",
        )
    for p in far:
        y_edge = top - 0.04 * depth
        ax.scatter([p.x_li], [y_edge], marker="^", s=40, color=UNSTABLE_COLOUR, zorder=3)
        ax.text(p.x_li + 0.012, y_edge, f"{p.name} ({p.formation_energy_per_atom * scale:+.0f})",
                fontsize=7, va="center", color=UNSTABLE_COLOUR)
    ax.axhline(0.0, color="grey", lw=0.6, zorder=1)
    _place_labels(ax, stable, ys, depth)

    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(bottom, top)
    ax.set_xlabel(f"Li atomic fraction in Li$_x${hull_result.host}$_{{1-x}}$")
    ax.set_ylabel(f"Formation energy ({unit}/atom)")
    ax.set_title(f"{hull_result.system} convex hull — {_calc_label(hull_result.calculator)}", fontsize=10)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    save_plot(fig, path)
    return fig


def _place_labels(ax, stable, ys, depth):
    """Labels below the hull points (the hull is convex, so below never hits the
    line); phases closer than a few % in x get stacked further down."""
    level, last_x = 0, None
    for p, y in zip(stable, ys):
        if not 0.0 < p.x_li < 1.0:
            continue
        level = level + 1 if last_x is not None and p.x_li - last_x < 0.05 else 0
        last_x = p.x_li
        ax.text(p.x_li, y - (0.04 + 0.07 * level) * depth, mathtext_formula(p.formula),
                ha="center", va="top", fontsize=9)


def plot_voltage(voltage_result: VoltageResult, path=None, ax=None, colour: str | None = None) -> Figure:
    """Step curve of voltage vs x in Li_xM, each plateau labelled with its two
    phases, and the capacity-weighted average voltage as a dashed line.
    """
    colour = colour or HOST_COLOURS.get(voltage_result.host, DEFAULT_COLOUR)
    fig, ax = figure_plot(ax, (6.0, 4.5))
    steps = voltage_result.steps
    xs, vs = [], []
    for s in steps:
        xs += [s.x_start, s.x_end]
        vs += [s.voltage, s.voltage]
    ax.plot(xs, vs, "-", color=colour, lw=2.0, label="voltage")
    # Past the most Li-rich phase Li plates at 0 V.
    ax.plot([steps[-1].x_end, steps[-1].x_end], [steps[-1].voltage, 0.0], ":", color=colour, lw=1.2)
    ax.axhline(
        voltage_result.average_voltage, ls="--", color="black", lw=1.0,
        label=f"average {voltage_result.average_voltage:.3f} V",
    )

    vmax = max(s.voltage for s in steps)
    vmin = min(0.0, min(s.voltage for s in steps))
    height = (vmax - vmin) or 1.0
    for i, s in enumerate(steps):
        label = " + ".join(mathtext_formula(f) for f in s.phases)
        # Alternate above/below on narrow plateaus so neighbouring labels do not overlap.
        narrow = (s.x_end - s.x_start) < 0.12 * voltage_result.max_li_per_host
        dy = 0.03 * height if not (narrow and i % 2) else -0.03 * height
        ax.text((s.x_start + s.x_end) / 2, s.voltage + dy, label, ha="center",
                va="bottom" if dy > 0 else "top", fontsize=7 if narrow else 8,
                rotation=90 if narrow else 0, zorder=4,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.0})

    host = voltage_result.host
    ax.set_xlabel(f"x in Li$_x${host} (Li per {host})")
    ax.set_ylabel("Voltage vs Li/Li$^+$ (V)")
    ax.set_xlim(0.0, voltage_result.max_li_per_host * 1.03)
    ax.set_ylim(vmin - 0.05 * height, vmax + 0.35 * height)
    ax.set_title(
        f"Li in {host}: {voltage_result.max_li_per_host:.2f} Li/{host}, "
        f"{voltage_result.capacity_mAh_per_g:.0f} mAh/g — {_calc_label(voltage_result.calculator)}",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    save_plot(fig, path)
    return fig


__all__ = ["plot_hull", "plot_voltage", "mathtext_formula"]
