"""alloyflow: thermodynamics and Li-migration barriers of lithium alloy anodes."""

import os as _os

# The linear algebra outside the ML model is on 3x3 to 100x100 matrices
# (cell filters, IDPP, symmetry). Multithreaded OpenBLAS spins its threads on
# them and, on a 2-core machine that also runs torch, made a relaxation 6x
# slower (measured: 51 s -> 8 s for a three-phase hull). Set before numpy loads.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
