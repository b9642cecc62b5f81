"""The GPAW label campaign (benchmarks/label_campaign.py) on the mock potential: set, split, resume, export.

The mock pair potential stands in for both SevenNet-0 (relaxations, the NEB
band) and GPAW (the labels), so this runs in seconds; the campaign's own
code paths (structure set, split, deduplication, keyed labels, progress
files, extxyz export) are the real ones.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lc():
    spec = importlib.util.spec_from_file_location("label_campaign", ROOT / "benchmarks" / "label_campaign.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["label_campaign"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def small_config(lc):
    """Li-In only: Li, In, LiIn (with its NEB band), Li3In2 (validation), dilute Li in In."""
    return lc.CampaignConfig(systems=("Li-In",), phases=("LiIn", "Li3In2"), ml_calculator="mock",
                             neb_phases=(("LiIn", "Li-In"),), dilute_hosts=(("In", "Li-In"),),
                             validation_phases=("Li3In2",))


def build(lc, folder):
    from alloyflow.engine import ResultStore

    with ResultStore(folder) as store:
        return lc.build_structure_set(store, small_config(lc), log_fn=lambda msg: None)


@pytest.fixture(scope="module")
def campaign(lc, tmp_path_factory):
    """The small campaign's folder and structure set (built once for the module)."""
    out = tmp_path_factory.mktemp("campaign")
    items, notes = build(lc, out)
    return out, items, notes


def test_structure_set_is_deterministic(lc, campaign, tmp_path):
    out, a, _ = campaign
    b, _ = build(lc, tmp_path / "fresh")  # a fresh store: relaxations and band recomputed
    c, _ = build(lc, out)  # the same store: everything reused
    sig = [[(it.label, it.split, it.fingerprint_hash()) for it in items] for items in (a, b, c)]
    assert sig[0] == sig[1] == sig[2]
    assert len(a) > 20
    kinds = {it.kind for it in a}
    assert {"relaxed", "strain", "shear", "rattle", "rattle_strained", "neb_endpoint", "neb_saddle", "vacancy",
            "dilute"} <= kinds
    # fixed seeds: a rattle depends on its label only
    li = next(it for it in a if it.label == "element/Li/rattle0.05")
    again = lc.rattled(lc.at_least(next(it for it in a if it.label == "element/Li/relaxed").structure, 8), 0.05,
                       lc.rng_for("element/Li/rattle0.05"))
    assert lc.Item("x", "g", "rattle", "s", again).fingerprint_hash() == li.fingerprint_hash()
    # cheapest-most-valuable first: priorities never decrease along the order
    assert [it.priority for it in a] == sorted(it.priority for it in a)


def test_split_keeps_whole_structures_apart(lc, campaign):
    _, items, _ = campaign
    train = [it for it in items if it.split == "train"]
    val = [it for it in items if it.split == "validation"]
    assert train and val
    assert {it.group for it in val} == {"phase:Li3In2"}  # the fixed rule: a whole phase
    assert not {it.group for it in train} & {it.group for it in val}  # no group on both sides
    assert not {it.fingerprint_hash() for it in train} & {it.fingerprint_hash() for it in val}
    assert {it.kind for it in val} >= {"relaxed", "strain", "rattle", "vacancy"}  # with all its derived cells
    labels = [it.label for it in items]
    assert len(labels) == len(set(labels))

    # a validation structure equal to a training one is dropped from validation, never kept on both sides
    twin = lc.Item("val twin", "phase:Li3In2", "relaxed", "Li-In", train[0].structure.copy())
    kept, dropped = lc.deduplicate(lc.split([*train, twin], {"phase:Li3In2"}))
    assert twin not in kept and dropped == [{"label": "val twin", "split": "validation", "same_as": train[0].label}]


