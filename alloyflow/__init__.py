"""alloyflow: thermodynamics and Li-migration barriers of lithium alloy anodes."""

import os as _os

# The linear algebra outside the ML model is on 3x3 to 100x100 matrices
# (cell filters, IDPP, symmetry). Multithreaded OpenBLAS spins its threads on
# them and, on a 2-core machine that also runs torch, made a relaxation 6x
# slower (measured: 51 s -> 8 s for a three-phase hull). Set before numpy loads.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# torch's OpenMP threads spin while they wait for work. With anything else running that spinning
# steals the cores the other threads need: on 2 cores beside other jobs, two torch threads took
# 2.3 s per SevenNet-0 force call (63 atoms) against 0.6 s with passive waiting, and a 16-atom
# relaxation 37.6 s against 5.1 s (benchmarks/thread_policy.py, docs/performance.md, "Threads"). Passive
# waiting gives the same numbers (the reductions do not change). Set before torch loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
