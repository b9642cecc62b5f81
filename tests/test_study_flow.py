"""The study as one jobflow flow: old stores stay valid, decisions happen in jobs, no DFT on a login node."""

import json
import re
import shutil
from pathlib import Path

import pytest

from alloyflow.cli import main
from alloyflow.engine.local import ADOPTED_FROM

DATA = Path(__file__).parent / "data" / "stored_study_v0"
OLD_STUDY = ["study", "Li-In", "--calculator", "mock", "--no-search", "--phases", "LiIn", "--barriers", "reference",
             "--endpoint-trials", "1", "--no-interstitial",
             "--min-image-distance", "6", "--images", "3", "--max-hops", "2", "--no-progress"]


def _computed(stdout: str) -> int:
    return int(re.search(r"(\d+) job\(s\) computed", stdout).group(1))


def _documents(out: Path) -> dict:
    from alloyflow.engine import ResultStore

    store = ResultStore(out)
    return {(d["uuid"], d["index"]): (d["name"], d["completed_at"], (d.get("metadata") or {}).get(ADOPTED_FROM))
            for d in store.jobstore.query({}, properties=["uuid", "index", "name", "completed_at", "metadata"])}


def test_study_stored_before_the_redesign_reruns_with_nothing_recomputed(tmp_path, capsys):
    """The same command (as then: endpoints relaxed once, vacancy hops only) finds every stored job.

    What the redesign added since (the host-stability check) is computed; no
    relaxation or NEB stored before is computed again. Two bands were stored
    under keys whose fingerprint wrote a site on a cell face as 1.0 (its
    coordinate came out -2e-16 on the machine that stored them); they are
    found and copied under today's keys, not recomputed.
    """
    shutil.copytree(DATA / "store", tmp_path / "store")
    before = _documents(tmp_path)
    assert main([*OLD_STUDY, "--out", str(tmp_path)]) == 0
    after = _documents(tmp_path)
    assert all(after[k] == v for k, v in before.items())  # untouched: same completion times
    new = [(name, done, source) for k, (name, done, source) in after.items() if k not in before]
    assert not [n for n, _, source in new if n.startswith(("relax ", "neb ")) and not source], new
    originals = {uuid: (name, done) for (uuid, _), (name, done, _) in before.items()}
    assert all(originals[source] == (n, done) for n, done, source in new if source)  # copies of stored bands
    assert _computed(capsys.readouterr().out) == sum(n.startswith("elastic ") for n, _, _ in new)
    old_hull = json.loads((DATA / "expected" / "hull.json").read_text())
    new_hull = json.loads((tmp_path / "Li-In" / "hull.json").read_text())
    assert {p["name"]: p["energy_per_atom"] for p in new_hull["phases"]} == \
        {p["name"]: p["energy_per_atom"] for p in old_hull["phases"]}
    for name in ("Li", "LiIn", "In-dilute-Li"):
        old = json.loads((DATA / "expected" / f"barriers-{name}.json").read_text())
        new = json.loads((tmp_path / "barriers" / name / "barriers.json").read_text())
        assert [(h["id"], h["forward_barrier"]) for h in new["hops"]] == \
            [(h["id"], h["forward_barrier"]) for h in old["hops"]], name
        assert new["percolation"] == old["percolation"]


def test_study_flow_decides_barriers_inside_a_job():
    """At build time the flow holds the hull relaxations and the choosing job only: no NEB exists yet."""
    from alloyflow.engine.local import DYNAMIC
    from alloyflow.workflows.flows.study import StudySettings, study_flow

    settings = dict(systems=["Li-In"], calculator="mock", phases=["LiIn"], barriers=["Li"], search=False)
    flow = study_flow(StudySettings(**settings))
    jobs = [j for j, _ in flow.iterflow()]
    names = [j.name for j in jobs]
    assert not any("neb" in n.lower() for n in names)
    assert sum(n.startswith("relax ") for n in names) == 3
    choose = jobs[-1]
    assert choose.metadata[DYNAMIC] and flow.output.uuid == choose.uuid
    # built twice, the same uuids: a resubmission finds the same jobs
    again = study_flow(StudySettings(**settings))
    assert [j.uuid for j, _ in again.iterflow()] == [j.uuid for j in jobs]


