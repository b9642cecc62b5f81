"""FireWorks submission without a server: mongomock-persistent LaunchPad, rlaunch, job store, lost runs.

``fireworks[mongomock]`` keeps the LaunchPad in a JSON file
(``MONGOMOCK_SERVERSTORE_FILE``, read when fireworks is first imported) and
saves it when the interpreter exits, so every LaunchPad step runs in its own
subprocess, one after the other, as the CLI commands of docs/HPC.md would.
Results travel through the file-backed job store of ``--out``.
"""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fireworks")
pytest.importorskip("mongomock_persistence")

from alloyflow.engine import ResultStore, StoreError  # noqa: E402
from alloyflow.engine.fireworks import mongomock_launchpad_env, render_submit_script  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "hpc"
BIN = Path(sys.executable).parent


@pytest.fixture
def fw(tmp_path):
    """A server-less LaunchPad (JSON file), its YAML, an output folder and a runner for its processes."""
    lp_file = tmp_path / "my_launchpad.yaml"
    lp_file.write_text("host: localhost\nport: 27017\nname: alloyflow_test\nstrm_lvl: ERROR\n")
    env = mongomock_launchpad_env(tmp_path / "fw_db.json")
    env.update(OPENBLAS_NUM_THREADS="1", ALLOYFLOW_MOCK_DELAY="0", PYTHONWARNINGS="ignore")
    out = tmp_path / "out"
    launches = tmp_path / "launches"
    launches.mkdir()

    def py(code: str, **extra) -> str:
        head = f"import json, sys\nLP = {str(lp_file)!r}\nOUT = {str(out)!r}\n"
        res = subprocess.run([sys.executable, "-c", head + textwrap.dedent(code)], env={**env, **extra},
                             capture_output=True, text=True, timeout=300, cwd=launches)
        assert res.returncode == 0, res.stderr[-3000:]
        return res.stdout

    def cli(*args, **extra) -> str:
        res = subprocess.run([str(BIN / args[0]), *args[1:]], env={**env, **extra}, capture_output=True, text=True,
                             timeout=300, cwd=launches)
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        return res.stdout + res.stderr

    def states() -> dict:
        return json.loads(py("from alloyflow.engine.fireworks import workflow_states\n"
                             "print(json.dumps(workflow_states(LP)))").strip().splitlines()[-1])

    import datetime

    cli("lpad", "-l", str(lp_file), "reset", "--password", datetime.date.today().strftime("%Y-%m-%d"))  # docs/HPC.md step 2
    return type("FW", (), {"lp": lp_file, "env": env, "out": out, "launches": launches, "py": staticmethod(py),
                           "cli": staticmethod(cli), "states": staticmethod(states), "tmp": tmp_path})


def test_slurm_script_renders_from_the_example_qadapter(tmp_path):
    script = render_submit_script(EXAMPLES / "my_qadapter.yaml", tmp_path)
    for line in ("#SBATCH --nodes=1", "#SBATCH --ntasks=64", "#SBATCH --time=24:00:00", "#SBATCH --partition=normal",
                 "#SBATCH --account=my_project", "#SBATCH --job-name=alloyflow", "module load vasp/6.4.2",
                 'export ATOMATE2_VASP_CMD="srun vasp_std"', f"cd {tmp_path}",
                 "rlaunch -l /home/me/alloyflow/my_launchpad.yaml rapidfire --timeout 84000"):
        assert line in script, line
    assert "--mem=" not in script and "$${" not in script  # unset template keys are dropped


def test_example_job_stores_build():
    from jobflow import JobStore

    cfg = yaml.safe_load((EXAMPLES / "jobflow.yaml").read_text())
    store = JobStore.from_dict_spec(cfg["JOB_STORE"])
    assert type(store.docs_store).__name__ == "MongoStore" and "data" in {s for s in store.additional_stores}
    commented = [ln[2:] for ln in (EXAMPLES / "jobflow.yaml").read_text().splitlines() if ln.startswith("# ")]
    monty = yaml.safe_load("\n".join(commented[commented.index("JOB_STORE:"):]))
    store = JobStore.from_dict_spec(monty["JOB_STORE"])
    assert type(store.docs_store).__name__ == "MontyStore" and store.docs_store.key == "uuid"
    lp = yaml.safe_load((EXAMPLES / "my_launchpad.yaml").read_text())
    assert {"host", "port", "name"} <= set(lp)


