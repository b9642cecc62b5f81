"""Coordination of Li sites in alloys, for the barrier tables.

``CrystalNN(x_diff_weight=0)``: CrystalNN by default favours neighbours of
large electronegativity difference (cation–anion bonds). Li alloys are
metallic, with no anion, so that weight would bias the shell towards the
alloying element; with it off the shell is set by geometry (solid angle and
distance) alone.

Fallback: if CrystalNN fails (it can on badly distorted or very small cells),
the neighbours are every atom within ``(1 + FALLBACK_TOLERANCE)`` × the
nearest-neighbour distance; ``method`` in the result says which was used.

For a hop, the coordination of the departing Li is taken in the *perfect*
(relaxed, vacancy-free) unit cell at its initial and its final site: these are
the crystallographic environments that tables list, they do not depend on
where the image vacancies sit, and a vacancy-cell count would only differ by
the one missing Li neighbour (the vacancy the Li jumps into).
"""

from __future__ import annotations

import warnings

import numpy as np
from pymatgen.analysis.local_env import CrystalNN
from pymatgen.core import Structure

FALLBACK_TOLERANCE = 0.15


def _crystalnn(structure: Structure, site_index: int) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = CrystalNN(x_diff_weight=0).get_nn_info(structure, site_index)
    centre = structure[site_index].coords
    return [
        {
            "index": int(nn["site_index"]),
            "species": nn["site"].species_string,
            "image": tuple(int(x) for x in nn["image"]),
            # cartesian, not periodic: a site's own image is a neighbour at one lattice vector
            "distance": float(np.linalg.norm(nn["site"].coords - centre)),
        }
        for nn in info
    ]


def _cutoff(structure: Structure, site_index: int, tolerance: float = FALLBACK_TOLERANCE) -> list[dict]:
    site = structure[site_index]
    found = structure.get_neighbors(site, r=max(structure.lattice.abc) + 4.0)
    d_min = min(n.nn_distance for n in found)
    return [
        {"index": int(n.index), "species": n.species_string, "image": tuple(int(x) for x in n.image), "distance": float(n.nn_distance)}
        for n in sorted(found, key=lambda n: n.nn_distance)
        if n.nn_distance <= d_min * (1 + tolerance)
    ]


def coordination(structure: Structure, site_index: int, mobile: str = "Li") -> dict:
    """``{cn, cn_li, cn_m, neighbours, method}`` of one site; ``cn_m`` counts non-``mobile`` neighbours."""
    try:
        neighbours = _crystalnn(structure, site_index)
        method = "CrystalNN(x_diff_weight=0)"
        if not neighbours:
            raise ValueError("no neighbours")
    except Exception:  # CrystalNN raises several types on odd geometries
        neighbours = _cutoff(structure, site_index)
        method = f"distance cutoff (1+{FALLBACK_TOLERANCE}) x nearest"
    neighbours.sort(key=lambda n: n["distance"])
    cn_li = sum(n["species"] == mobile for n in neighbours)
    return {"cn": len(neighbours), "cn_li": cn_li, "cn_m": len(neighbours) - cn_li, "neighbours": neighbours, "method": method}


def hop_coordination(structure: Structure, isite_index: int, esite_index: int, mobile: str = "Li") -> tuple[dict, dict]:
    """Short ``{cn, li, m}`` of the departing atom at its initial and its final site (perfect cell)."""
    out = []
    for idx in (isite_index, esite_index):
        c = coordination(structure, idx, mobile)
        out.append({"cn": c["cn"], "li": c["cn_li"], "m": c["cn_m"]})
    return out[0], out[1]
