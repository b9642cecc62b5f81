"""alloyflow: thermodynamics and Li-migration barriers of lithium alloy anodes."""

__version__ = "0.1.0"
