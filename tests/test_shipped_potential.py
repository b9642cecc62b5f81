"""The fine-tuned Li-In-Sn potential shipped as package data: registry entry, offline load, stored energies, refusals."""

import json
import shutil

import pytest
from ase.io import read

from alloyflow.calculators import CalculatorError, available_calculators, calculator_info, check_elements, get_spec
from alloyflow.calculators.packaged import POTENTIALS_DIR, shipped_metadata, shipped_potentials, sevennet_with_delta

NAME = "alloyflow-LiInSn"
LABELS = POTENTIALS_DIR.parent / "labels"

pytestmark = pytest.mark.skipif(NAME not in shipped_potentials(), reason=f"{NAME} is not in {POTENTIALS_DIR}")


def test_registered_as_a_builtin_ml_potential_without_loading_it():
    meta = shipped_metadata(NAME)
    assert NAME in available_calculators()
    info = calculator_info(NAME)
    assert info["kind"] == "mlip" and meta["sha256"][:12] in info["model"] and "ML potential" in info["label"]
    assert set(meta["elements"]) == {"Li", "In", "Sn"}
    check_elements(NAME, ["Li", "Sn"])
    with pytest.raises(CalculatorError, match="Cu"):
        check_elements(NAME, ["Li", "Cu"])
    # a delta over SevenNet-0 (its two last blocks and readout: 301 k of 863 k float32 tensors, 3.5 MB in all),
    # small, with its license beside it and its labels' hashes
    assert meta["base_model"] == "7net-0" and (POTENTIALS_DIR / NAME / "weights.pth").stat().st_size < 1_500_000
    assert meta["trained_parameters"] < 0.4 * 863_000
    assert "GPL-3.0" in (POTENTIALS_DIR / NAME / "NOTICE.md").read_text() and "GPL-3.0" in meta["license"]
    assert set(meta["labels"]["files"]) == {"li_in_sn_gpaw_train.extxyz", "li_in_sn_gpaw_validation.extxyz"}


def test_loads_offline_and_gives_the_stored_energies():
    from alloyflow.calculators import get_calculator

    meta = shipped_metadata(NAME)
    frames = {a.info["label"]: a for split in ("train", "validation")
              for a in read(LABELS / f"li_in_sn_gpaw_{split}.extxyz", index=":")}
    calc = get_calculator(NAME)
    assert len(meta["checks"]) == 3
    for check in meta["checks"]:
        atoms = frames[check["label"]].copy()
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(check["energy_eV"], abs=1e-4)
    # and it is not SevenNet-0: fine-tuning moved the energies
    base = frames[meta["checks"][0]["label"]].copy()
    base.calc = get_calculator("sevennet")
    assert abs(base.get_potential_energy() - meta["checks"][0]["energy_eV"]) > 1e-3


def test_a_changed_or_foreign_weights_file_is_refused(tmp_path):
    meta = shipped_metadata(NAME)
    changed = tmp_path / "weights.pth"
    shutil.copy(POTENTIALS_DIR / NAME / "weights.pth", changed)
    with changed.open("r+b") as fh:
        fh.seek(-64, 2)
        fh.write(b"\0" * 16)
    with pytest.raises(CalculatorError, match="do not match their metadata"):
        sevennet_with_delta(changed, meta["sha256"])
    import hashlib

    import torch

    foreign = tmp_path / "foreign.pth"
    torch.save({"format": "something else", "tensors": {}}, foreign)
    with pytest.raises(CalculatorError, match="format"):
        sevennet_with_delta(foreign, hashlib.sha256(foreign.read_bytes()).hexdigest())


def test_the_metadata_names_what_it_was_measured_against():
    meta = shipped_metadata(NAME)
    errors = meta["errors"]
    assert set(errors) == {"SevenNet-0", NAME}
    for model in errors.values():
        assert model["validation"]["n"] == meta["n_validation"] > 0
        assert model["formation_meV_atom"]  # formation energies against GPAW, per phase
    assert 1 <= meta["training"]["chosen_epoch"] <= meta["training"]["epochs"]
    json.dumps(meta)  # plain data only
    assert get_spec(NAME).package == "sevenn"


