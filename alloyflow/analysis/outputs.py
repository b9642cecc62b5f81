"""Hull and voltage results on disk (JSON, CSV, PNG) and in the terminal.

Every file is written to a temporary name in the same folder and moved into
place with ``os.replace``: a run killed mid-write then leaves the previous
file or none, never a truncated ``hull.json`` that a later step would trust.
The readers still check, because files get copied and edited by hand.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from alloyflow.analysis.hull import HullPhase, HullResult
from alloyflow.analysis.voltage import VoltageResult

HULL_FILES = {"hull_json": "hull.json", "hull_csv": "hull.csv", "hull_png": "hull.png"}
VOLTAGE_FILES = {"voltage_json": "voltage.json", "voltage_png": "voltage.png"}


class OutputFileError(ValueError):
    """A result file that cannot be read back; the message names the file."""


def _atomic(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` then move the finished file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path, text: str) -> Path:
    def write(tmp: Path):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return _atomic(Path(path), write)


def write_json_atomic(path, model) -> Path:
    """The model's own field names are the JSON keys (``model_dump(mode='json')``)."""
    return write_text_atomic(path, json.dumps(model.model_dump(mode="json"), indent=2) + "\n")


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


def write_hull_outputs(out_dir, hull_result: HullResult, voltage_result: VoltageResult | None = None) -> dict[str, Path]:
    """Write hull.json/.csv/.png and (if given) voltage.json/.png into ``out_dir``.

    Returns ``{"hull_json": path, "hull_csv": ..., "hull_png": ...,
    "voltage_json": ..., "voltage_png": ...}``.
    """
    from alloyflow.analysis.plots import plot_hull, plot_voltage  # matplotlib only when drawing

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in HULL_FILES.items()}
    write_json_atomic(paths["hull_json"], hull_result)
    write_text_atomic(paths["hull_csv"], hull_csv_text(hull_result))
    _atomic(paths["hull_png"], lambda tmp: plot_hull(hull_result, path=tmp))
    if voltage_result is not None:
        vpaths = {key: out / name for key, name in VOLTAGE_FILES.items()}
        write_json_atomic(vpaths["voltage_json"], voltage_result)
        _atomic(vpaths["voltage_png"], lambda tmp: plot_voltage(voltage_result, path=tmp))
        paths.update(vpaths)
    return paths


def _read_model(path, model, what: str):
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file {path} does not exist") from None
    try:
        return model.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise OutputFileError(f"{what} file {path} is truncated or corrupt (invalid JSON: {exc})") from None
    except ValidationError as exc:
        raise OutputFileError(
            f"{what} file {path} does not hold a valid {model.__name__}: {exc.error_count()} problem(s), "
            f"first: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}"
        ) from None


def read_hull_json(path) -> HullResult:
    return _read_model(path, HullResult, "hull")


def read_voltage_json(path) -> VoltageResult:
    return _read_model(path, VoltageResult, "voltage")


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
            f"{conv:<6}{'*' if p.stable else ''}"
        )
    m = hull_result.hull_minimum
    lines.append(
        f"stable: {', '.join(hull_result.stable_set)}; hull minimum {m.formula} "
        f"at {m.formation_energy_per_atom * 1000:.1f} meV/atom"
    )
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


__all__ = [
    "write_hull_outputs",
    "read_hull_json",
    "read_voltage_json",
    "format_hull_table",
    "format_voltage_table",
    "write_json_atomic",
    "write_text_atomic",
    "hull_csv_text",
    "OutputFileError",
]