def test_rerun_computes_no_new_label_and_exports(lc, campaign, tmp_path):
    from ase.io import read

    from alloyflow.engine import ResultStore

    out, items, _ = campaign
    with ResultStore(out) as store:
        first = lc.label_campaign(store, out, items, dft="mock", dft_kwargs={}, log_fn=lambda msg: None)
        assert first["computed"] == len(items) and first["failed"] == 0
        second = lc.label_campaign(store, out, items, dft="mock", dft_kwargs={}, log_fn=lambda msg: None)
        assert second["computed"] == 0 and second["reused"] == len(items)
        meta = lc.export_labels(store, items, tmp_path / "export", dft="mock", dft_kwargs={}, out=out)
    progress = json.loads((out / "progress.json").read_text())
    assert progress["labels_done"] == progress["labels_total"] == len(items)
    assert progress["projected_remaining_cpu_hours"] == 0
    assert (out / "progress.md").read_text().startswith("# GPAW label campaign")

    frames = {s: read(tmp_path / "export" / f"li_in_sn_mock_{s}.extxyz", index=":") for s in ("train", "validation")}
    assert sum(map(len, frames.values())) == len(items) == sum(meta["counts"].values())
    f = frames["validation"][0]
    assert f.info["split"] == "validation" and f.info["group"] == "phase:Li3In2"
    assert f.get_forces().shape == (len(f), 3) and f.get_stress().shape == (6,)
    assert f.info["dft_cpu_seconds"] >= 0
    stored = {it.label: it for it in items}[f.info["label"]]
    assert f.get_potential_energy() == pytest.approx(
        lc.label_maker("mock", {}).run(stored.structure)["energy"], abs=1e-6)


def test_frozen_set_keeps_every_label_key(lc, campaign, tmp_path):
    """A later run labels the saved set: same structures to the last digit, so the same label keys."""
    out, items, notes = campaign
    path = tmp_path / lc.SET_FILE
    lc.save_structure_set(path, items, notes, small_config(lc))
    loaded, loaded_notes = lc.load_structure_set(path)
    maker = lc.label_maker("mock", {})
    assert [(it.label, it.split, it.group, maker.key(it.structure)) for it in loaded] == \
        [(it.label, it.split, it.group, maker.key(it.structure)) for it in items]
    assert loaded_notes["neb"] == json.loads(json.dumps(notes["neb"], default=str))
    # structure_set() prefers the frozen file: nothing is rebuilt (no store needed)
    again, _ = lc.structure_set(None, tmp_path, small_config(lc), log_fn=lambda msg: None)
    assert [it.fingerprint_hash() for it in again] == [it.fingerprint_hash() for it in items]


