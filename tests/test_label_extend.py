"""Extending the frozen label set with a study's predicted cells (benchmarks/label_extend.py), on the mock potential.

A small study folder is made for real (keyed mock relaxations in a store, a
hull.json naming them predicted); the extension must add their relaxed and
strained cells, keep every structure and key already in the set, drop cells
the set already holds, and reuse single points stored elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def le():
    spec = importlib.util.spec_from_file_location("label_extend", ROOT / "benchmarks" / "label_extend.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["label_extend"] = module
    spec.loader.exec_module(module)
    return module


def quiet(msg):
    return None


@pytest.fixture(scope="module")
def setup(le, tmp_path_factory):
    """The small campaign's set (Li-In: LiIn, Li3In2, elements) and a study with four 'predicted' phases."""
    from alloyflow.engine import ResultStore, run_cached
    from alloyflow.structures.library import StructureLibrary, primitive
    from alloyflow.workflows.jobs.backends import relax_maker_for

    lc = le.lc
    config = lc.CampaignConfig(systems=("Li-In",), phases=("LiIn", "Li3In2"), ml_calculator="mock",
                               neb_phases=(("LiIn", "Li-In"),), dilute_hosts=(("In", "Li-In"),),
                               validation_phases=("Li3In2",))
    out = tmp_path_factory.mktemp("campaign")
    with ResultStore(out) as store:
        items, notes = lc.build_structure_set(store, config, log_fn=quiet)
    lib = StructureLibrary()
    study = tmp_path_factory.mktemp("study")
    # new orderings: Li3In (not in the small set); a twin of the set's LiIn; one too far above; one too big
    picks = {"Li3In_new": ("Li3In", 0.0, 1), "LiIn_twin": ("LiIn", 0.001, 1), "LiIn3_far": ("LiIn3", 0.05, 1),
             "Li3In_big": ("Li3In", 0.0, 3)}
    phases = []
    with ResultStore(study) as store:
        for name, (phase, above, reps) in picks.items():
            s = primitive(lib.get(phase, "Li-In").structure)
            s.make_supercell([reps, 1, 1])
            job = relax_maker_for("mock").keyed_job(s, label=name)
            run_cached(job, store)
            doc = store.output(job.uuid)
            phases.append({"name": name, "status": "predicted", "natoms": len(s), "e_above_hull": above,
                           "x_li": s.composition.get_atomic_fraction("Li"), "formation_energy_per_atom": -0.1})
    phases.append({"name": "LiIn", "status": "verified", "natoms": 4, "e_above_hull": 0.0, "x_li": 0.5,
                   "formation_energy_per_atom": -0.3})
    (study / "Li-In").mkdir()
    (study / "Li-In" / "hull.json").write_text(json.dumps({"calculator": {"label": "mock (test)"}, "phases": phases}))
    assert doc["label"] == "Li3In_big"
    return out, items, notes, study


def test_predicted_cells_extend_the_set_and_nothing_in_it_changes(le, setup, tmp_path):
    from alloyflow.engine import ResultStore

    lc = le.lc
    out, items, notes, study = setup
    new, record = le.search_items(study, "Li-In", window=0.003, max_atoms=8, validation={"Li3In_new"})
    assert record["phases"] == ["LiIn_twin", "Li3In_new"]  # by Li fraction; the far and the big one left out
    by_label = {it.label: it for it in new}
    base = by_label["Li-In/search/Li3In_new/relaxed"]
    assert {it.group for it in new} == {"search:Li3In_new", "search:LiIn_twin"}
    assert {it.split for it in new if it.group == "search:Li3In_new"} == {"validation"}
    assert {it.split for it in new if it.group == "search:LiIn_twin"} == {"train"}
    for eps in (-0.02, 0.02):
        s = by_label[f"Li-In/search/Li3In_new/strain{eps:+.0%}"].structure
        assert s.volume == pytest.approx(base.structure.volume * (1 + eps) ** 3, rel=1e-9)
    # a later round (another potential's geometries of the same names) gets its own labels and groups
    round2, _ = le.search_items(study, "Li-In", window=0.003, max_atoms=8, tag="2")
    assert {it.label.split("/")[1] for it in round2} == {"search2"}
    assert {it.group for it in round2} == {"search2:Li3In_new", "search2:LiIn_twin"}
    with pytest.raises(SystemExit, match="LiIn3_far"):
        le.search_items(study, "Li-In", window=0.003, max_atoms=8, validation={"LiIn3_far"})

    extended, ext_notes, added = le.extend(items, notes, new, record)
    # the twin's relaxed cell and strains are the set's LiIn ones: dropped, named
    assert sorted(it.label for it in added) == sorted(it.label for it in new if "Li3In_new" in it.label)
    dropped = {d["label"]: d["same_as"] for d in ext_notes["extensions"][-1]["dropped_duplicates"]}
    assert dropped == {"Li-In/search/LiIn_twin/relaxed": "Li-In/LiIn/relaxed",
                       "Li-In/search/LiIn_twin/strain+2%": "Li-In/LiIn/strain+2%",
                       "Li-In/search/LiIn_twin/strain-2%": "Li-In/LiIn/strain-2%"}
    # every structure already in the set keeps its split, group and key
    maker = lc.label_maker("mock", {})
    before = {it.label: (it.split, it.group, maker.key(it.structure)) for it in items}
    after = {it.label: (it.split, it.group, maker.key(it.structure)) for it in extended}
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 3
    # a second extension with the same cells adds nothing
    again, _, none = le.extend(extended, ext_notes, new, record)
    assert none == [] and len(again) == len(extended)

    # frozen and loaded: the same keys, the extension on record
    path = tmp_path / lc.SET_FILE
    lc.save_structure_set(path, extended, ext_notes, lc.CampaignConfig())
    loaded, loaded_notes = lc.load_structure_set(path)
    assert {it.label: maker.key(it.structure) for it in loaded} == {k: v[2] for k, v in after.items()}
    assert loaded_notes["extensions"][0]["phases"] == ["LiIn_twin", "Li3In_new"]

    # a single point stored elsewhere (same maker and settings) is copied, not computed again
    from alloyflow.engine import run_cached

    with ResultStore(tmp_path / "elsewhere") as src:
        job = maker.keyed_job(base.structure, "Li3In_new")
        run_cached(job, src)
        energy = src.output(job.uuid)["energy"]
        with ResultStore(tmp_path / "fresh") as store:
            assert le.import_labels(store, src, added, "mock", {}, tmp_path / "fresh", log_fn=quiet) == 1
            assert le.import_labels(store, src, added, "mock", {}, tmp_path / "fresh", log_fn=quiet) == 0
            result = lc.label_campaign(store, tmp_path / "fresh", added, dft="mock", dft_kwargs={}, log_fn=quiet)
            assert result["reused"] == 1 and result["computed"] == 2
            assert store.output(job.uuid)["energy"] == energy
            assert store.output(job.uuid)["label"] == "Li-In/search/Li3In_new/relaxed"
