"""jobflow-remote adapter: the flow it sends and the filter that keeps resubmissions free of duplicate keys.

jobflow-remote's queue store is MongoDB, which this machine cannot run; a
mongomock collection with the queue's unique ``(uuid, index)`` index stands in
for it, and a small controller records what ``add_flow`` receives.
"""

import mongomock
import pymongo
import pytest

from alloyflow.engine import ResultStore, run_flow
from alloyflow.engine.remote import RemoteError, pending_flow, submit_remote
from alloyflow.structures import StructureLibrary
from alloyflow.workflows.flows.hull import hull_flow_for
from alloyflow.workflows.flows.study import StudySettings, study_flow


class QueueController:
    """The parts of jobflow-remote's ``JobController`` the adapter uses, over a mongomock queue."""

    def __init__(self, jobstore):
        self.jobstore = jobstore
        self.jobs = mongomock.MongoClient().db.jobs
        self.jobs.create_index([("uuid", pymongo.ASCENDING), ("index", pymongo.ASCENDING)], unique=True)
        self.project = type("Project", (), {"name": "test", "workers": {"cluster": None}})()
        self.calls = []

    def add_flow(self, flow, worker, allow_external_references=False, exec_config=None, resources=None):
        self.calls.append((flow, worker, allow_external_references))
        for job, _ in flow.iterflow():  # raises DuplicateKeyError exactly as the real queue would
            self.jobs.insert_one({"uuid": job.uuid, "index": job.index, "state": "READY"})
        return [f"db{i}" for i, _ in enumerate(flow.iterflow())]


def test_resubmission_and_shared_jobs_never_hit_a_duplicate_key(tmp_path):
    lib = StructureLibrary()
    with ResultStore(tmp_path) as store:
        jc = QueueController(store.jobstore)
        first = submit_remote(hull_flow_for("Li-In", "mock", lib, ["LiIn"]), jc=jc)
        assert len(first.db_ids) == 4 and jc.calls[0][1:] == ("cluster", True)
        # the same flow again: everything is queued, nothing is added
        again = submit_remote(hull_flow_for("Li-In", "mock", lib, ["LiIn"]), jc=jc)
        assert again.db_ids == [] and len(again.pending.queued) == 4 and len(jc.calls) == 1
        # Li-Sn shares the Li relaxation with Li-In: left out, and the hull job that waits on it too
        shared = submit_remote(hull_flow_for("Li-Sn", "mock", lib, ["LiSn"]), jc=jc)
        labels = [j.name for j, _ in jc.calls[-1][0].iterflow()]
        assert "relax Li" not in labels and "relax LiSn" in labels and all(n.startswith("relax ") for n in labels)
        assert "relax Li" in shared.pending.queued and "hull Li-Sn" in shared.pending.queued
        assert "resubmit" in shared.message() or "submit again" in shared.message()


def test_stored_jobs_are_left_out_and_read_from_the_store(tmp_path):
    lib = StructureLibrary()
    with ResultStore(tmp_path) as store:
        run_flow(hull_flow_for("Li-In", "mock", lib, ["LiIn"]), store)  # every hull job stored
        flow = study_flow(StudySettings(systems=["Li-In"], calculator="mock", phases=["LiIn"], barriers=["Li"], search=False),
                          lib)
        new, pending = pending_flow(flow, store.jobstore, QueueController(store.jobstore).jobs)
    assert len(pending.done) == 4  # three relaxations and the hull document
    assert [j.name for j in new.jobs] == ["choose_barriers"]  # only the job that adds the barrier flows


def test_missing_jobflow_remote_is_a_one_line_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_remote(name, *a, **k):
        if name.startswith("jobflow_remote"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_remote)
    from alloyflow.engine.remote import controller

    with pytest.raises(RemoteError, match="pip install jobflow-remote"):
        controller("cluster")
