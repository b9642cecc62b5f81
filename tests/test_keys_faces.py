"""Cache keys of sites on a cell face: one key today, and results stored under the earlier keys are found."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from alloyflow.engine import ResultStore, run_cached
from alloyflow.engine.keys import (EARLIER_KEY, _EarlierFaces, _with_faces, deterministic_uuid, earlier_key,
                                   earlier_keys, structure_fingerprint)
from alloyflow.engine.local import ADOPTED_FROM, is_finished
from alloyflow.workflows.jobs.relax import RelaxMaker


def _li(x0: float) -> Structure:
    """bcc Li, 2 atoms; the first site's x is ``x0`` (a cell face when |x0| ~ 1e-16)."""
    return Structure(Lattice.cubic(3.44), ["Li", "Li"], [[x0, 0.0, 0.0], [0.5, 0.5, 0.5]])


def test_a_site_on_a_cell_face_has_one_key_however_its_coordinate_came_out():
    below, above = _li(-2e-16), _li(2e-16)
    assert structure_fingerprint(below) == structure_fingerprint(above)
    assert structure_fingerprint(below)["frac"][0] == [0.0, 0.0, 0.0]
    earlier = _with_faces(_EarlierFaces(), structure_fingerprint, below)
    assert earlier["frac"][0][0] == 1.0  # what round(x % 1.0, 6) wrote before
    maker = RelaxMaker(calculator="mock")
    assert maker.key(below) == maker.key(above)
    assert earlier_key(maker.key, above) is None  # nothing on a face came out as 1.0 here
    old = earlier_key(maker.key, below)
    assert old not in (None, maker.key(below))
    # another machine's rounding: every combination of the first site's three face coordinates, today's left out
    others = earlier_keys(maker.key, above)
    assert old in others and maker.key(above) not in others and len(others) == 2 ** 3 - 1
    assert maker.keyed_job(below, "Li").metadata[EARLIER_KEY] == old
    assert EARLIER_KEY not in maker.keyed_job(above, "Li").metadata


def test_a_relaxation_stored_under_its_earlier_key_is_copied_not_recomputed(tmp_path):
    """For real on SevenNet-0: a result stored before the face wrap is found, copied once, and left as it was."""
    maker = RelaxMaker(calculator="sevennet", steps=5)
    s = _li(-2e-16)
    old_uuid = deterministic_uuid(earlier_key(maker.key, s))
    then = maker.keyed_job(s, "Li")
    then.set_uuid(old_uuid)  # as alloyflow keyed it before the wrap
    then.metadata.pop(EARLIER_KEY)
    with ResultStore(tmp_path) as store:
        first = run_cached(then, store)
        stored = store.jobstore.query_one({"uuid": old_uuid}, load=True)
    assert first.computed == 1

    today = maker.keyed_job(s, "Li")
    assert today.uuid != old_uuid
    with ResultStore(tmp_path) as store:
        again = run_cached(today, store)
        copy = store.jobstore.query_one({"uuid": today.uuid}, load=True)
        original = store.jobstore.query_one({"uuid": old_uuid}, load=True)
        assert is_finished(store.jobstore, today)
        assert store.jobstore.count({"uuid": today.uuid}) == 1  # copied once
    assert again.computed == 0 and again.reused == 1
    assert copy["metadata"][ADOPTED_FROM] == old_uuid and copy["metadata"]["alloyflow_key"] == maker.key(s)
    assert copy["output"]["energy"] == stored["output"]["energy"] and np.isfinite(copy["output"]["energy"])
    assert original["completed_at"] == stored["completed_at"] and ADOPTED_FROM not in original["metadata"]


def test_a_job_queued_under_its_earlier_key_counts_as_queued():
    """A firework or jobflow-remote job submitted before the face wrap is not submitted again."""
    mongomock = pytest.importorskip("mongomock")
    from types import SimpleNamespace

    from alloyflow.engine.fireworks import _queued_uuids
    from alloyflow.engine.keys import earlier_uuid
    from alloyflow.engine.remote import queued_uuids

    maker = RelaxMaker(calculator="mock")
    then, fresh = maker.keyed_job(_li(-2e-16), "Li"), maker.keyed_job(_li(0.25), "Li quarter")
    old_key = then.metadata[EARLIER_KEY]
    db = mongomock.MongoClient().db
    db.fireworks.insert_one({"spec": {"alloyflow_key": old_key}, "state": "READY"})
    assert _queued_uuids(SimpleNamespace(fireworks=db.fireworks), [then, fresh]) == {then.uuid}
    db.jobs.insert_one({"uuid": earlier_uuid(then), "index": 1})
    assert queued_uuids(db.jobs, [then, fresh]) == {then.uuid}
    assert earlier_uuid(fresh) is None
