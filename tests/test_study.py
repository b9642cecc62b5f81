"""`alloyflow study`: report, resume after SIGKILL, corrupt outputs, CLI errors."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alloyflow.cli import main

STUDY = ["study", "Li-In", "--calculator", "mock", "--no-search", "--phases", "LiIn", "--barriers", "Li",
         "--min-image-distance", "6", "--images", "3", "--no-progress"]


def _stored_jobs(out: Path) -> int:
    """Rows in the job store, read with sqlite3 so it works while another process writes."""
    collection = next(iter((out / "store").rglob("outputs.collection")), None)
    if collection is None:
        return 0
    try:
        with sqlite3.connect(f"file:{collection}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return 0


def _force_jobs(out: Path) -> int:
    """Stored jobs that cost force calls (planning and collecting jobs left out), read like ``_stored_jobs``."""
    import bson

    collection = next(iter((out / "store").rglob("outputs.collection")), None)
    if collection is None:
        return 0
    with sqlite3.connect(f"file:{collection}?mode=ro", uri=True, timeout=1) as db:
        docs = [bson.decode(v) for (v,) in db.execute("SELECT v FROM documents")]
    return sum((d.get("metadata") or {}).get("alloyflow_kind") != "assembly" and d.get("name") != "store_inputs"
               for d in docs)


def _computed(stdout: str) -> int:
    return int(re.search(r"(\d+) job\(s\) computed", stdout).group(1))


def _numbers(out: Path) -> dict:
    hull = json.loads((out / "Li-In" / "hull.json").read_text())
    barriers = json.loads((out / "barriers" / "Li" / "barriers.json").read_text())
    return {
        "hull": {p["name"]: round(p["energy_per_atom"], 10) for p in hull["phases"]},
        "barriers": [(h["id"], round(h["forward_barrier"], 10)) for h in barriers["hops"]],
    }


def test_study_writes_report(tmp_path, capsys):
    assert main([*STUDY, "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "mock-Morse (TEST ONLY)" in report
    assert "Comparison with the reference study" in report and "Li migration barriers" in report
    for name in ("hull.json", "hull.csv", "hull.png", "voltage.json", "voltage.png"):
        assert (tmp_path / "Li-In" / name).stat().st_size > 0
    assert (tmp_path / "barriers" / "Li" / "barriers.csv").exists()
    meta = json.loads((tmp_path / "study.json").read_text())
    assert meta["calculator"]["name"] == "mock" and meta["jobs"]["computed"] > 0
    out = capsys.readouterr().out
    assert "reused" in out

    # a rerun reuses every job, draws no figure again, and keeps the timings of the run that computed
    pngs = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    assert main([*STUDY, "--out", str(tmp_path)]) == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")} == pngs
    meta = json.loads((tmp_path / "study.json").read_text())
    assert meta["jobs"]["computed"] == 0
    assert [r["jobs"]["computed"] > 0 for r in meta["runs"]] == [True, False]
    report = (tmp_path / "report.md").read_text()
    assert "The last run that computed jobs" in report


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_then_rerun_reuses_finished_jobs(tmp_path, capsys, workers):
    """Killed in order or with jobs in two worker processes, a study loses only the jobs in flight."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert main([*STUDY, "--out", str(reference)]) == 0
    reference_stdout = capsys.readouterr().out
    total = _stored_jobs(reference)
    assert total >= 4

    env = {**os.environ, "ALLOYFLOW_MOCK_DELAY": "0.02"}
    cmd = [sys.executable, "-m", "alloyflow.cli", *STUDY, "--out", str(killed), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _stored_jobs(killed) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= _stored_jobs(killed) < total, "the kill must land after the first stored job and before the end"
    finished = _force_jobs(killed)

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    # every force job finished before the kill is reused, every other one computed once
    computed, reused = map(int, re.search(r"(\d+) job\(s\) computed, (\d+) reused", rerun.stdout).groups())
    assert computed == _computed(reference_stdout) - finished
    assert reused >= finished
    assert _numbers(killed) == _numbers(reference)


def test_concurrent_study_is_refused(tmp_path, capsys):
    from alloyflow.engine import ResultStore

    with ResultStore(tmp_path):
        assert main([*STUDY, "--out", str(tmp_path)]) == 1
    assert "another alloyflow run" in capsys.readouterr().err


def test_truncated_store_is_a_clear_error(tmp_path, capsys):
    assert main(["hull", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    collection = next((tmp_path / "store").rglob("outputs.collection"))
    collection.write_bytes(collection.read_bytes()[:1000])
    assert main(["hull", "Li-In", "--calculator", "mock", "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "unreadable" in err and "Traceback" not in err


def test_truncated_output_json_is_rebuilt_from_store(tmp_path, capsys):
    args = ["hull", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    hull_json = tmp_path / "Li-In" / "hull.json"
    good = json.loads(hull_json.read_text())
    hull_json.write_text(hull_json.read_text()[:50])
    assert main(args) == 0
    assert json.loads(hull_json.read_text()) == good
    assert "0 job(s) computed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["hull", "Li-Xx", "--calculator", "mock"], "unknown element 'Xx'"),
        (["barriers", "Sn", "--system", "Li-Sn", "--calculator", "mock"], "no Li"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_empty_structure_folder_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["hull", "Li-In", "--calculator", "mock", "--structures", str(empty), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 1
    assert "holds no CIF" in capsys.readouterr().err


def test_report_rebuilds_from_stored_files(tmp_path, capsys):
    assert main([*STUDY, "--barriers", "none", "--out", str(tmp_path)]) == 0
    (tmp_path / "report.md").unlink()
    assert main(["report", "--out", str(tmp_path)]) == 0
    assert "Comparison with the reference study" in (tmp_path / "report.md").read_text()


def test_study_runs_the_search_and_labels_predicted_phases(tmp_path, capsys):
    """Without --no-search the study adds the tie-line search's structures to the hull, marked predicted."""
    argv = ["study", "Li-In", "--calculator", "mock", "--barriers", "none", "--search-max-sites", "4",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    predicted = sorted((tmp_path / "Li-In" / "predicted").glob("*.cif"))
    assert predicted, "the search wrote no predicted structure"
    hull = json.loads((tmp_path / "Li-In" / "hull.json").read_text())
    statuses = {p["name"]: p["status"] for p in hull["phases"]}
    assert {p.stem for p in predicted} <= set(statuses)
    assert all(statuses[p.stem] == "predicted" for p in predicted)
    assert "predicted" in (tmp_path / "report.md").read_text()
    assert "search Li-In" in json.loads((tmp_path / "study.json").read_text())["timings_seconds"]


def test_a_phase_whose_planning_fails_is_reported_and_retried(tmp_path, capsys, monkeypatch):
    import alloyflow.workflows.flows.barriers as barriers

    real = barriers.stored_plan

    def failing(phase, *args, **kwargs):
        if phase == "LiIn":
            raise ValueError("0 atoms move by more than 0.5 Å")
        return real(phase, *args, **kwargs)

    argv = [*STUDY[:-5], "LiIn", *STUDY[-5:]]  # --barriers Li LiIn
    monkeypatch.setattr(barriers, "stored_plan", failing)
    assert main([*argv, "--out", str(tmp_path)]) == 0  # the study goes on without LiIn
    captured = capsys.readouterr()
    assert "the hops of LiIn could not be planned" in captured.err
    report = (tmp_path / "report.md").read_text()
    assert "**LiIn** (vacancy): no barriers, its hop planning failed: ValueError: 0 atoms move" in report
    li = json.loads((tmp_path / "barriers" / "Li" / "barriers.json").read_text())
    assert li["hops"] and li["error"] is None
    failed = json.loads((tmp_path / "barriers" / "LiIn" / "barriers.json").read_text())
    assert failed["hops"] == [] and failed["retry_next_run"] is True

    monkeypatch.setattr(barriers, "stored_plan", real)  # the fix: the next run plans LiIn again, reuses the rest
    assert main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    computed = int(re.search(r"(\d+) job\(s\) computed", out).group(1))
    fixed = json.loads((tmp_path / "barriers" / "LiIn" / "barriers.json").read_text())
    assert fixed["hops"] and fixed["error"] is None and not fixed["retry_next_run"]
    assert computed > 0
    assert "planning failed" not in (tmp_path / "report.md").read_text()
    # and a third run reuses everything
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert "0 job(s) computed" in capsys.readouterr().out
