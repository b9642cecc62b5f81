"""Independent jobs in worker processes (``alloyflow.engine.parallel``): same results, same store, same failures."""

import argparse
import os

import pytest
from jobflow import Flow, Response, job

from alloyflow.engine import JobFailed, ResultStore, is_finished, run_flow
from alloyflow.engine.local import DYNAMIC, exposing_store


@job
def add(a, b):
    return {"sum": a + b, "pid": os.getpid()}


@job
def fail(x):
    raise ArithmeticError(f"no result for {x}")


@job
def fan_out(n):
    """A dynamic job: replaced by ``n`` independent jobs and one that collects them."""
    parts = [add(i, i) for i in range(n)]
    total = add_all([p.output["sum"] for p in parts])
    return Response(replace=Flow([*parts, total], output=total.output))


@job
def add_all(values):
    return {"sum": sum(values), "pid": os.getpid()}


@job
def grow(x):
    """A computing job that adds a job of its own (its response travels back from the worker)."""
    extra = add(x, 100)
    return Response(output={"sum": x, "pid": os.getpid()}, addition=extra)


def _dynamic(n):
    j = fan_out(n)
    j.metadata[DYNAMIC] = True
    return exposing_store(j)


def test_workers_give_the_sequential_results_and_run_elsewhere(tmp_path):
    def flow():
        a, b = add(1, 2), add(3, 4)
        c = add(a.output["sum"], b.output["sum"])
        d = _dynamic(4)
        e = add(c.output["sum"], d.output["sum"])
        g = grow(7)
        return Flow([a, b, c, d, e, g], output=e.output)

    f1, f2 = flow(), flow()
    with ResultStore(tmp_path / "one") as store:
        s1 = run_flow(f1, store, workers=1)
        one = store.output(f1.output.uuid)
    with ResultStore(tmp_path / "two") as store:
        s2 = run_flow(f2, store, workers=2)
        two = store.output(f2.output.uuid)
        pids = {d["output"]["pid"] for d in store.jobstore.query({"output.pid": {"$exists": True}})}
        assert all(is_finished(store.jobstore, j) for j in f2.jobs)
        added = store.jobstore.query_one({"output.sum": 107})  # the job that grow() added, run after it
        assert added is not None
    assert one["sum"] == two["sum"] == 3 + 7 + sum(2 * i for i in range(4))
    assert s1.computed == s2.computed == 12  # 5 jobs, fan_out, its 4 + 1 replacement jobs, grow's addition
    assert pids and os.getpid() not in pids  # computed in the workers (which ones: however they came free)


def test_a_failing_job_stops_new_starts_keeps_the_others_and_says_which(tmp_path):
    a, b = add(1, 1), fail(5)
    later = add(b.output, 1)  # waits on the failed job: never started
    with ResultStore(tmp_path) as store:
        with pytest.raises(JobFailed, match=r"job 'fail' failed \(ArithmeticError: no result for 5\)"):
            run_flow(Flow([b, a, later]), store, workers=2)
        assert store.has(a.uuid)  # finished beside the failure, stored
        assert not store.has(b.uuid) and not store.has(later.uuid)
        again = run_flow(Flow([add(1, 1)]), store, workers=2)  # the folder stays usable
        assert again.computed == 1


