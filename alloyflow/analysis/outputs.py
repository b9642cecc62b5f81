"""Hull and voltage results as text: CSV and terminal tables (files are written by ``alloyflow.io.hull``)."""

from __future__ import annotations

import csv
import io


from alloyflow.analysis.hull import HullPhase, HullResult
from alloyflow.analysis.voltage import VoltageResult


def hull_csv_text(hull_result: HullResult) -> str:
    """One row per phase, plus the calculator so the CSV stands on its own."""
    buf = io.StringIO()
    fields = list(HullPhase.model_fields)
    writer = csv.DictWriter(buf, fieldnames=["system", *fields, "calculator", "calculator_version"], lineterminator="\n")
    writer.writeheader()
    for p in hull_result.phases:
        row = {"system": hull_result.system, **p.model_dump()}
        row["calculator"] = hull_result.calculator.get("label", "")
        row["calculator_version"] = hull_result.calculator.get("version", "")
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def _opt(value, fmt: str, width: int) -> str:
    return f"{value:{fmt}}".rjust(width) if value is not None else "-".rjust(width)


def format_hull_table(hull_result: HullResult) -> str:
    """Fixed-width table for the terminal; formation and hull distance in meV/atom."""
    calc = hull_result.calculator
    lines = [
        f"{hull_result.system} convex hull — {calc.get('label', '')} "
        f"[{calc.get('name', '')} {calc.get('version', '')}]",
        f"{'phase':<14}{'formula':<10}{'x_Li':>7}{'E (eV/at)':>11}{'Ef (meV/at)':>13}{'Ehull (meV/at)':>16}"
        f"{'V/atom (A3)':>13}{'dV/V0 (%)':>11}  {'status':<13}conv  stable",
    ]
    lines.append("-" * len(lines[1]))
    for p in hull_result.phases:
        expansion = p.volume_expansion * 100 if p.volume_expansion is not None else None
        conv = {True: "yes", False: "NO", None: "?"}[p.converged]
        lines.append(
            f"{p.name[:13]:<14}{p.formula[:9]:<10}{p.x_li:>7.3f}{p.energy_per_atom:>11.4f}"
            f"{p.formation_energy_per_atom * 1000:>13.1f}{p.e_above_hull * 1000:>16.1f}"
            f"{_opt(p.volume_per_atom, '.2f', 13)}{_opt(expansion, '.1f', 11)}  {p.status[:12]:<13}"
            f"{conv:<6}{'*' if p.stable else ('below ref' if p.below_reference else '')}"
        )
    m = hull_result.hull_minimum
    lines.append(
        f"stable: {', '.join(hull_result.stable_set)}; hull minimum {m.formula} "
        f"at {m.formation_energy_per_atom * 1000:.1f} meV/atom"
    )
    if hull_result.reference_note:
        lines.append(hull_result.reference_note)
    lines += [f"warning: {w}" for w in hull_result.warnings]
    return "\n".join(lines)


def format_voltage_table(voltage_result: VoltageResult) -> str:
    """Fixed-width table of the plateaus, then average voltage and capacity."""
    v = voltage_result
    calc = v.calculator
    lines = [
        f"Voltage of {v.working_ion} in {v.host} (V vs {v.working_ion}/{v.working_ion}+) — {calc.get('label', '')} "
        f"[{calc.get('name', '')} {calc.get('version', '')}]",
        f"{'x start':>9}{'x end':>9}{'V':>9}  two-phase region",
    ]
    lines.append("-" * 48)
    for s in v.steps:
        lines.append(f"{s.x_start:>9.3f}{s.x_end:>9.3f}{s.voltage:>9.3f}  {' + '.join(s.phases)}")
    lines.append(
        f"average {v.average_voltage:.3f} V over 0..{v.max_li_per_host:.3f} {v.working_ion}/{v.host} "
        f"(to {v.final_phase}); capacity {v.capacity_mAh_per_g:.1f} mAh/g {v.host}"
    )
    lines += [f"warning: {w}" for w in v.warnings]
    return "\n".join(lines)


