"""Torch threads by cell size (alloyflow.calculators.threads), fixed by $ALLOYFLOW_THREADS."""

import pytest

from alloyflow.calculators.threads import THREADS_SPLIT_ATOMS, available_cores, threads_for


def test_small_cells_get_one_thread_large_ones_every_core(monkeypatch):
    monkeypatch.delenv("ALLOYFLOW_THREADS", raising=False)
    assert threads_for(16) == threads_for(THREADS_SPLIT_ATOMS - 1) == 1
    assert threads_for(THREADS_SPLIT_ATOMS) == threads_for(127) == available_cores() >= 1
    monkeypatch.setenv("ALLOYFLOW_THREADS", "3")
    assert threads_for(16) == threads_for(500) == 3
    monkeypatch.setenv("ALLOYFLOW_THREADS", "")
    assert threads_for(16) == 1


def test_the_registry_calculator_sets_threads_per_calculation(monkeypatch):
    """SevenNet-0 from the registry: a 16-atom cell runs on 1 thread, a 128-atom one on every core."""
    torch = pytest.importorskip("torch")
    from ase.build import bulk

    from alloyflow.calculators import get_calculator

    monkeypatch.delenv("ALLOYFLOW_THREADS", raising=False)
    calc = get_calculator("sevennet")
    small = bulk("Li", "bcc", a=3.44, cubic=True) * (2, 2, 2)
    large = small * (2, 2, 2)
    seen = []
    for atoms in (large, small):
        atoms.calc = calc
        atoms.get_potential_energy()
        seen.append(torch.get_num_threads())
    assert seen == [available_cores(), 1]
    monkeypatch.setenv("ALLOYFLOW_THREADS", "2")  # --threads 2: every cell, read at each calculation
    large.rattle(0.01, seed=1)
    large.get_potential_energy()
    assert torch.get_num_threads() == 2