def test_a_job_budget_counts_the_jobs_in_flight(tmp_path):
    from alloyflow.engine import Budget

    jobs = [add(i, 1) for i in range(5)]
    with ResultStore(tmp_path) as store:
        first = run_flow(jobs, store, workers=2, budget=Budget(max_computed=2))
        assert first.computed == 2 and first.stopped == "stopped after 2 new jobs"
        rest = run_flow(jobs, store, workers=2)
        assert (rest.computed, rest.reused, rest.stopped) == (3, 2, "")


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_is_told_when_each_computing_job_begins_and_ends(tmp_path, workers):
    """``progress.begin(label)`` before a job computes, then ``progress(label, reused)``: what is in flight."""
    class Progress:
        def __init__(self):
            self.events, self.in_flight, self.most = [], set(), 0

        def begin(self, label):
            self.events.append(("begin", label))
            self.in_flight.add(label)
            self.most = max(self.most, len(self.in_flight))

        def __call__(self, label, reused):
            self.events.append(("reused" if reused else "end", label))
            self.in_flight.discard(label)

    jobs = [add(i, 1) for i in range(4)]
    for i, j in enumerate(jobs):
        j.name = f"add {i}"
    with ResultStore(tmp_path) as store:
        run_flow(jobs[:1], store, workers=workers)
        progress = Progress()
        run_flow(jobs, store, workers=workers, progress=progress)
    assert ("reused", "add 0") in progress.events and ("begin", "add 0") not in progress.events
    for i in (1, 2, 3):
        assert progress.events.index(("begin", f"add {i}")) < progress.events.index(("end", f"add {i}"))
    assert not progress.in_flight and progress.most <= workers


def test_workers_must_be_positive(tmp_path):
    with ResultStore(tmp_path) as store:
        with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
            run_flow(Flow([add(1, 1)]), store, workers=0)


def test_command_line_default_is_one_worker_per_core_for_ml_and_one_for_dft(monkeypatch):
    from alloyflow.calculators.threads import available_cores
    from alloyflow.cli import build_parser, set_workers
    from alloyflow.engine import auto_workers

    monkeypatch.delenv("ALLOYFLOW_WORKERS")
    set_workers(build_parser().parse_args(["barriers", "Li"]))
    assert os.environ["ALLOYFLOW_WORKERS"] == str(auto_workers()) == str(max(1, min(available_cores(), 4)))
    monkeypatch.delenv("ALLOYFLOW_WORKERS")
    set_workers(argparse.Namespace(command="barriers", calculator="gpaw", workers=None, threads=None))
    assert os.environ["ALLOYFLOW_WORKERS"] == "1"
    set_workers(build_parser().parse_args(["hull", "Li-In", "--workers", "3"]))
    assert os.environ["ALLOYFLOW_WORKERS"] == "3"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["study", "Li-In", "--workers", "0"])
    monkeypatch.setenv("ALLOYFLOW_CORES", "1")
    assert available_cores() == 1  # a worker's share of the cores sets its torch threads


def test_barriers_on_sevennet_with_two_workers_match_one(tmp_path):
    """The real thing: a bcc-Li vacancy barrier flow (planning, endpoint and NEB jobs) on SevenNet-0."""
    from alloyflow.workflows.flows.barriers import run_barriers

    results = []
    for workers in (1, 2):
        os.environ["ALLOYFLOW_WORKERS"] = str(workers)
        with ResultStore(tmp_path / str(workers)) as store:
            results.append(run_barriers("Li", store, min_image_distance=6.0, n_images=3, max_length=3.0))
    one, two = ([h.forward_barrier for h in r.hops] for r in results)
    assert len(one) == 1 and 0.02 < one[0] < 0.3  # 143 meV in this small cell (47 in the 10 Å one)
    assert two == pytest.approx(one, abs=1e-5)


def test_jobs_start_first_come_first_served(tmp_path):
    """A response's jobs queue behind those already waiting (phases computed in the order they were planned)."""
    from alloyflow.engine.local import RunSummary, jobs_in_order
    from alloyflow.engine.parallel import run_parallel

    d = _dynamic(2)  # runs here first; its replacement (2 parts and their sum) comes after a1 and a2
    a1, a2 = add(10, 0), add(20, 0)
    a1.name, a2.name = "a1", "a2"
    order = []
    with ResultStore(tmp_path) as store:
        run_parallel(jobs_in_order(Flow([d, a1, a2])), store, lambda label, reused: order.append(label),
                     RunSummary(), workers=1)
    assert order == ["fan_out", "a1", "a2", "add", "add", "add_all"]
