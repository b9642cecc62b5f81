"""Hull and voltage results on disk (JSON, CSV, PNG). The readers check, because files get copied and edited."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from alloyflow.analysis.hull import HullResult
from alloyflow.analysis.outputs import hull_csv_text
from alloyflow.analysis.voltage import VoltageResult
from alloyflow.io.files import OutputFileError, figure_key, save_figure_once, write_json_atomic, write_text_atomic


HULL_FILES = {"hull_json": "hull.json", "hull_csv": "hull.csv", "hull_png": "hull.png"}


VOLTAGE_FILES = {"voltage_json": "voltage.json", "voltage_png": "voltage.png"}


def _plots():
    """``alloyflow.analysis.plots``, imported (with matplotlib) only when a figure is drawn."""
    from alloyflow.analysis import plots

    return plots


def write_hull_outputs(out_dir, hull_result: HullResult, voltage_result: VoltageResult | None = None) -> dict[str, Path]:
    """Write hull.json/.csv/.png and (if given) voltage.json/.png into ``out_dir``.

    Every file is this run's: without a voltage curve, the voltage files of an
    earlier run are removed (a report would otherwise quote a stale curve).
    Returns ``{"hull_json": path, "hull_csv": ..., "hull_png": ...,
    "voltage_json": ..., "voltage_png": ...}`` (the voltage keys only with a curve).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in HULL_FILES.items()}
    write_json_atomic(paths["hull_json"], hull_result)
    write_text_atomic(paths["hull_csv"], hull_csv_text(hull_result))
    save_figure_once(paths["hull_png"], figure_key("hull", hull_result.model_dump(mode="json")),
                     lambda tmp: _plots().plot_hull(hull_result, path=tmp))
    if voltage_result is not None:
        vpaths = {key: out / name for key, name in VOLTAGE_FILES.items()}
        write_json_atomic(vpaths["voltage_json"], voltage_result)
        save_figure_once(vpaths["voltage_png"], figure_key("voltage", voltage_result.model_dump(mode="json")),
                         lambda tmp: _plots().plot_voltage(voltage_result, path=tmp))
        paths.update(vpaths)
    else:
        for name in VOLTAGE_FILES.values():
            (out / name).unlink(missing_ok=True)
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