def test_a_fresh_checkout_loses_no_label(lc, campaign, tmp_path):
    """Labels exported to the repository survive an empty campaign folder: adopted, seeded, never dropped."""
    import copy

    import numpy as np
    from ase.io import read

    from alloyflow.engine import ResultStore

    out, items, _ = campaign
    dest = tmp_path / "labels"
    with ResultStore(out) as store:
        lc.label_campaign(store, out, items, dft="mock", dft_kwargs={}, log_fn=lambda msg: None)
        lc.export_labels(store, items, dest, dft="mock", dft_kwargs={}, out=out)
    frames = lc.read_exported(dest)
    assert set(frames) == {it.label for it in items}

    # a rebuilt set whose ML geometries moved (a newer NEB default): the labelled geometry is adopted
    rebuilt = copy.deepcopy(items)
    rebuilt[0].structure.translate_sites([0], [0.01, 0.0, 0.0], frac_coords=False)
    adopted = lc.adopt_exported(rebuilt, frames, log_fn=lambda msg: None)
    assert len(adopted) == len(items)
    assert max(a["max_site_shift_A"] for a in adopted) == pytest.approx(0.01, abs=1e-6)
    assert lc.largest_shift(rebuilt[0].structure, items[0].structure) < 1e-6

    # an empty campaign folder: every exported label is seeded and none is computed again
    fresh = tmp_path / "fresh"
    with ResultStore(fresh) as store:
        assert lc.seed_from_exported(store, fresh, rebuilt, frames, "mock", {}, log_fn=lambda msg: None) == len(items)
        assert lc.seed_from_exported(store, fresh, rebuilt, frames, "mock", {}, log_fn=lambda msg: None) == 0
        again = lc.label_campaign(store, fresh, rebuilt, dft="mock", dft_kwargs={}, log_fn=lambda msg: None)
    assert again["computed"] == 0 and again["reused"] == len(items)

    # a geometry that is not the exported one is left to compute, not seeded with the wrong label
    moved = copy.deepcopy(rebuilt)
    moved[0].structure.translate_sites([0], [0.01, 0.0, 0.0], frac_coords=False)
    with ResultStore(tmp_path / "moved") as store:
        n = lc.seed_from_exported(store, tmp_path / "moved", moved, frames, "mock", {}, log_fn=lambda msg: None)
    assert n == len(items) - 1

    # export from a store that has none of them keeps the exported labels instead of dropping them
    before = {s: read(dest / f"li_in_sn_mock_{s}.extxyz", index=":") for s in ("train", "validation")}
    manifest = json.loads((dest / "manifest.json").read_text())
    (dest / "manifest.json").write_text(json.dumps({**manifest, "convergence": {"table": [1, 2]}}))
    with ResultStore(tmp_path / "empty") as store:
        meta = lc.export_labels(store, rebuilt, dest, dft="mock", dft_kwargs={})
    assert meta["kept_from_previous_export"] == len(items) and sum(meta["counts"].values()) == len(items)
    assert meta["convergence"] == {"table": [1, 2]}  # the settings check stays on record without its folder
    after = {s: read(dest / f"li_in_sn_mock_{s}.extxyz", index=":") for s in ("train", "validation")}
    for s in before:
        assert [a.info["label"] for a in after[s]] == [a.info["label"] for a in before[s]]
        assert np.allclose([a.get_potential_energy() for a in after[s]], [a.get_potential_energy() for a in before[s]])


