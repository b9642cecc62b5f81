"""Print the validation table of a stored study beside the reference study.

    python benchmarks/validation.py [alloyflow-out]

Reads ``<out>/<system>/hull.json``, ``voltage.json`` and
``<out>/barriers/*/barriers.json`` (nothing is recomputed) and prints the
markdown comparison that docs/validation.md is made from, plus
the coordination-versus-barrier table.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "alloyflow-out")
    from alloyflow.analysis.report import barrier_section, comparison_section
    from alloyflow.io.report import load_stored_results

    hulls, voltages, barriers = load_stored_results(out)
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
