"""Structures: the phase library with provenance, supercells and hops."""

from alloyflow.structures.library import (
    Phase,
    StructureError,
    StructureLibrary,
    parse_system,
    read_structure,
)

__all__ = ["Phase", "StructureError", "StructureLibrary", "parse_system", "read_structure"]
