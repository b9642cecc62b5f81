"""The resumable store: finished jobs are reused, corrupt stores are named, runs are exclusive."""

import pytest

from alloyflow.structures import StructureLibrary
from alloyflow.engine import ResultStore, StoreError, input_hash
from alloyflow.workflows.flows.hull import run_hull_relaxations
from alloyflow.workflows.jobs.relax import RelaxMaker


def test_second_run_reuses_every_relaxation(tmp_path):
    with ResultStore(tmp_path) as store:
        docs1, first = run_hull_relaxations("Li-In", store, calculator="mock")
    assert first.computed == len(docs1) and first.reused == 0
    with ResultStore(tmp_path) as store:
        docs2, second = run_hull_relaxations("Li-In", store, calculator="mock")
    assert second.computed == 0 and second.reused == len(docs1)
    assert [d.energy for d in docs1] == [d.energy for d in docs2]
    assert all(d.calculator["name"] == "mock" and d.input_hash for d in docs2)


def test_changed_settings_are_not_reused(tmp_path):
    with ResultStore(tmp_path) as store:
        run_hull_relaxations("Li-In", store, calculator="mock", phases=["LiIn"])
        _, summary = run_hull_relaxations(
            "Li-In", store, calculator="mock", phases=["LiIn"], relax_maker=RelaxMaker(calculator="mock", fmax=0.01)
        )
    assert summary.computed == 3 and summary.reused == 0


def test_key_depends_on_structure_and_calculator():
    s = StructureLibrary().load("Li")
    assert RelaxMaker(calculator="mock").key(s) != RelaxMaker(calculator="chgnet").key(s)
    t = s.copy()
    t.scale_lattice(s.volume * 1.01)
    assert RelaxMaker(calculator="mock").key(s) != RelaxMaker(calculator="mock").key(t)
    assert input_hash("a", 1) == input_hash("a", 1)


def test_concurrent_run_is_refused(tmp_path):
    with ResultStore(tmp_path):
        with pytest.raises(StoreError, match="another alloyflow run"):
            ResultStore(tmp_path).lock()


def test_corrupt_store_gives_clear_error(tmp_path):
    with ResultStore(tmp_path) as store:
        run_hull_relaxations("Li-In", store, calculator="mock", phases=["LiIn"])
    collection = next((tmp_path / "store").rglob("outputs.collection"))
    data = collection.read_bytes()
    collection.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError, match="unreadable"):
        ResultStore(tmp_path)


def test_relative_output_folder(tmp_path, monkeypatch):
    # jobflow changes directory into each job's folder; the store must not follow it.
    monkeypatch.chdir(tmp_path)
    with ResultStore("relative-out") as store:
        docs, summary = run_hull_relaxations("Li-In", store, calculator="mock", phases=["LiIn"])
    assert summary.computed == 3 and (tmp_path / "relative-out" / "store").is_dir()
