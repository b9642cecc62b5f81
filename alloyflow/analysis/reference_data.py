"""Values reported by the reference study, for validation tables only.

Hänsel, Singh, Kiwic, Canepa, Kundu, Chem. Mater. 2021 ("Li-In and Li-Sn
alloy anodes ... solid-state batteries"), VASP PBE. Nothing in alloyflow's
result paths reads this module: it is imported by the report's comparison
section and by the validation benchmark, where each value is printed beside
alloyflow's own, labelled as the reference study's.
"""

REFERENCE_CITATION = "Hänsel et al., Chem. Mater. 2021 (PBE, VASP)"

# Stable sets of the reference hulls (Figure 4a/b, text).
REFERENCE_STABLE = {
    "Li-In": ["LiIn3", "Li5In4", "Li3In2", "Li2In", "Li13In3"],
    "Li-Sn": ["Li2Sn5", "LiSn", "Li13Sn5", "Li8Sn3", "Li7Sn2", "Li17Sn4"],
}
# Crystal systems of the reference hulls' stable phases (reference text, Figure 4a/b discussion).
REFERENCE_CRYSTAL_SYSTEMS = {
    "LiIn3": "tetragonal", "Li5In4": "trigonal", "Li3In2": "rhombohedral", "Li2In": "orthorhombic",
    "Li13In3": "cubic", "Li2Sn5": "tetragonal", "LiSn": "monoclinic", "Li13Sn5": "trigonal",
    "Li8Sn3": "rhombohedral", "Li7Sn2": "orthorhombic", "Li17Sn4": "cubic",
}
# Hull minimum, eV/atom (reference text: -293.4 and -419.0 meV/atom).
REFERENCE_HULL_MINIMUM = {"Li-In": ("Li3In2", -0.2934), "Li-Sn": ("Li13Sn5", -0.4190)}
# Distance above the reference hull, eV/atom, for phases discussed in the text.
REFERENCE_E_ABOVE_HULL = {"Li-In": {"LiIn": 0.003, "Li3In": 0.002, "LiIn2": 0.138, "LiIn35": 0.024}}
# Nontopotactic voltage curve: (max Li per host, average voltage in V).
REFERENCE_VOLTAGE = {"Li-In": (4.34, 0.55), "Li-Sn": (4.25, 0.60)}
# Lowest barrier of a percolating path, eV (Figure 4e and text).
REFERENCE_BARRIERS = {"Li": 0.069, "LiIn": 0.034, "Li13In3": 0.172, "Li2Sn5": 0.434, "LiSn": 0.457, "Li17Sn4": 0.263}
# Coordination of the departing Li by the alloying element quoted in the reference text.
REFERENCE_LI_COORDINATION = {"Li2Sn5": "8 Sn", "LiSn": "10 Sn", "Li17Sn4": "6 or 8"}
# Phases whose barriers the reference study computed (LiIn35 is its dilute proxy).
REFERENCE_BARRIER_PHASES = ["Li", "LiIn", "Li13In3", "Li2Sn5", "LiSn", "Li17Sn4"]