SUBMIT_HULL = """
    from alloyflow.engine.fireworks import workflow_states
    from alloyflow.commands.submit import submit_hull
    before = workflow_states(LP)
    r = submit_hull("Li-In", "mock", LP, out=OUT, phases=["LiIn"])
    print(json.dumps({"before": before, "fw_ids": r.fw_ids, "done": r.done, "after": workflow_states(LP)}))
"""


def test_submit_rlaunch_and_read_back(fw):
    """alloyflow submit hull -> rlaunch rapidfire -> results in the job store -> hull; resubmission adds nothing."""
    first = json.loads(fw.py(SUBMIT_HULL).strip().splitlines()[-1])
    assert len(first["fw_ids"]) == 4 and first["after"] == {"READY": 3, "WAITING": 1}  # 3 relaxations, the hull
    fw.cli("rlaunch", "-l", str(fw.lp), "rapidfire")

    from alloyflow.analysis.hull import build_hull
    from alloyflow.workflows.flows.hull import entries_from_documents, run_hull_relaxations
    from alloyflow.commands.submit import hull_documents

    docs, missing = hull_documents("Li-In", "mock", out=fw.out, phases=["LiIn"])
    assert not missing and sorted(d.label for d in docs) == ["In", "Li", "LiIn"]
    assert all(d.calculator["name"] == "mock" and d.converged for d in docs)
    hull = build_hull(entries_from_documents(docs), "Li-In")
    assert next(p for p in hull.phases if p.formula == "LiIn").formation_energy_per_atom < 0
    with ResultStore(fw.out) as store:  # `alloyflow hull --out` on the same folder recomputes nothing
        local, summary = run_hull_relaxations("Li-In", store, calculator="mock", phases=["LiIn"])
    assert summary.computed == 0 and summary.reused == 3
    assert sorted(d.energy for d in local) == sorted(d.energy for d in docs)

    again = json.loads(fw.py(SUBMIT_HULL).strip().splitlines()[-1])
    assert again["before"] == {"COMPLETED": 4}  # rlaunch ran every firework
    assert again["fw_ids"] == [] and len(again["done"]) == 4 and again["after"] == {"COMPLETED": 4}
    # alloyflow report writes the hull files from the stored hull document
    assert "collected from the job store: hull Li-In" in fw.cli("alloyflow", "report", "--out", str(fw.out))
    assert (fw.out / "Li-In" / "hull.csv").read_text().count("\n") >= 4