def test_study_flow_searches_inside_jobs():
    """With the search, the flow holds the library relaxations and two deciding jobs: the search's first
    stage and the one that adds its predicted phases to the hulls. No candidate, hull or NEB exists yet."""
    from alloyflow.engine.local import DYNAMIC
    from alloyflow.workflows.flows.study import StudySettings, search_outputs, study_flow

    settings = dict(systems=["Li-In", "Li-Sn"], calculator="mock", barriers=["Li"], search_max_sites=4)
    flow = study_flow(StudySettings(**settings))
    jobs = [j for j, _ in flow.iterflow()]
    dynamic = [j.name for j in jobs if j.metadata.get(DYNAMIC)]
    assert dynamic == ["search_generate", "search_generate", "study_hulls"]
    assert jobs[-1].uuid == flow.output.uuid
    relax = [j.name for j in jobs if j.name.startswith("relax ")]
    assert len(relax) == len(set(relax))  # Li, shared by both systems, is one job
    assert not any("neb" in n.lower() or n.startswith("hull") or "screen" in n for n in [j.name for j in jobs])
    assert set(search_outputs(flow)) == {"Li-In", "Li-Sn"}
    again = study_flow(StudySettings(**settings))
    assert [j.uuid for j, _ in again.iterflow()] == [j.uuid for j in jobs]


@pytest.mark.parametrize("search", [True, False])
def test_the_deciding_stages_are_planned_anew_when_what_they_build_changes_meaning(monkeypatch, search):
    """A stored study reuses its deciding jobs whole: their keys must follow the hull and barrier flows'
    versions, or a stored study keeps hulls or barriers an older alloyflow made (as α-Sn hulls would have)."""
    from alloyflow.workflows.flows import hull, study

    settings = dict(systems=["Li-Sn"], calculator="mock", phases=["LiSn"], barriers=["none"], search=search,
                    search_max_sites=4)
    base = study.study_flow(study.StudySettings(**settings)).output.uuid
    for bumps in ([(hull, "HULL_VERSION"), (study, "HULL_VERSION")], [(study, "BARRIER_FLOW_VERSION")]):
        with monkeypatch.context() as m:
            for module, name in bumps:  # study.py's HULL_VERSION is hull.py's, imported
                m.setattr(module, name, getattr(module, name) + 1)
            assert study.study_flow(study.StudySettings(**settings)).output.uuid != base, bumps
    references = study.study_flow(study.StudySettings(**settings, references={"Sn": "lowest"})).output.uuid
    assert references != base


def test_flow_keys_follow_every_maker_field():
    """A Maker's key is derived from its fields: a new result-changing setting changes it, batching does not.

    Nor does sharing endpoint relaxations between symmetry-equivalent endpoints (a speed setting).
    """
    from alloyflow.workflows.jobs.neb import NebMaker
    from alloyflow.workflows.jobs.relax import RelaxMaker

    base = NebMaker(calculator="mock")
    speed = ("batched", "share_endpoints")
    assert base.key_settings() == {k: v for k, v in base.settings().items() if k not in speed}
    assert NebMaker(calculator="mock", spring=0.5).key_settings() != base.key_settings()
    assert NebMaker(calculator="mock", batched=False).key_settings() == base.key_settings()
    assert NebMaker(calculator="mock", share_endpoints=False).key_settings() == base.key_settings()
    assert set(RelaxMaker().settings()) == {"fmax", "steps", "relax_cell", "fix_symmetry", "symprec", "optimizer",
                                           "calculator_kwargs"}


@pytest.mark.parametrize("argv", [
    ["barriers", "LiSn", "--calculator", "vasp"],
    ["study", "Li-Sn", "--calculator", "vasp"],
    ["hull", "Li-Sn", "--calculator", "vasp"],
])
def test_vasp_is_refused_on_the_login_node(tmp_path, capsys, argv):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"alloyflow submit {argv[0]}" in err and "--inside-batch-job" in err
    assert not (tmp_path / "out").exists()  # refused before any job or store exists


def test_inside_batch_job_lifts_the_refusal():
    from alloyflow.cli import build_parser, refuse_login_node_dft

    args = build_parser().parse_args(["barriers", "LiSn", "--calculator", "vasp", "--inside-batch-job"])
    refuse_login_node_dft(args)  # no error
    with pytest.raises(ValueError, match="alloyflow submit refine"):
        refuse_login_node_dft(build_parser().parse_args(["refine", "LiSn", "--dft", "vasp"]))


def test_submit_names_its_calculator(tmp_path, capsys):
    """A queue never falls back to the ML potential silently: submit requires --calculator."""
    assert main(["submit", "study", "Li-In", "--launchpad", str(tmp_path / "lp.yaml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give --calculator" in err