def test_band_barriers_of_the_labelled_images_match_the_band(lc, campaign, tmp_path):
    """DFT//ML barriers from the labels: here the labelling potential is the band's, so they are the band's own."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from alloyflow.calculators import get_calculator
    from alloyflow.engine import ResultStore
    from alloyflow.ml.frames import band_barriers, predict

    out, items, notes = campaign
    with ResultStore(out) as store:
        lc.label_campaign(store, out, items, dft="mock", dft_kwargs={}, log_fn=lambda msg: None)
        lc.export_labels(store, items, tmp_path, dft="mock", dft_kwargs={}, out=out)
    frames = [a for a, _, _ in lc.read_exported(tmp_path).values()]
    calc = get_calculator("mock")
    pred = [predict(calc, a) for a in frames]
    aliases = {d["label"]: d["same_as"] for d in notes["dropped_duplicates"]}
    bands = band_barriers(frames, pred, aliases)
    hop = next(h for info in notes["neb"] for h in info["hops"] if "group" in h)
    band = f"Li-In/LiIn/hop{hop['hop']}"
    assert set(bands) == {band}
    row = bands[band]
    assert row["images"] == list(range(row["band_images"])) and row["band_images"] == 5  # 3 images + 2 endpoints
    assert row["dft"] == pytest.approx(1e3 * hop["ml_barrier_eV"], abs=1e-3)
    assert row["ml"] == pytest.approx(row["dft"], abs=1e-6)

    # a partly labelled band: the maximum over what is labelled, and the images used are listed
    def frame(label, energy):
        a = frames[0].copy()
        a.calc = SinglePointCalculator(a, energy=energy)
        a.info = {"label": label, "split": "train"}
        return a

    fake = [frame("S/P/hop0/image0", -10.0), frame("S/P/hop0/image2", -9.7), frame("S/P/hop1/image2", -9.9)]
    preds = [(-10.0, None, None), (-9.8, None, None), (-9.95, None, None)]
    got = band_barriers(fake, preds, {"S/P/hop1/image0": "S/P/hop0/image0", "S/P/hop0/image4": "S/P/hop0/image0"})
    assert got["S/P/hop0"]["dft"] == pytest.approx(300.0) and got["S/P/hop0"]["ml"] == pytest.approx(200.0)
    assert got["S/P/hop0"]["images"] == [0, 2, 4] and got["S/P/hop0"]["band_images"] == 5
    assert got["S/P/hop1"]["dft"] == pytest.approx(100.0) and got["S/P/hop1"]["images"] == [0, 2]  # endpoint aliased
    assert got["S/P/hop1"]["band_images"] == 3  # all it knows; the campaign's set says how long the band is:
    full = band_barriers(fake, preds, {"S/P/hop1/image0": "S/P/hop0/image0"}, planned=["S/P/hop1/image4"])
    assert full["S/P/hop1"]["band_images"] == 5 and full["S/P/hop1"]["images"] == [0, 2]
    assert band_barriers(fake[1:], preds[1:]) == {}  # no initial endpoint: no barrier
    only_ends = band_barriers(fake, preds, {"S/P/hop2/image0": "S/P/hop0/image0", "S/P/hop2/image4": "S/P/hop0/image2"})
    assert "S/P/hop2" not in only_ends  # its endpoints are another band's images: no inner image of its own


def test_two_worker_processes_give_the_same_labels(lc, campaign, tmp_path):
    """``--workers 2``: single points in spawned processes, stored by this one under the same keys."""
    from alloyflow.engine import ResultStore, deterministic_uuid

    out, items, _ = campaign
    some = items[:5]
    maker = lc.label_maker("mock", {})
    with ResultStore(tmp_path) as store:
        first = lc.label_campaign(store, tmp_path, some, dft="mock", dft_kwargs={}, workers=2, max_labels=3,
                                  log_fn=lambda msg: None)
        assert first["computed"] == 3 and first["failed"] == 0  # --max-labels holds with labels in flight
        rest = lc.label_campaign(store, tmp_path, some, dft="mock", dft_kwargs={}, workers=2, log_fn=lambda msg: None)
        assert rest["computed"] == 2 and rest["reused"] == 3
        parallel = {it.label: store.output(deterministic_uuid(maker.key(it.structure))) for it in some}
    with ResultStore(tmp_path / "serial") as store:
        lc.label_campaign(store, tmp_path / "serial", some, dft="mock", dft_kwargs={}, log_fn=lambda msg: None)
        serial = {it.label: store.output(deterministic_uuid(maker.key(it.structure))) for it in some}
    for label, doc in serial.items():
        assert parallel[label]["energy"] == pytest.approx(doc["energy"], abs=1e-9)
        assert parallel[label]["input_hash"] == doc["input_hash"]
    cpu = json.loads((tmp_path / "cpu_seconds.json").read_text())
    assert len(cpu) == 5 and all(v["cpu_seconds"] >= 0 for v in cpu.values())
    with pytest.raises(ValueError, match="workers"):
        lc.label_campaign(None, tmp_path, some, dft="mock", dft_kwargs={}, workers=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_label_is_recorded_and_the_others_go_on(lc, campaign, tmp_path, workers, monkeypatch):
    """One single point fails (two atoms on one site: non-finite forces); the rest are labelled, the failure is
    kept in failures.json and skipped by the next run unless ``retry_failed``; nothing unusable is stored."""
    from dataclasses import replace

    from alloyflow.engine import ResultStore, deterministic_uuid

    out, items, _ = campaign
    base = next(it for it in items if len(it.structure) > 1)
    broken_structure = base.structure.copy()
    broken_structure.replace(1, broken_structure[1].species, broken_structure[0].frac_coords)
    broken = replace(base, label="broken", structure=broken_structure)
    some = [broken] + [it for it in items if it is not base][:3]
    monkeypatch.setattr(lc, "cost_model", lambda structure, density=None, ecut=None: 1e9)  # spglib refuses it
    messages = []
    with ResultStore(tmp_path) as store:
        first = lc.label_campaign(store, tmp_path, some, dft="mock", dft_kwargs={}, workers=workers,
                                  log_fn=messages.append)
        assert first["failed"] == 1 and first["computed"] == 3
        assert any(m.startswith("FAILED broken: ") and "non-finite" in m for m in messages)
        failures = json.loads((tmp_path / "failures.json").read_text())
        assert [f["label"] for f in failures.values()] == ["broken"]
        assert not store.has(deterministic_uuid(lc.label_maker("mock", {}).key(broken_structure)))
        again = lc.label_campaign(store, tmp_path, some, dft="mock", dft_kwargs={}, workers=workers,
                                  log_fn=lambda msg: None)
        assert again["skipped_failed"] == 1 and again["computed"] == 0 and again["reused"] == 3
        retried = lc.label_campaign(store, tmp_path, some, dft="mock", dft_kwargs={}, workers=workers,
                                    retry_failed=True, log_fn=lambda msg: None)
        assert retried["failed"] == 1 and retried["computed"] == 0
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["labels_done"] == 3 and progress["failed"] == 1 and progress["running"] == ""


def test_a_label_stored_under_its_earlier_key_is_counted_not_computed(lc, tmp_path):
    """A label keyed before the face wrap (a site at -2e-16 written as 1.0) is found, with its CPU seconds."""
    from ase.io import read
    from pymatgen.core import Lattice, Structure

    from alloyflow.engine import ResultStore, run_cached
    from alloyflow.engine.keys import EARLIER_KEY, deterministic_uuid

    s = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[-2e-16, 0.0, 0.0], [0.5, 0.5, 0.5]])
    it = lc.Item("element/Li/face", "element:Li", "relaxed", "Li-In", s)
    maker = lc.label_maker("mock", {})
    then = maker.keyed_job(s, it.label)
    old = then.metadata.pop(EARLIER_KEY)
    then.set_uuid(deterministic_uuid(old))  # as the campaign keyed it before the wrap
    out = tmp_path / "campaign"
    with ResultStore(out) as store:
        assert run_cached(then, store).computed == 1
    (out / "cpu_seconds.json").write_text(json.dumps(
        {old: {"cpu_seconds": 12.5, "wall_seconds": 13.0, "natoms": 2, "label": it.label, "finished": "then"}}))

    with ResultStore(out) as store:
        run = lc.label_campaign(store, out, [it], dft="mock", dft_kwargs={}, log_fn=lambda msg: None)
        lc.export_labels(store, [it], tmp_path / "export", dft="mock", dft_kwargs={}, out=out)
    assert run["computed"] == 0 and run["reused"] == 1
    assert json.loads((out / "progress.json").read_text())["labels_done"] == 1
    key = maker.key(s)
    assert key != old and json.loads((out / "cpu_seconds.json").read_text())[key]["cpu_seconds"] == 12.5
    (frame,) = read(tmp_path / "export" / "li_in_sn_mock_train.extxyz", index=":")
    assert frame.info["key"] == key and frame.info["dft_cpu_seconds"] == 12.5

    # a label the runner finds stored (not the first pass) is counted as done too
    progress = lc.Progress(out, [it], "mock", {})
    job = maker.keyed_job(s, it.label)
    counts = {"computed": 0, "reused": 0, "failed": 0}
    with ResultStore(out) as store:
        lc._Ticks(store, progress, {job.name: (it, job)}, counts, lambda msg: None)(job.name, reused=True)
    assert it.label in progress.done and counts == {"computed": 0, "reused": 1, "failed": 0}