def test_vasp_hull_submits_with_qadapter(fw):
    """--calculator vasp --qadapter: relax -> static -> result fireworks per phase, and a SLURM job via sbatch."""
    stub = fw.tmp / "bin"  # a stub sbatch records the script, as SLURM would receive it
    stub.mkdir()
    (stub / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {fw.tmp}/submitted.sh\necho 'Submitted batch job 4242'\n")
    (stub / "sbatch").chmod(0o755)
    out = fw.py(f"""
        from alloyflow.engine.fireworks import load_launchpad
        from alloyflow.commands.submit import submit_hull
        r = submit_hull("Li-In", "vasp", LP, qadapter_file={str(EXAMPLES / 'my_qadapter.yaml')!r}, out=OUT,
                        phases=["LiIn"])
        wf = load_launchpad(LP).get_wf_by_fw_id(r.fw_ids[0])
        names = {{fw.fw_id: fw.name for fw in wf.fws}}
        links = sorted((names[a], names[b]) for a, kids in wf.links.items() for b in kids)
        print(json.dumps({{"fw_ids": r.fw_ids, "queue_ids": r.queue_ids, "links": links}}))
    """, PATH=f"{stub}:{fw.env['PATH']}")
    result = json.loads(out.strip().splitlines()[-1])
    assert len(result["fw_ids"]) == 10 and len(result["queue_ids"]) == 1  # 3 per phase and the hull document
    for phase in ("Li", "In", "LiIn"):
        assert [f"vasp relax {phase}", f"vasp static {phase}"] in result["links"]
        assert [f"vasp static {phase}", f"vasp result {phase}"] in result["links"]
    script = (fw.tmp / "submitted.sh").read_text()
    assert "#SBATCH --ntasks=64" in script and "rlaunch -l /home/me/alloyflow/my_launchpad.yaml rapidfire" in script
    assert f"cd {fw.out / 'launches'}" in script


KILLABLE_WORKER = """
    import os, signal
    from fireworks import FWorker, LaunchPad
    from fireworks.core.rocket_launcher import rapidfire
    lp = LaunchPad.from_file(LP)

    def killed(*_):
        # What a MongoDB LaunchPad holds when a node dies: the state as of now (RUNNING);
        # mongomock keeps it only in memory, so write it out, then die without cleanup.
        lp.connection._store._to_file()
        os._exit(137)

    signal.signal(signal.SIGTERM, killed)
    rapidfire(lp, FWorker())
"""


def test_killed_run_is_detected_and_rerun_without_recomputing(fw):
    from alloyflow.structures import StructureLibrary
    from alloyflow.workflows.flows.hull import primitive
    from alloyflow.workflows.jobs.relax import StaticMaker

    fw.py("""
        from alloyflow.structures import StructureLibrary
        from alloyflow.workflows.flows.hull import HullMaker
        from alloyflow.workflows.jobs.relax import StaticMaker
        from alloyflow.engine.fireworks import submit_flow
        lib = StructureLibrary()
        flow = HullMaker(relax_maker=StaticMaker(calculator="mock")).make([lib.get(n, "Li-In") for n in ("Li", "In", "LiIn")])
        print(submit_flow(flow, LP, store=OUT).fw_ids)
    """)
    lib = StructureLibrary()
    maker = StaticMaker(calculator="mock")
    uuids = [maker.keyed_job(primitive(lib.get(n, "Li-In").structure), label=n).uuid for n in ("Li", "In", "LiIn")]

    def stored() -> dict:
        try:
            store = ResultStore(fw.out)  # no lock: a worker may be writing
        except StoreError:  # montydb writes its storage config on the worker's first insert
            return {}
        return {u: store.jobstore.query_one({"uuid": u}, properties=["completed_at"])["completed_at"]
                for u in uuids if store.has(u)}

    code = "import json, sys\n" + f"LP = {str(fw.lp)!r}\n" + textwrap.dedent(KILLABLE_WORKER)
    worker = subprocess.Popen([sys.executable, "-c", code], env={**fw.env, "ALLOYFLOW_MOCK_DELAY": "5"},
                              cwd=fw.launches, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(stored()) < 1 and time.time() < deadline:
        time.sleep(0.3)
    time.sleep(1.0)  # the second firework is running now
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 137
    before = stored()
    assert len(before) == 1
    assert fw.states() == {"COMPLETED": 1, "RUNNING": 1, "READY": 1}

    time.sleep(1.5)  # older than --time 1: lost
    report = fw.cli("lpad", "-l", str(fw.lp), "detect_lostruns", "--time", "1", "--rerun")
    assert "Lost FireWorks: 1" in report  # now READY again, with the one never started
    fw.cli("rlaunch", "-l", str(fw.lp), "rapidfire")
    assert fw.states() == {"COMPLETED": 3}
    after = stored()
    assert len(after) == 3
    for uuid, completed_at in before.items():  # the job finished before the kill was not recomputed
        assert after[uuid] == completed_at
    with ResultStore(fw.out) as store:
        assert all(len(list(store.jobstore.query({"uuid": u}, properties=["uuid"]))) == 1 for u in uuids)


def test_submit_refine_sends_vasp_statics_of_stored_bands(fw):
    """alloyflow submit refine PHASE: VASP statics on the stored ML band's endpoints and saddle, then the result job."""
    from alloyflow.cli import main

    assert main(["barriers", "Li", "--system", "Li-In", "--calculator", "mock", "--out", str(fw.out),
                 "--min-image-distance", "6", "--images", "3", "--max-hops", "1", "--no-progress"]) == 0
    out = fw.py("""
        from alloyflow.engine.fireworks import load_launchpad
        from alloyflow.commands.submit import submit_refine
        r = submit_refine("Li", LP, out=OUT, calculator="mock")
        wf = load_launchpad(LP).get_wf_by_fw_id(r.fw_ids[0])
        names = {fw.fw_id: fw.name for fw in wf.fws}
        links = sorted((names[a], names[b]) for a, kids in wf.links.items() for b in kids)
        print(json.dumps({"fw_ids": r.fw_ids, "links": links, "names": sorted(names.values())}))
    """)
    result = json.loads(out.strip().splitlines()[-1])
    # bcc Li's hop is symmetric (fwd = rev): the final endpoint takes the initial one's static,
    # so the initial endpoint + the climbing image, then the RefinedBarrier job
    assert len(result["fw_ids"]) == 3
    statics = sorted(n for n in result["names"] if n.startswith("vasp static Li hop 0 image"))
    assert statics == ["vasp static Li hop 0 image 0", "vasp static Li hop 0 image 2"], statics  # 3 images: CI is 2
    assert "vasp refine result Li hop 0" in result["names"]
    assert all([s, "vasp refine result Li hop 0"] in result["links"] for s in statics)


def test_submit_refine_without_stored_bands_is_a_clear_error(tmp_path):
    from alloyflow.commands.submit import refine_flow

    with pytest.raises(ValueError, match="run 'alloyflow barriers Li2Sn5"):
        refine_flow("Li2Sn5", tmp_path)


STUDY_OPTIONS = ["--calculator", "mock", "--phases", "LiIn", "--barriers", "Li", "LiIn", "--min-image-distance", "6",
                 "--images", "3", "--max-hops", "2"]


def test_submit_study_runs_to_the_end_and_reports_as_the_local_run(fw, tmp_path):
    """alloyflow submit study -> rlaunch rapidfire (barrier fireworks added at run time) -> alloyflow report."""
    from alloyflow.cli import main

    submitted = fw.cli("alloyflow", "submit", "study", "Li-In", "--launchpad", str(fw.lp), "--out", str(fw.out),
                       *STUDY_OPTIONS, "--no-search")
    assert "5 firework(s) added" in submitted  # 3 relaxations, the hull, the job that chooses the barrier phases
    assert fw.states() == {"READY": 3, "WAITING": 2}
    pending = fw.cli("alloyflow", "report", "--out", str(fw.out))
    assert "not finished yet: study Li-In" in pending and "relax LiIn" in pending
    fw.cli("rlaunch", "-l", str(fw.lp), "rapidfire")
    states = fw.states()
    assert list(states) == ["COMPLETED"] and states["COMPLETED"] > 5  # the NEB fireworks were added and ran
    collected = fw.cli("alloyflow", "report", "--out", str(fw.out))
    assert "collected from the job store: study Li-In" in collected

    local = tmp_path / "local"
    assert main(["study", "Li-In", *STUDY_OPTIONS, "--no-search", "--out", str(local), "--no-progress"]) == 0
    for rel in ("Li-In/hull.csv", "barriers/Li/barriers.csv", "barriers/LiIn/barriers.csv"):
        assert (fw.out / rel).read_text() == (local / rel).read_text(), rel
    assert "Li migration barriers" in (fw.out / "report.md").read_text()
    # the local run found every job the workers stored: nothing computed twice
    assert json.loads((local / "study.json").read_text())["jobs"]["computed"] > 0
    again = fw.cli("alloyflow", "submit", "study", "Li-In", "--launchpad", str(fw.lp), "--out", str(fw.out),
                   *STUDY_OPTIONS, "--no-search")
    assert "0 firework(s) added" in again


def test_submit_study_with_the_search_runs_it_on_the_workers(fw, tmp_path):
    """The tie-line search is part of the submitted flow: its stages add their fireworks at run time, and the
    hull built on the workers holds the same predicted phases as the local study's."""
    from alloyflow.cli import main

    options = ["--calculator", "mock", "--barriers", "none", "--search-max-sites", "4"]
    submitted = fw.cli("alloyflow", "submit", "study", "Li-In", "--launchpad", str(fw.lp), "--out", str(fw.out),
                       *options)
    assert "8 firework(s) added" in submitted  # 6 library relaxations, the search's first stage, the hull stage
    fw.cli("rlaunch", "-l", str(fw.lp), "rapidfire")
    states = fw.states()
    assert list(states) == ["COMPLETED"] and states["COMPLETED"] > 20  # candidates, screens, relaxations added
    fw.cli("alloyflow", "report", "--out", str(fw.out))
    local = tmp_path / "local"
    assert main(["study", "Li-In", *options, "--out", str(local), "--no-progress"]) == 0
    hull = (fw.out / "Li-In" / "hull.csv").read_text()
    assert hull == (local / "Li-In" / "hull.csv").read_text() and "predicted" in hull


def test_submit_barriers_adds_one_neb_firework_per_hop(fw):
    fw.cli("alloyflow", "submit", "barriers", "Li", "--system", "Li-In", "--calculator", "mock", "--launchpad",
           str(fw.lp), "--out", str(fw.out), "--min-image-distance", "6", "--images", "3", "--max-hops", "1")
    assert fw.states() == {"READY": 1, "WAITING": 1}  # the relaxation, and the job that plans the hops
    fw.cli("rlaunch", "-l", str(fw.lp), "rapidfire")
    # + the shared endpoint relaxation, one NEB, the host's elastic tensor, the collecting job, jobflow's
    # replacement output
    assert fw.states() == {"COMPLETED": 7}
    fw.cli("alloyflow", "report", "--out", str(fw.out))
    result = json.loads((fw.out / "barriers" / "Li" / "barriers.json").read_text())
    assert result["calculator"]["name"] == "mock" and result["hops"][0]["converged"]
    assert result["hops"][0]["endpoint_force_calls"] == 2  # both endpoints carried over from the endpoint firework


def test_worker_killed_in_a_neb_firework_loses_only_that_neb(fw):
    """Kill the worker during the second NEB firework; detect_lostruns --rerun; finish: the first NEB is kept."""
    fw.cli("alloyflow", "submit", "barriers", "Li", "--system", "Li-In", "--calculator", "mock", "--launchpad",
           str(fw.lp), "--out", str(fw.out), "--min-image-distance", "6", "--images", "3", "--max-hops", "2",
           "--max-length", "4", "--endpoint-trials", "1")

    def nebs() -> dict:
        try:
            store = ResultStore(fw.out)  # no lock: the worker may be writing
        except StoreError:
            return {}
        return {d["uuid"]: d["completed_at"]
                for d in store.jobstore.query({"name": {"$regex": "^neb "}}, properties=["uuid", "completed_at"])}

    code = "import json, sys\n" + f"LP = {str(fw.lp)!r}\n" + textwrap.dedent(KILLABLE_WORKER)
    # slow force calls (0.1 s each; a band takes ~2x the calls since the climbing image converges to 0.01 eV/Å):
    # the second NEB (or the host's elastic job) runs for tens of seconds
    worker = subprocess.Popen([sys.executable, "-c", code], env={**fw.env, "ALLOYFLOW_MOCK_DELAY": "0.1"},
                              cwd=fw.launches, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while len(nebs()) < 1 and time.time() < deadline and worker.poll() is None:
        time.sleep(0.3)
    time.sleep(0.5)  # the next firework is running now
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 137
    before = nebs()
    assert len(before) == 1 and fw.states().get("RUNNING") == 1

    time.sleep(1.5)
    assert "Lost FireWorks: 1" in fw.cli("lpad", "-l", str(fw.lp), "detect_lostruns", "--time", "1", "--rerun")
    fw.cli("rlaunch", "-l", str(fw.lp), "rapidfire")
    assert list(fw.states()) == ["COMPLETED"]
    after = nebs()
    assert len(after) == 2
    for uuid, completed_at in before.items():  # the NEB finished before the kill was not recomputed
        assert after[uuid] == completed_at
    fw.cli("alloyflow", "report", "--out", str(fw.out))
    result = json.loads((fw.out / "barriers" / "Li" / "barriers.json").read_text())
    assert len(result["hops"]) == 2 and all(h["forward_barrier"] is not None for h in result["hops"])


THERMO_STUDY = ["--calculator", "mock", "--no-search", "--phases", "LiIn", "--barriers", "Li",
                "--min-image-distance", "6", "--images", "3", "--max-hops", "1", "--endpoint-trials", "1",
                "--temperature", "300", "--min-length", "6", "--no-elastic"]


def test_submit_study_with_temperature_runs_the_thermo_stage_on_the_queue(fw, tmp_path, capsys):
    """submit study --temperature: the thermo stage is a firework of the study, planned (phonons, ν*) at run time."""
    import shutil

    from alloyflow.cli import main

    submitted = fw.cli("alloyflow", "submit", "study", "Li-In", "--launchpad", str(fw.lp), "--out", str(fw.out),
                       *THERMO_STUDY)
    assert "6 firework(s) added" in submitted  # 3 relaxations, the hull, the barrier choice, the thermo stage
    fw.cli("rlaunch", "-l", str(fw.lp), "rapidfire")
    assert list(fw.states()) == ["COMPLETED"]
    assert "collected from the job store: study Li-In" in fw.cli("alloyflow", "report", "--out", str(fw.out))
    thermo = json.loads((fw.out / "Li-In" / "thermo" / "thermo.json").read_text())
    assert thermo["temperature"] == 300 and [p["name"] for p in thermo["phases"]] == ["In", "LiIn", "Li"]
    assert thermo["diffusion"] and thermo["phases"][-1]["diffusivity"]  # Li's ν* from the study's Li barriers
    report = (fw.out / "report.md").read_text()
    assert "Finite temperature" in report and "G_f 300 K" in report

    # the local command on a copy of the workers' store finds every job: same keys on both engines
    local = tmp_path / "local"
    shutil.copytree(fw.out / "store", local / "store")
    assert main(["study", "Li-In", *THERMO_STUDY, "--out", str(local), "--no-progress"]) == 0
    assert "0 job(s) computed" in capsys.readouterr().out
    assert json.loads((local / "Li-In" / "thermo" / "thermo.json").read_text()) == thermo


def test_a_worker_leaves_out_the_nebs_a_local_run_stored(fw):
    """A planning job that runs on a worker replaces itself by the NEBs the store lacks only: NEBs computed
    earlier (here by a local run whose planning result is then dropped) are read back, not recomputed."""
    from alloyflow.cli import main
    from alloyflow.engine import ResultStore

    opts = ["--system", "Li-In", "--calculator", "mock", "--min-image-distance", "6", "--images", "3",
            "--max-hops", "2", "--max-length", "4", "--endpoint-trials", "1"]
    assert main(["barriers", "Li", *opts, "--out", str(fw.out), "--no-progress"]) == 0
    with ResultStore(fw.out) as store:
        docs = store.jobstore.docs_store
        nebs = {d["uuid"]: d["completed_at"] for d in docs.query({"name": {"$regex": "^neb "}})}
        plan = docs.query_one({"name": "barrier_hops"})["uuid"]
        docs.remove_docs({"$or": [{"uuid": plan}, {"name": "collect_barriers"}]})  # the planning is undone
    assert len(nebs) == 2
    submitted = fw.cli("alloyflow", "submit", "barriers", "Li", *opts, "--launchpad", str(fw.lp), "--out", str(fw.out))
    assert "1 firework(s) added" in submitted  # the planning job: the relaxation is stored
    fw.cli("rlaunch", "-l", str(fw.lp), "rapidfire")
    assert list(fw.states()) == ["COMPLETED"]
    with ResultStore(fw.out) as store:
        docs = store.jobstore.docs_store
        assert {d["uuid"]: d["completed_at"] for d in docs.query({"name": {"$regex": "^neb "}})} == nebs
        assert docs.query_one({"name": "collect_barriers"}) is not None


def test_screening_rounds_run_on_the_workers_as_locally(fw, tmp_path):
    """Screens, the rounds that choose the hops to converge and the collect job run as fireworks added at run
    time; the result equals the local command's, with the same hop left screened-only."""
    from alloyflow.cli import main

    opts = ["--system", "Li-In", "--calculator", "mock", "--min-image-distance", "6", "--images", "3",
            "--max-length", "4", "--endpoint-trials", "1", "--screen", "--screen-factor", "0.5"]
    fw.cli("alloyflow", "submit", "barriers", "Li", *opts, "--launchpad", str(fw.lp), "--out", str(fw.out))
    fw.cli("rlaunch", "-l", str(fw.lp), "rapidfire")
    assert list(fw.states()) == ["COMPLETED"]
    fw.cli("alloyflow", "report", "--out", str(fw.out))
    queued = json.loads((fw.out / "barriers" / "Li" / "barriers.json").read_text())
    assert [h["screened_only"] for h in queued["hops"]] == [False, True]
    assert queued["screening"]["screened_only"] == [1] and queued["hops"][0]["converged"]
    local = tmp_path / "local"
    assert main(["barriers", "Li", *opts, "--out", str(local), "--no-progress"]) == 0
    assert json.loads((local / "barriers" / "Li" / "barriers.json").read_text()) == queued
