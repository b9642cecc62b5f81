"""Print the validation table of a stored study beside the reference study.

    python benchmarks/validation.py [alloyflow-out]

Reads ``<out>/<system>/hull.json``, ``voltage.json`` and
``<out>/barriers/*/barriers.json`` (nothing is recomputed) and prints the
markdown comparison that the README's Validation section is made from, plus
the coordination-versus-barrier table.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "alloyflow-out")
    from alloyflow.analysis.migration import BarrierResult
    from alloyflow.analysis.outputs import read_hull_json, read_voltage_json
    from alloyflow.analysis.report import barrier_section, comparison_section

    hulls, voltages = {}, {}
    for hull_json in sorted(out.glob("*/hull.json")):
        system = hull_json.parent.name
        hulls[system] = read_hull_json(hull_json)
        voltage_json = hull_json.parent / "voltage.json"
        voltages[system] = read_voltage_json(voltage_json) if voltage_json.exists() else None
    barriers = [BarrierResult.model_validate_json(p.read_text()) for p in sorted(out.glob("barriers/*/barriers.json"))]
    if not hulls:
        print(f"no stored hulls under {out}: run `alloyflow study Li-In Li-Sn --out {out}` first", file=sys.stderr)
        return 1
    calc = next(iter(hulls.values())).calculator
    label = f"{calc.get('label', calc.get('name'))}, {calc.get('name')} {calc.get('version')}"
    print(comparison_section(hulls, voltages, barriers, label))
    if barriers:
        print()
        print(barrier_section(barriers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
