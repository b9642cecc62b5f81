"""Energies and forces of many structures in one model call.

A NEB band is n_images structures of the same cell and composition; an ML
potential can evaluate all of them in one forward/backward pass over a
disjoint union of their graphs instead of n_images passes. Numbers are the
same either way; what it buys depends on the device (``MAX_BATCH_ATOMS``).

- SevenNet (sevenn 0.13): the ASE calculator builds one ``AtomGraphData`` per
  structure with ``unlabeled_atoms_to_graph`` and runs the model with
  ``is_batch_data=False``. Here the same graphs are collated into a
  torch_geometric ``Batch`` and the calculator's own model is run with
  ``set_is_batch_data(True)`` (what sevenn's ``inference`` script does);
  energies come back per graph, forces per node, split with ``batch.ptr``.
  The flag is restored afterwards, so the shared calculator is untouched.
- CHGNet: ``CHGNet.predict_graph(list_of_graphs, task="ef", batch_size=n)``
  on the calculator's model; its energy is per atom and is scaled back to
  the total energy as ``CHGNetCalculator`` does.
- Anything else (the mock potential, DFT): one structure at a time through
  the registry's ASE calculator.

Why not atomate2 / ASE for this: neither batches. ASE's NEB evaluates images
one by one (or in threads/MPI ranks with one calculator each), atomate2's
``ForceFieldNebFromImagesMaker`` wraps that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from ase import Atoms

from alloyflow.calculators import get_calculator, get_spec
from alloyflow.calculators.threads import use_threads_for

Result = tuple[float, np.ndarray]

MAX_BATCH_ATOMS = {"cpu": {"sevennet": 40, "chgnet": 1024}, "cuda": {"sevennet": 4096, "chgnet": 4096}}
"""Largest number of atoms per model call, by device and potential.

SevenNet-0 on CPU (``python benchmarks/batching.py``: bcc-Li cells rattled
like band images, 5 images, CPU time per band, median of 3, load ~3 from
other jobs; image by image / batched):

| atoms per image | 1 thread | 2 threads |
|---|---|---|
| 8 | 1.19 | 1.36 |
| 16 | 1.04 | 0.89 |
| 32 | 0.78 | 1.02 |
| 54 | 0.70 | 0.87 |
| 128 | 0.42 | 0.49 |

Why: building the graphs (the neighbour lists) and collating them cost
under 1 % of a call; the model's forward and backward passes are almost
all of it, and they grow faster than the number of edges once a batch is
large. torch's profiler on 5 x 128 atoms (1 thread) shows the same
operators in both modes, but the memory-bound element-wise ones slower per
element in the batch: ``mul`` 1.4 -> 3.4 s, ``fill_`` 0.18 -> 1.07 s,
``gather`` 0.18 -> 0.74 s, ``cat`` 0.19 -> 0.62 s (edge tensors of 16,000
edges x channels no longer fit the caches), while the fixed cost a batch
saves is ~25 ms per call. So on CPU batching pays only for a few small
images (about 40 atoms in all) and never reaches 2x; the cap of 40 atoms
batches images of up to 20 atoms (pairs or more) and sends every image of
the reference phases' NEB cells (35-104 atoms) through the model alone,
where it is the faster way. CHGNet gains 1.2-1.5x up to 5 x 128 atoms. On a
GPU, one call per band is the point.
"""


def _device(calc) -> str:
    device = getattr(calc, "device", "cpu")
    return "cuda" if "cuda" in str(device) else "cpu"


def max_batch_atoms(name: str | None, calc=None) -> int:
    spec = get_spec(name)
    calc = calc or get_calculator(spec.name)
    return MAX_BATCH_ATOMS[_device(calc)].get(spec.name, 1024)


def _chunks(atoms_list: Sequence[Atoms], max_atoms: int) -> list[list[Atoms]]:
    chunks: list[list[Atoms]] = [[]]
    n = 0
    for atoms in atoms_list:
        if chunks[-1] and n + len(atoms) > max_atoms:
            chunks.append([])
            n = 0
        chunks[-1].append(atoms)
        n += len(atoms)
    return [c for c in chunks if c]


def _sevennet_batch(calc, atoms_list: Sequence[Atoms]) -> list[Result]:
    import sevenn._keys as KEY
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.data import Batch

    graphs = []
    for atoms in atoms_list:
        calc.set_atoms(atoms)  # the calculator's own check for unknown elements
        g = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, calc.cutoff, with_shift=False))
        if calc.modal:
            g[KEY.DATA_MODALITY] = calc.modal
        graphs.append(g)
    batch = Batch.from_data_list(graphs).to(calc.device)
    model = calc.model
    model.set_is_batch_data(True)
    try:
        out = model(batch)
    finally:
        model.set_is_batch_data(False)
    energies = out[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy().reshape(-1)
    forces = out[KEY.PRED_FORCE].detach().cpu().numpy()
    ptr = batch.ptr.cpu().numpy()
    return [(float(energies[i]), forces[ptr[i] : ptr[i + 1]].astype(float)) for i in range(len(atoms_list))]


def _chgnet_batch(calc, atoms_list: Sequence[Atoms]) -> list[Result]:
    from pymatgen.io.ase import AseAtomsAdaptor

    model = calc.model
    graphs = [model.graph_converter(AseAtomsAdaptor.get_structure(a)) for a in atoms_list]
    preds = model.predict_graph(graphs, task="ef", batch_size=len(graphs))
    if isinstance(preds, dict):
        preds = [preds]
    results = []
    for atoms, p in zip(atoms_list, preds):
        factor = len(atoms) if model.is_intensive else 1
        results.append((float(p["e"]) * factor, np.asarray(p["f"], dtype=float)))
    return results


_BATCHERS: dict[str, Callable] = {"sevennet": _sevennet_batch, "chgnet": _chgnet_batch}


def supports_batching(name: str | None) -> bool:
    """True if ``name``'s model can evaluate many structures in one call."""
    spec = get_spec(name)
    return spec.batched and spec.name in _BATCHERS