def test_relaxes_a_cell_for_real():
    from pymatgen.core import Lattice, Structure

    from alloyflow.workflows.jobs.relax import RelaxMaker

    li_sn = Structure(Lattice.cubic(3.2), ["Li", "Sn"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    doc = RelaxMaker(calculator=NAME, fmax=0.05).run(li_sn, label="B2 LiSn")
    assert doc.converged and doc.calculator["name"] == NAME and doc.energy_per_atom < -2


def test_training_runs_for_real_and_keeps_what_it_measured(tmp_path):
    """``train_shipped`` on five small labelled cells, 2 epochs with the cosine decay: a delta file that loads."""
    from alloyflow.ml.shipped import train_shipped

    frames = sorted(read(LABELS / "li_in_sn_gpaw_train.extxyz", index=":"), key=len)[:5]
    validation = sorted(read(LABELS / "li_in_sn_gpaw_validation.extxyz", index=":"), key=len)[:1]
    with pytest.raises(ValueError, match="lr_final"):
        train_shipped(frames, validation, tmp_path, "t", "test", epochs=2, lr=1e-4, lr_final=1e-3)
    with pytest.raises(ValueError, match="average_from"):
        train_shipped(frames, validation, tmp_path, "t", "test", epochs=2, average_from=3)
    with pytest.raises(ValueError, match=r"\['3x_'\] name no tensor"):  # a typo would train nothing it names
        train_shipped(frames, validation, tmp_path, "t", "test", epochs=2, trainable=("4_", "3x_"))
    meta = train_shipped(frames, validation, tmp_path, "t", "test", epochs=2, lr=1e-3, lr_final=1e-4, eval_every=1,
                         average_from=1, log=lambda line: None)
    assert meta["training"]["lr_final"] == 1e-4 and meta["n_fit"] + meta["n_stop"] == 5
    # each epoch and the mean of both are candidates; the chosen one has the lowest stop error among them
    assert [p["epoch"] for p in meta["curve"]] == [1, 2, "mean of 1-2"] and meta["training"]["chosen_epoch"] in (1, 2)
    assert meta["training"]["chosen"] in (1, 2, "epochs 1-2 averaged")
    assert (tmp_path / "weights.pth").stat().st_size > 0 and meta["errors"]["t"]["validation"]["n"] == 1


def test_band_images_energies_can_be_weighted_in_the_loss(tmp_path):
    """``band_energy_weight`` and ``element_energy_weight``: the band images' and one-element cells' graphs carry
    their weights, the others 1; training runs with them."""
    from sevenn.train.graph_dataset import SevenNetGraphDataset

    from alloyflow.ml.shipped import BAND_KINDS, _fit_dataset, train_shipped

    frames = read(LABELS / "li_in_sn_gpaw_train.extxyz", index=":")
    band = [a for a in frames if a.info.get("kind") in BAND_KINDS]
    plain = sorted((a for a in frames if a.info.get("kind") not in BAND_KINDS), key=len)
    one_element = [a for a in plain if len(set(a.get_chemical_symbols())) == 1]
    small = [one_element[0], *[a for a in plain if a not in one_element][:2]]  # one element, two compounds
    band = sorted(band, key=len)[:1]
    assert band, "the exported labels hold no band image"
    data = _fit_dataset(SevenNetGraphDataset, [*small, *band], {}, 5.0, tmp_path / "g", (7.5, 1.0))
    weights = sorted(float(g["data_weight"]["energy"]) for g in data)
    assert weights == [1.0, 1.0, 1.0, 7.5]
    data = _fit_dataset(SevenNetGraphDataset, [*small, *band], {}, 5.0, tmp_path / "h", (7.5, 3.0))
    by_frame = [float(g["data_weight"]["energy"]) for g in data]
    assert by_frame == [3.0, 1.0, 1.0, 7.5]
    assert all(float(g["data_weight"]["force"]) == 1.0 for g in data)
    for bad in (0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="band_energy_weight"):
            train_shipped(small, [], tmp_path / "p", "t", "test", epochs=1, band_energy_weight=bad)
        with pytest.raises(ValueError, match="element_energy_weight"):
            train_shipped(small, [], tmp_path / "p", "t", "test", epochs=1, element_energy_weight=bad)
    meta = train_shipped([*small, *band], [], tmp_path / "p", "t", "test", epochs=1, eval_every=1,
                         band_energy_weight=7.5, element_energy_weight=2.0, log=lambda line: None)
    assert meta["training"]["band_energy_weight"] == 7.5 and "band images' energy weighted 7.5" in meta["training"]["loss"]
    assert meta["training"]["element_energy_weight"] == 2.0 and "cells' energy weighted 2" in meta["training"]["loss"]
    assert (tmp_path / "p" / "weights.pth").stat().st_size > 0


def _script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seeds_keep_the_lowest_stop_error_and_resume(tmp_path):
    """``train_shipped.py --seeds``: the best seed by stop-frame energy error is copied, every score recorded."""
    script = _script("train_shipped")
    stop = {0: (5.2, 7.9), 1: (4.4, 7.9), 2: (4.4, 9.0)}  # seed 1 beats 2 on forces (the tie-break)
    trained = []

    def fake_train(seed, dest):
        trained.append(seed)
        dest.mkdir(parents=True)
        (dest / "weights.pth").write_bytes(bytes([seed]))
        (dest / "NOTICE.md").write_text("GPL")
        meta = {"training": {"seed": seed}, "errors": {script.NAME: {"stop": {
            "energy_mae_meV_atom": stop[seed][0], "force_mae_meV_A": stop[seed][1]}}}}
        (dest / "metadata.json").write_text(json.dumps(meta))
        return meta

    dest = tmp_path / script.NAME
    meta = script.train_seeds(fake_train, [0, 1, 2], dest)
    assert trained == [0, 1, 2] and meta["training"]["seed"] == 1
    assert (dest / "weights.pth").read_bytes() == bytes([1])
    stored = json.loads((dest / "metadata.json").read_text())
    assert stored["training"]["seed_choice"]["0"]["stop_energy_mae_meV_atom"] == 5.2
    assert script.train_seeds(fake_train, [0, 1, 2], dest)["training"]["seed"] == 1
    assert trained == [0, 1, 2]  # finished seeds are read back, not trained again


def test_seeds_trained_from_other_labels_are_trained_again_and_kept_aside(tmp_path):
    """A seed folder is reused only for the recipe it was trained from; ``jobs`` trains the missing ones at once."""
    import subprocess
    import sys

    script = _script("train_shipped")
    stop = {0: 5.0, 1: 4.0}
    trained, spawned = [], []

    def fake_train(seed, dest):
        trained.append(seed)
        dest.mkdir(parents=True, exist_ok=True)
        meta = {"training": {"seed": seed}, "errors": {script.NAME: {"stop": {
            "energy_mae_meV_atom": stop[seed], "force_mae_meV_A": 1.0}}}}
        for name, text in (("weights.pth", str(seed)), ("NOTICE.md", "GPL"), ("metadata.json", json.dumps(meta))):
            (dest / name).write_text(text)
        return meta

    def fake_spawn(seed, folder):  # a real process that writes what a training writes
        spawned.append(seed)
        meta = {"training": {"seed": seed}, "errors": {script.NAME: {"stop": {
            "energy_mae_meV_atom": stop[seed], "force_mae_meV_A": 1.0}}}}
        code = ("import json, pathlib, sys; d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True); "
                "[(d / n).write_text(t) for n, t in zip(('weights.pth', 'NOTICE.md', 'metadata.json'), sys.argv[2:])]")
        return subprocess.Popen([sys.executable, "-c", code, str(folder), f"spawned {seed}", "GPL", json.dumps(meta)])

    dest = tmp_path / script.NAME
    old = {"labels": {"li_in_sn_gpaw_train.extxyz": "aaa"}, "epochs": 60}
    assert script.train_seeds(fake_train, [0, 1], dest, recipe=old)["training"]["seed"] == 1
    assert script.train_seeds(fake_train, [0, 1], dest, recipe=old) and trained == [0, 1]

    new = {**old, "labels": {"li_in_sn_gpaw_train.extxyz": "bbb"}}  # more labels: both seeds again, at once
    meta = script.train_seeds(fake_train, [0, 1], dest, recipe=new, jobs=2, spawn=fake_spawn)
    assert spawned == [0, 1] and trained == [0, 1] and meta["training"]["seed"] == 1
    assert (dest / "weights.pth").read_text() == "spawned 1"
    work = tmp_path / f"{script.NAME}.seeds"
    assert json.loads((work / "seed-1" / script.RECIPE_FILE).read_text()) == {**new, "seed": 1}
    aside = sorted(p.name for p in work.iterdir() if ".replaced-" in p.name)
    assert len(aside) == 2 and (work / aside[1] / "weights.pth").read_text() == "1"  # the old ones kept
    script.train_seeds(fake_train, [0, 1], dest, recipe=new, jobs=2, spawn=fake_spawn)
    assert spawned == [0, 1] and trained == [0, 1]  # the new ones are reused

    stop[2] = 4.5  # three seeds, two at a time: never more processes than jobs
    live = []

    def counting_spawn(seed, folder):
        proc = fake_spawn(seed, folder)
        live.append(proc)
        assert sum(p.poll() is None for p in live) <= 2
        return proc

    newest = {**new, "epochs": 80}
    assert script.train_seeds(fake_train, [0, 1, 2], dest, recipe=newest, jobs=2,
                              spawn=counting_spawn)["training"]["seed"] == 1
    assert spawned == [0, 1, 0, 1, 2] and trained == [0, 1]


def _smallest_band(frames):
    from alloyflow.ml.shipped import band_groups

    groups = band_groups(frames)
    assert groups, "the exported labels hold no band with two images"
    return [frames[i] for i in min(groups, key=lambda idx: len(frames[idx[0]]))]


def test_band_groups_take_band_images_of_one_cell():
    """``band_groups``: band images (``BAND_KINDS``) grouped by composition, size and lattice, two at least; two
    hops in one supercell are one group."""
    from ase import Atoms

    from alloyflow.ml.shipped import band_groups

    def cell(kind, group, a=5.0, symbols="Li2Sn"):
        return Atoms(symbols, positions=[[0, 0, 0], [1.5, 0, 0], [0, 1.5, 0]][:len(Atoms(symbols))], cell=[a] * 3,
                     pbc=True, info={"kind": kind, "group": group})

    frames = [cell("neb_endpoint", "hop:A/0"), cell("relaxed", "phase:A"), cell("neb_saddle", "hop:A/0"),
              cell("neb_image", "hop:B/0", 6.0), cell("neb_saddle", "hop:A/0", symbols="LiSn2"),
              cell("neb_endpoint", "hop:C/1", 7.0), cell("neb_image", "hop:C/1", 7.0), cell("neb_saddle", "hop:A/1")]
    # B has one image; the LiSn2 frame is another composition; hop A/1 shares A/0's cell
    assert band_groups(frames) == [[0, 2, 7], [5, 6]]


def test_the_band_relative_loss_ignores_offsets_and_training_lowers_it(tmp_path):
    """``relative_energy_loss`` is blind to an energy offset the band shares (a per-element shift), and a short
    training on the smallest labelled band lowers it far more with ``band_relative_weight`` than without."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from sevenn.train.graph_dataset import SevenNetGraphDataset
    from sevenn.train.trainer import Trainer

    from alloyflow.ml.shipped import BASE_MODEL, _fit_dataset, _graphs_in_order, relative_energy_loss, train_shipped

    band = _smallest_band(read(LABELS / "li_in_sn_gpaw_train.extxyz", index=":"))
    shifted = []
    for a in band:
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy() + 0.37 * len(a), forces=a.get_forces(),
                                       stress=a.get_stress())
        shifted.append(b)
    model = Trainer.args_from_checkpoint(BASE_MODEL)[0]["model"]

    def loss(frames, folder, m=model):
        graphs = _graphs_in_order(_fit_dataset(SevenNetGraphDataset, frames, {}, 5.0, tmp_path / folder, None),
                                  frames, {})
        return float(relative_energy_loss(m, graphs))

    base = loss(band, "a")
    assert base > 0 and abs(loss(shifted, "b") - base) <= 1e-6 * base + 1e-12
    with pytest.raises(ValueError, match="band_relative_weight"):
        train_shipped(band, [], tmp_path / "x", "t", "test", epochs=1, band_relative_weight=-1.0)
    with pytest.raises(ValueError, match="no band has two fitted images"):
        train_shipped(band[:1], [], tmp_path / "y", "t", "test", epochs=1, band_relative_weight=1.0)
    import torch

    def trained(weight: float):
        dest = tmp_path / f"w{weight:g}"
        meta = train_shipped(band, [], dest, "t", "test", epochs=12, eval_every=12, lr=1e-3,
                             band_relative_weight=weight, log=lambda line: None)
        m = Trainer.args_from_checkpoint(BASE_MODEL)[0]["model"]
        m.load_state_dict({**m.state_dict(), **torch.load(dest / "weights.pth", weights_only=False)["tensors"]})
        return meta, loss(band, f"after{weight:g}", m)

    meta, with_term = trained(10.0)
    assert meta["training"]["relative_bands"] == 1 and "band-relative energy" in meta["training"]["loss"]
    _, without = trained(0.0)
    # measured: SevenNet-0 1.6e-4 eV², 12 steps without the term ~1e-4, with it (weight 10) ~5e-6
    assert with_term < 0.5 * without < base


def test_the_stop_frames_stay_put_as_labels_are_added_and_bands_are_always_fitted():
    """``stop_indices``: a frame's role (fit or stop) follows from its own label, so adding labels moves none;
    band images and one-element cells always fit; about one frame in five chooses the epoch."""
    from alloyflow.ml.shipped import BAND_KINDS, STOP_EVERY, stop_indices

    frames = read(LABELS / "li_in_sn_gpaw_train.extxyz", index=":")
    stop = {frames[i].info["label"] for i in stop_indices(frames)}
    assert 0.1 < len(stop) / len(frames) < 0.3
    assert not any(a.info["label"] in stop for a in frames if a.info.get("kind") in BAND_KINDS)
    assert not any(a.info["label"] in stop for a in frames if len(set(a.get_chemical_symbols())) == 1)
    half = frames[::2]
    assert {half[i].info["label"] for i in stop_indices(half)} == stop & {a.info["label"] for a in half}
    assert stop_indices(frames[:STOP_EVERY - 1]) == set()


def test_candidate_benchmark_refuses_foreign_weights_and_keys_outputs_by_them(tmp_path, capsys):
    """``benchmarks/candidate.py``: a candidate is checked against its metadata before anything runs, and each
    side's output folder (its job store) is named by its weights' hash, so two trainings never share jobs."""
    script = _script("candidate")
    shipped = script.ROOT / script.PACKAGED
    cand = tmp_path / "cand"
    cand.mkdir()
    with pytest.raises(SystemExit, match="no weights.pth"):
        script.main([str(cand), "--dry-run"])
    shutil.copyfile(shipped / "metadata.json", cand / "metadata.json")
    (cand / "weights.pth").write_bytes(b"not these weights")
    with pytest.raises(SystemExit, match="does not describe"):
        script.main([str(cand), "--dry-run"])
    with pytest.raises(SystemExit):
        script.main([str(cand), "--phases", "Li2Sn5", "--dry-run"])
    assert "SYSTEM:PHASE" in capsys.readouterr().err
    shutil.copyfile(shipped / "weights.pth", cand / "weights.pth")
    assert script.main([str(cand), "--hull", "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    plan = capsys.readouterr().out.splitlines()
    sha = json.loads((shipped / "metadata.json").read_text())["sha256"][:12]
    assert sum(f"candidate-{sha}" in line for line in plan) == len(script.PHASES) + 1
    assert any(line.startswith("sevennet: alloyflow study Li-In Li-Sn --barriers none") for line in plan)
    assert not (tmp_path / "o").exists()  # a dry run computes and writes nothing


def test_candidate_report_sets_each_side_beside_the_dft_check_of_the_same_hops(tmp_path):
    """``candidate.report``: thresholds per dimension; GPAW//SevenNet-0 from ``fidelity.json`` follows the hops
    that set SevenNet-0's thresholds, labelled as DFT on ML geometries; differences are per side."""
    from alloyflow.analysis.migration import BarrierResult
    from alloyflow.workflows.schemas.fidelity import FidelityResult, HopFidelity

    script = _script("candidate")

    def side(name, thresholds, hops=None):
        folder = tmp_path / name / "barriers" / "LiSn"
        folder.mkdir(parents=True)
        res = BarrierResult(phase="LiSn", calculator={"name": name}, hops=[],
                            percolation=dict(zip(script.DIMS, thresholds)),
                            percolation_hops=dict(zip(script.DIMS, hops or (None,) * 3)))
        (folder / "barriers.json").write_text(res.model_dump_json())
        return {"out": tmp_path / name, "meta": None, "wall": 0.0}

    sides = {"candidate": side("candidate", (0.303, 0.417, 0.943)),
             "sevennet": side("sevennet", (0.252, 0.322, 0.839), hops=(1, 3, 4))}
    before = script.report(sides, [("Li-Sn", "LiSn")], False, dft_ml_out=tmp_path / "sevennet")
    assert "| LiSn | 303 / 417 / 943 | 252 / 322 / 839 | – | 457 |" in before
    assert "minus GPAW//SevenNet-0" not in before  # nothing refined: no comparison invented

    fid = FidelityResult(phase="LiSn", ml_calculator={"name": "sevennet"},
                         dft_calculator={"model": "GPAW-PBE", "settings": {"ecut": 350.0, "kpt_density": 3.0}},
                         hops=[HopFidelity(hop=h, length=3.2, ml=0.3, dft_ml=e, dft_ml_single_points=3,
                                           dft_ml_seconds=1.0) for h, e in ((4, 1.139), (1, 0.308), (3, 0.426))],
                         dft_single_points=9, dft_seconds=9.0)
    (tmp_path / "sevennet" / "barriers" / "LiSn" / "fidelity.json").write_text(fid.model_dump_json())
    text = script.report(sides, [("Li-Sn", "LiSn")], False, dft_ml_out=tmp_path / "sevennet")
    assert "| 308 / 426 / 1139 (GPAW-PBE, 350 eV, k-density 3) | 457 |" in text
    assert "- candidate: LiSn -5; largest |difference| 5" in text
    assert "- sevennet: LiSn -56; largest |difference| 56" in text
    assert "never a plain DFT barrier" in text


def test_a_li_sn_hull_without_calculator_runs_on_it_for_real(tmp_path):
    """No --calculator on a Li-Sn command: the fine-tuned potential computes and labels every stored number."""
    from alloyflow.cli import main

    out = tmp_path / "out"
    assert main(["hull", "Li-Sn", "--phases", "LiSn", "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    hull = json.loads((out / "Li-Sn" / "hull.json").read_text())
    assert hull["calculator"]["name"] == NAME and "(ML potential)" in hull["calculator"]["label"]
    lisn = next(p for p in hull["phases"] if p["name"] == "LiSn")
    assert lisn["formation_energy_per_atom"] < -0.3  # GPAW's label: -347 meV/atom; SevenNet-0's too
