"""pymatgen's binary AFLOW prototypes, read once from its data file (for ``structures.search``)."""

from __future__ import annotations

from functools import lru_cache

from pymatgen.core import Composition, Lattice, Structure


@lru_cache(maxsize=1)
def binary_prototypes() -> tuple[tuple[str, str, Structure], ...]:
    """(AFLOW label, descriptive name, structure) for pymatgen's binary AFLOW prototypes.

    Read from the data file directly: importing ``pymatgen.analysis.prototypes``
    decodes every prototype and Wyckoff table through monty, 10-15 s here.
    """
    import gzip
    import importlib.util
    import json
    from pathlib import Path

    folder = Path(importlib.util.find_spec("pymatgen.analysis.prototypes").submodule_search_locations[0])
    with gzip.open(folder / "aflow_prototypes.json.gz", "rt") as fh:
        raw = json.load(fh)
    out = []
    for entry in raw:
        snl = entry["snl"]
        if len({sp["element"] for site in snl["sites"] for sp in site["species"]}) != 2:
            continue
        s = Structure(Lattice(snl["lattice"]["matrix"]), [site["species"][0]["element"] for site in snl["sites"]],
                      [site["abc"] for site in snl["sites"]])
        tags = entry["tags"]
        desc = " ".join(str(t) for t in (tags.get("strukturbericht"), tags.get("mineral")) if t and t != "None")
        out.append((tags["aflow"], desc or s.composition.reduced_formula, s))
    return tuple(out)


def stoichiometry(comp: Composition) -> tuple[int, int]:
    """The reduced binary ratio, smaller count first: (1, 3) for LiIn3 and for Li3In."""
    a, b = sorted(int(round(v)) for v in comp.reduced_composition.values())
    return a, b


__all__ = ["binary_prototypes", "stoichiometry"]