def _one_by_one(calc, atoms_list: Sequence[Atoms]) -> list[Result]:
    results = []
    for atoms in atoms_list:
        a = atoms.copy()
        a.calc = calc
        results.append((float(a.get_potential_energy()), np.array(a.get_forces(), dtype=float)))
    return results


def _evaluate(name, atoms_list, batched, max_atoms, calculator_kwargs) -> tuple[list[Result], int]:
    spec = get_spec(name)
    calc = get_calculator(spec.name, **calculator_kwargs)
    if not (batched and supports_batching(spec.name)):
        return _one_by_one(calc, atoms_list), len(atoms_list)
    chunks = _chunks(atoms_list, max_atoms or max_batch_atoms(spec.name, calc))
    results: list[Result] = []
    for chunk in chunks:
        use_threads_for(sum(len(a) for a in chunk))  # the model is called directly, not through ``calculate``
        results += _BATCHERS[spec.name](calc, chunk)
    return results, len(chunks)


def evaluate_batch(
    calculator_name: str | None,
    atoms_list: Sequence[Atoms],
    batched: bool = True,
    max_atoms: int | None = None,
    **calculator_kwargs,
) -> list[Result]:
    """``[(energy_eV, forces_eV_per_A), ...]`` for each structure, in order.

    With ``batched`` and a batching-capable potential, structures go through
    the model in as few calls as ``max_atoms`` allows (default
    ``MAX_BATCH_ATOMS`` for the potential and device); otherwise one by one
    through the ASE calculator (identical numbers, more calls).
    """
    if not atoms_list:
        return []
    return _evaluate(calculator_name, atoms_list, batched, max_atoms, calculator_kwargs)[0]


@dataclass
class BatchEvaluator:
    """``evaluate_batch`` with counters: what a NEB run reports as its cost.

    ``force_calls`` counts single-structure evaluations (the cost measure
    that does not depend on batching), ``model_calls`` the calls actually made.
    """

    calculator: str | None
    batched: bool = True
    calculator_kwargs: dict | None = None
    force_calls: int = 0
    model_calls: int = 0
    seconds: float = 0.0

    def __call__(self, atoms_list: Sequence[Atoms]) -> list[Result]:
        t0 = time.perf_counter()
        results, calls = _evaluate(self.calculator, atoms_list, self.batched, None, self.calculator_kwargs or {})
        self.seconds += time.perf_counter() - t0
        self.force_calls += len(atoms_list)
        self.model_calls += calls
        return results
