"""Finite-temperature results on disk: ``<system>/thermo/thermo.{json,md}`` and the T plots."""

from __future__ import annotations

from pathlib import Path

from alloyflow.analysis.thermo import ThermoResult, format_thermo_table
from alloyflow.analysis.thermo_plots import plot_thermo_hull, plot_thermo_voltage
from alloyflow.io.files import write_text_atomic


def write_thermo_outputs(folder: Path, result: ThermoResult) -> dict[str, Path]:
    """``thermo.json``, ``thermo.md``, ``hull_T.png`` and ``voltage_T.png`` in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"json": folder / "thermo.json", "md": folder / "thermo.md"}
    for key, text in (("json", result.model_dump_json(indent=2)), ("md", format_thermo_table(result) + "\n")):
        write_text_atomic(files[key], text)
    files["hull_png"] = folder / "hull_T.png"
    plot_thermo_hull(result, files["hull_png"])
    if result.voltage_0K is not None or result.voltage_T is not None:
        files["voltage_png"] = folder / "voltage_T.png"
        plot_thermo_voltage(result, files["voltage_png"])
    else:
        (folder / "voltage_T.png").unlink(missing_ok=True)  # an earlier run's curve is not this run's
    return files


def load_thermo_results(out: Path) -> dict:
    """System -> ThermoResult from ``<out>/<system>/thermo/thermo.json`` (no calculation)."""
    results = {}
    for path in sorted(Path(out).glob("*/thermo/thermo.json")):
        try:
            results[path.parent.parent.name] = ThermoResult.model_validate_json(path.read_text())
        except ValueError:
            raise ValueError(f"{path} is unreadable; rerun 'alloyflow thermo' to rebuild it from the store") from None
    return results
