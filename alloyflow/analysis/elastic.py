"""Elastic maths without a calculator: Voigt strains, the strain–stress fit, moduli, Born stability, ΔV per Li.

The strained cells are made here and relaxed by ``alloyflow.workflows.jobs.elastic``;
the fit (pymatgen ``ElasticTensor.from_independent_strains``) and the VRH
moduli take the stresses back.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from pymatgen.analysis.elasticity import ElasticTensor, Strain, Stress
from pymatgen.core import Lattice, Structure


def voigt_strain(index: int, amount: float) -> Strain:
    """The strain ``amount`` along Voigt component ``index`` (0-5; shear as engineering strain)."""
    v = np.zeros(6)
    v[index] = amount
    return Strain.from_voigt(v)


def strained_structure(structure: Structure, strain: Strain) -> Structure:
    """``structure`` deformed by the symmetric deformation whose Green–Lagrange strain is ``strain``."""
    deformation = strain.get_deformation_matrix(shape="symmetric")
    s = structure.copy()
    s.lattice = Lattice(np.dot(structure.lattice.matrix, np.asarray(deformation).T))
    return s


def born_stable(c_voigt, tol: float = 1e-6) -> tuple[bool, list[float]]:
    """Born (generic) mechanical stability: the 6x6 Voigt matrix is positive definite."""
    c = np.asarray(c_voigt, dtype=float)
    if c.shape != (6, 6):
        raise ValueError(f"expected a 6x6 Voigt matrix, got shape {c.shape}")
    eig = np.linalg.eigvalsh(0.5 * (c + c.T))
    return bool(eig.min() > tol), [float(x) for x in eig]


def fit_elastic_tensor(strains: list[Strain], stresses: list[Stress], eq_stress: Stress) -> ElasticTensor:
    """Linear strain–stress fit, one strain component at a time (pymatgen)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return ElasticTensor.from_independent_strains(strains, stresses, eq_stress=eq_stress)


def moduli(tensor: ElasticTensor) -> dict:
    """VRH moduli and friends of a fitted tensor, GPa (pymatgen's definitions)."""
    k, g = float(tensor.k_vrh), float(tensor.g_vrh)
    return {
        "bulk_modulus_vrh": k,
        "shear_modulus_vrh": g,
        "bulk_modulus_voigt": float(tensor.k_voigt),
        "bulk_modulus_reuss": float(tensor.k_reuss),
        "shear_modulus_voigt": float(tensor.g_voigt),
        "shear_modulus_reuss": float(tensor.g_reuss),
        "youngs_modulus": 9 * k * g / (3 * k + g) if (3 * k + g) else float("nan"),
        "poisson_ratio": (3 * k - 2 * g) / (6 * k + 2 * g) if (6 * k + 2 * g) else float("nan"),
        "universal_anisotropy": float(tensor.universal_anisotropy),
    }


class VolumeExpansionPerLi(BaseModel):
    """Volume change of a phase relative to its host metal, normalised per Li."""

    name: str
    formula: str
    li_per_host: float = Field(description="x in Li_x M")
    volume_expansion: float = Field(description="V per host atom / V per atom of the host - 1 (HullPhase.volume_expansion)")
    expansion_per_li: float = Field(description="volume_expansion / x: fractional expansion per Li per host atom")
    volume_per_li_added: float = Field(description="(V per host atom - V host per atom) / x, Å^3 per Li added")


def volume_expansion_per_li(hull) -> list[VolumeExpansionPerLi]:
    """Per-Li volume expansion of every Li-containing phase of a ``HullResult`` that has volumes.

    ``HullResult`` already holds ``volume_expansion`` relative to the host
    metal (β-Sn for Sn); this normalises it per Li: the fractional expansion
    per Li per host atom and the volume added per Li in Å³ (compare with the
    molar volume of bcc Li, about 21 Å³/atom).
    """
    rows = []
    for p in hull.phases:
        if p.volume_expansion is None or p.volume_per_atom is None or p.x_li <= 0 or p.x_li >= 1:
            continue
        x = p.x_li / (1.0 - p.x_li)
        v_per_host = p.volume_per_atom / (1.0 - p.x_li)
        v_host = v_per_host / (1.0 + p.volume_expansion)
        rows.append(
            VolumeExpansionPerLi(
                name=p.name,
                formula=p.formula,
                li_per_host=x,
                volume_expansion=p.volume_expansion,
                expansion_per_li=p.volume_expansion / x,
                volume_per_li_added=(v_per_host - v_host) / x,
            )
        )
    return rows
