"""Structures: the phase library with provenance, supercells and hops."""

from alloyflow.structures.library import (
    Phase,
    PhaseRecord,
    StructureError,
    StructureLibrary,
    parse_system,
    treated_elements,
    read_structure,
)

__all__ = ["Phase", "PhaseRecord", "StructureError", "StructureLibrary", "parse_system", "read_structure", "treated_elements"]
