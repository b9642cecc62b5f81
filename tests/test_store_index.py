"""The store's key index answers like montydb, sees other processes' writes, and reruns rewrite nothing unchanged."""

import json
import multiprocessing
import os
import random

import pytest
from maggma.stores import MontyStore

from alloyflow.engine import ResultStore
from alloyflow.engine.indexed import IndexedMontyStore
from alloyflow.io.files import FIGURE_INDEX, figure_key, save_figure_once, write_text_atomic


def _docs(n=40, seed=0):
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        uuid = f"u{i % 15}"
        docs.append({"uuid": uuid, "index": i // 15 + 1, "name": f"job {i}", "output": {"x": rng.random()},
                     "metadata": {"k": i % 3}})
    return docs


def _stores(path):
    indexed = IndexedMontyStore("outputs", database_path=str(path), database_name="db", key="uuid")
    plain = MontyStore("outputs", database_path=str(path), database_name="db", key="uuid")
    indexed.connect()
    plain.connect()
    return indexed, plain


QUERIES = [
    ({"uuid": "u3"}, ["output"], {"index": -1}),
    ({"uuid": "u3"}, None, {"index": 1}),
    ({"uuid": "u3", "index": {"$gte": 2}}, ["uuid"], None),
    ({"uuid": "u3", "index": {"$gte": 4}}, ["uuid"], None),
    ({"uuid": "u14", "index": 2}, {"name": 1}, None),
    ({"uuid": {"$in": ["u1", "u7", "nope"]}}, ["name", "index"], {"index": -1}),
    ({"uuid": "nope"}, None, None),
    ({"uuid": "u2", "metadata.k": 2}, None, None),  # nested: montydb answers
    ({"name": "job 5"}, None, None),  # not on the key: montydb answers
]


@pytest.mark.parametrize("criteria,properties,sort", QUERIES)
def test_index_answers_as_montydb_does(tmp_path, criteria, properties, sort):
    indexed, plain = _stores(tmp_path)
    plain.update(_docs(), key=["uuid", "index"])
    for limit in (0, 1):
        got = list(indexed.query(criteria, properties=properties, sort=sort, limit=limit))
        want = list(plain.query(criteria, properties=properties, sort=sort, limit=limit))
        assert got == want
    assert indexed.query_one(criteria, properties=properties, sort=sort) == plain.query_one(
        criteria, properties=properties, sort=sort)


def test_indexed_writes_leave_what_upserts_leave(tmp_path):
    """New keys are inserted without montydb's scan; existing ones, repeats in one batch and index 2 upsert."""
    indexed, plain = _stores(tmp_path / "a")
    other, reference = _stores(tmp_path / "b")
    again = [{"uuid": "u1", "index": 1, "output": "again"}, {"uuid": "fresh", "index": 1, "output": {"688.15": 1}}]
    first, later = _docs()[:20], _docs(seed=1)[10:40] + again * 2
    for store in (indexed, reference):
        store.update({"uuid": "seed", "index": 1}, key=["uuid", "index"])  # the file exists from here on
        store.update(first, key=["uuid", "index"])
        store.update(later, key=["uuid", "index"])
    strip = lambda docs: sorted((d["uuid"], d["index"], json.dumps(d.get("output"))) for d in docs)  # noqa: E731
    assert strip(plain.query({})) == strip(other.query({}))
    assert len(list(plain.query({}))) == 1 + len({(d["uuid"], d["index"]) for d in first + later})


def _write_from_another_process(path):
    store = MontyStore("outputs", database_path=str(path), database_name="db", key="uuid")
    store.connect()
    store.update([{"uuid": "u3", "index": 9, "output": "later"}, {"uuid": "new", "index": 1, "output": "new"}],
                 key=["uuid", "index"])


def test_index_sees_writes_of_another_process(tmp_path):
    indexed, plain = _stores(tmp_path)
    plain.update(_docs(), key=["uuid", "index"])
    assert indexed.query_one({"uuid": "u3"}, sort={"index": -1})["index"] == 3
    assert indexed.query_one({"uuid": "new"}) is None
    p = multiprocessing.get_context("spawn").Process(target=_write_from_another_process, args=(tmp_path,))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    assert indexed.query_one({"uuid": "u3"}, sort={"index": -1})["output"] == "later"
    assert indexed.query_one({"uuid": "new"})["output"] == "new"
    indexed.remove_docs({"uuid": "new"})
    assert indexed.query_one({"uuid": "new"}) is None


def test_result_store_reads_through_the_index(tmp_path):
    from alloyflow.workflows.flows.hull import run_hull_relaxations

    with ResultStore(tmp_path) as store:
        run_hull_relaxations("Li-In", store, calculator="mock", phases=["LiIn"])
        assert type(store.jobstore.docs_store).__name__ == "IndexedMontyStore"
        uuids = [d["uuid"] for d in store.jobstore.docs_store.query({}, properties=["uuid"])]
        assert uuids and all(store.has(u) for u in uuids)
        assert not store.has("no-such-job")
    # the index's own connection is closed with the store: montydb's write-ahead log is folded into the file
    assert not any(p.name.endswith("-wal") and p.stat().st_size for p in (tmp_path / "store").rglob("*"))


def test_unchanged_text_file_is_not_rewritten(tmp_path):
    path = write_text_atomic(tmp_path / "a.csv", "x,y\n1,2\n")
    before = os.stat(path).st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    write_text_atomic(path, "x,y\n1,2\n")
    assert os.stat(path).st_mtime_ns == before - 10**9
    write_text_atomic(path, "x,y\n1,3\n")
    assert path.read_text() == "x,y\n1,3\n"


def test_figure_is_drawn_again_only_when_its_data_or_file_changed(tmp_path):
    drawn = []

    def draw(tag):
        def write(tmp):
            drawn.append(tag)
            tmp.write_bytes(f"png {tag}".encode())
        return write

    path = tmp_path / "hull.png"
    save_figure_once(path, figure_key("hull", {"e": 1}), draw("a"))
    save_figure_once(path, figure_key("hull", {"e": 1}), draw("b"))
    assert drawn == ["a"]
    save_figure_once(path, figure_key("hull", {"e": 2}), draw("c"))  # new data
    assert drawn == ["a", "c"] and path.read_bytes() == b"png c"
    path.write_bytes(b"edited by hand")  # another file under the same name
    save_figure_once(path, figure_key("hull", {"e": 2}), draw("d"))
    assert drawn == ["a", "c", "d"]
    path.unlink()
    save_figure_once(path, figure_key("hull", {"e": 2}), draw("e"))
    assert drawn[-1] == "e" and path.exists()
    (tmp_path / FIGURE_INDEX).write_text("not json")  # a damaged index only costs a redraw
    save_figure_once(path, figure_key("hull", {"e": 2}), draw("f"))
    assert drawn[-1] == "f" and isinstance(json.loads((tmp_path / FIGURE_INDEX).read_text()), dict)
